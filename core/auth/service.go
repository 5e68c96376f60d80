package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/shiftflow/shiftflow/core"
)

// Limits are the login budgets.
type Limits struct {
	Account Rate // per normalized email: stops password spraying from many IPs
	IP      Rate // per client IP (/64 for IPv6): stops one client trying many accounts
}

// DefaultLimits: 10 attempts per account and 100 per IP in any 15 minutes.
// An account budget of 10 leaves a person who mistypes room to recover and
// caps an online guesser at ~1000 guesses a day per account; 100 per IP lets
// an office behind one NAT log in together.
var DefaultLimits = Limits{
	Account: Rate{Limit: 10, Window: 15 * time.Minute},
	IP:      Rate{Limit: 100, Window: 15 * time.Minute},
}

// Service logs users in and manages them.
type Service struct {
	users   UserStore
	hasher  *Hasher
	tokens  *Tokens
	limiter Limiter
	limits  Limits
	now     func() time.Time
}

// NewService returns a Service. tokens must be able to sign (not verify-only)
// for Login.
func NewService(users UserStore, hasher *Hasher, tokens *Tokens, limiter Limiter, limits Limits) *Service {
	return &Service{users: users, hasher: hasher, tokens: tokens, limiter: limiter, limits: limits, now: time.Now}
}

// LoginRequest is one login attempt.
type LoginRequest struct {
	Email    string
	Password string
	// ClientIP is the address the platform saw (see httpapi.ClientIP).
	ClientIP netip.Addr
}

// LoginResult is the outcome of Login. Quota is set whenever the limiter was
// consulted, also when Login fails, so the HTTP layer can send RateLimit
// headers with every answer.
type LoginResult struct {
	Token Token
	Quota *Decision
}

// invalidCredentials is the one answer to a wrong email or password.
func invalidCredentials() error { return core.Unauthorized("invalid email or password") }

// Login checks the per-IP and per-account budgets, then the password, and
// returns a signed token.
//
// Errors: EInvalid (email or password missing or absurdly long),
// ERateLimited (with RetryAfterSeconds), EUnauthorized (one message for an
// unknown email and a wrong password, after the same amount of hashing),
// EUnavailable (the limiter or the store cannot be reached: login fails
// closed rather than running without its brute-force protection).
func (s *Service) Login(ctx context.Context, in LoginRequest) (LoginResult, error) {
	var res LoginResult
	email := NormalizeEmail(in.Email)
	if email == "" || in.Password == "" {
		return res, core.Invalid("email and password are required")
	}
	if len(email) > MaxEmailLen || len(in.Password) > 4*MaxPasswordLen {
		return res, core.Invalid("email or password too long")
	}

	// The IP budget is checked first so that a client already over it
	// cannot also drain the budgets of the accounts it targets.
	ipDec, err := s.allow(ctx, "login:ip:"+ipBucket(in.ClientIP), s.limits.IP)
	if err != nil {
		return res, err
	}
	res.Quota = &ipDec
	if !ipDec.Allowed {
		return res, rateLimited(ipDec, "too many login attempts from this address")
	}
	accDec, err := s.allow(ctx, "login:account:"+email, s.limits.Account)
	if err != nil {
		return res, err
	}
	if !accDec.Allowed || accDec.Remaining < ipDec.Remaining {
		res.Quota = &accDec
	}
	if !accDec.Allowed {
		return res, rateLimited(accDec, "too many login attempts for this account")
	}

	u, err := s.users.ByEmail(ctx, email)
	switch {
	case core.ErrorCode(err) == core.ENotFound:
		if err := s.hasher.VerifyDummy(ctx, in.Password); err != nil {
			return res, fmt.Errorf("login: %w", err)
		}
		return res, invalidCredentials()
	case err != nil:
		return res, unavailable("login: load user", err)
	}
	ok, err := s.hasher.Verify(ctx, u.PasswordHash, in.Password)
	if err != nil {
		return res, fmt.Errorf("login: verify password of user %s: %w", u.ID, err)
	}
	if !ok {
		return res, invalidCredentials()
	}
	if s.hasher.NeedsRehash(u.PasswordHash) {
		// The cost was raised since this hash was made: upgrade it now,
		// while the password is at hand. Failing to is not a failed login.
		if h, err := s.hasher.Hash(ctx, in.Password); err == nil {
			if err := s.users.SetPasswordHash(ctx, u.ID, u.PasswordHash, h); err != nil && core.ErrorCode(err) != core.ENotFound {
				slog.WarnContext(ctx, "login: upgrade password hash", "user", u.ID, "err", err)
			}
		}
	}
	tok, err := s.tokens.Issue(u.Principal())
	if err != nil {
		return res, fmt.Errorf("login: %w", err)
	}
	res.Token = tok
	return res, nil
}

