package auth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/shiftflow/shiftflow/core"
)

// MinSecretBytes is the shortest accepted HS256 secret: HMAC-SHA256 keys
// shorter than the hash output (32 bytes) weaken it (RFC 7518 section 3.2).
const MinSecretBytes = 32

// Token is a signed access token and when it stops being accepted.
type Token struct {
	Value     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// claims is the JWT payload: the registered claims plus organisation and role.
type claims struct {
	Org  string `json:"org"`
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// Tokens issues and verifies access tokens with exactly one algorithm and
// key. The parser accepts only that algorithm, so "alg: none", an RS256
// header on an HMAC key (the classic key-confusion attack) or any other
// algorithm is refused before a signature is even computed.
type Tokens struct {
	method    jwt.SigningMethod
	signKey   any // nil: verify only
	verifyKey any
	issuer    string
	ttl       time.Duration
	now       func() time.Time
	parser    *jwt.Parser
}

// TokenOption changes a Tokens.
type TokenOption func(*Tokens)

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) TokenOption { return func(t *Tokens) { t.now = now } }

// NewHS256Tokens returns Tokens signing with HMAC-SHA256. The secret must be
// at least MinSecretBytes long; issuer must be set; ttl must be positive.
func NewHS256Tokens(secret []byte, issuer string, ttl time.Duration, opts ...TokenOption) (*Tokens, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("HS256 secret is %d bytes, at least %d are required", len(secret), MinSecretBytes)
	}
	key := append([]byte(nil), secret...)
	return newTokens(jwt.SigningMethodHS256, key, key, issuer, ttl, opts)
}

// NewEd25519Tokens returns Tokens signing with Ed25519 (EdDSA). priv may be
// nil for a verify-only instance (a function that never logs anyone in needs
// only the public key); pub may be nil when priv is set.
func NewEd25519Tokens(priv ed25519.PrivateKey, pub ed25519.PublicKey, issuer string, ttl time.Duration, opts ...TokenOption) (*Tokens, error) {
	if priv == nil && pub == nil {
		return nil, errors.New("Ed25519 tokens need a private or a public key")
	}
	if priv != nil {
		if len(priv) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("Ed25519 private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
		}
		derived := priv.Public().(ed25519.PublicKey)
		if pub != nil && !derived.Equal(pub) {
			return nil, errors.New("Ed25519 public key does not match the private key")
		}
		pub = derived
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("Ed25519 public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	var sign any
	if priv != nil {
		sign = priv
	}
	return newTokens(jwt.SigningMethodEdDSA, sign, pub, issuer, ttl, opts)
}

func newTokens(m jwt.SigningMethod, sign, verify any, issuer string, ttl time.Duration, opts []TokenOption) (*Tokens, error) {
	if issuer == "" {
		return nil, errors.New("token issuer is empty")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("token lifetime %v must be positive", ttl)
	}
	t := &Tokens{method: m, signKey: sign, verifyKey: verify, issuer: issuer, ttl: ttl, now: time.Now}
	for _, o := range opts {
		o(t)
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{m.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return t.now() }),
		// A few seconds of leeway absorb clock skew between the instance
		// that signs and the one that verifies, no more.
		jwt.WithLeeway(5*time.Second),
	)
	return t, nil
}

// TTL returns how long issued tokens live.
func (t *Tokens) TTL() time.Duration { return t.ttl }

// Issue signs a token for p. It fails on a verify-only instance or an
// incomplete principal.
func (t *Tokens) Issue(p Principal) (Token, error) {
	if t.signKey == nil {
		return Token{}, errors.New("issue token: this instance has no signing key (verify only)")
	}
	if p.UserID == "" || p.OrganizationID == "" || !ValidRole(p.Role) {
		return Token{}, fmt.Errorf("issue token: incomplete principal %+v", p)
	}
	now := t.now().UTC().Truncate(time.Second)
	exp := now.Add(t.ttl)
	c := claims{
		Org:  p.OrganizationID,
		Role: p.Role,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   p.UserID,
			Issuer:    t.issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	}
	s, err := jwt.NewWithClaims(t.method, c).SignedString(t.signKey)
	if err != nil {
		return Token{}, fmt.Errorf("sign token: %w", err)
	}
	return Token{Value: s, ExpiresAt: exp}, nil
}

// Verify checks raw's algorithm, signature, issuer, expiry and not-before,
// and returns the principal it names. Every failure is a core.EUnauthorized
// error whose message says what is wrong without echoing the token; the
// library's detail is kept in Err for the log.
func (t *Tokens) Verify(raw string) (Principal, error) {
	if raw == "" {
		return Principal{}, core.Unauthorized("missing bearer token")
	}
	var c claims
	_, err := t.parser.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return t.verifyKey, nil })
	if err != nil {
		msg := "invalid token"
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			msg = "token expired"
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			msg = "token not valid yet"
		case errors.Is(err, jwt.ErrTokenMalformed):
			msg = "malformed token"
		}
		return Principal{}, &core.Error{Code: core.EUnauthorized, Message: msg, Err: err}
	}
	p := Principal{UserID: c.Subject, OrganizationID: c.Org, Role: c.Role}
	if p.UserID == "" || p.OrganizationID == "" || !ValidRole(p.Role) {
		return Principal{}, core.Unauthorized("invalid token")
	}
	return p, nil
}
