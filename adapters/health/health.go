// Package health is the readiness check every entry point can use: a
// Redis PING and a MongoDB ping, each with its own timeout.
package health

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Timeout bounds each dependency's check.
const Timeout = 2 * time.Second

// Dependency is the result for one dependency.
type Dependency struct {
	OK        bool   `json:"ok"`
	LatencyMS int64  `json:"latencyMs"`
	Error     string `json:"error,omitempty"`
}

// Report is the result of Check.
type Report struct {
	OK    bool       `json:"ok"`
	Redis Dependency `json:"redis"`
	Mongo Dependency `json:"mongodb"`
}

// Check pings Redis and MongoDB concurrently, each within Timeout (or
// ctx's deadline if sooner).
func Check(ctx context.Context, r redis.UniversalClient, m *mongo.Client) Report {
	var rep Report
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		rep.Redis = probe(ctx, func(ctx context.Context) error { return r.Ping(ctx).Err() })
	}()
	go func() {
		defer wg.Done()
		rep.Mongo = probe(ctx, func(ctx context.Context) error { return m.Ping(ctx, nil) })
	}()
	wg.Wait()
	rep.OK = rep.Redis.OK && rep.Mongo.OK
	return rep
}

func probe(ctx context.Context, f func(context.Context) error) Dependency {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	d := Dependency{OK: err == nil, LatencyMS: time.Since(start).Milliseconds()}
	if err != nil {
		// Driver messages carry no credentials; keep them short anyway.
		d.Error = err.Error()
	}
	return d
}
