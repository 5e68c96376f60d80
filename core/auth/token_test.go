package auth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/auth"
)

var (
	secret      = []byte("0123456789abcdef0123456789abcdef-test-secret")
	otherSecret = []byte("fedcba9876543210fedcba9876543210-other-secret")
	alice       = auth.Principal{UserID: "u1", OrganizationID: "org-a", Role: auth.RoleScheduler}
)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func mustHS(t *testing.T, key []byte, iss string, now time.Time) *auth.Tokens {
	t.Helper()
	tk, err := auth.NewHS256Tokens(key, iss, time.Hour, auth.WithClock(fixedClock(now)))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// signRaw signs arbitrary claims with an arbitrary method, for forged tokens.
func signRaw(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenTableRefusesEveryForgeryAndAcceptsOnlyTheValidToken(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	verifier := mustHS(t, secret, "shiftflow", now)

	valid, err := verifier.Issue(alice)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := mustHS(t, secret, "shiftflow", now.Add(-2*time.Hour)).Issue(alice)
	notYet := signRaw(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{
		"sub": "u1", "org": "org-a", "role": "scheduler", "iss": "shiftflow",
		"iat": now.Unix(), "nbf": now.Add(10 * time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	wrongKey, _ := mustHS(t, otherSecret, "shiftflow", now).Issue(alice)
	wrongIssuer, _ := mustHS(t, secret, "someone-else", now).Issue(alice)
	noExp := signRaw(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{
		"sub": "u1", "org": "org-a", "role": "scheduler", "iss": "shiftflow", "iat": now.Unix(),
	})
	unknownRole := signRaw(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{
		"sub": "u1", "org": "org-a", "role": "root", "iss": "shiftflow",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})

	// alg "none": the library refuses to sign with it unless told this is
	// unsafe; an attacker simply builds the string by hand.
	seg := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	payload := map[string]any{"sub": "u1", "org": "org-a", "role": "admin", "iss": "shiftflow",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	algNone := seg(map[string]string{"alg": "none", "typ": "JWT"}) + "." + seg(payload) + "."
	algNoneLib := signRaw(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims(payload))

	// RS256 header on an HS key: the key-confusion attack signs with the
	// verifier's HMAC secret (in the wild: its public key bytes) but claims RS256.
	hsSig := signRaw(t, jwt.SigningMethodHS256, secret, jwt.MapClaims(payload))
	parts := strings.Split(hsSig, ".")
	rsHeaderOnHS := seg(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + parts[1] + "." + parts[2]
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	realRS256 := signRaw(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims(payload))

	// Tampered payload: a valid token whose role is raised to admin.
	vp := strings.Split(valid.Value, ".")
	var body map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(vp[1])
	_ = json.Unmarshal(raw, &body)
	body["role"] = "admin"
	tampered := vp[0] + "." + seg(body) + "." + vp[2]

	cases := []struct {
		name  string
		token string
		ok    bool
		msg   string
	}{
		{"valid", valid.Value, true, ""},
		{"expired", expired.Value, false, "token expired"},
		{"not yet valid", notYet, false, "token not valid yet"},
		{"alg none by hand", algNone, false, "invalid token"},
		{"alg none by the library", algNoneLib, false, "invalid token"},
		{"HS256 with the wrong key", wrongKey.Value, false, "invalid token"},
		{"RS256 header on an HS key", rsHeaderOnHS, false, "invalid token"},
		{"real RS256 token", realRS256, false, "invalid token"},
		{"wrong issuer", wrongIssuer.Value, false, "invalid token"},
		{"tampered payload", tampered, false, "invalid token"},
		{"no expiry", noExp, false, "invalid token"},
		{"unknown role", unknownRole, false, "invalid token"},
		{"garbage", "not-a-jwt", false, "malformed token"},
		{"empty", "", false, "missing bearer token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := verifier.Verify(tc.token)
			if tc.ok {
				if err != nil {
					t.Fatalf("valid token refused: %v", err)
				}
				if p != alice {
					t.Fatalf("principal = %+v, want %+v", p, alice)
				}
				return
			}
			if err == nil {
				t.Fatalf("token accepted as %+v", p)
			}
			if core.ErrorCode(err) != core.EUnauthorized {
				t.Fatalf("code = %q, want unauthorized (%v)", core.ErrorCode(err), err)
			}
			if got := core.ErrorMessage(err); got != tc.msg {
				t.Fatalf("message = %q, want %q", got, tc.msg)
			}
		})
	}
}

func TestIssuedTokenCarriesEveryRequiredClaim(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tk, err := mustHS(t, secret, "shiftflow", now).Issue(alice)
	if err != nil {
		t.Fatal(err)
	}
	if !tk.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("expiresAt = %v", tk.ExpiresAt)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(tk.Value, ".")[1])
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"sub": "u1", "org": "org-a", "role": "scheduler", "iss": "shiftflow",
		"iat": float64(now.Unix()), "nbf": float64(now.Unix()), "exp": float64(now.Add(time.Hour).Unix())}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v, want %v", k, c[k], v)
		}
	}
}

func TestEd25519TokensVerifyWithThePublicKeyOnly(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := auth.NewEd25519Tokens(priv, nil, "shiftflow", time.Hour, auth.WithClock(fixedClock(now)))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewEd25519Tokens(nil, pub, "shiftflow", time.Hour, auth.WithClock(fixedClock(now)))
	if err != nil {
		t.Fatal(err)
	}
	tk, err := signer.Issue(alice)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := verifier.Verify(tk.Value); err != nil || p != alice {
		t.Fatalf("verify: %+v %v", p, err)
	}
	if _, err := verifier.Issue(alice); err == nil {
		t.Fatal("a verify-only instance issued a token")
	}
	// An HS256 token must not pass an EdDSA verifier, whatever its key.
	hs, _ := mustHS(t, secret, "shiftflow", now).Issue(alice)
	if _, err := verifier.Verify(hs.Value); err == nil {
		t.Fatal("HS256 token accepted by an Ed25519 verifier")
	}
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	wrong, _ := auth.NewEd25519Tokens(nil, otherPub, "shiftflow", time.Hour, auth.WithClock(fixedClock(now)))
	if _, err := wrong.Verify(tk.Value); err == nil {
		t.Fatal("token accepted with the wrong public key")
	}
}

func TestNewHS256TokensRefusesShortSecrets(t *testing.T) {
	if _, err := auth.NewHS256Tokens([]byte("short"), "shiftflow", time.Hour); err == nil {
		t.Fatal("short secret accepted")
	}
	if _, err := auth.NewHS256Tokens(secret, "", time.Hour); err == nil {
		t.Fatal("empty issuer accepted")
	}
}
