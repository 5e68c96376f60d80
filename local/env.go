package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/shiftflow/shiftflow/adapters/embedded"
)

// servers are the Redis and MongoDB the runner uses, and how to stop them.
type servers struct {
	env     map[string]string // overrides of the process environment
	closers []func()
	file    string // servers.json while this process owns the servers
}

// getenv reads the overrides first, then the process environment.
func (s *servers) getenv(k string) string {
	if v, ok := s.env[k]; ok {
		return v
	}
	return os.Getenv(k)
}

// Close stops what this process started, last started first.
func (s *servers) Close() {
	if s.file != "" {
		_ = os.Remove(s.file)
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// dataDir is where embedded servers keep their data between runs.
func dataDir() string {
	if d := os.Getenv("SHIFTFLOW_DATA_DIR"); d != "" {
		return d
	}
	return ".shiftflow"
}

// sharedServers is what a running runner publishes in servers.json so
// that `invoke` talks to the same data instead of starting a second
// embedded server on the same files.
type sharedServers struct {
	PID      int    `json:"pid"`
	RedisURL string `json:"redisUrl"`
	MongoURI string `json:"mongoUri"`
}

// localLoginRate is the local runner's per-account login budget unless
// LOGIN_RATE_ACCOUNT is set.
const localLoginRate = "1000/15m"

// startServers starts an embedded Redis and an embedded MongoDB
// wire-protocol server for whichever of REDIS_URL / MONGODB_URI is unset
// (docs/design.md#10), and a JWT secret kept in the data directory
// when JWT_SECRET is unset, so that tokens survive restarts. If another
// runner already serves this data directory, its servers are used. When
// publish is true, the addresses of servers this process started are
// written to servers.json for invoke, workers and other runners.
func startServers(logger *slog.Logger, publish bool) (*servers, error) {
	s := &servers{env: map[string]string{}}
	dir := dataDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if os.Getenv("JWT_SECRET") == "" && os.Getenv("JWT_ED25519_PRIVATE_KEY") == "" {
		secret, err := localSecret(filepath.Join(dir, "jwt-secret"))
		if err != nil {
			return nil, err
		}
		s.env["JWT_SECRET"] = secret
	}
	// Local development logs the demo admin in over and over (the quick
	// start, tests, scripts); the production budget (10 per 15 minutes,
	// kept across restarts in Redis) would lock the developer out.
	if os.Getenv("LOGIN_RATE_ACCOUNT") == "" {
		s.env["LOGIN_RATE_ACCOUNT"] = localLoginRate
	}
	if os.Getenv("OUTBOX_DIR") == "" && os.Getenv("SMTP_URL") == "" {
		s.env["OUTBOX_DIR"] = filepath.Join(dir, "outbox")
	}
	needRedis := os.Getenv("REDIS_URL") == "" && os.Getenv("REDIS_HOST") == ""
	needMongo := os.Getenv("MONGODB_URI") == ""
	if !needRedis && !needMongo {
		return s, nil
	}
	// A runner that is already running owns the embedded servers on this
	// data directory: use them (a second FerretDB on the same SQLite files,
	// or a second, empty in-memory Redis, would split the data).
	if sh, ok := runningServers(filepath.Join(dir, "servers.json")); ok {
		if needRedis {
			s.env["REDIS_URL"] = sh.RedisURL
		}
		if needMongo {
			s.env["MONGODB_URI"] = sh.MongoURI
		}
		logger.Info("using the servers of the running local runner", "pid", sh.PID)
		return s, nil
	}
	if needRedis {
		url, stop, how, err := startRedis(filepath.Join(dir, "redis"), logger)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.closers = append(s.closers, stop)
		s.env["REDIS_URL"] = url
		logger.Info("embedded redis started", "url", url, "kind", how)
	}
	if needMongo {
		// FerretDB logs unsupported commands the driver sends while
		// disconnecting (endSessions) as warnings; only its errors matter.
		quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		m, err := embedded.StartMongo(filepath.Join(dir, "mongo"), "127.0.0.1:0", quiet)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.closers = append(s.closers, m.Close)
		s.env["MONGODB_URI"] = m.URI
		logger.Info("embedded mongodb started (FerretDB on SQLite)", "uri", m.URI, "dir", filepath.Join(dir, "mongo"))
	}
	if publish {
		f := filepath.Join(dir, "servers.json")
		b, _ := json.Marshal(sharedServers{PID: os.Getpid(), RedisURL: s.getenv("REDIS_URL"), MongoURI: s.getenv("MONGODB_URI")})
		if err := os.WriteFile(f, b, 0o600); err == nil {
			s.file = f
		}
	}
	return s, nil
}

// runningServers reads servers.json when the process that wrote it is
// still answering on its addresses.
func runningServers(path string) (sharedServers, bool) {
	var sh sharedServers
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &sh) != nil {
		return sh, false
	}
	for _, u := range []string{sh.RedisURL, sh.MongoURI} {
		host := u[strings.Index(u, "://")+3:]
		if i := strings.IndexAny(host, "/?"); i >= 0 {
			host = host[:i]
		}
		c, err := net.DialTimeout("tcp", host, 300*time.Millisecond)
		if err != nil {
			return sh, false
		}
		c.Close()
	}
	return sh, true
}

// startRedis starts a Redis for the runner. With redis-server on PATH (or
// LOCAL_REDIS_SERVER naming it) it runs one with its append-only file in
// dir, so queued jobs and streams survive restarts and crashes; otherwise
// the in-process miniredis, whose contents live in memory: the runner then
// finishes all queued work before it exits (see shutdown in main.go).
func startRedis(dir string, logger *slog.Logger) (url string, stop func(), kind string, err error) {
	bin := os.Getenv("LOCAL_REDIS_SERVER")
	if bin == "" && os.Getenv("LOCAL_REDIS") != "memory" {
		bin, _ = exec.LookPath("redis-server")
	}
	if bin != "" {
		url, stop, err := startRedisServer(bin, dir)
		if err == nil {
			return url, stop, "redis-server, append-only file in " + dir, nil
		}
		logger.Warn("redis-server did not start; using the in-memory embedded redis", "err", err)
	}
	r, err := embedded.StartRedis("127.0.0.1:0")
	if err != nil {
		return "", nil, "", err
	}
	return r.URL, r.Close, "in-memory (miniredis)", nil
}

func startRedisServer(bin, dir string) (string, func(), error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--dir", abs,
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
		"--logfile", filepath.Join(abs, "redis.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		// SIGTERM lets Redis fsync its append-only file before exiting.
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 100*time.Millisecond)
		if err == nil {
			// A connection is accepted before the AOF is loaded; PING
			// answers LOADING until then, which go-redis retries.
			c.Close()
			return "redis://127.0.0.1:" + port, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			log, _ := os.ReadFile(filepath.Join(abs, "redis.log"))
			return "", nil, errors.New("redis-server not listening after 10s: " + strings.TrimSpace(string(log)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// localSecret returns the JWT secret kept in path, creating it on first
// use: 48 random bytes, base64, readable by the user only.
func localSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	raw := make([]byte, 48)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	secret := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return secret, nil
}
