package gcf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/shiftflow/shiftflow/core/event"
)

// The HTTP tests run the real functions-framework server in a child
// process (this test binary re-executed), because the framework picks its
// one target from FUNCTION_TARGET at start and cannot be stopped.
const childEnv = "SHIFTFLOW_GCF_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		runChild()
		return
	}
	os.Exit(m.Run())
}

func testMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /shifts/{id}/complete", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"id": r.PathValue("id"), "accept": r.Header.Get("Accept")})
	})
	mux.HandleFunc("DELETE /silent", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	return mux
}

func runChild() {
	var drains atomic.Int64
	lazy := NewLazy(func(ctx context.Context) (Functions, error) {
		if os.Getenv("CHILD_BROKEN") == "1" {
			// The error names a secret, as a real one may (a URL with a
			// password): it must reach the log only, never the caller.
			return Functions{}, errors.New("REDIS_URL: scheme \"http\" is not supported in http://:" + childSecret + "@redis.internal:6379")
		}
		return Functions{
			HTTP: map[string]http.Handler{"completeShift": testMux()},
			Drains: map[string]DrainFunc{"invoiceWorker": func(ctx context.Context) (event.DrainSummary, error) {
				n := drains.Add(1)
				if _, ok := ctx.Deadline(); !ok {
					return event.DrainSummary{}, errors.New("no deadline")
				}
				return event.DrainSummary{Processed: int(n), Succeeded: int(n), StoppedBy: "empty"}, nil
			}},
		}, nil
	})
	Register([]string{"completeShift"}, []string{"invoiceWorker"}, lazy, DrainOptions{Budget: 5 * time.Second})
	if err := funcframework.StartHostPort("127.0.0.1", os.Getenv("PORT")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// startFunction starts the framework serving target and returns its URL.
func startFunction(t *testing.T, target string, extraEnv ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "FUNCTION_TARGET="+target, "PORT="+port)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://127.0.0.1:" + port
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("function %s not listening: %v", target, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func do(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Accept", "application/json, text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestHTTPFunctionThroughFunctionsFramework(t *testing.T) {
	url := startFunction(t, "completeShift")
	tests := []struct {
		name, method, path string
		want               int
		contains           string
	}{
		{"routes with path values and whole headers", "POST", "/shifts/s1/complete", 202, `"accept":"application/json, text/plain"`},
		{"handler writing nothing answers 200", "DELETE", "/silent", 200, ""},
		{"panic answers a generic JSON 500", "GET", "/panic", 500, `"code":"internal"`},
		{"unknown route is 404", "GET", "/nowhere", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := do(t, tt.method, url+tt.path, "{}")
			if status != tt.want || !strings.Contains(body, tt.contains) || strings.Contains(body, "boom") {
				t.Fatalf("status %d body %s; want %d containing %s", status, body, tt.want, tt.contains)
			}
		})
	}
}

func TestDrainAsHTTPFunction(t *testing.T) {
	url := startFunction(t, "invoiceWorker"+HTTPSuffix)
	for i := 1; i <= 2; i++ {
		status, body, _ := do(t, "POST", url, "")
		var s event.DrainSummary
		if status != 200 || json.Unmarshal([]byte(body), &s) != nil || s.Processed != i || s.StoppedBy != "empty" {
			t.Fatalf("run %d: status %d body %s", i, status, body)
		}
	}
	if status, body, h := do(t, "PUT", url, ""); status != 400 || h.Get("Allow") == "" {
		t.Fatalf("PUT: status %d body %s", status, body)
	}
}

func TestMisconfiguredFunctionAnswers503AndNamesNoSecret(t *testing.T) {
	url := startFunction(t, "completeShift", "CHILD_BROKEN=1")
	status, body, h := do(t, "POST", url+"/shifts/s1/complete", "{}")
	if status != 503 || !strings.Contains(body, `"code":"unavailable"`) || h.Get("Retry-After") == "" {
		t.Fatalf("status %d body %s", status, body)
	}
	for _, leak := range []string{childSecret, "redis.internal", "REDIS_URL"} {
		if strings.Contains(body, leak) {
			t.Fatalf("the answer names %q from the configuration error: %s", leak, body)
		}
	}
}

// childSecret is the password in the broken child's configuration error.
const childSecret = "gcf-secret-9d1c77"

// cloudEventHandler serves fn the way the framework does, in process.
func cloudEventHandler(t *testing.T, fn func(context.Context, cloudevents.Event) error) http.Handler {
	t.Helper()
	p, err := cloudevents.NewHTTP()
	if err != nil {
		t.Fatal(err)
	}
	h, err := cloudevents.NewHTTPReceiveHandler(context.Background(), p, fn)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pubsubTick is what Cloud Scheduler -> Pub/Sub -> Eventarc delivers.
func pubsubTick(t *testing.T, url string) *http.Response {
	t.Helper()
	body := `{"message":{"data":"dGljaw==","messageId":"123","publishTime":"2026-11-28T10:00:00Z"},"subscription":"projects/p/subscriptions/s"}`
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Id", "123")
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Type", "google.cloud.pubsub.topic.v1.messagePublished")
	req.Header.Set("Ce-Source", "//pubsub.googleapis.com/projects/p/topics/drain-ticks")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestDrainAsCloudEventFunction(t *testing.T) {
	var ran atomic.Int64
	var hadDeadline atomic.Bool
	fn := DrainCloudEvent("onShiftCompleted", func(ctx context.Context) (event.DrainSummary, error) {
		ran.Add(1)
		_, ok := ctx.Deadline()
		hadDeadline.Store(ok)
		return event.DrainSummary{Processed: 1, Succeeded: 1, StoppedBy: "empty"}, nil
	}, DrainOptions{Budget: time.Second})
	srv := newServer(t, cloudEventHandler(t, fn))
	if resp := pubsubTick(t, srv); resp.StatusCode/100 != 2 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ran.Load() != 1 || !hadDeadline.Load() {
		t.Fatalf("drain ran %d times, deadline %v", ran.Load(), hadDeadline.Load())
	}
}

func TestFailingDrainMakesTheCloudEventFail(t *testing.T) {
	fn := DrainCloudEvent("onShiftCompleted", func(ctx context.Context) (event.DrainSummary, error) {
		return event.DrainSummary{}, errors.New("redis: connection refused")
	}, DrainOptions{})
	srv := newServer(t, cloudEventHandler(t, fn))
	if resp := pubsubTick(t, srv); resp.StatusCode/100 == 2 {
		t.Fatalf("a failed drain must not be acknowledged, status %d", resp.StatusCode)
	}
}

func TestLazyBuildsOnce(t *testing.T) {
	var builds atomic.Int64
	lazy := NewLazy(func(ctx context.Context) (Functions, error) {
		builds.Add(1)
		return Functions{Drains: map[string]DrainFunc{"d": func(context.Context) (event.DrainSummary, error) { return event.DrainSummary{}, nil }}}, nil
	})
	fn := LazyDrainCloudEvent("d", lazy, DrainOptions{})
	done := make(chan struct{})
	for range 20 {
		go func() { _ = fn(context.Background(), cloudevents.NewEvent()); done <- struct{}{} }()
	}
	for range 20 {
		<-done
	}
	if builds.Load() != 1 {
		t.Fatalf("built %d times, want once per cold start", builds.Load())
	}
}

func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	return "http://" + l.Addr().String()
}
