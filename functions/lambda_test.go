// Package functions_test builds every real bootstrap and runs it under the
// Lambda Runtime Interface Emulator against real servers: Redis (the real
// one when SHIFTFLOW_TEST_REDIS_URL is set, else the embedded one) and the
// MongoDB wire-protocol server (SHIFTFLOW_TEST_MONGODB_URI, else embedded
// FerretDB). The emulator answers 200 even when a handler fails, so every
// check looks inside the function's answer.
package functions_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/lambda/lambdatest"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/pricing"
)

func allFunctions() []string { return append(app.HTTPFunctions(), app.DrainFunctions()...) }

// TestEveryFunctionDirectoryIsAFunction keeps functions/ and the app's
// list of functions the same set.
func TestEveryFunctionDirectoryIsAFunction(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
			for _, f := range []string{"main.go", "event.json"} {
				if _, err := os.Stat(filepath.Join(e.Name(), f)); err != nil {
					t.Errorf("functions/%s has no %s", e.Name(), f)
				}
			}
		}
	}
	want := allFunctions()
	slices.Sort(dirs)
	slices.Sort(want)
	if !slices.Equal(dirs, want) {
		t.Fatalf("functions/ holds %v, the app serves %v", dirs, want)
	}
}

// TestFunctionBinariesDoNotLinkEmbeddedServers: FerretDB (about 26 MB)
// and miniredis are for the local runner and tests only.
func TestFunctionBinariesDoNotLinkEmbeddedServers(t *testing.T) {
	root, err := lambdatest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-tags", "lambda.norpc", "-deps", "./functions/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Split(string(out), "\n") {
		l := strings.ToLower(dep)
		if strings.Contains(l, "ferretdb") || strings.Contains(l, "miniredis") || strings.HasSuffix(l, "/adapters/embedded") || strings.HasSuffix(l, "/adapters/testenv") {
			t.Errorf("a function binary links %s", dep)
		}
	}
}

// env is the function configuration the bootstraps get, on servers of
// their own (a unique database and key prefix).
type env struct {
	vars  []string
	redis string
	mongo string
	db    string
}

func newEnv(t *testing.T) env {
	t.Helper()
	e := env{redis: os.Getenv(testenv.VarRedisURL), mongo: testenv.MongoURI(t)}
	if e.redis == "" {
		_, r := testenv.MiniRedis(t)
		e.redis = r.URL
	}
	e.db = strings.ReplaceAll(testenv.Unique("fn"), "-", "_")
	prefix := testenv.Unique("fn")
	e.vars = []string{
		"REDIS_URL=" + e.redis, "MONGODB_URI=" + e.mongo, "MONGODB_DATABASE=" + e.db,
		"JWT_SECRET=" + strings.Repeat("s3cr3t-", 8), "REDIS_KEY_PREFIX=" + prefix,
		"RATE_LIMIT_KEY_PREFIX=" + prefix + ":rl:", "OUTBOX_DIR=" + t.TempDir(), "LOG_LEVEL=warn",
	}
	return e
}

func (e env) getenv(k string) string {
	for _, kv := range e.vars {
		if name, v, _ := strings.Cut(kv, "="); name == k {
			return v
		}
	}
	return ""
}

// seed creates the organisation the test acts in, through the same app.
func (e env) seed(t *testing.T) (clientID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := app.New(ctx, app.Options{Getenv: e.getenv})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if a, err := app.New(ctx, app.Options{Getenv: e.getenv}); err == nil {
			_ = a.DB.Drop(ctx)
			a.Close(ctx)
		}
	})
	if _, err := a.Auth.EnsureUser(ctx, "ops@example.com", "correct horse battery", "org-rie", auth.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	c, err := a.Clients.Create(ctx, "org-rie", "Harbour Clinic", "billing@harbour.example")
	if err != nil {
		t.Fatal(err)
	}
	tbl := `{"currency":"EUR","taxRateBasisPoints":2000,"roles":{"nurse":{"hourlyRate":3000}},"overtime":{"afterMinutes":480,"multiplierPercent":150},"weekend":{"multiplierPercent":125},"night":{"from":"22:00","to":"06:00","multiplierPercent":120},"minimumBillableMinutes":0}`
	var table pricing.Table
	if err := json.Unmarshal([]byte(tbl), &table); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pricing.PutTable(ctx, "org-rie", table); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

var (
	buildOnce sync.Once
	buildDir  string
	rieBin    string
	bins      map[string]string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// bootstraps builds the five bootstraps and the emulator once per run.
func bootstraps(t *testing.T) (string, map[string]string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds five bootstraps; skipped with -short")
	}
	buildOnce.Do(func() {
		root, err := lambdatest.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		if buildDir, buildErr = os.MkdirTemp("", "shiftflow-bootstraps-"); buildErr != nil {
			return
		}
		if rieBin, buildErr = lambdatest.BuildRIE(ctx, root, buildDir); buildErr != nil {
			return
		}
		bins, buildErr = lambdatest.BuildBootstraps(ctx, root, buildDir, allFunctions())
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return rieBin, bins
}

func v2(method, path, token, body string) []byte {
	ev := events.APIGatewayV2HTTPRequest{Version: "2.0", RouteKey: "$default", RawPath: path, Body: body,
		Headers: map[string]string{"content-type": "application/json"}}
	if token != "" {
		ev.Headers["authorization"] = "Bearer " + token
	}
	ev.RequestContext.Stage = "$default"
	ev.RequestContext.RequestID = "rie-test"
	ev.RequestContext.HTTP.Method = method
	ev.RequestContext.HTTP.Path = path
	ev.RequestContext.HTTP.SourceIP = "198.51.100.20"
	b, _ := json.Marshal(ev)
	return b
}

const scheduled = `{"version":"0","id":"e-1","detail-type":"Scheduled Event","source":"aws.events","time":"2026-11-28T10:00:00Z","detail":{}}`

type fn struct {
	t   *testing.T
	rie *lambdatest.RIE
}

func start(t *testing.T, rie, bin string, e env) fn {
	t.Helper()
	r, err := lambdatest.StartRIE(rie, bin, e.vars, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("%s logs:\n%s", filepath.Base(filepath.Dir(bin)), r.Logs())
		}
	})
	return fn{t, r}
}

func (f fn) http(payload []byte) (int, map[string]any) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := f.rie.Invoke(ctx, payload)
	if err != nil {
		f.t.Fatal(err)
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out, &resp); err != nil || resp.StatusCode == 0 {
		f.t.Fatalf("not an HTTP answer: %s", out)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
		f.t.Fatalf("status %d, body not JSON: %q", resp.StatusCode, resp.Body)
	}
	return resp.StatusCode, body
}

