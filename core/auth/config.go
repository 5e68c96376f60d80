package auth

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Variable names (docs/auth.md documents each).
const (
	VarJWTSecret          = "JWT_SECRET"
	VarJWTEd25519Private  = "JWT_ED25519_PRIVATE_KEY"
	VarJWTEd25519Public   = "JWT_ED25519_PUBLIC_KEY"
	VarJWTIssuer          = "JWT_ISSUER"
	VarJWTTTL             = "JWT_TTL"
	VarLoginRateAccount   = "LOGIN_RATE_ACCOUNT"
	VarLoginRateIP        = "LOGIN_RATE_IP"
	VarTrustedProxies     = "TRUSTED_PROXIES"
	DefaultIssuer         = "shiftflow"
	DefaultTokenTTL       = time.Hour
	minTokenTTL, maxTTL   = time.Minute, 24 * time.Hour
	ed25519SeedOrKeyHint  = "PEM (PKCS#8 PRIVATE KEY) or base64 of the 32-byte seed"
	ed25519PublicHintText = "PEM (PUBLIC KEY) or base64 of the 32-byte key"
)

// Config is the auth configuration, read once at cold start.
type Config struct {
	// Exactly one key source: Secret (HS256) or the Ed25519 keys (EdDSA).
	Secret         []byte
	Ed25519Private ed25519.PrivateKey // nil: verify only
	Ed25519Public  ed25519.PublicKey
	Issuer         string
	TTL            time.Duration
	Limits         Limits
	// TrustedProxies are the proxies whose X-Forwarded-For is believed. Empty
	// (the default): the client IP is the platform's peer address.
	TrustedProxies []netip.Prefix
}

// VarError is a bad value of one variable; the message names it and never
// contains a secret.
type VarError struct {
	Var    string
	Reason string
}

func (e *VarError) Error() string { return e.Var + ": " + e.Reason }

func bad(name, format string, args ...any) error {
	return &VarError{Var: name, Reason: fmt.Sprintf(format, args...)}
}

