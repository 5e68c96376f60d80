package redislimit_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/redislimit"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/auth"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestLimiterContract runs on the embedded Redis and every configured real
// one (plain, TLS, cluster).
func TestLimiterContract(t *testing.T) {
	for _, target := range testenv.RedisTargets(t) {
		t.Run(target.Name, func(t *testing.T) {
			l := redislimit.New(target.Client, redislimit.Config{KeyPrefix: testenv.Unique("rl") + ":"})

			t.Run("spends exactly the limit then denies with retry-after", func(t *testing.T) {
				ctx := ctxT(t)
				r := auth.Rate{Limit: 3, Window: time.Minute}
				for i := 0; i < 3; i++ {
					d, err := l.Allow(ctx, "login:account:ann@example.com", r)
					if err != nil {
						t.Fatal(err)
					}
					if !d.Allowed || d.Remaining != 2-i || d.Limit != 3 {
						t.Fatalf("attempt %d: %+v", i+1, d)
					}
					if d.Reset <= 0 || d.Reset > time.Minute {
						t.Fatalf("attempt %d: reset %v", i+1, d.Reset)
					}
				}
				d, err := l.Allow(ctx, "login:account:ann@example.com", r)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed || d.Remaining != 0 {
					t.Fatalf("4th attempt: %+v", d)
				}
				if d.RetryAfter < 50*time.Second || d.RetryAfter > time.Minute {
					t.Fatalf("retry after %v, want just under a minute", d.RetryAfter)
				}
				// Another key has its own budget.
				if d, _ := l.Allow(ctx, "login:account:bob@example.com", r); !d.Allowed {
					t.Fatalf("independent key denied: %+v", d)
				}
			})

			t.Run("the window slides: attempts become available as old ones expire", func(t *testing.T) {
				ctx := ctxT(t)
				r := auth.Rate{Limit: 2, Window: time.Second}
				key := testenv.Unique("slide")
				for i := 0; i < 2; i++ {
					if d, err := l.Allow(ctx, key, r); err != nil || !d.Allowed {
						t.Fatalf("attempt %d: %+v %v", i, d, err)
					}
				}
				if d, _ := l.Allow(ctx, key, r); d.Allowed {
					t.Fatal("third attempt in the window allowed")
				}
				time.Sleep(1100 * time.Millisecond)
				if d, err := l.Allow(ctx, key, r); err != nil || !d.Allowed {
					t.Fatalf("after the window: %+v %v", d, err)
				}
			})

			t.Run("concurrent callers never exceed the limit", func(t *testing.T) {
				ctx := ctxT(t)
				r := auth.Rate{Limit: 10, Window: time.Minute}
				key := testenv.Unique("race")
				var allowed atomic.Int32
				var wg sync.WaitGroup
				for i := 0; i < 50; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						d, err := l.Allow(ctx, key, r)
						if err != nil {
							t.Error(err)
							return
						}
						if d.Allowed {
							allowed.Add(1)
						}
					}()
				}
				wg.Wait()
				if n := allowed.Load(); n != 10 {
					t.Fatalf("%d attempts allowed, want exactly 10", n)
				}
			})

			t.Run("a lowered limit denies until enough attempts expire", func(t *testing.T) {
				ctx := ctxT(t)
				key := testenv.Unique("lowered")
				for i := 0; i < 5; i++ {
					if d, _ := l.Allow(ctx, key, auth.Rate{Limit: 5, Window: time.Minute}); !d.Allowed {
						t.Fatal("setup attempt denied")
					}
				}
				d, err := l.Allow(ctx, key, auth.Rate{Limit: 3, Window: time.Minute})
				if err != nil || d.Allowed || d.Remaining != 0 || d.RetryAfter <= 0 {
					t.Fatalf("lowered limit: %+v %v", d, err)
				}
			})

			t.Run("keys are hashed, tagged and expire", func(t *testing.T) {
				ctx := ctxT(t)
				key := "login:account:{weird}@example.com"
				if _, err := l.Allow(ctx, key, auth.Rate{Limit: 1, Window: time.Minute}); err != nil {
					t.Fatal(err)
				}
				rk := l.Key(key)
				if strings.Contains(rk, "example.com") || strings.Count(rk, "{") != 1 || !strings.HasSuffix(rk, "}") {
					t.Fatalf("key %q leaks the email or has a broken hash tag", rk)
				}
				ttl, err := target.Client.PTTL(ctx, rk).Result()
				if err != nil {
					t.Fatal(err)
				}
				if ttl <= 0 || ttl > time.Minute {
					t.Fatalf("ttl %v, want (0, 1m]", ttl)
				}
			})
		})
	}
}

// TestSpentBudgetSurvivesRedisRestartWithAOF kills redis-server (SIGKILL,
// no shutdown save) after the AOF's once-a-second fsync and checks that the
// budget is still spent when it comes back.
func TestSpentBudgetSurvivesRedisRestartWithAOF(t *testing.T) {
	srv := testenv.StartRedisServer(t, "--appendonly", "yes", "--appendfsync", "everysec")
	c := srv.Client()
	l := redislimit.New(c, redislimit.Config{})
	ctx := ctxT(t)
	r := auth.Rate{Limit: 3, Window: time.Hour}
	for i := 0; i < 3; i++ {
		if d, err := l.Allow(ctx, "login:ip:203.0.113.7", r); err != nil || !d.Allowed {
			t.Fatalf("attempt %d: %+v %v", i, d, err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // let appendfsync everysec run
	srv.Restart()
	d, err := l.Allow(ctx, "login:ip:203.0.113.7", r)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if d.Allowed {
		t.Fatal("budget was reset by the Redis restart")
	}
	if d.RetryAfter < 59*time.Minute {
		t.Fatalf("retry after %v, want close to an hour", d.RetryAfter)
	}
}

func TestFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := redislimit.FromEnv(env(nil))
	if err != nil || c.KeyPrefix != redislimit.DefaultKeyPrefix {
		t.Fatalf("default: %+v %v", c, err)
	}
	if _, err := redislimit.FromEnv(env(map[string]string{redislimit.VarKeyPrefix: "a{b}"})); err == nil || !strings.Contains(err.Error(), redislimit.VarKeyPrefix) {
		t.Fatalf("hash tag in prefix: %v", err)
	}
}
