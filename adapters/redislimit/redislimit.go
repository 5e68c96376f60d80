// Package redislimit is the Redis implementation of auth.Limiter: a sliding
// window log kept in one sorted set per budget and spent by one Lua script,
// so a check is one atomic round trip shared by every instance. With AOF
// persistence (appendonly yes, appendfsync everysec) spent budgets survive a
// Redis restart, losing at most the last second of attempts.
//
// Why a sliding window log and not GCRA: a login budget is a security
// promise ("at most 10 guesses per account in any 15 minutes"). The log keeps
// it exactly, with no boundary burst of fixed windows and no refill drift of
// GCRA, and its memory is bounded by the limit (at most Limit members of ~40
// bytes per key), which is small for login budgets.
package redislimit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shiftflow/shiftflow/core/auth"
)

// VarKeyPrefix names the variable that sets Config.KeyPrefix.
const VarKeyPrefix = "RATE_LIMIT_KEY_PREFIX"

// DefaultKeyPrefix starts every limiter key.
const DefaultKeyPrefix = "shiftflow:ratelimit:"

// Config configures the limiter.
type Config struct {
	// KeyPrefix starts every key, so several deployments can share a Redis.
	KeyPrefix string
}

// FromEnv reads RATE_LIMIT_KEY_PREFIX (default "shiftflow:ratelimit:").
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{KeyPrefix: DefaultKeyPrefix}
	if v := strings.TrimSpace(getenv(VarKeyPrefix)); v != "" {
		if strings.ContainsAny(v, "{}") {
			return Config{}, fmt.Errorf("%s: %q must not contain { or }: the limiter adds its own hash tag", VarKeyPrefix, v)
		}
		c.KeyPrefix = v
	}
	return c, nil
}

// Limiter spends login budgets in Redis.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ auth.Limiter = (*Limiter)(nil)

// New returns a Limiter on rdb (a single node, or a cluster).
func New(rdb redis.UniversalClient, c Config) *Limiter {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	return &Limiter{rdb: rdb, prefix: c.KeyPrefix}
}

// Key returns the Redis key of a budget. The caller's key (for example
// "login:account:ann@example.com") is hashed: no email or address is stored
// in Redis in clear, and whatever characters it holds cannot break the
// {hash tag}, which keeps each budget's key in one slot on Redis Cluster.
func (l *Limiter) Key(key string) string {
	sum := sha256.Sum256([]byte(key))
	return l.prefix + "{" + hex.EncodeToString(sum[:16]) + "}"
}

// allowScript spends one attempt of a sliding-window budget.
//
//	KEYS[1]  sorted set of attempts: member = random id, score = time in µs
//	ARGV[1]  limit (attempts per window)
//	ARGV[2]  window in microseconds
//	ARGV[3]  member id of this attempt (random, unique)
//
// Returns {allowed (1|0), remaining, reset µs, retry-after µs}. The clock is
// the Redis server's (TIME), so instances with skewed clocks still share one
// exact window. A denied attempt is not recorded.
var allowScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  count = count + 1
  allowed = 1
end
if count > 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
end
local reset = 0
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
local retry = 0
if allowed == 0 then
  -- The attempt that must leave the window before one more fits: with a
  -- limit lowered since the attempts were made, it is not the oldest.
  local nth = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  if nth[2] then retry = tonumber(nth[2]) + window - now end
end
local remaining = limit - count
if remaining < 0 then remaining = 0 end
return {allowed, remaining, reset, retry}
`)

// Allow spends one attempt of the budget key under r, atomically, in one
// round trip (EVALSHA; EVAL once after a Redis restart empties the script
// cache). A command that failed with a network error may have been applied,
// and go-redis retries it: that counts an attempt twice, which errs on the
// safe side for a login limit.
func (l *Limiter) Allow(ctx context.Context, key string, r auth.Rate) (auth.Decision, error) {
	if r.Limit < 1 || r.Window < time.Millisecond {
		return auth.Decision{}, fmt.Errorf("rate limit %q: limit and window must be positive", r)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	res, err := allowScript.Run(ctx, l.rdb, []string{l.Key(key)},
		r.Limit, r.Window.Microseconds(), hex.EncodeToString(id[:])).Int64Slice()
	if err != nil {
		return auth.Decision{}, fmt.Errorf("rate limit check: %w", err)
	}
	if len(res) != 4 {
		return auth.Decision{}, errors.New("rate limit check: unexpected script reply")
	}
	return auth.Decision{
		Allowed:    res[0] == 1,
		Limit:      r.Limit,
		Remaining:  int(res[1]),
		Reset:      time.Duration(res[2]) * time.Microsecond,
		RetryAfter: time.Duration(res[3]) * time.Microsecond,
		Window:     r.Window,
	}, nil
}
