package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/adapters/logging"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
)

// testGetenv is a complete configuration on test servers: the real Redis
// and MongoDB server when configured, else embedded ones.
func testGetenv(t *testing.T, extra map[string]string) func(string) string {
	t.Helper()
	redisURL := os.Getenv(testenv.VarRedisURL)
	if redisURL == "" {
		_, r := testenv.MiniRedis(t)
		redisURL = r.URL
	}
	prefix := testenv.Unique("app")
	vars := map[string]string{
		"REDIS_URL": redisURL, "MONGODB_URI": testenv.MongoURI(t),
		"MONGODB_DATABASE": strings.ReplaceAll(prefix, "-", "_"), "REDIS_KEY_PREFIX": prefix,
		"RATE_LIMIT_KEY_PREFIX": prefix + ":rl:", "JWT_SECRET": strings.Repeat("app-test-", 5),
		"OUTBOX_DIR": t.TempDir(), "LOG_LEVEL": "error",
	}
	for k, v := range extra {
		vars[k] = v
	}
	return func(k string) string { return vars[k] }
}

func newTestApp(t *testing.T) *App {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := New(ctx, Options{Getenv: testGetenv(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.DB.Drop(context.Background()); a.Close(context.Background()) })
	return a
}

func TestConfigurationErrorsNameEveryVariable(t *testing.T) {
	getenv := func(k string) string {
		return map[string]string{
			"REDIS_URL":             "http://user:hunter2hunter2@redis.example:6379",
			"MONGODB_URI":           "mongodb://127.0.0.1:1/x",
			"JWT_SECRET":            "short",
			"DRAIN_MODE":            "sometimes",
			"REDIS_KEY_PREFIX":      "bad{tag}",
			"HANDLER_TIMEOUT":       "forever",
			"RECONCILE_INTERVAL":    "100ms",
			"RECONCILE_AFTER":       "soon",
			"VISIBILITY_TIMEOUT":    "0s",
			"DRAIN_MAX_CONCURRENCY": "0",
			"DRAIN_THROUGHPUT":      "fast",
			"WAKE_COALESCE":         "1ms",
		}[k]
	}
	_, err := New(context.Background(), Options{Getenv: getenv})
	if err == nil {
		t.Fatal("a bad configuration must not build")
	}
	for _, v := range []string{"REDIS_URL", "JWT_SECRET", "DRAIN_MODE", "REDIS_KEY_PREFIX", "HANDLER_TIMEOUT", "VISIBILITY_TIMEOUT", "RECONCILE_INTERVAL", "RECONCILE_AFTER",
		"DRAIN_MAX_CONCURRENCY", "DRAIN_THROUGHPUT", "WAKE_COALESCE"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s: %v", v, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks a password: %v", err)
	}
}

func TestFunctionsMissingMongoDBRefuseToStart(t *testing.T) {
	_, err := New(context.Background(), Options{Getenv: func(k string) string {
		return map[string]string{"JWT_SECRET": strings.Repeat("x", 40)}[k]
	}})
	if err == nil || !strings.Contains(err.Error(), "MONGODB_URI") {
		t.Fatalf("err %v", err)
	}
}

func TestEachFunctionServesOnlyItsRoutes(t *testing.T) {
	a := newTestApp(t)
	owners := map[string]bool{}
	for _, rt := range a.Routes() {
		owners[rt.Function] = true
		path := strings.ReplaceAll(rt.Path, "{id}", "x1")
		for _, fn := range HTTPFunctions() {
			rec := httptest.NewRecorder()
			body := strings.NewReader("{}")
			req := httptest.NewRequest(rt.Method, path, body)
			req.Header.Set("Content-Type", "application/json")
			a.FunctionHandler(fn).ServeHTTP(rec, req)
			mine := fn == rt.Function || rt.Path == "/health"
			if mine && rec.Code == http.StatusNotFound && rt.Path != "/users/{id}" && rt.Path != "/clients/{id}" && !strings.HasPrefix(rt.Path, "/shifts/{id}") {
				t.Errorf("%s does not serve its route %s %s", fn, rt.Method, rt.Path)
			}
			if !mine && rec.Code != http.StatusNotFound {
				t.Errorf("%s serves %s %s of %s: %d", fn, rt.Method, rt.Path, rt.Function, rec.Code)
			}
			if !mine {
				// The code, not just any body that says "error".
				var body httpapi.ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != core.ENotFound || body.Error.Message == "" {
					t.Errorf("404 must be the JSON error %q, got %q", core.ENotFound, rec.Body.String())
				}
			}
		}
	}
	for _, fn := range HTTPFunctions() {
		if !owners[fn] {
			t.Errorf("function %s has no route", fn)
		}
	}
}

