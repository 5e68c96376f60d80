package auth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/core/auth"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const goodSecret = "0123456789abcdef0123456789abcdef"

func TestFromEnvDefaults(t *testing.T) {
	c, err := auth.FromEnv(envOf(map[string]string{auth.VarJWTSecret: goodSecret}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "shiftflow" || c.TTL != time.Hour || c.Limits != auth.DefaultLimits || c.TrustedProxies != nil {
		t.Fatalf("defaults: %+v", c)
	}
	if _, err := c.Tokens(); err != nil {
		t.Fatal(err)
	}
}

func TestFromEnvReadsEveryVariable(t *testing.T) {
	c, err := auth.FromEnv(envOf(map[string]string{
		auth.VarJWTSecret:        goodSecret + "-more",
		auth.VarJWTIssuer:        "https://api.example.com",
		auth.VarJWTTTL:           "30m",
		auth.VarLoginRateAccount: "5/15m",
		auth.VarLoginRateIP:      "50/h",
		auth.VarTrustedProxies:   "10.0.0.0/8, 192.0.2.1 ,2001:db8::/32",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "https://api.example.com" || c.TTL != 30*time.Minute {
		t.Fatalf("%+v", c)
	}
	if c.Limits.Account != (auth.Rate{Limit: 5, Window: 15 * time.Minute}) || c.Limits.IP != (auth.Rate{Limit: 50, Window: time.Hour}) {
		t.Fatalf("limits %+v", c.Limits)
	}
	if len(c.TrustedProxies) != 3 || c.TrustedProxies[1].String() != "192.0.2.1/32" {
		t.Fatalf("trusted %v", c.TrustedProxies)
	}
}

func TestFromEnvErrorsNameTheVariableAndNeverTheSecret(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no key at all", nil, auth.VarJWTSecret},
		{"short secret", map[string]string{auth.VarJWTSecret: "short-secret-value"}, auth.VarJWTSecret},
		{"secret and ed25519", map[string]string{auth.VarJWTSecret: goodSecret, auth.VarJWTEd25519Private: "x"}, auth.VarJWTSecret},
		{"bad ed25519 key", map[string]string{auth.VarJWTEd25519Private: "bm90IGEga2V5"}, auth.VarJWTEd25519Private},
		{"bad ttl", map[string]string{auth.VarJWTSecret: goodSecret, auth.VarJWTTTL: "forever"}, auth.VarJWTTTL},
		{"ttl too long", map[string]string{auth.VarJWTSecret: goodSecret, auth.VarJWTTTL: "72h"}, auth.VarJWTTTL},
		{"bad account rate", map[string]string{auth.VarJWTSecret: goodSecret, auth.VarLoginRateAccount: "5 per minute"}, auth.VarLoginRateAccount},
		{"zero ip rate", map[string]string{auth.VarJWTSecret: goodSecret, auth.VarLoginRateIP: "0/15m"}, auth.VarLoginRateIP},
		{"bad proxy", map[string]string{auth.VarJWTSecret: goodSecret, auth.VarTrustedProxies: "10.0.0.0/8,localhost"}, auth.VarTrustedProxies},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.FromEnv(envOf(tc.env))
			if err == nil {
				t.Fatal("accepted")
			}
			var ve *auth.VarError
			if !errors.As(err, &ve) || !strings.HasPrefix(err.Error(), tc.want+":") {
				t.Fatalf("error %q does not name %s", err, tc.want)
			}
			if s := tc.env[auth.VarJWTSecret]; s != "" && strings.Contains(err.Error(), s) {
				t.Fatalf("error leaks the secret: %q", err)
			}
		})
	}
	// Several problems are all reported.
	_, err := auth.FromEnv(envOf(map[string]string{auth.VarJWTTTL: "x", auth.VarLoginRateIP: "y"}))
	for _, v := range []string{auth.VarJWTSecret, auth.VarJWTTTL, auth.VarLoginRateIP} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("joined error %q misses %s", err, v)
		}
	}
}

func TestFromEnvEd25519KeyForms(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)

	for name, env := range map[string]map[string]string{
		"PEM":                        {auth.VarJWTEd25519Private: privPEM},
		"PEM with escaped newlines":  {auth.VarJWTEd25519Private: strings.ReplaceAll(privPEM, "\n", `\n`)},
		"base64 seed":                {auth.VarJWTEd25519Private: base64.StdEncoding.EncodeToString(priv.Seed())},
		"base64 key and PEM public":  {auth.VarJWTEd25519Private: base64.StdEncoding.EncodeToString(priv), auth.VarJWTEd25519Public: pubPEM},
		"public only (verify-only)":  {auth.VarJWTEd25519Public: base64.StdEncoding.EncodeToString(pub)},
		"mismatched pair is refused": {auth.VarJWTEd25519Private: base64.StdEncoding.EncodeToString(otherPriv.Seed()), auth.VarJWTEd25519Public: pubPEM},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := auth.FromEnv(envOf(env))
			if strings.HasPrefix(name, "mismatched") {
				if err == nil || !strings.Contains(err.Error(), auth.VarJWTEd25519Public) {
					t.Fatalf("mismatched pair: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tk, err := c.Tokens()
			if err != nil {
				t.Fatal(err)
			}
			if c.Ed25519Private != nil {
				tok, err := tk.Issue(auth.Principal{UserID: "u", OrganizationID: "o", Role: auth.RoleViewer})
				if err != nil {
					t.Fatal(err)
				}
				verifier, _ := auth.NewEd25519Tokens(nil, pub, c.Issuer, time.Hour)
				if _, err := verifier.Verify(tok.Value); err != nil {
					t.Fatalf("token does not verify with the public key: %v", err)
				}
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]auth.Rate{
		"5/15m": {5, 15 * time.Minute}, " 10 / 1h ": {10, time.Hour}, "3/m": {3, time.Minute}, "100/90s": {100, 90 * time.Second},
	} {
		got, err := auth.ParseRate(in)
		if err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
		if back, _ := auth.ParseRate(got.String()); back != got {
			t.Errorf("%v does not round-trip through %q", got, got.String())
		}
	}
	for _, in := range []string{"", "5", "x/15m", "-1/15m", "5/0s", "5/48h", "5/15", "100001/1m"} {
		if _, err := auth.ParseRate(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestCanIsTheRoleTable(t *testing.T) {
	want := map[string][]auth.Permission{
		auth.RoleAdmin:     auth.Permissions(),
		auth.RoleScheduler: {auth.PermRead, auth.PermWriteShifts, auth.PermWriteClients},
		auth.RoleViewer:    {auth.PermRead},
		"":                 nil,
		"root":             nil,
	}
	for role, perms := range want {
		allowed := map[auth.Permission]bool{}
		for _, p := range perms {
			allowed[p] = true
		}
		for _, p := range append(auth.Permissions(), "unknown") {
			if auth.Can(role, p) != allowed[p] {
				t.Errorf("Can(%q, %q) = %v", role, p, !allowed[p])
			}
		}
	}
}

func TestConfigNeverPrintsItsKeys(t *testing.T) {
	secret := goodSecret + "-do-not-print"
	c, err := auth.FromEnv(envOf(map[string]string{auth.VarJWTSecret: secret}))
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "auth", c)
	for _, out := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(&c), logged.String()} {
		if strings.Contains(out, "do-not-print") || !strings.Contains(out, "redacted") {
			t.Fatalf("printed config leaks or hides the key kind: %s", out)
		}
	}
}
