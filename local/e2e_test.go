package main

// End-to-end: the runner is built and started as a separate process and
// used over HTTP like a frontend would, first on its embedded servers,
// then on the real Redis and MongoDB server (SHIFTFLOW_TEST_REDIS_URL and
// SHIFTFLOW_TEST_MONGODB_URI).

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/local/localtest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func runnerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the local runner; skipped with -short")
	}
	root := moduleRoot(t)
	binOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if binDir, binErr = os.MkdirTemp("", "shiftflow-local-"); binErr == nil {
			binPath, binErr = localtest.Build(ctx, root, binDir)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func start(t *testing.T, dir string, env ...string) *localtest.Runner {
	t.Helper()
	r, err := localtest.Start(runnerBinary(t), dir, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Kill() // no-op when the test already stopped it
		if t.Failed() {
			t.Logf("runner logs:\n%s", r.Logs())
		}
	})
	return r
}

// monday 2026-11-23 08:00 UTC plus n days (weekdays only for n < 5).
func shiftStart(n int) time.Time {
	return time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC).AddDate(0, 0, n)
}

// flow logs in, schedules an 8-hour weekday shift, completes it and reads
// its invoice: 480 min x 30.00/h = 240.00, 20 % tax = 48.00.
func flow(t *testing.T, url, email, password string, day int) (localtest.Client, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := localtest.Client{URL: url}
	if err := c.Login(ctx, email, password); err != nil {
		t.Fatal(err)
	}
	clientID, err := c.FirstClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Schedule(ctx, clientID, shiftStart(day), 8, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Complete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	inv, err := c.WaitInvoice(ctx, s.ID, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Subtotal != 24000 || inv.Tax != 4800 || inv.Total != 28800 || inv.ShiftID != s.ID {
		t.Fatalf("invoice %+v", inv)
	}
	var ts struct {
		WorkedMinutes int `json:"workedMinutes"`
	}
	if status, err := c.Do(ctx, "GET", "/shifts/"+s.ID+"/timesheet", nil, &ts); err != nil || status != 200 || ts.WorkedMinutes != 480 {
		t.Fatalf("timesheet: %d %+v %v", status, ts, err)
	}
	return c, s.ID
}

func TestLocalRunnerOnEmbeddedServers(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
	}{
		// redis-server with an append-only file when it is installed.
		{"default", nil},
		// The in-process Redis, whose contents live in memory only.
		{"in-memory redis", []string{"LOCAL_REDIS=memory", "DEMO_EMAIL=boss@example.com", "DEMO_PASSWORD=another-demo-pass"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			env := append([]string{"SHIFTFLOW_DATA_DIR=" + filepath.Join(dir, "data")}, tc.env...)
			email, password := "admin@example.com", "shiftflow-demo"
			for _, kv := range tc.env {
				if v, ok := strings.CutPrefix(kv, "DEMO_EMAIL="); ok {
					email = v
				}
				if v, ok := strings.CutPrefix(kv, "DEMO_PASSWORD="); ok {
					password = v
				}
			}
			r := start(t, dir, env...)
			if !strings.Contains(r.Logs(), email) {
				t.Fatalf("the runner must print the demo login:\n%s", r.Logs())
			}
			c, first := flow(t, r.URL, email, password, 0)

			// A shift completed right before Ctrl-C: its invoice must exist
			// after the restart (finished before exit, or kept in Redis).
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			clientID, _ := c.FirstClient(ctx)
			s, err := c.Schedule(ctx, clientID, shiftStart(1), 8, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Complete(ctx, s.ID); err != nil {
				t.Fatal(err)
			}
			if err := r.Stop(30 * time.Second); err != nil {
				t.Fatalf("Ctrl-C: %v\n%s", err, r.Logs())
			}

			r2 := start(t, dir, env...)
			c2 := localtest.Client{URL: r2.URL}
			if err := c2.Login(ctx, email, password); err != nil {
				t.Fatalf("the demo login must survive a restart: %v", err)
			}
			for _, id := range []string{first, s.ID} {
				if _, err := c2.WaitInvoice(ctx, id, 20*time.Millisecond); err != nil {
					t.Fatalf("invoice of %s after restart: %v", id, err)
				}
			}
			// Seeding ran once: still one client.
			var cs []any
			if _, err := c2.Do(ctx, "GET", "/clients", nil, &cs); err != nil || len(cs) != 1 {
				t.Fatalf("clients after restart: %d (%v)", len(cs), err)
			}
			if err := r2.Stop(30 * time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestInvokeUsesTheRunningRunnersServers: `invoke` while the runner runs
// delivers the sample event to the same data.
func TestInvokeUsesTheRunningRunnersServers(t *testing.T) {
	dir := t.TempDir()
	env := []string{"SHIFTFLOW_DATA_DIR=" + filepath.Join(dir, "data")}
	r := start(t, dir, env...)
	root := moduleRoot(t)
	for _, tc := range []struct{ function, want string }{
		{"login", `"statusCode": 200`},
		{"scheduleShift", `"statusCode": 201`},
		{"completeShift", `"statusCode": 200`},
		{"onShiftCompleted", `"stoppedBy"`},
		{"invoiceWorker", `"stoppedBy"`},
	} {
		cmd := exec.Command(runnerBinary(t), "invoke", tc.function, filepath.Join(root, "functions", tc.function, "event.json"))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Fatalf("invoke %s: %v\n%s", tc.function, err, out)
		}
	}
	// The invokes spent none of the demo login budget, and the local
	// budget outlasts a developer's repeated logins (the production one, 10
	// per 15 minutes, would answer 429 from the 11th).
	for i := range 15 {
		c := localtest.Client{URL: r.URL, HTTP: http.DefaultClient}
		if err := c.Login(context.Background(), "admin@example.com", "shiftflow-demo"); err != nil {
			t.Fatalf("login %d after the invokes: %v", i+1, err)
		}
	}
	if err := r.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestLocalRunnerOnRealServers(t *testing.T) {
	redisURL := testenv.Need(t, testenv.VarRedisURL)
	mongoURI := testenv.MongoRealURI(t)
	prefix := testenv.Unique("e2e")
	dir := t.TempDir()
	r := start(t, dir, "SHIFTFLOW_DATA_DIR="+filepath.Join(dir, "data"),
		"REDIS_URL="+redisURL, "MONGODB_URI="+mongoURI, "MONGODB_DATABASE="+strings.ReplaceAll(prefix, "-", "_"),
		"REDIS_KEY_PREFIX="+prefix, "RATE_LIMIT_KEY_PREFIX="+prefix+":rl:", "SEED_DEMO=true")
	t.Cleanup(func() {
		db := testenv.MongoDBAt(t, mongoURI)
		_ = db.Client().Database(strings.ReplaceAll(prefix, "-", "_")).Drop(context.Background())
	})
	if strings.Contains(r.Logs(), "embedded") {
		t.Fatalf("with REDIS_URL and MONGODB_URI set the runner must not start embedded servers:\n%s", r.Logs())
	}
	flow(t, r.URL, "admin@example.com", "shiftflow-demo", 2)
	if err := r.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestWorkerModeDrainsForAnAPIOnlyRunner: the API runs with DRAINS=off and
// a separate `worker` process (on the same data directory, so on the same
// servers) turns completed shifts into invoices.
func TestWorkerModeDrainsForAnAPIOnlyRunner(t *testing.T) {
	dir := t.TempDir()
	env := []string{"SHIFTFLOW_DATA_DIR=" + filepath.Join(dir, "data")}
	api := start(t, dir, append(env, "DRAINS=off")...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := localtest.Client{URL: api.URL}
	if err := c.Login(ctx, "admin@example.com", "shiftflow-demo"); err != nil {
		t.Fatal(err)
	}
	clientID, err := c.FirstClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Schedule(ctx, clientID, shiftStart(3), 8, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Complete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if _, err := c.WaitInvoice(wctx, s.ID, 20*time.Millisecond); err == nil {
		t.Fatal("with DRAINS=off and no worker, nothing may process the shift")
	}
	wcancel()

	worker := exec.Command(runnerBinary(t), "worker")
	worker.Dir = dir
	worker.Env = append(os.Environ(), env...)
	var logs strings.Builder
	worker.Stdout, worker.Stderr = &logs, &logs
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = worker.Process.Kill(); _ = worker.Wait() }()
	if _, err := c.WaitInvoice(ctx, s.ID, 20*time.Millisecond); err != nil {
		t.Fatalf("the worker did not produce the invoice: %v\n%s", err, logs.String())
	}
	_ = worker.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- worker.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker exit after Ctrl-C: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop after Ctrl-C")
	}
	if !strings.Contains(logs.String(), "using the servers of the running local runner") {
		t.Fatalf("the worker must use the runner's servers:\n%s", logs.String())
	}
	if err := api.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}
