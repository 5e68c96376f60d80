package httpapi

// Authentication and authorisation for every route.
//
// How a domain route uses it (clients, shifts, timesheets, invoices,
// pricing, settings):
//
//	authn := httpapi.NewAuthenticator(tokens)            // tokens: *auth.Tokens (or any TokenVerifier)
//	mux.Handle("GET /clients/{id}", authn.Require(auth.PermRead, h.getClient))
//	mux.Handle("POST /shifts", authn.Require(auth.PermWriteShifts, h.scheduleShift))
//	mux.Handle("PUT /pricing", authn.Require(auth.PermWritePricing, h.putPricing))
//
//	func (h *handlers) getClient(w http.ResponseWriter, r *http.Request) {
//		p := httpapi.PrincipalOf(r) // never empty inside Require
//		c, err := h.clients.Get(r.Context(), p.OrganizationID, r.PathValue("id"))
//		...
//	}
//
// Require answers 401 (code "unauthorized", header WWW-Authenticate: Bearer)
// when the Authorization header is missing, not "Bearer <token>", or the
// token is malformed, expired, not yet valid, forged or of another issuer;
// 403 (code "forbidden") when the token's role may not perform the
// permission (auth.Can is the one role table); otherwise it calls h with the
// auth.Principal in the request context (auth.PrincipalFrom / PrincipalOf).
//
// Organisation isolation is the handler's and the repository's job, with a
// rule that makes it hard to get wrong: every repository call takes the
// principal's OrganizationID and filters on it, and a document of another
// organisation is answered exactly like a missing one (core.NotFound, 404),
// so ids of other organisations cannot even be probed. Never take an
// organisation id from the URL, the query or the body.
//
// Routes of this file: POST /login (public, rate limited) and the admin
// routes POST /users, GET /users, GET /users/{id}; see AuthRoutes.

import (
	"net/http"
	"strings"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/auth"
)

// TokenVerifier turns a bearer token into a principal. *auth.Tokens is one.
// Errors must be core.EUnauthorized.
type TokenVerifier interface {
	Verify(raw string) (auth.Principal, error)
}

var _ TokenVerifier = (*auth.Tokens)(nil)

// Authenticator is the auth middleware. Build one per cold start and share it
// between all routes.
type Authenticator struct {
	tokens TokenVerifier
}

// NewAuthenticator returns an Authenticator verifying tokens with v.
func NewAuthenticator(v TokenVerifier) *Authenticator {
	return &Authenticator{tokens: v}
}

// Require wraps h so that it runs only for a valid token whose role may
// perform perm, with the principal in the request context.
func (a *Authenticator) Require(perm auth.Permission, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			WriteError(w, r, err)
			return
		}
		if !auth.Can(p.Role, perm) {
			WriteError(w, r, core.Forbidden("role %q may not %s", p.Role, describePermission(perm)))
			return
		}
		h(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// Authenticate returns the principal of r's bearer token, or a
// core.EUnauthorized error. Require calls it; it is exported for handlers
// that are public but behave differently when a token is present.
func (a *Authenticator) Authenticate(r *http.Request) (auth.Principal, error) {
	raw, err := bearerToken(r)
	if err != nil {
		return auth.Principal{}, err
	}
	return a.tokens.Verify(raw)
}

// PrincipalOf returns the principal that Require put in r's context. Inside
// a handler wrapped by Require it is always present; elsewhere it is empty,
// and an empty OrganizationID matches no document.
func PrincipalOf(r *http.Request) auth.Principal {
	p, _ := auth.PrincipalFrom(r.Context())
	return p
}

// bearerToken extracts the token of "Authorization: Bearer <token>".
func bearerToken(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 || strings.TrimSpace(vals[0]) == "" {
		return "", core.Unauthorized("missing Authorization header; send Authorization: Bearer <token>")
	}
	if len(vals) > 1 {
		return "", core.Unauthorized("more than one Authorization header")
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", core.Unauthorized("Authorization header must be \"Bearer <token>\"")
	}
	return strings.TrimSpace(tok), nil
}

func describePermission(p auth.Permission) string {
	switch p {
	case auth.PermRead:
		return "read this organisation's data"
	case auth.PermWriteShifts:
		return "change shifts"
	case auth.PermWriteClients:
		return "change clients"
	case auth.PermWritePricing:
		return "change pricing"
	case auth.PermWriteSettings:
		return "change settings"
	case auth.PermManageUsers:
		return "manage users"
	}
	return "do this"
}
