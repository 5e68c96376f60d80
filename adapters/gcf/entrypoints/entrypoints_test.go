package entrypoints

// These tests run the registered entry points through the real Functions
// Framework server in a child process (this test binary re-executed with
// FUNCTION_TARGET), on real servers: Redis (SHIFTFLOW_TEST_REDIS_URL, else
// embedded) and the MongoDB wire-protocol server (SHIFTFLOW_TEST_MONGODB_URI,
// else embedded FerretDB).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/pricing"
)

const childEnv = "SHIFTFLOW_GCF_ENTRYPOINTS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		// init has registered every function; serve FUNCTION_TARGET.
		if err := funcframework.StartHostPort("127.0.0.1", os.Getenv("PORT")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

type env []string

func (e env) getenv(k string) string {
	for _, kv := range e {
		if n, v, _ := strings.Cut(kv, "="); n == k {
			return v
		}
	}
	return ""
}

func newEnv(t *testing.T) env {
	redisURL := os.Getenv(testenv.VarRedisURL)
	if redisURL == "" {
		_, r := testenv.MiniRedis(t)
		redisURL = r.URL
	}
	prefix := testenv.Unique("gcf")
	e := env{"REDIS_URL=" + redisURL, "MONGODB_URI=" + testenv.MongoURI(t),
		"MONGODB_DATABASE=" + strings.ReplaceAll(prefix, "-", "_"), "REDIS_KEY_PREFIX=" + prefix,
		"RATE_LIMIT_KEY_PREFIX=" + prefix + ":rl:", "JWT_SECRET=" + strings.Repeat("gcf-key-", 6),
		"OUTBOX_DIR=" + t.TempDir(), "LOG_LEVEL=warn", "DRAIN_BUDGET=20s"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := app.New(ctx, app.Options{Getenv: e.getenv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.DB.Drop(context.Background()); a.Close(context.Background()) })
	if _, err := a.Auth.EnsureUser(ctx, "gcf@example.com", "correct horse battery", "org-gcf", auth.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	c, err := a.Clients.Create(ctx, "org-gcf", "Dune Hospital", "ap@dune.example")
	if err != nil {
		t.Fatal(err)
	}
	var tbl pricing.Table
	_ = json.Unmarshal([]byte(`{"currency":"EUR","taxRateBasisPoints":2000,"roles":{"nurse":{"hourlyRate":3000}},"overtime":{"afterMinutes":480,"multiplierPercent":150},"weekend":{"multiplierPercent":125},"night":{"from":"22:00","to":"06:00","multiplierPercent":120}}`), &tbl)
	if _, err := a.Pricing.PutTable(ctx, "org-gcf", tbl); err != nil {
		t.Fatal(err)
	}
	return append(e, "TEST_CLIENT_ID="+c.ID)
}

// serve starts the framework serving target with e and returns its URL.
func serve(t *testing.T, target string, e env) string {
	t.Helper()
	return serveTo(t, target, e, os.Stderr)
}

// serveTo is serve with the child's standard error written to stderr.
func serveTo(t *testing.T, target string, e env, stderr io.Writer) string {
	t.Helper()
	addr := testenv.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), e...), childEnv+"=1", "FUNCTION_TARGET="+target, "PORT="+port)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening", target)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func call(t *testing.T, method, url, token, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func TestFlowThroughCloudFunctionsEntryPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five function servers; skipped with -short")
	}
	e := newEnv(t)
	login, schedule, complete := serve(t, app.Login, e), serve(t, app.ScheduleShift, e), serve(t, app.CompleteShift, e)
	subscriber := serve(t, app.OnShiftCompleted, e)   // CloudEvent
	invoices := serve(t, app.InvoiceWorker+"HTTP", e) // HTTP drain

	status, body := call(t, "POST", login+"/login", "", `{"email":"gcf@example.com","password":"correct horse battery"}`, nil)
	token, _ := body["token"].(string)
	if status != 200 || token == "" {
		t.Fatalf("login: %d %v", status, body)
	}
	status, body = call(t, "POST", schedule+"/shifts", token, fmt.Sprintf(
		`{"clientId":%q,"workerId":"w-1","role":"nurse","start":"2026-11-25T08:00:00Z","end":"2026-11-25T16:00:00Z","breakMinutes":0}`, e.getenv("TEST_CLIENT_ID")), nil)
	id, _ := body["id"].(string)
	if status != 201 || id == "" {
		t.Fatalf("schedule: %d %v", status, body)
	}
	if status, body = call(t, "POST", complete+"/shifts/"+id+"/complete", token, `{}`, nil); status != 200 || body["status"] != "completed" {
		t.Fatalf("complete: %d %v", status, body)
	}
	// Cloud Scheduler -> Pub/Sub -> the CloudEvent function.
	status, _ = call(t, "POST", subscriber, "", `{"message":{"data":"dGljaw==","messageId":"1"},"subscription":"projects/p/subscriptions/s"}`, map[string]string{
		"Ce-Id": "1", "Ce-Specversion": "1.0", "Ce-Type": "google.cloud.pubsub.topic.v1.messagePublished",
		"Ce-Source": "//pubsub.googleapis.com/projects/p/topics/shiftflow-drains"})
	if status/100 != 2 {
		t.Fatalf("CloudEvent drain: %d", status)
	}
	// Cloud Scheduler -> the HTTP drain.
	status, body = call(t, "POST", invoices, "", "", nil)
	if status != 200 || body["stoppedBy"] != "empty" || body["succeeded"].(float64) < 1 {
		t.Fatalf("HTTP drain: %d %v", status, body)
	}
	status, body = call(t, "GET", schedule+"/shifts/"+id+"/invoice", token, "", nil)
	// 8 h at 30.00 = 240.00 + 20 % tax.
	if status != 200 || body["total"] != 28800.0 {
		t.Fatalf("invoice: %d %v", status, body)
	}
	// Each function serves only its own routes.
	if status, _ = call(t, "POST", login+"/shifts", token, `{}`, nil); status != 404 {
		t.Fatalf("login served POST /shifts: %d", status)
	}
}