func (f fn) drain() event.DrainSummary {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := f.rie.Invoke(ctx, []byte(scheduled))
	if err != nil {
		f.t.Fatal(err)
	}
	var s event.DrainSummary
	if err := json.Unmarshal(out, &s); err != nil || s.StoppedBy == "" {
		f.t.Fatalf("not a drain summary: %s", out)
	}
	return s
}

// TestBootstrapsUnderTheEmulator runs the whole flow through the five
// real bootstraps: log in, schedule, complete, drain the subscriber and
// the invoice worker, read the invoice.
func TestBootstrapsUnderTheEmulator(t *testing.T) {
	rie, bins := bootstraps(t)
	e := newEnv(t)
	clientID := e.seed(t)

	login := start(t, rie, bins[app.Login], e)
	status, body := login.http(v2("POST", "/login", "", `{"email":"ops@example.com","password":"wrong password"}`))
	if status != 401 || body["error"].(map[string]any)["code"] != "unauthorized" {
		t.Fatalf("wrong password: %d %v", status, body)
	}
	status, body = login.http(v2("POST", "/login", "", `{"email":"ops@example.com","password":"correct horse battery"}`))
	token, _ := body["token"].(string)
	if status != 200 || token == "" {
		t.Fatalf("login: %d %v", status, body)
	}

	schedule := start(t, rie, bins[app.ScheduleShift], e)
	status, body = schedule.http(v2("POST", "/shifts", token, fmt.Sprintf(
		`{"clientId":%q,"workerId":"w-7","role":"nurse","start":"2026-11-24T08:00:00Z","end":"2026-11-24T18:30:00Z","breakMinutes":30}`, clientID)))
	shiftID, _ := body["id"].(string)
	if status != 201 || shiftID == "" {
		t.Fatalf("schedule: %d %v", status, body)
	}
	if status, body = schedule.http(v2("POST", "/shifts", "", `{}`)); status != 401 {
		t.Fatalf("no token: %d %v", status, body)
	}
	// A route served by another function is not this function's.
	if status, _ = schedule.http(v2("POST", "/shifts/"+shiftID+"/complete", token, `{}`)); status != 404 {
		t.Fatalf("scheduleShift must not complete shifts: %d", status)
	}

	complete := start(t, rie, bins[app.CompleteShift], e)
	status, body = complete.http(v2("POST", "/shifts/"+shiftID+"/complete", token, `{}`))
	if status != 200 || body["status"] != "completed" {
		t.Fatalf("complete: %d %v", status, body)
	}

	if s := start(t, rie, bins[app.OnShiftCompleted], e).drain(); s.Succeeded < 1 || s.StoppedBy != "empty" {
		t.Fatalf("onShiftCompleted drain: %+v", s)
	}
	if s := start(t, rie, bins[app.InvoiceWorker], e).drain(); s.Succeeded < 2 || s.StoppedBy != "empty" {
		t.Fatalf("invoiceWorker drain (invoice and its email): %+v", s)
	}

	status, body = schedule.http(v2("GET", "/shifts/"+shiftID+"/invoice", token, ""))
	// 10 h 30 min - 30 min break = 600 min: 480 regular at 30.00/h =
	// 240.00, 120 overtime at 150 % = 90.00; subtotal 330.00, tax 20 % 66.00.
	if status != 200 || body["subtotal"] != 33000.0 || body["tax"] != 6600.0 || body["total"] != 39600.0 {
		t.Fatalf("invoice: %d %v", status, body)
	}
}

// TestDrainBootstrapAnswersSummaryWhenIdle: a scheduled tick with nothing
// to do still answers a summary, quickly.
func TestDrainBootstrapAnswersSummaryWhenIdle(t *testing.T) {
	rie, bins := bootstraps(t)
	e := newEnv(t)
	e.seed(t)
	for _, name := range app.DrainFunctions() {
		s := start(t, rie, bins[name], e).drain()
		if s.Processed != 0 || s.StoppedBy != "empty" {
			t.Fatalf("%s idle drain: %+v", name, s)
		}
	}
}