// FromEnv reads and validates the auth variables; every problem is reported
// (errors.Join), each naming its variable.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{Issuer: DefaultIssuer, TTL: DefaultTokenTTL, Limits: DefaultLimits}
	var errs []error
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }

	secret := getenv(VarJWTSecret) // not trimmed: every byte of a secret counts
	privRaw, pubRaw := get(VarJWTEd25519Private), get(VarJWTEd25519Public)
	switch {
	case secret != "" && (privRaw != "" || pubRaw != ""):
		errs = append(errs, bad(VarJWTSecret, "set either %s or %s/%s, not both", VarJWTSecret, VarJWTEd25519Private, VarJWTEd25519Public))
	case secret != "":
		if len(secret) < MinSecretBytes {
			errs = append(errs, bad(VarJWTSecret, "is %d bytes; at least %d random bytes are required (e.g. openssl rand -base64 48)", len(secret), MinSecretBytes))
		} else {
			c.Secret = []byte(secret)
		}
	case privRaw != "" || pubRaw != "":
		if privRaw != "" {
			k, err := parseEd25519Private(privRaw)
			if err != nil {
				errs = append(errs, bad(VarJWTEd25519Private, "%v; want %s", err, ed25519SeedOrKeyHint))
			}
			c.Ed25519Private = k
		}
		if pubRaw != "" {
			k, err := parseEd25519Public(pubRaw)
			if err != nil {
				errs = append(errs, bad(VarJWTEd25519Public, "%v; want %s", err, ed25519PublicHintText))
			}
			c.Ed25519Public = k
		}
		if c.Ed25519Private != nil && c.Ed25519Public != nil && !c.Ed25519Private.Public().(ed25519.PublicKey).Equal(c.Ed25519Public) {
			errs = append(errs, bad(VarJWTEd25519Public, "does not match %s", VarJWTEd25519Private))
		}
	default:
		errs = append(errs, bad(VarJWTSecret, "is required (at least %d bytes), or set %s (and optionally %s)", MinSecretBytes, VarJWTEd25519Private, VarJWTEd25519Public))
	}

	if v := get(VarJWTIssuer); v != "" {
		c.Issuer = v
	}
	if v := get(VarJWTTTL); v != "" {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			errs = append(errs, bad(VarJWTTTL, "%q is not a duration (examples: 30m, 1h)", v))
		case d < minTokenTTL || d > maxTTL:
			errs = append(errs, bad(VarJWTTTL, "%s is out of range [%s, %s]", d, minTokenTTL, maxTTL))
		default:
			c.TTL = d
		}
	}
	for _, r := range []struct {
		name string
		dst  *Rate
	}{{VarLoginRateAccount, &c.Limits.Account}, {VarLoginRateIP, &c.Limits.IP}} {
		if v := get(r.name); v != "" {
			rate, err := ParseRate(v)
			if err != nil {
				errs = append(errs, bad(r.name, "%v", err))
				continue
			}
			*r.dst = rate
		}
	}
	if v := get(VarTrustedProxies); v != "" {
		ps, err := ParsePrefixes(v)
		if err != nil {
			errs = append(errs, bad(VarTrustedProxies, "%v", err))
		}
		c.TrustedProxies = ps
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// String describes c without its keys, so that logging a Config by mistake
// never leaks a secret (docs/design.md#8).
func (c Config) String() string {
	key := "HS256 secret (redacted)"
	switch {
	case c.Secret == nil && c.Ed25519Private != nil:
		key = "Ed25519 key pair (private key redacted)"
	case c.Secret == nil:
		key = "Ed25519 public key (verify only)"
	}
	return fmt.Sprintf("auth.Config{key: %s, issuer: %q, ttl: %s, account: %s, ip: %s, trustedProxies: %v}",
		key, c.Issuer, c.TTL, c.Limits.Account, c.Limits.IP, c.TrustedProxies)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// LogValue is String, for slog.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Tokens builds the token issuer/verifier the configuration describes.
func (c Config) Tokens(opts ...TokenOption) (*Tokens, error) {
	if c.Secret != nil {
		return NewHS256Tokens(c.Secret, c.Issuer, c.TTL, opts...)
	}
	return NewEd25519Tokens(c.Ed25519Private, c.Ed25519Public, c.Issuer, c.TTL, opts...)
}

// ParsePrefixes parses comma-separated CIDRs or single addresses.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8)", f)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func decodeKeyText(s string) ([]byte, *pem.Block, error) {
	// Environment variables often lose their newlines; accept "\n" escapes.
	s = strings.ReplaceAll(s, `\n`, "\n")
	if b, _ := pem.Decode([]byte(s)); b != nil {
		return nil, b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil {
			return raw, nil, nil
		}
	}
	return nil, nil, errors.New("neither PEM nor base64")
}

func parseEd25519Private(s string) (ed25519.PrivateKey, error) {
	raw, block, err := decodeKeyText(s)
	if err != nil {
		return nil, err
	}
	if block != nil {
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("PEM is not a PKCS#8 private key")
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("PEM holds a %T, not an Ed25519 key", k)
		}
		return ek, nil
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		k := ed25519.PrivateKey(raw)
		if !ed25519.NewKeyFromSeed(k.Seed()).Equal(k) {
			return nil, errors.New("64-byte key is inconsistent")
		}
		return k, nil
	}
	return nil, fmt.Errorf("decoded %d bytes, want %d (seed) or %d", len(raw), ed25519.SeedSize, ed25519.PrivateKeySize)
}

func parseEd25519Public(s string) (ed25519.PublicKey, error) {
	raw, block, err := decodeKeyText(s)
	if err != nil {
		return nil, err
	}
	if block != nil {
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, errors.New("PEM is not a PKIX public key")
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("PEM holds a %T, not an Ed25519 key", k)
		}
		return ek, nil
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("decoded %d bytes, want %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}
