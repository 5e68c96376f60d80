package redislimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/redislimit"
	"github.com/shiftflow/shiftflow/adapters/testenv"
)

func TestGateCoalescesPerDrain(t *testing.T) {
	rdb, mini := testenv.MiniRedis(t)
	g := redislimit.NewGate(rdb, testenv.Unique("gate"), 100*time.Millisecond)
	ctx := context.Background()
	if ok, err := g.Allow(ctx, "a"); !ok || err != nil {
		t.Fatalf("first wake of a: %v %v", ok, err)
	}
	if ok, _ := g.Allow(ctx, "a"); ok {
		t.Fatal("a second wake of a within the interval was let through")
	}
	if ok, _ := g.Allow(ctx, "b"); !ok {
		t.Fatal("drains are coalesced separately: b must go through")
	}
	mini.Server.FastForward(100 * time.Millisecond)
	if ok, _ := g.Allow(ctx, "a"); !ok {
		t.Fatal("the next interval must let a wake through")
	}
}

// TestGateStormStaysWithinTheBound: 50 publishers × 200 publishes each
// over about a second on the real Redis let through at most one wake per
// drain per interval (plus one for the interval boundary).
func TestGateStormStaysWithinTheBound(t *testing.T) {
	rdb := testenv.RedisPlain(t)
	interval := 100 * time.Millisecond
	g := redislimit.NewGate(rdb, testenv.Unique("gate"), interval)
	var allowed [2]atomic.Int64
	drains := []string{"onShiftCompleted", "invoiceWorker"}
	began := time.Now()
	var wg sync.WaitGroup
	for p := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				d := (p + i) % 2
				if ok, err := g.Allow(context.Background(), drains[d]); err != nil {
					t.Error(err)
					return
				} else if ok {
					allowed[d].Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	bound := int64(took/interval) + 2
	for d, name := range drains {
		n := allowed[d].Load()
		t.Logf("%s: %d wakes for 5,000 publishes in %v (bound %d)", name, n, took.Round(time.Millisecond), bound)
		if n > bound || n < 1 {
			t.Errorf("%s: %d wakes, want 1..%d", name, n, bound)
		}
	}
}
