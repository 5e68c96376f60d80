// Package embedded starts in-process servers for offline development and
// fast tests: a Redis (miniredis) and a MongoDB wire-protocol server
// (FerretDB on SQLite). docs/design.md#10: the very same adapters talk to
// them over the network, so nothing here is a fake of our own code.
//
// This package links FerretDB (about 26 MB): only the local runner, the test
// harness and tests import it, never a function binary.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/alicebob/miniredis/v2"
)

// Mongo is a running embedded MongoDB wire-protocol server.
type Mongo struct {
	URI     string
	cancel  context.CancelFunc
	done    chan struct{}
	indexer chan struct{}
}

// StartMongo starts FerretDB with its SQLite files under dir (created if
// missing), listening on addr ("127.0.0.1:0" for any free port).
func StartMongo(dir, addr string, logger *slog.Logger) (*Mongo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded mongo dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("embedded mongo dir %q: %w", abs, err)
	}
	if logger == nil {
		// FerretDB is chatty at info level; keep only its warnings.
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: addr},
		Handler:  "sqlite",
		// WAL (FerretDB's default) with synchronous=NORMAL: a crash of this
		// process loses nothing committed; only an OS crash or power loss may
		// lose the last transactions, acceptable for an offline development
		// and test server, and it halves write latency.
		SQLiteURL: "file:" + abs + "/?_pragma=synchronous(NORMAL)",
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("start embedded mongo: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mongo{cancel: cancel, done: make(chan struct{}), indexer: make(chan struct{})}
	go func() {
		defer close(m.done)
		_ = f.Run(ctx)
	}()
	go func() {
		defer close(m.indexer)
		indexIDs(ctx, abs, logger)
	}()
	uriCh := make(chan string, 1)
	go func() { uriCh <- f.MongoDBURI() }()
	select {
	case m.URI = <-uriCh:
	case <-time.After(10 * time.Second):
		cancel()
		return nil, errors.New("start embedded mongo: listener not ready after 10s")
	}
	return m, nil
}

// Close stops the server and waits for it to release its files.
func (m *Mongo) Close() {
	m.cancel()
	<-m.indexer
	<-m.done
}

// Redis is a running embedded Redis.
type Redis struct {
	URL    string
	Server *miniredis.Miniredis
}

// StartRedis starts miniredis on addr ("127.0.0.1:0" for any free port).
// Its clock follows real time so TTLs expire as they would on Redis.
func StartRedis(addr string) (*Redis, error) {
	s := miniredis.NewMiniRedis()
	if err := s.StartAddr(addr); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	// miniredis only moves TTLs with FastForward unless told to follow the
	// wall clock, which is what a real Redis does.
	s.ClockTTL(true)
	r := &Redis{URL: "redis://" + s.Addr(), Server: s}
	return r, nil
}

// Close stops the server.
func (r *Redis) Close() {
	r.Server.Close()
}
