package httpapi_test

// The authorisation table: every authenticated route, listed once in
// authzTable, is checked for
//   - 401 with no token, a malformed, expired, forged, other-issuer or
//     alg-none token;
//   - 403 exactly for the roles auth.Can refuses, success for the others;
//   - organisation isolation: an admin of organisation B (every permission)
//     gets, for organisation A's ids in the path, the query or the body,
//     exactly the answer a missing id gets (404 in the path); sees none of
//     A's data in any answer; and changes nothing of A's.
//
// Adding a route: add one row to authzTable (TestAuthzTableCoversEveryRoute
// fails until every mounted route has its row); a new kind of resource also
// needs its organisation-A fixture in newAuthzFixture (fx.kinds).

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/ulid"
)

// authzRoute is one row of the table.
type authzRoute struct {
	method, path string // as mounted; {id} is filled with an id of kind
	query        string // optional query; {id} is filled the same way
	perm         auth.Permission
	// kind of the organisation-A resource whose id goes into {id} (path,
	// query or body); "" for none.
	kind string
	// fresh: the request changes the resource's state, so every request
	// gets a new resource of kind.
	fresh bool
	// body returns a valid body; id is the {id} value (for references in
	// the body), n is unique per call. nil: no body.
	body func(id string, n int) string
	// readPath is a GET (by A's admin) of what the route can change; after
	// organisation B's request it must answer exactly as before.
	readPath string
}

var authzSeq atomic.Int64

func authzShiftBody(clientID string, n int) string {
	return fmt.Sprintf(`{"clientId":%q,"workerId":"w-%d","role":"nurse","start":"2026-11-25T08:00:00Z","end":"2026-11-25T16:00:00Z","breakMinutes":30,"notes":""}`, clientID, n)
}

const authzSettingsBody = `{"timeZone":"Europe/Berlin","currency":"EUR","invoiceTermsDays":14,"invoicePrefix":"INV-"}`

// authzTable lists every authenticated route once (a pattern may have
// extra rows for its query variants).
func authzTable() []authzRoute {
	return []authzRoute{
		// Users (auth.go).
		{method: "POST", path: "/users", perm: auth.PermManageUsers, readPath: "/users", body: func(_ string, n int) string {
			return fmt.Sprintf(`{"email":"made-%d@example.com","password":"a long enough password","role":"viewer"}`, n)
		}},
		{method: "GET", path: "/users", perm: auth.PermManageUsers},
		{method: "GET", path: "/users/{id}", perm: auth.PermManageUsers, kind: "user"},

		// Clients.
		{method: "POST", path: "/clients", perm: auth.PermWriteClients, readPath: "/clients", body: func(_ string, n int) string {
			return fmt.Sprintf(`{"name":"Client %d","billingEmail":"c%d@client.test"}`, n, n)
		}},
		{method: "GET", path: "/clients", perm: auth.PermRead},
		{method: "GET", path: "/clients/{id}", perm: auth.PermRead, kind: "client"},

		// Shifts: POST /shifts names A's client in its body.
		{method: "POST", path: "/shifts", perm: auth.PermWriteShifts, kind: "client", readPath: "/shifts", body: authzShiftBody},
		{method: "GET", path: "/shifts", perm: auth.PermRead},
		{method: "GET", path: "/shifts", query: "status=scheduled", perm: auth.PermRead},
		{method: "GET", path: "/shifts/{id}", perm: auth.PermRead, kind: "shift"},
		{method: "PATCH", path: "/shifts/{id}", perm: auth.PermWriteShifts, kind: "shift", fresh: true, readPath: "/shifts/{id}",
			body: func(_ string, n int) string { return fmt.Sprintf(`{"notes":"changed %d"}`, n) }},
		{method: "POST", path: "/shifts/{id}/complete", perm: auth.PermWriteShifts, kind: "shift", fresh: true, readPath: "/shifts/{id}"},
		{method: "POST", path: "/shifts/{id}/cancel", perm: auth.PermWriteShifts, kind: "shift", fresh: true, readPath: "/shifts/{id}"},
		{method: "GET", path: "/shifts/{id}/timesheet", perm: auth.PermRead, kind: "completedShift"},
		{method: "GET", path: "/shifts/{id}/invoice", perm: auth.PermRead, kind: "completedShift"},

		// Timesheets and invoices.
		{method: "GET", path: "/timesheets", perm: auth.PermRead},
		{method: "GET", path: "/invoices", perm: auth.PermRead},

		// Pricing and settings: one per organisation, plus client overrides.
		{method: "GET", path: "/pricing", perm: auth.PermRead},
		{method: "GET", path: "/pricing", query: "clientId={id}", perm: auth.PermRead, kind: "client"},
		{method: "PUT", path: "/pricing", perm: auth.PermWritePricing, readPath: "/pricing", body: func(string, int) string { return domIssueTable }},
		{method: "PUT", path: "/pricing", query: "clientId={id}", perm: auth.PermWritePricing, kind: "client", readPath: "/pricing?clientId={id}",
			body: func(string, int) string { return domIssueTable }},
		{method: "GET", path: "/settings", perm: auth.PermRead},
		{method: "PUT", path: "/settings", perm: auth.PermWriteSettings, readPath: "/settings", body: func(string, int) string { return authzSettingsBody }},
	}
}

