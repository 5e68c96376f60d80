package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Argon2Params is the cost of argon2id (RFC 9106).
type Argon2Params struct {
	MemoryKiB uint32 // memory per hash, in KiB
	Time      uint32 // passes over the memory
	Threads   uint8  // lanes
	SaltLen   uint32
	KeyLen    uint32
}

// DefaultArgon2Params is the documented cost: argon2id with 19 MiB, 2 passes
// and 1 lane, the first configuration OWASP's Password Storage Cheat Sheet
// recommends. One hash took 45-50 ms on the shared 2-core development
// machine (BenchmarkDefaultArgon2id) and holds 19 MiB while it runs, which
// fits a 256 MB function. Raising it later is safe: each hash carries its
// own parameters, so old hashes keep verifying.
var DefaultArgon2Params = Argon2Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Hasher hashes and verifies passwords with argon2id. Hashes are PHC
// strings: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash> (unpadded base64).
type Hasher struct {
	params Argon2Params
	// sem bounds concurrent hashes: each holds MemoryKiB of memory, and a
	// burst of logins on a long-running instance must not exhaust it.
	sem chan struct{}

	dummyOnce sync.Once
	dummy     string

	// observe, when set (tests only), sees every key derivation Verify
	// runs, with its parameters, salt and key lengths: that every failed
	// login runs exactly one, with the same cost, is checked by count
	// rather than by timing alone (the timing test has a tolerance).
	observe func(p Argon2Params, saltLen, keyLen int)
}

// NewHasher returns a Hasher with p (DefaultArgon2Params in production).
func NewHasher(p Argon2Params) *Hasher {
	n := runtime.GOMAXPROCS(0) * 2
	return &Hasher{params: p, sem: make(chan struct{}, n)}
}

// Params returns the cost of new hashes.
func (h *Hasher) Params() Argon2Params { return h.params }

func (h *Hasher) acquire(ctx context.Context) error {
	// A request whose deadline has passed gets no 19 MiB hash.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("password hashing: %w", err)
	}
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for a password hashing slot: %w", ctx.Err())
	}
}

func (h *Hasher) release() { <-h.sem }

// Hash returns the PHC string of password with a fresh random salt.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return h.hash(password)
}

func (h *Hasher) hash(password string) (string, error) {
	p := h.params
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Verify reports whether password matches the PHC string encoded, in
// constant time. A malformed hash is an error, not a mismatch.
func (h *Hasher) Verify(ctx context.Context, encoded, password string) (bool, error) {
	p, salt, want, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	if h.observe != nil {
		h.observe(p, len(salt), len(want))
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash reports whether encoded was made with a lower cost than the
// current one in some dimension, so that a successful login can upgrade it.
// It never asks to lower a cost: during a rolling deploy an instance still
// on the old parameters must not undo the new instances' upgrades.
func (h *Hasher) NeedsRehash(encoded string) bool {
	p, _, _, err := decodeHash(encoded)
	if err != nil {
		return false // Verify reports a malformed hash; nothing to upgrade
	}
	c := h.params
	return p.MemoryKiB < c.MemoryKiB || p.Time < c.Time || p.SaltLen < c.SaltLen || p.KeyLen < c.KeyLen
}

// VerifyDummy spends the same time as Verify against a real hash and always
// fails. Login calls it when the email is unknown, so the response time does
// not tell an attacker which emails have accounts.
func (h *Hasher) VerifyDummy(ctx context.Context, password string) error {
	h.dummyOnce.Do(func() {
		// The dummy is made lazily (one hash, once per cold start) so that
		// functions that never log anyone in do not pay for it.
		d, err := h.hash("dummy password that matches nothing")
		if err != nil {
			panic(err) // crypto/rand failing is not recoverable
		}
		h.dummy = d
	})
	_, err := h.Verify(ctx, h.dummy, password)
	return err
}

var errBadHash = errors.New("malformed argon2id hash")

func decodeHash(s string) (Argon2Params, []byte, []byte, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Argon2Params{}, nil, nil, errBadHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: version %q", errBadHash, parts[2])
	}
	var p Argon2Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: parameters %q", errBadHash, parts[3])
	}
	// Bounds keep a corrupted or hostile stored hash from asking for
	// gigabytes of memory.
	if p.MemoryKiB < 8 || p.MemoryKiB > 1<<20 || p.Time < 1 || p.Time > 100 || p.Threads < 1 {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: parameters out of range %q", errBadHash, parts[3])
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: salt", errBadHash)
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < 16 {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: key", errBadHash)
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}