// Health is public, so anonymous callers learn only the verdict; an admin
// sees each dependency (whose errors may name internal addresses).
func TestHealthDetailsAreForAdminsOnly(t *testing.T) {
	a := newTestApp(t)
	get := func(role string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/health", nil)
		if role != "" {
			tok, err := a.tokens.Issue(auth.Principal{UserID: "u1", OrganizationID: "o1", Role: role})
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok.Value)
		}
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, req)
		return rec
	}
	for _, role := range []string{"", auth.RoleViewer, auth.RoleScheduler} {
		rec := get(role)
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"ok":true}` || rec.Header().Get("X-Request-Id") == "" {
			t.Errorf("health as %q: %d %s", role, rec.Code, rec.Body.String())
		}
	}
	rec := get(auth.RoleAdmin)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"redis"`) || !strings.Contains(rec.Body.String(), `"mongodb"`) {
		t.Fatalf("health as admin: %d %s", rec.Code, rec.Body.String())
	}
}

func TestRequestIDsAreKeptWhenWellFormedAndLogged(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	var seen string
	h := requestLog(logger, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logging.FromContext(r.Context(), logger).Info("inside")
		seen = "ok"
		w.WriteHeader(http.StatusTeapot)
	}))
	tests := []struct{ sent, want string }{
		{"req-123.abc", "req-123.abc"},
		{"has spaces and \"quotes\"", ""}, // replaced by a new id
		{strings.Repeat("x", 65), ""},
	}
	for _, tt := range tests {
		buf.Reset()
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/x", nil)
		req.Header.Set("X-Request-Id", tt.sent)
		h.ServeHTTP(rec, req)
		got := rec.Header().Get("X-Request-Id")
		if tt.want != "" && got != tt.want || tt.want == "" && (got == tt.sent || len(got) != 26) {
			t.Errorf("sent %q: response id %q", tt.sent, got)
		}
		if strings.Count(buf.String(), "requestId="+got) != 2 || !strings.Contains(buf.String(), "status=418") {
			t.Errorf("both log lines must carry the id and the status:\n%s", buf.String())
		}
	}
	_ = seen
}

func TestEventAndJobLogsCarryCorrelationIDs(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	eh := logEvents(logger, "sub", func(ctx context.Context, e event.Event) error {
		logging.FromContext(ctx, logger).Info("handler line")
		return nil
	})
	_ = eh(context.Background(), event.Event{ID: "e1", Type: event.ShiftCompleted, CorrelationID: "corr-1"})
	jh := logJobs(logger, func(ctx context.Context, j *job.Job) error { return errors.New("smtp down") })
	err := jh(context.Background(), &job.Job{ID: "j1", Queue: job.EmailNotifications, CorrelationID: "corr-1", Attempt: 2})
	if err == nil {
		t.Fatal("the job error must reach the queue (it retries)")
	}
	out := buf.String()
	for _, want := range []string{"handler line", "eventId=e1", "event handled", "jobId=j1", "job failed", "attempt=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "correlationId=corr-1") != 3 {
		t.Errorf("every line must carry the correlation id:\n%s", out)
	}
}

