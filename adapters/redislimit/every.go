package redislimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Every lets one caller through per interval across every process that
// shares the Redis: SET key NX PX interval. The key is never deleted, so
// it is a rate limit, not a mutex: a run that outlasts the interval may
// overlap the next one (the reconciler, its user, is idempotent). If
// Redis loses the key the next caller simply runs early.
type Every struct {
	rdb      redis.UniversalClient
	key      string
	interval time.Duration
}

// NewEvery returns the limiter on key.
func NewEvery(rdb redis.UniversalClient, key string, interval time.Duration) *Every {
	return &Every{rdb: rdb, key: key, interval: interval}
}

// Allow reports whether the caller may run now, and if so starts the
// interval.
func (e *Every) Allow(ctx context.Context) (bool, error) {
	ok, err := e.rdb.SetNX(ctx, e.key, time.Now().UTC().Format(time.RFC3339Nano), e.interval).Result()
	if err != nil {
		return false, fmt.Errorf("redislimit: %s: %w", e.key, err)
	}
	return ok, nil
}
