package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/testenv"
)

// readmeBlock returns the shell block under the README heading.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(moduleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no %q", heading)
	}
	_, block, ok := strings.Cut(after, "```sh\n")
	if !ok {
		t.Fatalf("no sh block under %q", heading)
	}
	block, _, _ = strings.Cut(block, "```\n")
	return block
}

// The README's quick start works when pasted as one block into a shell:
// it waits for the runner, and for the background work it shows.
func TestReadmeQuickStartRunsAsPasted(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	block := readmeBlock(t, "## Quick start with curl")
	if !strings.Contains(block, "go run ./local &") {
		t.Fatalf("the quick start no longer starts the runner with `go run ./local &`:\n%s", block)
	}
	// The same block, with the runner already built (go run would build it
	// again) and on a free port and a fresh data directory.
	script := "set -e\n" + strings.Replace(block, "go run ./local &", runnerBinary(t)+" >runner.log 2>&1 &", 1)
	dir := t.TempDir()
	port := strings.Split(testenv.FreeAddr(t), ":")[1]
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "PORT="+port, "SHIFTFLOW_DATA_DIR="+filepath.Join(dir, "data"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		time.Sleep(500 * time.Millisecond)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			logs, _ := os.ReadFile(filepath.Join(dir, "runner.log"))
			t.Fatalf("the quick start failed: %v\n%s\nrunner:\n%s", err, out.String(), logs)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("the quick start did not finish:\n%s", out.String())
	}
	for _, want := range []string{`"total":39600`, `"workedMinutes":600`, `"regularMinutes":480`, `"overtimeMinutes":120`, ".eml"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the quick start's output lacks %s:\n%s", want, out.String())
		}
	}
}

// cleanEnv is the environment without the variables that would point the
// runner at other servers than its embedded ones.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "REDIS_URL", "REDIS_HOST", "MONGODB_URI", "PORT", "HOST", "SHIFTFLOW_DATA_DIR", "SMTP_URL", "OUTBOX_DIR":
			continue
		}
		env = append(env, kv)
	}
	return env
}
