package auth

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/core"
)

// memUsers is a UserStore of one map.
type memUsers struct {
	mu    sync.Mutex
	users map[string]User
}

func (m *memUsers) Create(_ context.Context, u User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[u.Email] = u
	return nil
}

func (m *memUsers) ByEmail(_ context.Context, email string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.users[email]; ok {
		return u, nil
	}
	return User{}, core.NotFound("no user %s", email)
}

func (m *memUsers) ByID(context.Context, string, string) (User, error) {
	return User{}, core.NotFound("no user")
}
func (m *memUsers) List(context.Context, string) ([]User, error) { return nil, nil }

// allowAll is a Limiter that never limits.
type allowAll struct{}

func (allowAll) Allow(_ context.Context, _ string, r Rate) (Decision, error) {
	return Decision{Allowed: true, Limit: r.Limit, Remaining: r.Limit, Window: r.Window}, nil
}

// cheapParams is a clearly test-only argon2id cost: the property under test
// is how many derivations run and with which parameters, not their cost.
var cheapParams = Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// TestFailedLoginsRunExactlyOneEqualPasswordVerification is the
// deterministic half of the uniform-login property (the timed half is
// adapters/httpapi TestFailedLoginIsUniform): an unknown email and a wrong
// password each run exactly one argon2id derivation, with the same
// parameters, salt and key length as a real user's hash, so neither path
// can be told from the other by its work.
func TestFailedLoginsRunExactlyOneEqualPasswordVerification(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(cheapParams)
	var mu sync.Mutex
	var seen []string
	h.observe = func(p Argon2Params, saltLen, keyLen int) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("m=%d t=%d p=%d salt=%d key=%d", p.MemoryKiB, p.Time, p.Threads, saltLen, keyLen))
	}
	tokens, err := NewHS256Tokens([]byte("0123456789abcdef0123456789abcdef"), "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	users := &memUsers{users: map[string]User{}}
	svc := NewService(users, h, tokens, allowAll{}, Limits{Account: Rate{Limit: 1000, Window: time.Hour}, IP: Rate{Limit: 1000, Window: time.Hour}})
	if _, err := svc.EnsureUser(ctx, "known@example.com", "the right password", "org-a", RoleViewer); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("m=%d t=%d p=%d salt=%d key=%d", cheapParams.MemoryKiB, cheapParams.Time, cheapParams.Threads, cheapParams.SaltLen, cheapParams.KeyLen)
	for _, email := range []string{"nobody@example.com", "known@example.com", "nobody@example.com", "known@example.com"} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		_, err := svc.Login(ctx, LoginRequest{Email: email, Password: "some password", ClientIP: netip.MustParseAddr("192.0.2.1")})
		if core.ErrorCode(err) != core.EUnauthorized {
			t.Fatalf("%s: %v, want unauthorized", email, err)
		}
		mu.Lock()
		got := append([]string(nil), seen...)
		mu.Unlock()
		if len(got) != 1 || got[0] != want {
			t.Fatalf("%s: derivations %v, want exactly one with %s", email, got, want)
		}
	}
}

func (m *memUsers) SetPasswordHash(context.Context, string, string, string) error { return nil }
