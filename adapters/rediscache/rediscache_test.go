package rediscache_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/rediscache"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/cache"
	"github.com/shiftflow/shiftflow/core/org"
	"github.com/shiftflow/shiftflow/core/pricing"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newCache(c redis.UniversalClient, ttl time.Duration) *cache.Cache {
	return cache.New(rediscache.New(c), map[string]time.Duration{cache.KindPricing: ttl, cache.KindSettings: ttl},
		testenv.Unique("test:cache")+":", nil)
}

func TestFiftyConcurrentMissesCauseOneLoad(t *testing.T) {
	for _, target := range testenv.RedisTargets(t) {
		t.Run(target.Name, func(t *testing.T) {
			ctx := ctxT(t)
			c := newCache(target.Client, time.Minute)
			var loads atomic.Int64
			release := make(chan struct{})
			load := func(ctx context.Context) (org.Settings, error) {
				loads.Add(1)
				<-release // hold the load until every caller has missed
				return org.Settings{TimeZone: "Europe/Berlin", Currency: "EUR", InvoiceTermsDays: 14, InvoicePrefix: "B-"}, nil
			}
			var wg sync.WaitGroup
			results := make(chan org.Settings, 50)
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, err := cache.GetOrLoad(ctx, c, cache.KindSettings, "org1", load)
					if err != nil {
						t.Error(err)
					}
					results <- v
				}()
			}
			deadline := time.Now().Add(10 * time.Second)
			for c.Stats()[cache.KindSettings].Misses < 50 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			close(release)
			wg.Wait()
			close(results)
			for v := range results {
				if v.TimeZone != "Europe/Berlin" || v.InvoiceTermsDays != 14 {
					t.Fatalf("a caller got %+v", v)
				}
			}
			if n := loads.Load(); n != 1 {
				t.Fatalf("%d loads for 50 concurrent misses, want 1", n)
			}
			st := c.Stats()[cache.KindSettings]
			if st.Misses != 50 || st.Loads != 1 || st.Hits != 0 {
				t.Fatalf("stats %+v, want 50 misses, 1 load, 0 hits", st)
			}
			if _, err := cache.GetOrLoad(ctx, c, cache.KindSettings, "org1", load); err != nil {
				t.Fatal(err)
			}
			if st := c.Stats()[cache.KindSettings]; st.Hits != 1 || loads.Load() != 1 {
				t.Fatalf("after the load, a get must hit: %+v, loads %d", st, loads.Load())
			}
		})
	}
}

func TestWritingPricingOrSettingsInvalidatesTheCache(t *testing.T) {
	ctx := ctxT(t)
	rc, _ := testenv.MiniRedis(t)
	db := testenv.MongoDB(t)
	c := newCache(rc, time.Hour)
	prices := pricing.NewService(mongodb.NewPricingRepo(db), c, nil, nil)
	settings := org.NewService(mongodb.NewSettingsRepo(db), c, nil)

	tb := pricing.Table{Currency: "EUR", TaxRateBasisPoints: 2000, Roles: map[string]pricing.Role{"nurse": {HourlyRate: 3000}}}
	if _, err := prices.PutTable(ctx, "org1", tb); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		got, err := prices.Table(ctx, "org1")
		if err != nil || got.Roles["nurse"].HourlyRate != 3000 {
			t.Fatalf("table = %+v, %v", got, err)
		}
	}
	if st := c.Stats()[cache.KindPricing]; st.Loads != 1 || st.Hits != 2 {
		t.Fatalf("pricing stats %+v, want 1 load and 2 hits", st)
	}
	tb.Roles["nurse"] = pricing.Role{HourlyRate: 3500}
	if _, err := prices.PutTable(ctx, "org1", tb); err != nil {
		t.Fatal(err)
	}
	if got, _ := prices.Table(ctx, "org1"); got.Roles["nurse"].HourlyRate != 3500 {
		t.Fatalf("after the write the cache still answers %d", got.Roles["nurse"].HourlyRate)
	}

	// Settings: defaults are cached too, and a PUT replaces them.
	if s, _ := settings.Get(ctx, "org1"); s.TimeZone != "UTC" {
		t.Fatalf("defaults = %+v", s)
	}
	want := org.Settings{TimeZone: "Europe/Berlin", Currency: "EUR", InvoiceTermsDays: 14, InvoicePrefix: "B-"}
	if _, err := settings.Put(ctx, "org1", want); err != nil {
		t.Fatal(err)
	}
	if s, _ := settings.Get(ctx, "org1"); s.TimeZone != "Europe/Berlin" || s.InvoicePrefix != "B-" {
		t.Fatalf("after the write the cache still answers %+v", s)
	}

	// A client override is cached separately (including "no override").
	if eff, _ := prices.Effective(ctx, "org1", "c1"); eff.Roles["nurse"].HourlyRate != 3500 {
		t.Fatalf("effective without override = %+v", eff)
	}
	if _, err := prices.PutOverride(ctx, "org1", "c1", pricing.Override{Roles: map[string]pricing.Role{"nurse": {HourlyRate: 9000}}}); err != nil {
		t.Fatal(err)
	}
	if eff, _ := prices.Effective(ctx, "org1", "c1"); eff.Roles["nurse"].HourlyRate != 9000 {
		t.Fatalf("override not visible after write: %+v", eff)
	}
}