// countingDrainer processes the items it has been given.
type countingDrainer struct {
	left  atomic.Int64
	feeds *countingDrainer // work done here creates work there
}

func (c *countingDrainer) Drain(ctx context.Context) (event.DrainSummary, error) {
	n := c.left.Swap(0)
	if c.feeds != nil {
		c.feeds.left.Add(n)
	}
	return event.DrainSummary{Processed: int(n), Succeeded: int(n), StoppedBy: "empty"}, nil
}
func (c *countingDrainer) DrainLongPoll(ctx context.Context) (event.DrainSummary, error) {
	return c.Drain(ctx)
}
func (c *countingDrainer) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func TestParallelDrainFinishesWorkThatCreatesWork(t *testing.T) {
	emails := &countingDrainer{}
	invoices := &countingDrainer{feeds: emails}
	invoices.left.Store(3)
	s, err := Parallel(invoices, emails).Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Three invoices, then their three emails: "empty" means nothing left.
	if s.Processed != 6 || s.Succeeded != 6 || s.StoppedBy != "empty" || emails.left.Load() != 0 {
		t.Fatalf("summary %+v, emails left %d", s, emails.left.Load())
	}
}

func TestParallelRunStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Parallel(&countingDrainer{}, &countingDrainer{}).Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestCORS(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	tests := []struct {
		name, allowed, origin, method string
		wantStatus                    int
		wantACAO                      string
	}{
		{"preflight from the frontend", "https://app.example", "https://app.example", "OPTIONS", 204, "https://app.example"},
		{"request from the frontend", "https://app.example", "https://app.example", "GET", 200, "https://app.example"},
		{"another origin gets no grant", "https://app.example", "https://evil.example", "GET", 200, ""},
		{"wildcard", "*", "http://localhost:5173", "OPTIONS", 204, "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/shifts", nil)
			req.Header.Set("Origin", tt.origin)
			if tt.method == "OPTIONS" {
				req.Header.Set("Access-Control-Request-Method", "POST")
			}
			rec := httptest.NewRecorder()
			CORS(tt.allowed, inner).ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || rec.Header().Get("Access-Control-Allow-Origin") != tt.wantACAO {
				t.Fatalf("status %d, ACAO %q", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
			}
			if tt.method == "OPTIONS" && !strings.Contains(rec.Header().Get("Access-Control-Allow-Headers"), "Authorization") {
				t.Fatal("preflight must allow the Authorization header")
			}
		})
	}
}

// The router's own answers (no route, wrong method) are JSON errors like
// every other answer, for the local handler and each function's handler.
func TestRouterAnswersAreJSONErrorsWithSecurityHeaders(t *testing.T) {
	a := newTestApp(t)
	handlers := map[string]http.Handler{"local": a.Handler(), ScheduleShift: a.FunctionHandler(ScheduleShift), CompleteShift: a.FunctionHandler(CompleteShift)}
	for name, h := range handlers {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/nowhere", nil))
		if rec.Code != http.StatusNotFound || rec.Header().Get("Content-Type") != "application/json" || !strings.Contains(rec.Body.String(), `"code":"not_found"`) {
			t.Errorf("%s: unknown route: %d %q %q", name, rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
		}
		for hd, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"} {
			if got := rec.Header().Get(hd); got != want {
				t.Errorf("%s: %s = %q, want %q", name, hd, got, want)
			}
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("DELETE", "/shifts/x1/complete", nil))
		if name == ScheduleShift {
			// Not this function's route at all: 404.
			if rec.Code != http.StatusNotFound {
				t.Errorf("%s: another function's path: %d %q", name, rec.Code, rec.Body.String())
			}
			continue
		}
		if rec.Code != http.StatusMethodNotAllowed || !strings.Contains(rec.Body.String(), `"code":"method_not_allowed"`) ||
			!strings.Contains(rec.Header().Get("Allow"), "POST") || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: wrong method: %d allow=%q %q", name, rec.Code, rec.Header().Get("Allow"), rec.Body.String())
		}
	}
}
