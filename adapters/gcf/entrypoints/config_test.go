package entrypoints

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/app"
)

// lockedBuffer is a bytes.Buffer the child's stderr copier and the test
// may use at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEntryPointConfiguration is the configuration table of the variables
// the Cloud Functions entry points read themselves: CORS_ORIGIN (the
// browser calls the function URLs directly) and DRAIN_BUDGET (a bad value
// must not be replaced by the default silently: every invocation answers
// 503 and the log names the variable).
func TestEntryPointConfiguration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts function servers; skipped with -short")
	}
	base := newEnv(t)
	preflight := func(url, origin string) *http.Request {
		req, _ := http.NewRequest("OPTIONS", url+"/shifts", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		return req
	}
	tests := []struct {
		name, target string
		vars         []string
		request      func(url string) *http.Request
		status       int
		acao         string // Access-Control-Allow-Origin
		log          string // in the function's log
	}{
		{"CORS_ORIGIN grants the frontend", app.ScheduleShift, []string{"CORS_ORIGIN=https://app.example,https://admin.example"},
			func(u string) *http.Request { return preflight(u, "https://admin.example") }, 204, "https://admin.example", ""},
		{"CORS_ORIGIN grants no other origin", app.ScheduleShift, []string{"CORS_ORIGIN=https://app.example"},
			func(u string) *http.Request { return preflight(u, "https://evil.example") }, 0, "", ""},
		{"no CORS_ORIGIN grants nobody", app.ScheduleShift, []string{"CORS_ORIGIN="},
			func(u string) *http.Request { return preflight(u, "https://app.example") }, 0, "", ""},
		{"DRAIN_BUDGET not a duration", app.InvoiceWorker + "HTTP", []string{"DRAIN_BUDGET=forever"},
			func(u string) *http.Request { r, _ := http.NewRequest("POST", u, nil); return r }, 503, "", "DRAIN_BUDGET"},
		{"DRAIN_BUDGET out of range", app.InvoiceWorker + "HTTP", []string{"DRAIN_BUDGET=2h"},
			func(u string) *http.Request { r, _ := http.NewRequest("POST", u, nil); return r }, 503, "", "DRAIN_BUDGET"},
		{"DRAIN_BUDGET bad: the HTTP functions refuse too", app.ScheduleShift, []string{"DRAIN_BUDGET=0s"},
			func(u string) *http.Request { r, _ := http.NewRequest("GET", u+"/health", nil); return r }, 503, "", "DRAIN_BUDGET"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr lockedBuffer
			url := serveTo(t, tc.target, append(append(env(nil), base...), tc.vars...), &stderr)
			resp, err := http.DefaultClient.Do(tc.request(url))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if tc.status != 0 && resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.acao {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.acao)
			}
			// The failure is logged by the server's goroutine, possibly
			// just after the answer reached us.
			for end := time.Now().Add(5 * time.Second); tc.log != "" && !strings.Contains(stderr.String(), tc.log) && time.Now().Before(end); {
				time.Sleep(10 * time.Millisecond)
			}
			if tc.log != "" && !strings.Contains(stderr.String(), tc.log) {
				t.Errorf("log does not name %s:\n%s", tc.log, stderr.String())
			}
		})
	}
}
