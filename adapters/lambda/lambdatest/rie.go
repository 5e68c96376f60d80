// Package lambdatest builds real Lambda bootstraps and runs them under the
// AWS Lambda Runtime Interface Emulator, for tests and the benchmark. It
// is not imported by any function binary.
package lambdatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RIEModule is the emulator's command, pinned by go.mod's tool directive.
const RIEModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"

// ModuleRoot finds the directory holding go.mod, from the working directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// BuildBootstraps builds every function under functions/ the way the
// template does (linux, -tags lambda.norpc, stripped, trimmed paths) into
// out/<name>/bootstrap, for the machine's architecture so the emulator can
// run it here (the template builds arm64). It returns name -> path.
func BuildBootstraps(ctx context.Context, root, out string, names []string) (map[string]string, error) {
	tmp := filepath.Join(out, ".build")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	pkgs := make([]string, len(names))
	for i, n := range names {
		pkgs[i] = "./functions/" + n
	}
	args := append([]string{"build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w", "-o", tmp + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+runtime.GOARCH, "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	paths := map[string]string{}
	for _, n := range names {
		dir := filepath.Join(out, n)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		p := filepath.Join(dir, "bootstrap")
		if err := os.Rename(filepath.Join(tmp, n), p); err != nil {
			return nil, err
		}
		paths[n] = p
	}
	return paths, nil
}

// BuildRIE builds the emulator into dir and returns its path.
func BuildRIE(ctx context.Context, root, dir string) (string, error) {
	p := filepath.Join(dir, "aws-lambda-rie")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", p, RIEModule)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the emulator: %v\n%s", err, b)
	}
	return p, nil
}

// RIE is one running emulator with one function.
type RIE struct {
	URL     string // invocation endpoint
	Started time.Time
	cmd     *exec.Cmd
	logs    *syncBuffer
	done    chan struct{}
}

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

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// StartRIE starts the emulator for bootstrap with both of its addresses on
// loopback (its defaults bind 0.0.0.0:8080 and 127.0.0.1:9001) and env
// added to this process's environment; timeout is the function timeout.
func StartRIE(rie, bootstrap string, env []string, timeout time.Duration) (*RIE, error) {
	emu, err := freePort()
	if err != nil {
		return nil, err
	}
	api, err := freePort()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(bootstrap)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", emu, "--runtime-api-address", api, "--log-level", "error", abs)
	cmd.Env = append(append(os.Environ(),
		"AWS_LAMBDA_FUNCTION_NAME="+filepath.Base(filepath.Dir(abs)),
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_TIMEOUT=%d", int(timeout.Seconds())),
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256"), env...)
	// Its own process group, so Stop ends the bootstrap it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	r := &RIE{URL: "http://" + emu + "/2015-03-31/functions/function/invocations", cmd: cmd, logs: logs, done: make(chan struct{})}
	r.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", emu, 50*time.Millisecond)
		if err == nil {
			c.Close()
			return r, nil
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("emulator exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("emulator not listening on %s: %s", emu, logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Invoke posts one event and returns the function's answer (the emulator
// answers 200 even when the handler fails: the body then has errorMessage).
func (r *RIE) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("emulator answered %d: %s", resp.StatusCode, b)
	}
	return b, nil
}

// Logs returns what the emulator and the function printed.
func (r *RIE) Logs() string { return r.logs.String() }

// Stop ends the emulator and the function it started, by process group.
func (r *RIE) Stop() {
	if r.cmd.Process != nil {
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-r.done
}
