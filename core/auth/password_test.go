package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/core/auth"
)

func TestPasswordHashVerifies(t *testing.T) {
	ctx := context.Background()
	h := auth.NewHasher(auth.DefaultArgon2Params)
	start := time.Now()
	enc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one argon2id hash with the default cost: %v", time.Since(start))
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q does not carry the documented parameters", enc)
	}
	if ok, err := h.Verify(ctx, enc, "correct horse battery staple"); err != nil || !ok {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, err := h.Verify(ctx, enc, "correct horse battery stapl"); err != nil || ok {
		t.Fatalf("wrong password: %v %v", ok, err)
	}
	again, _ := h.Hash(ctx, "correct horse battery staple")
	if again == enc {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
}

func TestOldHashesVerifyAfterTheCostChanges(t *testing.T) {
	ctx := context.Background()
	cheap := auth.NewHasher(auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	enc, _ := cheap.Hash(ctx, "a password")
	if ok, err := auth.NewHasher(auth.DefaultArgon2Params).Verify(ctx, enc, "a password"); err != nil || !ok {
		t.Fatalf("hash made with other parameters: %v %v", ok, err)
	}
}

func TestMalformedHashesAreErrorsNotMatches(t *testing.T) {
	h := auth.NewHasher(auth.DefaultArgon2Params)
	for _, enc := range []string{
		"", "plain", "$2a$10$abcdefghijklmnopqrstuv", // bcrypt
		"$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", // would allocate ~100 GB
		"$argon2id$v=19$m=64,t=1,p=1$!!!$aGFzaGhhc2hoYXNoaGFzaA",
	} {
		if ok, err := h.Verify(context.Background(), enc, "x"); err == nil || ok {
			t.Errorf("%q: ok=%v err=%v, want an error", enc, ok, err)
		}
	}
}

func TestHashingStopsForAnEndedRequest(t *testing.T) {
	h := auth.NewHasher(auth.DefaultArgon2Params)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Hash(ctx, "x"); err == nil {
		t.Fatal("hashed for a cancelled request")
	}
	if err := h.VerifyDummy(ctx, "x"); err == nil {
		t.Fatal("verified for a cancelled request")
	}
}

func BenchmarkDefaultArgon2id(b *testing.B) {
	h := auth.NewHasher(auth.DefaultArgon2Params)
	for b.Loop() {
		_, _ = h.Hash(context.Background(), "correct horse battery staple")
	}
}