func TestEntriesExpireAfterTheKindsTTL(t *testing.T) {
	for _, target := range testenv.RedisTargets(t) {
		t.Run(target.Name, func(t *testing.T) {
			ctx := ctxT(t)
			c := newCache(target.Client, 300*time.Millisecond)
			var loads atomic.Int64
			load := func(context.Context) (int, error) { return int(loads.Add(1)), nil }
			v1, _ := cache.GetOrLoad(ctx, c, cache.KindPricing, "k", load)
			v2, _ := cache.GetOrLoad(ctx, c, cache.KindPricing, "k", load)
			if v1 != 1 || v2 != 1 {
				t.Fatalf("within TTL: %d, %d", v1, v2)
			}
			time.Sleep(600 * time.Millisecond)
			if v3, _ := cache.GetOrLoad(ctx, c, cache.KindPricing, "k", load); v3 != 2 {
				t.Fatalf("after TTL got %d, want a fresh load", v3)
			}
		})
	}
}

func TestALoadRacingAWriteDoesNotStoreTheOldValue(t *testing.T) {
	for _, target := range testenv.RedisTargets(t) {
		t.Run(target.Name, func(t *testing.T) {
			ctx := ctxT(t)
			// Two caches on one Redis and prefix: two function instances.
			prefix := testenv.Unique("test:cache") + ":"
			loader := cache.New(rediscache.New(target.Client), nil, prefix, nil)
			writer := cache.New(rediscache.New(target.Client), nil, prefix, nil)
			started, release, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
			go func() {
				defer close(finished)
				_, _ = cache.GetOrLoad(ctx, loader, cache.KindPricing, "org1", func(context.Context) (string, error) {
					close(started)
					<-release // the database answered "old" just before the write
					return "old", nil
				})
			}()
			<-started
			if err := writer.Invalidate(ctx, cache.KindPricing, "org1"); err != nil { // the write happens here
				t.Fatal(err)
			}
			close(release)
			<-finished
			for _, c := range []*cache.Cache{loader, writer} {
				got, _ := cache.GetOrLoad(ctx, c, cache.KindPricing, "org1", func(context.Context) (string, error) { return "new", nil })
				if got != "new" {
					t.Fatalf("got %q: the load that raced the write stored its old value", got)
				}
			}
		})
	}
}

func TestLoaderErrorsAreNotCachedAndAStoreOutageIsBypassed(t *testing.T) {
	ctx := ctxT(t)
	rc, _ := testenv.MiniRedis(t)
	c := newCache(rc, time.Hour)
	boom := errors.New("db down")
	if _, err := cache.GetOrLoad(ctx, c, cache.KindPricing, "k", func(context.Context) (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if v, _ := cache.GetOrLoad(ctx, c, cache.KindPricing, "k", func(context.Context) (int, error) { return 7, nil }); v != 7 {
		t.Fatalf("error was cached: %d", v)
	}

	dead := redis.NewClient(&redis.Options{Addr: testenv.FreeAddr(t), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	dc := newCache(dead, time.Hour)
	v, err := cache.GetOrLoad(ctx, dc, cache.KindSettings, "k", func(context.Context) (int, error) { return 42, nil })
	if err != nil || v != 42 {
		t.Fatalf("with Redis down: %d, %v; want the loaded value", v, err)
	}
	if st := dc.Stats()[cache.KindSettings]; st.Errors == 0 {
		t.Fatalf("store errors not counted: %+v", st)
	}
}

func TestTTLsFromEnv(t *testing.T) {
	env := map[string]string{rediscache.VarPricingTTL: "90s", rediscache.VarSettingsTTL: "120"}
	got, err := rediscache.TTLsFromEnv(func(k string) string { return env[k] })
	if err != nil || got[cache.KindPricing] != 90*time.Second || got[cache.KindSettings] != 2*time.Minute {
		t.Fatalf("%v, %v", got, err)
	}
	for _, bad := range []string{"soon", "-5s", "0"} {
		env[rediscache.VarPricingTTL] = bad
		if _, err := rediscache.TTLsFromEnv(func(k string) string { return env[k] }); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
