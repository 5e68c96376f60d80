// Package localtest starts the local runner as a separate process and
// drives it over HTTP the way a frontend or curl would. The end-to-end test
// and the benchmark (infra/bench) use it.
package localtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Build compiles the runner from the module at root into dir.
func Build(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "shiftflow-local")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./local")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the local runner: %v\n%s", err, out)
	}
	return bin, nil
}

// Runner is one running local runner process.
type Runner struct {
	URL  string
	cmd  *exec.Cmd
	logs *buffer
	done chan struct{}
	err  error
}

type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Start runs bin in dir with env added to a cleaned environment (no
// REDIS_URL / MONGODB_URI unless env sets them) and waits until its API
// answers GET /health.
func Start(bin, dir string, env []string) (*Runner, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	var base []string
	for _, kv := range os.Environ() {
		switch k, _, _ := bytesCut(kv); k {
		case "REDIS_URL", "REDIS_HOST", "MONGODB_URI", "MONGODB_DATABASE", "JWT_SECRET", "PORT", "HOST":
		default:
			base = append(base, kv)
		}
	}
	cmd.Env = append(append(base, "PORT="+port, "HOST=127.0.0.1"), env...)
	logs := &buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	r := &Runner{URL: "http://127.0.0.1:" + port, cmd: cmd, logs: logs, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { r.err = cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(r.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("local runner exited (%v):\n%s", r.err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			r.Kill()
			return nil, fmt.Errorf("local runner not healthy after 60s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func bytesCut(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

// Logs returns what the runner printed.
func (r *Runner) Logs() string { return r.logs.String() }

// Stop sends Ctrl-C (SIGINT) and waits for a clean exit.
func (r *Runner) Stop(timeout time.Duration) error {
	_ = r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		r.Kill()
		return errors.New("local runner did not stop after Ctrl-C within " + timeout.String())
	}
}

// Kill ends the runner with SIGKILL (a crash) and waits for it.
func (r *Runner) Kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// Client talks to the API as one user.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// Do sends a JSON request and decodes the JSON answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %d, body %q: %w", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, nil
}

// Login logs in and keeps the token.
func (c *Client) Login(ctx context.Context, email, password string) error {
	var tok struct {
		Token string `json:"token"`
	}
	status, err := c.Do(ctx, "POST", "/login", map[string]string{"email": email, "password": password}, &tok)
	if err != nil {
		return err
	}
	if status != http.StatusOK || tok.Token == "" {
		return fmt.Errorf("login: status %d", status)
	}
	c.Token = tok.Token
	return nil
}

// Shift is the part of a shift the tests read.
type Shift struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// Invoice is the part of an invoice the tests read.
type Invoice struct {
	ID       string `json:"id"`
	Number   string `json:"number"`
	ShiftID  string `json:"shiftId"`
	Subtotal int64  `json:"subtotal"`
	Tax      int64  `json:"tax"`
	Total    int64  `json:"total"`
}

// FirstClient returns the id of the organisation's first client.
func (c *Client) FirstClient(ctx context.Context) (string, error) {
	var cs []struct {
		ID string `json:"id"`
	}
	status, err := c.Do(ctx, "GET", "/clients", nil, &cs)
	if err != nil {
		return "", err
	}
	if status != 200 || len(cs) == 0 {
		return "", fmt.Errorf("list clients: status %d, %d clients", status, len(cs))
	}
	return cs[0].ID, nil
}

// Schedule schedules a nurse shift of the client starting at start.
func (c *Client) Schedule(ctx context.Context, clientID string, start time.Time, hours, breakMinutes int) (Shift, error) {
	var s Shift
	status, err := c.Do(ctx, "POST", "/shifts", map[string]any{
		"clientId": clientID, "workerId": "worker-1", "role": "nurse",
		"start": start.UTC().Format(time.RFC3339), "end": start.Add(time.Duration(hours) * time.Hour).UTC().Format(time.RFC3339),
		"breakMinutes": breakMinutes,
	}, &s)
	if err == nil && status != http.StatusCreated {
		err = fmt.Errorf("schedule: status %d", status)
	}
	return s, err
}

// Complete completes a shift as scheduled.
func (c *Client) Complete(ctx context.Context, id string) (Shift, error) {
	var s Shift
	status, err := c.Do(ctx, "POST", "/shifts/"+id+"/complete", map[string]any{}, &s)
	if err == nil && (status != http.StatusOK || s.Status != "completed") {
		err = fmt.Errorf("complete: status %d, shift %s", status, s.Status)
	}
	return s, err
}

// WaitInvoice polls GET /shifts/{id}/invoice every poll until it answers
// 200 or ctx ends.
func (c *Client) WaitInvoice(ctx context.Context, id string, poll time.Duration) (Invoice, error) {
	for {
		var inv Invoice
		status, err := c.Do(ctx, "GET", "/shifts/"+id+"/invoice", nil, &inv)
		if err != nil && ctx.Err() != nil {
			return inv, ctx.Err()
		}
		if status == http.StatusOK {
			return inv, err
		}
		if status != http.StatusNotFound && err == nil {
			return inv, fmt.Errorf("invoice: status %d", status)
		}
		select {
		case <-ctx.Done():
			return inv, fmt.Errorf("invoice of %s not readable: %w", id, ctx.Err())
		case <-time.After(poll):
		}
	}
}
