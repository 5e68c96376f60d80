// Package rediscache is the Redis-backed store of core/cache: values are
// plain strings with a TTL (SET PX), so every function instance shares one
// cache and a write anywhere invalidates it everywhere.
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

// Store implements cache.Store on Redis (single node or cluster: every
// command touches one key).
type Store struct{ c redis.UniversalClient }

var _ cache.Store = (*Store)(nil)

// New returns the store on c.
func New(c redis.UniversalClient) *Store { return &Store{c: c} }

// Get returns the value, or false when absent or expired.
func (s *Store) Get(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := s.c.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("cache get %s: %w", key, err)
	}
	return b, true, nil
}

// Set stores the value with the TTL.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.c.Set(ctx, key, value, ttl).Err(); err != nil {
		return fmt.Errorf("cache set %s: %w", key, err)
	}
	return nil
}

// Delete removes keys one by one (keys of a cluster may live on different
// nodes, and a multi-key DEL across slots fails with CROSSSLOT).
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := s.c.Del(ctx, k).Err(); err != nil {
			return fmt.Errorf("cache delete %s: %w", k, err)
		}
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
