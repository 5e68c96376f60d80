package redisstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Registry counts the live instances of each drain for the wake
// dispatcher (core/wake's Registry; docs/design.md, "Wake on publish and
// scale-out"). Two sorted sets per drain, member -> lease expiry in ms:
//
//	<p>:drains:{<drain>}           running instances (consumer names)
//	<p>:drains:{<drain>}:starting  instances a wake asked for, not yet running
//
// Expired members are ignored when counting and removed when an instance
// enters, so a killed instance drops out after its lease without anyone
// cleaning up.
type Registry struct {
	c      redis.UniversalClient
	prefix string
	// StartLease is how long a woken instance counts before it registers
	// (cold start and init; default 10 s).
	StartLease time.Duration
}

// NewRegistry returns the registry under prefix (REDIS_KEY_PREFIX).
func NewRegistry(c redis.UniversalClient, prefix string) *Registry {
	return &Registry{c: c, prefix: prefix, StartLease: 10 * time.Second}
}

// registryTTL bounds how long the sets of a drain nobody runs any more
// stay in Redis.
const registryTTL = time.Hour

func (r *Registry) keys(drain string) []string {
	base := r.prefix + ":drains:{" + drain + "}"
	return []string{base, base + ":starting"}
}

// enterScript registers or refreshes an instance; a new one takes the
// place of one starting instance (the oldest).
//
// KEYS[1] running zset, KEYS[2] starting zset
// ARGV[1] member, ARGV[2] lease expiry ms, ARGV[3] now ms, ARGV[4] key TTL ms
var enterScript = redis.NewScript(`
local added = redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if added == 1 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
  local s = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #s > 0 then redis.call('ZREM', KEYS[2], s[1]) end
end
return added
`)

// Enter registers member (a consumer name) as running drain until the
// given time; calling it again refreshes the lease.
func (r *Registry) Enter(ctx context.Context, drain, member string, until time.Time) error {
	now := time.Now()
	err := enterScript.Run(ctx, r.c, r.keys(drain), member, until.UnixMilli(), now.UnixMilli(), registryTTL.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("register instance of %s: %w", drain, err)
	}
	return nil
}

// Leave removes member from the running instances.
func (r *Registry) Leave(ctx context.Context, drain, member string) error {
	if err := r.c.ZRem(ctx, r.keys(drain)[0], member).Err(); err != nil {
		return fmt.Errorf("unregister instance of %s: %w", drain, err)
	}
	return nil
}

// countScript counts live instances: leases not yet expired.
//
// KEYS[1] running zset, KEYS[2] starting zset
// ARGV[1] now ms
var countScript = redis.NewScript(`
local from = '(' .. ARGV[1]
return redis.call('ZCOUNT', KEYS[1], from, '+inf') + redis.call('ZCOUNT', KEYS[2], from, '+inf')
`)

// Running returns the drain's live instances, running or starting.
func (r *Registry) Running(ctx context.Context, drain string) (int, error) {
	n, err := countScript.Run(ctx, r.c, r.keys(drain), time.Now().UnixMilli()).Int()
	if err != nil {
		return 0, fmt.Errorf("count instances of %s: %w", drain, err)
	}
	return n, nil
}

// Starting records n instances a wake asks for, each counted for
// StartLease or until an instance registers in its place; undo removes
// those still there (the wake failed).
func (r *Registry) Starting(ctx context.Context, drain string, n int) (undo func(context.Context), err error) {
	if n <= 0 {
		return func(context.Context) {}, nil
	}
	k := r.keys(drain)[1]
	until := float64(time.Now().Add(r.StartLease).UnixMilli())
	zs, members := make([]redis.Z, n), make([]any, n)
	tag := randomTag()
	for i := range zs {
		members[i] = tag + "-" + strconv.Itoa(i)
		zs[i] = redis.Z{Score: until, Member: members[i]}
	}
	pipe := r.c.TxPipeline()
	pipe.ZAdd(ctx, k, zs...)
	pipe.PExpire(ctx, k, registryTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("record starting instances of %s: %w", drain, err)
	}
	return func(ctx context.Context) { _ = r.c.ZRem(ctx, k, members...).Err() }, nil
}

func randomTag() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
