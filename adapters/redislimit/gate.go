package redislimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Gate coalesces wakes (core/wake's Gate): one caller per drain per
// interval across every process, SET <prefix>:wake:<drain> NX PX interval.
// Like Every it is a rate limit, never deleted; a lost key only lets one
// extra wake through.
type Gate struct {
	rdb      redis.UniversalClient
	prefix   string
	interval time.Duration
}

// NewGate returns the wake gate under prefix (the deployment's
// REDIS_KEY_PREFIX).
func NewGate(rdb redis.UniversalClient, prefix string, interval time.Duration) *Gate {
	return &Gate{rdb: rdb, prefix: prefix, interval: interval}
}

// Key is the gate's key of drain.
func (g *Gate) Key(drain string) string { return g.prefix + ":wake:" + drain }

// Allow reports whether a wake of drain may go out now, and if so starts
// the interval.
func (g *Gate) Allow(ctx context.Context, drain string) (bool, error) {
	ok, err := g.rdb.SetNX(ctx, g.Key(drain), 1, g.interval).Result()
	if err != nil {
		return false, fmt.Errorf("redislimit: wake gate %s: %w", drain, err)
	}
	return ok, nil
}
