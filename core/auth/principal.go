// Package auth holds users, roles, tokens and the principal a request acts as.
package auth

import "context"

// Roles.
const (
	RoleAdmin     = "admin"     // everything, including pricing, settings and users
	RoleScheduler = "scheduler" // schedules and completes shifts, manages clients
	RoleViewer    = "viewer"    // reads only
)

// Principal is who a request acts as, taken from a verified token.
type Principal struct {
	UserID         string
	OrganizationID string
	Role           string
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal in ctx, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
