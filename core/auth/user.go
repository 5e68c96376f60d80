package auth

import (
	"context"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shiftflow/shiftflow/core"
)

// Password policy (NIST SP 800-63B 5.1.1.2): at least 8 characters, long
// passphrases allowed, no composition rules. The upper bound only limits
// the work an unauthenticated request can cause.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 256
	MaxEmailLen    = 254 // RFC 5321 path limit
)

// User is an account. Email is kept as entered (trimmed); uniqueness and
// lookups use NormalizeEmail(Email).
type User struct {
	ID             string    `json:"id"`
	Email          string    `json:"email"`
	OrganizationID string    `json:"organizationId"`
	Role           string    `json:"role"`
	PasswordHash   string    `json:"-"`
	CreatedAt      time.Time `json:"createdAt"`
}

// Principal returns the principal a token for u names.
func (u User) Principal() Principal {
	return Principal{UserID: u.ID, OrganizationID: u.OrganizationID, Role: u.Role}
}

// NewUser is the input to create a user.
type NewUser struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

// Validate checks the email, the password policy and the role.
func (n NewUser) Validate() error {
	if err := ValidateEmail(n.Email); err != nil {
		return err
	}
	if l := utf8.RuneCountInString(n.Password); l < MinPasswordLen {
		return core.Invalid("password must have at least %d characters", MinPasswordLen)
	} else if l > MaxPasswordLen {
		return core.Invalid("password must have at most %d characters", MaxPasswordLen)
	}
	if !ValidRole(n.Role) {
		return core.Invalid("role must be one of %s", strings.Join(Roles(), ", "))
	}
	return nil
}

// NormalizeEmail is the form emails are unique and looked up by: trimmed and
// lower-cased. (Stores keep it in its own indexed field because FerretDB has
// no collations.)
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// ValidateEmail accepts a bare address (no display name, no angle brackets).
func ValidateEmail(email string) error {
	e := strings.TrimSpace(email)
	if e == "" {
		return core.Invalid("email is required")
	}
	if len(e) > MaxEmailLen {
		return core.Invalid("email must have at most %d characters", MaxEmailLen)
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" {
		return core.Invalid("email %q is not a valid address", e)
	}
	return nil
}

// UserStore keeps users. Implementations: adapters/mongodb.Users.
type UserStore interface {
	// Create stores u. EConflict when a user with the same normalized email
	// exists (in any organisation: login is by email alone).
	Create(ctx context.Context, u User) error
	// ByEmail returns the user with the normalized email. ENotFound.
	ByEmail(ctx context.Context, normalizedEmail string) (User, error)
	// ByID returns the user of the organisation. ENotFound when missing or
	// of another organisation.
	ByID(ctx context.Context, organizationID, id string) (User, error)
	// List returns the organisation's users ordered by email.
	List(ctx context.Context, organizationID string) ([]User, error)
	// SetPasswordHash replaces the hash of user id if it still is old
	// (compare-and-set: a concurrent password change wins). ENotFound when
	// the user is gone or the hash changed meanwhile.
	SetPasswordHash(ctx context.Context, id, old, hash string) error
}
