// Package mongodb is the MongoDB adapter: the connection and the
// repositories. It uses only features that work on both MongoDB and
// FerretDB (FIELD-NOTES.md lists the gaps).
package mongodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/logging"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

const (
	connectTimeout = 10 * time.Second
	pingTimeout    = 5 * time.Second
)

// Connect opens a client for c, pings it, and returns the client and the
// configured database. Lifecycle (connecting, ready, error, closed) is
// logged with the URI's credentials redacted.
func Connect(ctx context.Context, c config.Mongo, logger *slog.Logger) (*mongo.Client, *mongo.Database, error) {
	if logger == nil {
		logger = slog.Default()
	}
	safe := logging.RedactURL(c.URI)
	logger.Info("mongodb: connecting", "uri", safe, "database", c.Database)
	opts := options.Client().ApplyURI(c.URI).
		SetConnectTimeout(connectTimeout).
		SetServerSelectionTimeout(connectTimeout).
		SetAppName("shiftflow").
		SetServerMonitor(&event.ServerMonitor{
			ServerHeartbeatFailed: func(e *event.ServerHeartbeatFailedEvent) {
				logger.Warn("mongodb: error", "op", "heartbeat", "err", logging.Redact(e.Failure.Error()))
			},
		}).
		SetPoolMonitor(&event.PoolMonitor{Event: func(e *event.PoolEvent) {
			if e.Type == event.ConnectionPoolCleared {
				logger.Warn("mongodb: error", "op", "pool cleared", "addr", e.Address)
			}
		}})
	client, err := mongo.Connect(opts)
	if err != nil {
		err = explain(safe, err)
		logger.Error("mongodb: error", "err", err)
		return nil, nil, err
	}
	start := time.Now()
	if err := Ping(ctx, client); err != nil {
		_ = client.Disconnect(context.Background())
		err = explain(safe, err)
		logger.Error("mongodb: error", "err", err)
		return nil, nil, err
	}
	logger.Info("mongodb: ready", "database", c.Database, "ms", time.Since(start).Milliseconds())
	return client, client.Database(c.Database), nil
}

// Ping checks the server within a short timeout.
func Ping(ctx context.Context, client *mongo.Client) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return client.Ping(ctx, nil)
}

// Disconnect closes the client and logs it.
func Disconnect(ctx context.Context, client *mongo.Client, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	err := client.Disconnect(ctx)
	if err != nil {
		logger.Warn("mongodb: error", "op", "close", "err", logging.Redact(err.Error()))
		return err
	}
	logger.Info("mongodb: closed")
	return nil
}

func explain(safeURI string, err error) error {
	msg := logging.Redact(err.Error())
	switch {
	case strings.Contains(msg, "AuthenticationFailed") || strings.Contains(msg, "auth error"):
		return fmt.Errorf("mongodb at %s: authentication failed: wrong user name or password in MONGODB_URI", safeURI)
	case strings.Contains(msg, "connection refused"):
		return fmt.Errorf("mongodb at %s: server unreachable: connection refused (is the server running and is the port right?)", safeURI)
	case strings.Contains(msg, "server selection timeout") || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("mongodb at %s: no server answered in time: %s", safeURI, msg)
	}
	return fmt.Errorf("mongodb at %s: %s", safeURI, msg)
}

// IsDuplicateKey reports a unique-index violation (code 11000 on both
// MongoDB and FerretDB; match the code, not the text).
func IsDuplicateKey(err error) bool {
	return mongo.IsDuplicateKeyError(err)
}