func (s *Service) allow(ctx context.Context, key string, r Rate) (Decision, error) {
	d, err := s.limiter.Allow(ctx, key, r)
	if err != nil {
		return Decision{}, unavailable("login: rate limiter", err)
	}
	return d, nil
}

func rateLimited(d Decision, msg string) error {
	secs := int(math.Ceil(d.RetryAfter.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return &core.Error{Code: core.ERateLimited, Message: msg + "; retry later", RetryAfterSeconds: secs}
}

// unavailable wraps a dependency failure as EUnavailable unless it already
// carries a code (a context deadline stays what it is, wrapped).
func unavailable(what string, err error) error {
	var ce *core.Error
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return &core.Error{Code: core.EUnavailable, Message: "service temporarily unavailable", Err: fmt.Errorf("%s: %w", what, err)}
}

// Authenticate verifies a bearer token (see Tokens.Verify).
func (s *Service) Authenticate(raw string) (Principal, error) { return s.tokens.Verify(raw) }

// CreateUser creates a user in the actor's organisation.
//
// Errors: EForbidden (the actor may not manage users), EInvalid, EConflict
// (the email is taken).
func (s *Service) CreateUser(ctx context.Context, actor Principal, in NewUser) (User, error) {
	if !Can(actor.Role, PermManageUsers) || actor.OrganizationID == "" {
		return User{}, core.Forbidden("only an admin may create users")
	}
	return s.create(ctx, actor.OrganizationID, in)
}

func (s *Service) create(ctx context.Context, org string, in NewUser) (User, error) {
	if err := in.Validate(); err != nil {
		return User{}, err
	}
	hash, err := s.hasher.Hash(ctx, in.Password)
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	u := User{
		ID:             newID(),
		Email:          strings.TrimSpace(in.Email),
		OrganizationID: org,
		Role:           in.Role,
		PasswordHash:   hash,
		CreatedAt:      s.now().UTC().Truncate(time.Millisecond),
	}
	if err := s.users.Create(ctx, u); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", NormalizeEmail(u.Email), err)
	}
	return u, nil
}

// EnsureUser creates the user unless one with the email exists, for seeding
// the local runner. An existing user of the same organisation is returned
// unchanged (its password and role are not reset); one of another
// organisation is EConflict.
func (s *Service) EnsureUser(ctx context.Context, email, password, org, role string) (User, error) {
	if org == "" {
		return User{}, core.Invalid("organisation is required")
	}
	u, err := s.users.ByEmail(ctx, NormalizeEmail(email))
	if err == nil {
		if u.OrganizationID != org {
			return User{}, core.Conflict("user %s exists in another organisation", NormalizeEmail(email))
		}
		return u, nil
	}
	if core.ErrorCode(err) != core.ENotFound {
		return User{}, fmt.Errorf("ensure user: %w", err)
	}
	u, err = s.create(ctx, org, NewUser{Email: email, Password: password, Role: role})
	if core.ErrorCode(err) == core.EConflict {
		// Another instance seeded it at the same moment.
		return s.EnsureUser(ctx, email, password, org, role)
	}
	return u, err
}

// GetUser returns a user of the actor's organisation. EForbidden, ENotFound.
func (s *Service) GetUser(ctx context.Context, actor Principal, id string) (User, error) {
	if !Can(actor.Role, PermManageUsers) {
		return User{}, core.Forbidden("only an admin may read users")
	}
	return s.users.ByID(ctx, actor.OrganizationID, id)
}

// ListUsers returns the users of the actor's organisation. EForbidden.
func (s *Service) ListUsers(ctx context.Context, actor Principal) ([]User, error) {
	if !Can(actor.Role, PermManageUsers) {
		return nil, core.Forbidden("only an admin may read users")
	}
	return s.users.List(ctx, actor.OrganizationID)
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
