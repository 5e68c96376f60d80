package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/org"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/shift"
)

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWorkerWaitsForRedis (issue 9, item 13): `local worker` started while
// Redis is down keeps retrying, logging each attempt, instead of exiting;
// once a redis-server starts at REDIS_URL it processes work.
func TestWorkerWaitsForRedis(t *testing.T) {
	bin := runnerBinary(t)
	redisBin := testenv.Need(t, testenv.VarRedisServer)
	addr := testenv.FreeAddr(t)
	prefix := testenv.Unique("wait")
	vars := map[string]string{
		"REDIS_URL": "redis://" + addr, "MONGODB_URI": testenv.MongoURI(t),
		"MONGODB_DATABASE": strings.ReplaceAll(prefix, "-", "_"), "REDIS_KEY_PREFIX": prefix,
		"JWT_SECRET": strings.Repeat("wait-test-", 5), "OUTBOX_DIR": filepath.Join(t.TempDir(), "outbox"),
		"SHIFTFLOW_DATA_DIR": t.TempDir(), "LOG_LEVEL": "info",
	}
	env := os.Environ()
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	worker := exec.Command(bin, "worker")
	worker.Env = env
	logs := &syncBuffer{}
	worker.Stdout, worker.Stderr = logs, logs
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- worker.Wait() }()
	t.Cleanup(func() {
		_ = worker.Process.Signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("worker logs:\n%s", logs.String())
		}
	})

	// Redis is down: the worker retries (at least two attempts logged) and stays up.
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(logs.String(), "redis: not reachable yet; retrying") < 2 {
		select {
		case err := <-exited:
			t.Fatalf("worker exited while Redis was down (%v)", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("worker did not log its retries")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Now Redis comes up at REDIS_URL.
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(addr)
	rs := exec.Command(redisBin, "--bind", host, "--port", port, "--dir", dir, "--save", "", "--logfile", filepath.Join(dir, "redis.log"))
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Process.Kill(); _ = rs.Wait() })

	// Work given through the same servers must be processed by the worker.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	for rc.Ping(ctx).Err() != nil {
		if ctx.Err() != nil {
			t.Fatal("redis-server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	api, err := app.New(ctx, app.Options{Getenv: func(k string) string { return vars[k] }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.DB.Drop(context.Background()); api.Close(context.Background()) })
	s := waitTestShift(t, api)
	for {
		if _, err := api.Invoices.GetByShift(ctx, "org-wait", s.ID); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("worker exited (%v)", err)
		default:
		}
		if ctx.Err() != nil {
			t.Fatal("the worker did not process the shift after Redis came up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "redis: ready") {
		t.Fatalf("worker did not log that Redis answered")
	}

	// `local reconcile` on the same servers prints its report as JSON:
	// nothing is due yet (RECONCILE_AFTER has not passed).
	cmd := exec.CommandContext(ctx, bin, "reconcile")
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("reconcile: %v\n%s", err, stderr.String())
	}
	var rep struct {
		Checked int               `json:"checked"`
		Events  []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(out, &rep); err != nil || rep.Events == nil || rep.Checked != 0 {
		t.Fatalf("reconcile printed %q (%v)", out, err)
	}
}

// waitTestShift seeds org-wait and completes one shift through api.
func waitTestShift(t *testing.T, api *app.App) shift.Shift {
	t.Helper()
	ctx := context.Background()
	if _, err := api.Settings.Put(ctx, "org-wait", org.Settings{TimeZone: "UTC", Currency: "EUR", InvoiceTermsDays: 14, InvoicePrefix: "W-"}); err != nil {
		t.Fatal(err)
	}
	var tbl pricing.Table
	if err := json.Unmarshal([]byte(demoPricing), &tbl); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Pricing.PutTable(ctx, "org-wait", tbl); err != nil {
		t.Fatal(err)
	}
	c, err := api.Clients.Create(ctx, "org-wait", "Acme", "ap@acme.test")
	if err != nil {
		t.Fatal(err)
	}
	start := shiftStart(0)
	s, err := api.Scheduler.Schedule(ctx, "org-wait", shift.Input{ClientID: c.ID, WorkerID: "w", Role: "nurse", Start: start, End: start.Add(8 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if s, err = api.Scheduler.Complete(ctx, "org-wait", s.ID, shift.Completion{}); err != nil {
		t.Fatal(err)
	}
	return s
}