// authzKind makes organisation-A resources of one kind and ids that exist
// nowhere.
type authzKind struct {
	existing string        // one resource for read-only rows
	fresh    func() string // a new resource (rows that change state)
	missing  func() string // a well-formed id of nothing
}

type authzFixture struct {
	h      http.Handler
	tokens map[string]map[string]string // tokens[org][role]
	kinds  map[string]authzKind
	// secretsA must never appear in an answer to organisation B.
	secretsA []string
	// mounted is every authenticated route, "METHOD /path".
	mounted []string
	// forge holds tokens that must all be refused.
	forge map[string]string
}

func authzRandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newAuthzFixture(t *testing.T) *authzFixture {
	t.Helper()
	// The domain services on MongoDB and Redis (domain_harness_test.go),
	// and the auth routes on the same database; both mounted on one mux
	// behind one token verifier, as adapters/app does.
	dom := domNewApp(t)
	rdb, _ := testenv.MiniRedis(t)
	app := newAuthApp(t, rdb, dom.db, authAppOptions{})
	dr := httpapi.NewDomainRoutes(httpapi.DomainDeps{Auth: app.authn, Clients: dom.clients, Shifts: dom.shifts,
		Timesheets: dom.sheets, Invoices: dom.invoices, Pricing: dom.prices, Settings: dom.settings})
	dr.Register(app.mux)

	fx := &authzFixture{h: app.handler, tokens: map[string]map[string]string{}, kinds: map[string]authzKind{}, forge: map[string]string{}}
	for _, rt := range httpapi.NewAuthRoutes(app.svc, app.authn, nil).Routes() {
		if rt.Permission != "" {
			fx.mounted = append(fx.mounted, rt.Method+" "+rt.Path)
		}
	}
	for _, rt := range dr.Routes() {
		fx.mounted = append(fx.mounted, rt.Method+" "+rt.Path)
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

	// Organisation B has its own data, so its lists are not trivially empty.
	dom.seed(domOther)

	// Organisation A's data, with recognisable values.
	ua := authSeed(t, app, "secret-person@org-a.example", "the right password", "org-a", auth.RoleViewer)
	dom.must(200, domAdmin, "PUT", "/pricing", strings.Replace(domIssueTable, `"roles":{`, `"roles":{"asecretrole":{"hourlyRate":4242},`, 1), nil)
	dom.must(200, domAdmin, "PUT", "/settings", `{"timeZone":"Europe/Berlin","currency":"EUR","invoiceTermsDays":14,"invoicePrefix":"ASECRET-"}`, nil)
	var ca client.Client
	dom.must(201, domAdmin, "POST", "/clients", `{"name":"Secret Client A","billingEmail":"a-secret@a-client.test"}`, &ca)
	dom.must(200, domAdmin, "PUT", "/pricing?clientId="+ca.ID, domIssueTable, nil)
	newShift := func() string {
		var s shift.Shift
		dom.must(201, domScheduler, "POST", "/shifts", `{"clientId":"`+ca.ID+`","workerId":"secret-worker-a","role":"nurse","start":"2026-11-25T08:00:00Z","end":"2026-11-25T16:00:00Z","breakMinutes":30,"notes":"secret notes a"}`, &s)
		fx.secretsA = append(fx.secretsA, s.ID)
		return s.ID
	}
	done := newShift()
	dom.must(200, domScheduler, "POST", "/shifts/"+done+"/complete", "", nil)
	ctx := domCtx(t)
	completed := dom.bus.ofType(event.ShiftCompleted)
	if err := dom.sheets.OnShiftCompleted(ctx, completed[len(completed)-1]); err != nil {
		t.Fatal(err)
	}
	jobs := dom.queue.list(job.InvoiceGeneration)
	if err := dom.invoices.Generate(ctx, jobs[len(jobs)-1]); err != nil {
		t.Fatal(err)
	}
	dom.must(200, domViewer, "GET", "/shifts/"+done+"/invoice", nil, nil)

	fx.kinds["user"] = authzKind{existing: ua.ID, missing: func() string { return authzRandomHex(12) }}
	fx.kinds["client"] = authzKind{existing: ca.ID, missing: ulid.New}
	fx.kinds["shift"] = authzKind{existing: newShift(), fresh: newShift, missing: ulid.New}
	fx.kinds["completedShift"] = authzKind{existing: done, missing: ulid.New}
	fx.secretsA = append(fx.secretsA, ua.ID, ca.ID, "org-a", "secret", "SECRET")

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
	fx.forge["no token"] = ""
	fx.forge["expired"] = e.Value
	fx.forge["forged"] = f.Value
	fx.forge["other issuer"] = o.Value
	fx.forge["alg none"] = seg(map[string]string{"alg": "none"}) + "." + seg(map[string]any{
		"sub": "x", "org": "org-a", "role": "admin", "iss": "shiftflow-test", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}) + "."
	fx.forge["malformed"] = "abc.def"
	// A real token of organisation B's viewer, its payload edited to A's
	// admin; and the same signature under an RS256 header.
	parts := strings.Split(fx.tokens["org-b"][auth.RoleViewer], ".")
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(raw, &claims)
	claims["org"], claims["role"] = "org-a", auth.RoleAdmin
	fx.forge["tampered payload"] = parts[0] + "." + seg(claims) + "." + parts[2]
	fx.forge["RS256 header on the HS key"] = seg(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + parts[1] + "." + parts[2]
	return fx
}

// id returns the {id} value of a request of rt: A's resource (a new one
// for fresh rows), or "" when the row has no kind.
func (fx *authzFixture) id(t *testing.T, rt authzRoute) string {
	t.Helper()
	if rt.kind == "" {
		return ""
	}
	k, ok := fx.kinds[rt.kind]
	if !ok {
		t.Fatalf("no organisation A fixture of kind %q", rt.kind)
	}
	if rt.fresh {
		return k.fresh()
	}
	return k.existing
}

func authzFill(s, id string) string { return strings.ReplaceAll(s, "{id}", id) }

func (fx *authzFixture) do(rt authzRoute, id, token string) (int, string) {
	path := authzFill(rt.path, id)
	if rt.query != "" {
		path += "?" + authzFill(rt.query, id)
	}
	body := ""
	if rt.body != nil {
		body = rt.body(id, int(authzSeq.Add(1)))
	}
	w := authDo(fx.h, authReq{method: rt.method, path: path, token: token, body: body})
	return w.Code, w.Body.String()
}

func (fx *authzFixture) read(path, id string) string {
	w := authDo(fx.h, authReq{method: "GET", path: authzFill(path, id), token: fx.tokens["org-a"][auth.RoleAdmin]})
	return fmt.Sprintf("%d %s", w.Code, w.Body.String())
}

func authzName(rt authzRoute) string {
	if rt.query != "" {
		return rt.method + " " + rt.path + "?" + rt.query
	}
	return rt.method + " " + rt.path
}

func TestAuthzTableCoversEveryRoute(t *testing.T) {
	fx := newAuthzFixture(t)
	listed := map[string]bool{}
	for _, rt := range authzTable() {
		listed[rt.method+" "+rt.path] = true
		if rt.kind != "" {
			if _, ok := fx.kinds[rt.kind]; !ok {
				t.Errorf("%s: no organisation A fixture of kind %q", authzName(rt), rt.kind)
			}
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
	for _, rt := range authzTable() {
		for name, tok := range fx.forge {
			t.Run(authzName(rt)+"/"+name, func(t *testing.T) {
				id := fx.id(t, rt)
				var before string
				if rt.readPath != "" {
					before = fx.read(rt.readPath, id)
				}
				if code, body := fx.do(rt, id, tok); code != http.StatusUnauthorized {
					t.Fatalf("%d %s, want 401", code, body)
				}
				if rt.readPath != "" && fx.read(rt.readPath, id) != before {
					t.Fatal("a refused request changed data")
				}
			})
		}
	}
}

func TestAuthzRolesPerRoute(t *testing.T) {
	fx := newAuthzFixture(t)
	for _, rt := range authzTable() {
		for _, role := range auth.Roles() {
			t.Run(authzName(rt)+"/"+role, func(t *testing.T) {
				id := fx.id(t, rt)
				var before string
				if rt.readPath != "" {
					before = fx.read(rt.readPath, id)
				}
				code, body := fx.do(rt, id, fx.tokens["org-a"][role])
				if !auth.Can(role, rt.perm) {
					if code != http.StatusForbidden {
						t.Fatalf("%d %s, want 403", code, body)
					}
					if rt.readPath != "" && fx.read(rt.readPath, id) != before {
						t.Fatal("a forbidden request changed data")
					}
					return
				}
				// A permitted request on organisation A's own data succeeds
				// (anything else means the row's request is wrong).
				if code < 200 || code >= 300 {
					t.Fatalf("%d %s, want success", code, body)
				}
			})
		}
	}
}

func TestAuthzCrossOrganisation(t *testing.T) {
	fx := newAuthzFixture(t)
	intruder := fx.tokens["org-b"][auth.RoleAdmin] // every permission, wrong organisation
	for _, rt := range authzTable() {
		t.Run(authzName(rt), func(t *testing.T) {
			id := fx.id(t, rt)
			var before string
			if rt.readPath != "" {
				before = fx.read(rt.readPath, id)
			}
			code, body := fx.do(rt, id, intruder)
			// An error may echo the id B itself sent; anything else of A's
			// must not appear.
			seen := body
			if id != "" {
				seen = strings.ReplaceAll(body, id, "ID")
			}
			for _, s := range fx.secretsA {
				if strings.Contains(seen, s) {
					t.Fatalf("organisation B saw %q of organisation A: %s", s, body)
				}
			}
			if rt.kind != "" {
				// A's id is answered exactly like an id that exists nowhere.
				missing := fx.kinds[rt.kind].missing()
				mcode, mbody := fx.do(rt, missing, intruder)
				if code != mcode || strings.ReplaceAll(body, id, "ID") != strings.ReplaceAll(mbody, missing, "ID") {
					t.Fatalf("A's id and a missing id are answered differently:\n%d %s\n%d %s", code, body, mcode, mbody)
				}
				if code < 400 || code >= 500 {
					t.Fatalf("organisation B on A's %s: %d %s, want 4xx", rt.kind, code, body)
				}
				if strings.Contains(rt.path, "{id}") && code != http.StatusNotFound {
					t.Fatalf("organisation B on A's %s in the path: %d, want 404", rt.kind, code)
				}
			}
			if rt.readPath != "" {
				if after := fx.read(rt.readPath, id); after != before {
					t.Fatalf("organisation B changed A's data:\nbefore %s\nafter  %s", before, after)
				}
			}
		})
	}
}

// TestAuthzJobAndEventPayloadsStayInTheirOrganisation: the background side
// of isolation. A shift.completed event or an invoice-generation job that
// names organisation B but carries organisation A's shift (a bug upstream,
// or a forged stream entry) writes nothing and e-mails nobody; the genuine
// ones still work.
func TestAuthzJobAndEventPayloadsStayInTheirOrganisation(t *testing.T) {
	dom := domNewApp(t)
	ctx := domCtx(t)
	dom.seed(domOther)
	ca := dom.seed(domAdmin)
	var s shift.Shift
	dom.must(201, domScheduler, "POST", "/shifts", domShiftBody(ca, nil), &s)
	dom.must(200, domScheduler, "POST", "/shifts/"+s.ID+"/complete", "", nil)
	completed := dom.bus.ofType(event.ShiftCompleted)
	real := completed[len(completed)-1]
	// Worked times are keyed by the shift id; invoices carry it in shiftId.
	count := func(coll string) int64 {
		field := "shiftId"
		if coll == mongodb.CollWorkedTimes {
			field = "_id"
		}
		n, err := dom.db.Collection(coll).CountDocuments(ctx, bson.D{{Key: field, Value: s.ID}})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	envelopeOnly := real
	envelopeOnly.OrganizationID = "org-b"
	var payload map[string]any
	_ = json.Unmarshal(real.Payload, &payload)
	payload["organizationId"] = "org-b"
	both := envelopeOnly
	both.Payload, _ = json.Marshal(payload)
	for name, e := range map[string]event.Event{"envelope says B": envelopeOnly, "envelope and payload say B": both} {
		if err := dom.sheets.OnShiftCompleted(ctx, e); err == nil {
			t.Errorf("%s: event accepted", name)
		}
		if n := count(mongodb.CollWorkedTimes); n != 0 {
			t.Fatalf("%s: %d worked times written for A's shift", name, n)
		}
	}
	if n := len(dom.queue.list(job.InvoiceGeneration)); n != 0 {
		t.Fatalf("%d invoice jobs added by forged events", n)
	}

	if err := dom.sheets.OnShiftCompleted(ctx, real); err != nil {
		t.Fatal(err)
	}
	if n := count(mongodb.CollWorkedTimes); n != 1 {
		t.Fatalf("%d worked times after the genuine event, want 1", n)
	}
	genuine := dom.queue.list(job.InvoiceGeneration)[0]
	forged := *genuine
	forged.Data, _ = json.Marshal(map[string]string{"shiftId": s.ID, "organizationId": "org-b", "clientEmail": "evil@org-b.test"})
	if err := dom.invoices.Generate(ctx, &forged); err == nil {
		t.Fatal("job naming organisation B generated an invoice for A's shift")
	}
	if n := count(mongodb.CollInvoices); n != 0 {
		t.Fatalf("%d invoices written by the forged job", n)
	}
	if mails := dom.queue.list(job.EmailNotifications); len(mails) != 0 {
		t.Fatalf("forged job queued e-mail: %s", mails[0].Data)
	}
	if err := dom.invoices.Generate(ctx, genuine); err != nil {
		t.Fatal(err)
	}
	if n := count(mongodb.CollInvoices); n != 1 {
		t.Fatalf("%d invoices after the genuine job, want 1", n)
	}
	if code, _ := dom.do(domOther, "GET", "/shifts/"+s.ID+"/invoice", nil); code != http.StatusNotFound {
		t.Fatalf("organisation B reads A's invoice: %d", code)
	}
}
