// Package rediscache is the Redis-backed store of core/cache: values are
// plain strings with a TTL, next to a version counter that invalidation
// bumps, so every function instance shares one cache and a write anywhere
// invalidates it everywhere, including loads already in flight.
package rediscache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/core/cache"
)

// DefaultPrefix namespaces cache keys.
const DefaultPrefix = "shiftflow:cache:"

// versionTTL keeps a version counter far longer than any value it guards.
// If it expires anyway, a load that read the old version finds 0 and does
// not store: the safe direction.
const versionTTL = 24 * time.Hour

// Store implements cache.Store on Redis. The value of key k lives at
// "{k}" and its version at "{k}:v": the hash tag puts both in one slot,
// so the scripts below also run on Redis Cluster.
type Store struct{ c redis.UniversalClient }

var _ cache.Store = (*Store)(nil)

// New returns the store on c.
func New(c redis.UniversalClient) *Store { return &Store{c: c} }

func valueKey(k string) string   { return "{" + k + "}" }
func versionKey(k string) string { return "{" + k + "}:v" }

// Get returns the value, or false when absent or expired.
func (s *Store) Get(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := s.c.Get(ctx, valueKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("cache get %s: %w", key, err)
	}
	return b, true, nil
}

// Version returns the key's version, 0 when it was never invalidated.
func (s *Store) Version(ctx context.Context, key string) (int64, error) {
	v, err := s.c.Get(ctx, versionKey(key)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cache version %s: %w", key, err)
	}
	return v, nil
}

// setIfVersion stores a value if the version is unchanged.
// KEYS[1] value, KEYS[2] version; ARGV[1] expected version, ARGV[2] value,
// ARGV[3] ttl in ms. Returns 1 if stored, 0 if the version moved.
var setIfVersion = redis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)

// SetIfVersion stores the value for ttl if the key's version is still ver.
func (s *Store) SetIfVersion(ctx context.Context, key string, value []byte, ttl time.Duration, ver int64) (bool, error) {
	n, err := setIfVersion.Run(ctx, s.c, []string{valueKey(key), versionKey(key)},
		ver, value, max(ttl.Milliseconds(), 1)).Int()
	if err != nil {
		return false, fmt.Errorf("cache set %s: %w", key, err)
	}
	return n == 1, nil
}

// invalidate bumps the version and removes the value.
// KEYS[1] value, KEYS[2] version; ARGV[1] version ttl in ms.
var invalidate = redis.NewScript(`
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1`)

// Invalidate removes the value and bumps the version atomically.
func (s *Store) Invalidate(ctx context.Context, key string) error {
	if err := invalidate.Run(ctx, s.c, []string{valueKey(key), versionKey(key)}, versionTTL.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("cache invalidate %s: %w", key, err)
	}
	return nil
}

// Variables read by TTLsFromEnv.
const (
	VarPricingTTL  = "CACHE_PRICING_TTL"
	VarSettingsTTL = "CACHE_SETTINGS_TTL"
)

// TTLsFromEnv reads the TTL per kind: CACHE_PRICING_TTL (default 5m) and
// CACHE_SETTINGS_TTL (default 10m), Go durations ("90s", "5m") or whole
// seconds. An unparsable or non-positive value is an error naming the
// variable.
func TTLsFromEnv(getenv func(string) string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{cache.KindPricing: cache.DefaultPricingTTL, cache.KindSettings: cache.DefaultSettingsTTL}
	for kind, name := range map[string]string{cache.KindPricing: VarPricingTTL, cache.KindSettings: VarSettingsTTL} {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			secs, serr := strconv.Atoi(v)
			if serr != nil {
				return nil, fmt.Errorf("%s=%q: want a duration such as 5m or 300", name, v)
			}
			d = time.Duration(secs) * time.Second
		}
		if d <= 0 {
			return nil, fmt.Errorf("%s=%q: must be positive", name, v)
		}
		out[kind] = d
	}
	return out, nil
}