// TestDeployScriptStagesABuildableSource runs infra/gcp-deploy.sh without
// deploying: every function and scheduler job is in its plan, and the
// staged source root is a Go package that builds and registers the entry
// points without linking an embedded server.
func TestDeployScriptStagesABuildableSource(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the staged source; skipped with -short")
	}
	root, err := lambdaRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, trigger := range []string{"pubsub", "http"} {
		stage := t.TempDir()
		cmd := exec.Command("bash", "infra/gcp-deploy.sh")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "DRY_RUN=1", "STAGE_DIR="+stage, "DRAIN_TRIGGER="+trigger)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", trigger, err, out)
		}
		plan := string(out)
		for _, fn := range append(app.HTTPFunctions(), app.DrainFunctions()...) {
			entry := fn
			if trigger == "http" && !slicesContains(app.HTTPFunctions(), fn) {
				entry = fn + "HTTP"
			}
			if !strings.Contains(plan, "gcloud functions deploy "+entry+" ") || !strings.Contains(plan, "--entry-point="+entry+" ") {
				t.Errorf("%s: no deploy of %s in:\n%s", trigger, entry, plan)
			}
		}
		if n := strings.Count(plan, "gcloud scheduler jobs create"); n != len(app.DrainFunctions()) {
			t.Errorf("%s: %d scheduler jobs, want one per drain", trigger, n)
		}
		if trigger == "pubsub" {
			build := exec.Command("go", "build", ".")
			build.Dir = stage
			if b, err := build.CombinedOutput(); err != nil {
				t.Fatalf("the staged function source does not build: %v\n%s", err, b)
			}
			deps := exec.Command("go", "list", "-deps", ".")
			deps.Dir = stage
			b, err := deps.Output()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "/adapters/gcf/entrypoints\n") || strings.Contains(strings.ToLower(string(b)), "ferretdb") {
				t.Errorf("staged package must import entrypoints and no embedded server")
			}
		}
	}
}

func slicesContains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func lambdaRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSpace(string(out)), "/go.mod"), nil
}
