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
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

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

// ClientIP finds the address a request comes from. By default it is the
// platform's peer address, r.RemoteAddr: the TCP peer locally ("ip:port"),
// and the API Gateway source IP under aws-lambda-go-api-proxy (no port),
// which a client cannot forge. X-Forwarded-For is believed only when the
// peer is a trusted proxy (TRUSTED_PROXIES), and then read from the right:
// each trusted hop is skipped and the first untrusted address is the client,
// so entries a client prepends itself are never used.
type ClientIP struct {
	trusted []netip.Prefix
}

// NewClientIP returns a ClientIP trusting X-Forwarded-For from the prefixes
// (auth.Config.TrustedProxies; nil trusts nobody).
func NewClientIP(trusted []netip.Prefix) *ClientIP { return &ClientIP{trusted: trusted} }

// Of returns the client address of r; the zero Addr when even the peer
// address cannot be parsed (the limiter then counts it in one shared
// "unknown" budget).
func (c *ClientIP) Of(r *http.Request) netip.Addr {
	peer := parseHostAddr(r.RemoteAddr)
	if !peer.IsValid() || !c.isTrusted(peer) {
		return peer
	}
	// The api-proxy for HTTP APIs splits repeated headers on commas and a
	// proxy chain may send several X-Forwarded-For lines: take them all, in
	// order, as one list.
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a := parseHostAddr(strings.TrimSpace(hops[i]))
		if !a.IsValid() {
			// Garbage from (or beyond) a trusted hop: stop at the last
			// address we can vouch for.
			return client
		}
		client = a
		if !c.isTrusted(a) {
			return a
		}
	}
	return client
}

func (c *ClientIP) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHostAddr parses "ip", "ip:port", "[ipv6]:port" or "[ipv6]".
func parseHostAddr(s string) netip.Addr {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.Unmap()
		}
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// AuthRoutes are the login and user-management routes.
type AuthRoutes struct {
	svc   *auth.Service
	authn *Authenticator
	ip    *ClientIP
}

// NewAuthRoutes returns the routes. svc needs a signing token key.
func NewAuthRoutes(svc *auth.Service, authn *Authenticator, ip *ClientIP) *AuthRoutes {
	return &AuthRoutes{svc: svc, authn: authn, ip: ip}
}

// Register adds the routes to mux:
//
//	POST /login        public; {"email","password"} -> 200 {"token","expiresAt"}
//	POST /users        admin; {"email","password","role"} -> 201 user
//	GET  /users        admin; the organisation's users
//	GET  /users/{id}   admin; one user of the organisation (404 otherwise)
func (a *AuthRoutes) Register(mux *http.ServeMux) {
	for _, rt := range a.Routes() {
		// None of them takes a query parameter.
		mux.Handle(rt.Method+" "+rt.Path, withQuery(nil, rt.Handler.ServeHTTP))
	}
}

// AuthRoute is one route of AuthRoutes. Permission is "" for the public
// POST /login; Handler already includes the Require check.
type AuthRoute struct {
	Method     string
	Path       string
	Permission auth.Permission
	Handler    http.Handler
}

// Routes lists the routes Register mounts (the authorisation table test
// checks it covers every one).
func (a *AuthRoutes) Routes() []AuthRoute {
	return []AuthRoute{
		{"POST", "/login", "", http.HandlerFunc(a.Login)},
		{"POST", "/users", auth.PermManageUsers, a.authn.Require(auth.PermManageUsers, a.createUser)},
		{"GET", "/users", auth.PermManageUsers, a.authn.Require(auth.PermManageUsers, a.listUsers)},
		{"GET", "/users/{id}", auth.PermManageUsers, a.authn.Require(auth.PermManageUsers, a.getUser)},
	}
}

type loginBody struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// Login is POST /login. Every answer that consulted the limiter carries
// RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset and RateLimit-Policy
// (draft-ietf-httpapi-ratelimit-headers, the budget closest to running
// out); a 429 adds Retry-After. A wrong email and a wrong password give the
// same 401 body.
func (a *AuthRoutes) Login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	var in loginBody
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, r, err)
		return
	}
	ip := a.ip.Of(r)
	res, err := a.svc.Login(r.Context(), auth.LoginRequest{Email: in.Email, Password: in.Password, ClientIP: ip})
	// One line per attempt for security monitoring: the outcome and the
	// address, never the password and not the email (personal data).
	outcome := "ok"
	if err != nil {
		outcome = core.ErrorCode(err)
	}
	slog.InfoContext(r.Context(), "login", "outcome", outcome, "clientIp", ip.String())
	if res.Quota != nil {
		setRateLimitHeaders(w.Header(), *res.Quota)
	}
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, res.Token)
}

func setRateLimitHeaders(h http.Header, d auth.Decision) {
	ceilSec := func(x time.Duration) string { return strconv.Itoa(int(math.Ceil(x.Seconds()))) }
	h.Set("RateLimit-Limit", strconv.Itoa(d.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(d.Remaining))
	reset := d.Reset
	if !d.Allowed && d.RetryAfter > reset {
		reset = d.RetryAfter
	}
	h.Set("RateLimit-Reset", ceilSec(reset))
	h.Set("RateLimit-Policy", strconv.Itoa(d.Limit)+";w="+ceilSec(d.Window))
}

func (a *AuthRoutes) createUser(w http.ResponseWriter, r *http.Request) {
	var in auth.NewUser
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, r, err)
		return
	}
	u, err := a.svc.CreateUser(r.Context(), PrincipalOf(r), in)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", "/users/"+u.ID)
	WriteJSON(w, http.StatusCreated, u)
}

func (a *AuthRoutes) listUsers(w http.ResponseWriter, r *http.Request) {
	us, err := a.svc.ListUsers(r.Context(), PrincipalOf(r))
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, us)
}

func (a *AuthRoutes) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := a.svc.GetUser(r.Context(), PrincipalOf(r), r.PathValue("id"))
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, u)
}
