package httpapi_test

// The authorisation table: every authenticated route, listed once in
// authzTable, is checked for
//   - 401 with no token, a malformed, expired, forged or alg-none token;
//   - 403 exactly for the roles auth.Can refuses, never for the others;
//   - organisation isolation: an admin of organisation B (every
//     permission) gets 404 for organisation A's ids, sees none of A's data
//     in lists, and changes nothing of A's.
//
// Adding routes (the domain routes: clients, shifts, timesheets, invoices,
// pricing, settings): mount them in newAuthzFixture, create one resource of
// each kind for organisation A there (fx.ids[kind], fx.readPath[kind],
// fx.secretsA for values that must never reach organisation B), and add one
// row per route to authzTable. TestAuthzTableCoversEveryRoute fails until
// every mounted route has its row.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/auth"
)

// authzRoute is one row of the table.
type authzRoute struct {
	method, path string // as mounted; {id} is filled with fx.ids[kind]
	perm         auth.Permission
	kind         string             // the resource {id} names ("" when the path has none)
	body         func(n int) string // a valid body (n makes creates unique); nil: none
	list         bool               // a GET listing the caller's organisation's data
	singleton    bool               // per-organisation document without id (GET/PUT /settings)
}

var authzSeq atomic.Int64

// authzTable lists every authenticated route once.
func authzTable() []authzRoute {
	return []authzRoute{
		{method: "POST", path: "/users", perm: auth.PermManageUsers, body: func(n int) string {
			return fmt.Sprintf(`{"email":"made-%d@example.com","password":"a long enough password","role":"viewer"}`, n)
		}},
		{method: "GET", path: "/users", perm: auth.PermManageUsers, list: true},
		{method: "GET", path: "/users/{id}", perm: auth.PermManageUsers, kind: "user"},
	}
}

type authzFixture struct {
	h http.Handler
	// tokens[org][role]
	tokens map[string]map[string]string
	// ids of organisation A's resources by kind, and the GET path that
	// reads each (to check that B's writes changed nothing).
	ids      map[string]string
	readPath map[string]string
	// secretsA must never appear in an answer to organisation B.
	secretsA []string
	// mounted is every authenticated route, "METHOD /path".
	mounted []string
	// forge holds tokens that must all be refused.
	forge map[string]string
}

func newAuthzFixture(t *testing.T) *authzFixture {
	t.Helper()
	rdb, _ := testenv.MiniRedis(t)
	app := newAuthApp(t, rdb, testenv.MongoDB(t), authAppOptions{})
	fx := &authzFixture{
		h:        app.handler,
		tokens:   map[string]map[string]string{},
		ids:      map[string]string{},
		readPath: map[string]string{},
		forge:    map[string]string{},
	}
	for _, org := range []string{"org-a", "org-b"} {
		fx.tokens[org] = map[string]string{}
		for _, role := range auth.Roles() {
			u := authSeed(t, app, role+"@"+org+".example", "the right password", org, role)
			tok, err := app.tokens.Issue(u.Principal())
			if err != nil {
				t.Fatal(err)
			}
			fx.tokens[org][role] = tok.Value
		}
	}
	// Organisation A's resources.
	ua := authSeed(t, app, "secret-person@org-a.example", "the right password", "org-a", auth.RoleViewer)
	fx.ids["user"], fx.readPath["user"] = ua.ID, "/users/{id}"
	fx.secretsA = append(fx.secretsA, ua.ID, "org-a.example", "org-a")

	for _, rt := range httpapi.NewAuthRoutes(app.svc, app.authn, nil).Routes() {
		if rt.Permission != "" {
			fx.mounted = append(fx.mounted, rt.Method+" "+rt.Path)
		}
	}

	// Tokens that must be refused everywhere.
	now := time.Now()
	expired, _ := auth.NewHS256Tokens(authTestSecret, "shiftflow-test", time.Hour, auth.WithClock(func() time.Time { return now.Add(-2 * time.Hour) }))
	forger, _ := auth.NewHS256Tokens([]byte("not-the-secret-not-the-secret-0123456789"), "shiftflow-test", time.Hour)
	otherIssuer, _ := auth.NewHS256Tokens(authTestSecret, "someone-else", time.Hour)
	admin := auth.Principal{UserID: "x", OrganizationID: "org-a", Role: auth.RoleAdmin}
	e, _ := expired.Issue(admin)
	f, _ := forger.Issue(admin)
	o, _ := otherIssuer.Issue(admin)
	seg := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	fx.forge["expired"] = e.Value
	fx.forge["forged"] = f.Value
	fx.forge["other issuer"] = o.Value
	fx.forge["alg none"] = seg(map[string]string{"alg": "none"}) + "." + seg(map[string]any{
		"sub": "x", "org": "org-a", "role": "admin", "iss": "shiftflow-test", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}) + "."
	fx.forge["malformed"] = "abc.def"
	return fx
}

