// Package cache is a read-through cache for data that is read on every job
// and rarely written: pricing tables and organisation settings.
//
// Values live in a shared Store (Redis in production, so warm and cold
// function instances share them) as JSON with a TTL per kind. Concurrent
// misses of one key in one process cause one load (single flight); a write
// to the underlying data invalidates the key. Hits and misses are counted
// per kind.
package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Store is where cached values live. Implementations: adapters/rediscache.
//
// Every key has a version that Invalidate bumps. A load reads the version
// before it reads the database and stores its value only if the version
// is unchanged (SetIfVersion), so a load that raced a write, in this or any
// other process, never puts the old value back.
type Store interface {
	// Get returns the value and true, or false when the key is absent.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Version returns the key's current version (0 if never invalidated).
	Version(ctx context.Context, key string) (int64, error)
	// SetIfVersion stores the value for ttl if the key's version is still
	// ver, and reports whether it did.
	SetIfVersion(ctx context.Context, key string, value []byte, ttl time.Duration, ver int64) (bool, error)
	// Invalidate removes the value and bumps the version, atomically.
	Invalidate(ctx context.Context, key string) error
}

// Kinds of cached data and their default TTLs.
const (
	KindPricing  = "pricing"
	KindSettings = "settings"

	DefaultPricingTTL  = 5 * time.Minute
	DefaultSettingsTTL = 10 * time.Minute
)

// Stats are one kind's counters since the cache was built.
type Stats struct {
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	// Loads counts calls of the loader; below Misses when single flight
	// merged concurrent misses.
	Loads int64 `json:"loads"`
	// Errors counts store failures that were bypassed by loading directly.
	Errors int64 `json:"errors"`
}

type counters struct{ hits, misses, loads, errors atomic.Int64 }

// Cache is safe for concurrent use. Build one per cold start.
type Cache struct {
	store  Store
	ttl    map[string]time.Duration
	prefix string
	log    *slog.Logger

	mu       sync.Mutex
	inflight map[string]*call
	stats    map[string]*counters
}

type call struct {
	done chan struct{}
	val  []byte
	err  error
}

// New returns a cache over store. ttl gives the TTL per kind; kinds not in
// it use DefaultPricingTTL/DefaultSettingsTTL or one minute. prefix
// namespaces keys in the store (e.g. "shiftflow:cache:").
func New(store Store, ttl map[string]time.Duration, prefix string, log *slog.Logger) *Cache {
	t := map[string]time.Duration{KindPricing: DefaultPricingTTL, KindSettings: DefaultSettingsTTL}
	for k, v := range ttl {
		if v > 0 {
			t[k] = v
		}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Cache{
		store: store, ttl: t, prefix: prefix, log: log,
		inflight: map[string]*call{}, stats: map[string]*counters{},
	}
}

// TTL returns the TTL of a kind.
func (c *Cache) TTL(kind string) time.Duration {
	if d, ok := c.ttl[kind]; ok {
		return d
	}
	return time.Minute
}

func (c *Cache) key(kind, key string) string { return c.prefix + kind + ":" + key }

func (c *Cache) counters(kind string) *counters {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.stats[kind]
	if !ok {
		s = &counters{}
		c.stats[kind] = s
	}
	return s
}

// Stats returns the counters of every kind used so far.
func (c *Cache) Stats() map[string]Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]Stats, len(c.stats))
	for k, s := range c.stats {
		out[k] = Stats{Hits: s.hits.Load(), Misses: s.misses.Load(), Loads: s.loads.Load(), Errors: s.errors.Load()}
	}
	return out
}

// GetOrLoad returns the cached value of (kind, key) or loads it, stores it
// for the kind's TTL and returns it. Concurrent misses of the same key in
// this process share one load. Loader errors are returned and not cached.
// A store that is down is logged and bypassed: the cache must never be the
// reason an invoice is not written.
func GetOrLoad[T any](ctx context.Context, c *Cache, kind, key string, load func(context.Context) (T, error)) (T, error) {
	var zero T
	raw, err := c.getOrLoad(ctx, kind, key, func(ctx context.Context) ([]byte, error) {
		v, err := load(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	})
	if err != nil {
		return zero, err
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return zero, fmt.Errorf("cache %s %s: decode: %w", kind, key, err)
	}
	return v, nil
}

func (c *Cache) getOrLoad(ctx context.Context, kind, key string, load func(context.Context) ([]byte, error)) ([]byte, error) {
	st := c.counters(kind)
	full := c.key(kind, key)
	raw, ok, err := c.store.Get(ctx, full)
	if err != nil {
		st.errors.Add(1)
		c.log.WarnContext(ctx, "cache: get failed, loading directly", "kind", kind, "key", key, "err", err)
	} else if ok {
		st.hits.Add(1)
		return raw, nil
	}
	st.misses.Add(1)

	c.mu.Lock()
	if cl, ok := c.inflight[full]; ok {
		c.mu.Unlock()
		select {
		case <-cl.done:
			return cl.val, cl.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[full] = cl
	c.mu.Unlock()

	// The leader's load runs without the leader's cancellation so that a
	// caller giving up does not fail everyone waiting on it; the deadline
	// still bounds it.
	lctx := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		lctx, cancel = context.WithDeadline(lctx, dl)
		defer cancel()
	}
	// The version is read before the database: a write that lands
	// during the load bumps it, and the value is then not stored.
	ver, verErr := c.store.Version(lctx, full)
	st.loads.Add(1)
	cl.val, cl.err = load(lctx)
	if cl.err == nil && verErr == nil {
		if _, err := c.store.SetIfVersion(lctx, full, cl.val, c.TTL(kind), ver); err != nil {
			st.errors.Add(1)
			c.log.WarnContext(ctx, "cache: set failed", "kind", kind, "key", key, "err", err)
		}
	} else if verErr != nil {
		st.errors.Add(1)
	}
	c.mu.Lock()
	delete(c.inflight, full)
	c.mu.Unlock()
	close(cl.done)
	return cl.val, cl.err
}

// Invalidate removes (kind, key) from the store. Call it after the data
// was written, so the next read loads the new value. A load in flight
// anywhere does not store its (possibly older) value afterwards.
func (c *Cache) Invalidate(ctx context.Context, kind, key string) error {
	full := c.key(kind, key)
	if err := c.store.Invalidate(ctx, full); err != nil {
		return fmt.Errorf("cache invalidate %s %s: %w", kind, key, err)
	}
	return nil
}
