// Package ulid makes identifiers that are unique and sort by creation time
// (ULID: 48-bit milliseconds + 80 random bits, Crockford base32). Event ids
// must sort by time (core/event); entity ids use the same so that listings
// by id are listings by age.
package ulid

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"time"
)

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// New returns a ULID for the current time.
func New() string { return At(time.Now()) }

// At returns a ULID for t.
func At(t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	_, _ = rand.Read(b[6:])
	return encode(b)
}

func encode(b [16]byte) string {
	// 128 bits as 26 base32 digits, most significant first; the first
	// digit carries the top 3 bits.
	var out [26]byte
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// Valid reports whether s has the shape of a ULID. Handlers use it to
// answer 404 for ids that cannot exist without asking the database.
func Valid(s string) bool {
	if len(s) != 26 || s[0] > '7' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U') {
			return false
		}
	}
	return true
}

// Derived returns a ULID for t whose 80 random bits are taken from a hash
// of key: the same (t, key) always gives the same id, so work re-emitted
// by a re-run or the reconciler carries the id it had the first time
// (docs/design.md, "Effects exactly once"). Distinct keys collide only as
// SHA-256 prefixes do.
func Derived(t time.Time, key string) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	sum := sha256.Sum256([]byte(key))
	copy(b[6:], sum[:10])
	return encode(b)
}