func (fx *authzFixture) path(rt authzRoute) string {
	if rt.kind == "" {
		return rt.path
	}
	return strings.ReplaceAll(rt.path, "{id}", fx.ids[rt.kind])
}

func (fx *authzFixture) do(rt authzRoute, path, token string) (int, string) {
	body := ""
	if rt.body != nil {
		body = rt.body(int(authzSeq.Add(1)))
	}
	w := authDo(fx.h, authReq{method: rt.method, path: path, token: token, body: body})
	return w.Code, w.Body.String()
}

func TestAuthzTableCoversEveryRoute(t *testing.T) {
	fx := newAuthzFixture(t)
	listed := map[string]bool{}
	for _, rt := range authzTable() {
		listed[rt.method+" "+rt.path] = true
		if rt.kind != "" && fx.ids[rt.kind] == "" {
			t.Errorf("%s %s: no organisation A fixture of kind %q", rt.method, rt.path, rt.kind)
		}
	}
	for _, m := range fx.mounted {
		if !listed[m] {
			t.Errorf("route %s is mounted but has no row in authzTable", m)
		}
		delete(listed, m)
	}
	for m := range listed {
		t.Errorf("authzTable lists %s, which is not mounted", m)
	}
}

func TestAuthzEveryRouteRefusesBadTokens(t *testing.T) {
	fx := newAuthzFixture(t)
	fx.forge["no token"] = ""
	for _, rt := range authzTable() {
		for name, tok := range fx.forge {
			t.Run(rt.method+" "+rt.path+"/"+name, func(t *testing.T) {
				if code, body := fx.do(rt, fx.path(rt), tok); code != http.StatusUnauthorized {
					t.Fatalf("%d %s, want 401", code, body)
				}
			})
		}
	}
}

func TestAuthzRolesPerRoute(t *testing.T) {
	fx := newAuthzFixture(t)
	for _, rt := range authzTable() {
		for _, role := range auth.Roles() {
			t.Run(rt.method+" "+rt.path+"/"+role, func(t *testing.T) {
				code, body := fx.do(rt, fx.path(rt), fx.tokens["org-a"][role])
				switch {
				case !auth.Can(role, rt.perm) && code != http.StatusForbidden:
					t.Fatalf("%d %s, want 403", code, body)
				case auth.Can(role, rt.perm) && (code == http.StatusForbidden || code == http.StatusUnauthorized || code >= 500):
					t.Fatalf("%d %s, want the route to run", code, body)
				case auth.Can(role, rt.perm) && code >= 300:
					// A permitted request on organisation A's own data must
					// succeed, or the row's body is wrong.
					t.Fatalf("%d %s: the row's request should succeed for its own organisation", code, body)
				}
			})
		}
	}
}

func TestAuthzCrossOrganisation(t *testing.T) {
	fx := newAuthzFixture(t)
	intruder := fx.tokens["org-b"][auth.RoleAdmin] // every permission, wrong organisation
	owner := fx.tokens["org-a"][auth.RoleAdmin]
	for _, rt := range authzTable() {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			var before string
			if rt.kind != "" {
				_, before = fx.do(authzRoute{method: "GET"}, strings.ReplaceAll(fx.readPath[rt.kind], "{id}", fx.ids[rt.kind]), owner)
			}
			code, body := fx.do(rt, fx.path(rt), intruder)
			if rt.kind != "" && code != http.StatusNotFound {
				t.Fatalf("organisation B on A's %s: %d %s, want 404", rt.kind, code, body)
			}
			for _, s := range fx.secretsA {
				if strings.Contains(body, s) {
					t.Fatalf("organisation B saw %q of organisation A: %s", s, body)
				}
			}
			if rt.kind != "" {
				_, after := fx.do(authzRoute{method: "GET"}, strings.ReplaceAll(fx.readPath[rt.kind], "{id}", fx.ids[rt.kind]), owner)
				if after != before {
					t.Fatalf("organisation B changed A's %s:\nbefore %s\nafter  %s", rt.kind, before, after)
				}
			}
		})
	}
}
