package redisstream

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/job"
)

// tripHook counts client round trips (a pipeline is one).
type tripHook struct{ n atomic.Int64 }

func (h *tripHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *tripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *tripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// TestThroughput is a quick local measurement, not a gate: set
// SHIFTFLOW_QUEUE_THROUGHPUT=20000 (jobs) with SHIFTFLOW_TEST_REDIS_URL. The
// comparison with asynq lives in bench/.
func TestThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SHIFTFLOW_QUEUE_THROUGHPUT"))
	if n == 0 {
		t.Skip("set SHIFTFLOW_QUEUE_THROUGHPUT=<jobs> to measure")
	}
	opt, err := redis.ParseURL(testenv.Need(t, testenv.VarRedisURL))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	h := &tripHook{}
	c.AddHook(h)
	prefix := testenv.Unique("sfb")
	t.Cleanup(func() { deletePrefix(t, c, prefix) })
	ctx := context.Background()
	keep, _ := strconv.Atoi(os.Getenv("KEEP"))
	prefetch, _ := strconv.Atoi(os.Getenv("PREFETCH"))
	q := NewQueues(c, QueueOptions{Prefix: prefix, KeepCompleted: keep})
	w, _ := q.Worker("bench", func(ctx context.Context, j *job.Job) error { return nil }, WorkerOptions{Concurrency: 10, Prefetch: prefetch})
	// Warm the scripts and the group.
	_, _ = q.Add(ctx, "bench", "x", nil, job.Options{})
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, _ = w.Drain(dctx)
	cancel()

	h.n.Store(0)
	start := time.Now()
	var wg sync.WaitGroup
	per := n / 10
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := q.Add(ctx, "bench", "x", nil, job.Options{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	enq := time.Since(start)
	addTrips := h.n.Load()
	h.n.Store(0)
	start = time.Now()
	dctx, cancel = context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	sum, err := w.Drain(dctx)
	proc := time.Since(start)
	t.Logf("enqueue %d in %v: %.0f/s, %.2f trips/job", n, enq, float64(n)/enq.Seconds(), float64(addTrips)/float64(n))
	t.Logf("process %d in %v: %.0f/s, %.3f trips/job; %+v %v", sum.Processed, proc, float64(sum.Processed)/proc.Seconds(), float64(h.n.Load())/float64(n), sum, err)
}

// TestThroughputBare is the reference loop of FIELD-NOTES (XADD, then
// XREADGROUP COUNT 10 + pipelined XACKs), to calibrate a noisy machine.
func TestThroughputBare(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SHIFTFLOW_QUEUE_THROUGHPUT"))
	if n == 0 {
		t.Skip("set SHIFTFLOW_QUEUE_THROUGHPUT=<jobs> to measure")
	}
	opt, _ := redis.ParseURL(testenv.Need(t, testenv.VarRedisURL))
	c := redis.NewClient(opt)
	key := testenv.Unique("sfb") + ":bare"
	t.Cleanup(func() { c.Del(context.Background(), key) })
	ctx := context.Background()
	c.XGroupCreateMkStream(ctx, key, "g", "0")
	for i := 0; i < n; i++ {
		c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"id", strconv.Itoa(i), "d", "null"}})
	}
	start := time.Now()
	done := 0
	for done < n {
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{key, ">"}, Count: 10, Block: -1}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, m := range res[0].Messages {
			ids = append(ids, m.ID)
		}
		p := c.Pipeline()
		p.XAck(ctx, key, "g", ids...)
		p.XDel(ctx, key, ids...)
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		done += len(ids)
	}
	d := time.Since(start)
	t.Logf("bare: %d in %v: %.0f/s", n, d, float64(n)/d.Seconds())
}

// TestLatency measures enqueue-to-handler-start latency of an idle
// worker for jobs added 2 ms apart (SHIFTFLOW_QUEUE_THROUGHPUT=<jobs>).
func TestLatency(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SHIFTFLOW_QUEUE_THROUGHPUT"))
	if n == 0 {
		t.Skip("set SHIFTFLOW_QUEUE_THROUGHPUT=<jobs> to measure")
	}
	n = min(n, 2000)
	opt, _ := redis.ParseURL(testenv.Need(t, testenv.VarRedisURL))
	c := redis.NewClient(opt)
	h := &tripHook{}
	c.AddHook(h)
	prefix := testenv.Unique("sfb")
	t.Cleanup(func() { deletePrefix(t, c, prefix) })
	q := NewQueues(c, QueueOptions{Prefix: prefix, KeepCompleted: -1})
	var mu sync.Mutex
	lat := make([]time.Duration, 0, n)
	added := make([]time.Time, n)
	w, _ := q.Worker("lat", func(ctx context.Context, j *job.Job) error {
		now := time.Now()
		var d struct{ I int }
		_ = json.Unmarshal(j.Data, &d)
		mu.Lock()
		lat = append(lat, now.Sub(added[d.I]))
		mu.Unlock()
		return nil
	}, WorkerOptions{Concurrency: 10, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	h.n.Store(0)
	for i := 0; i < n; i++ {
		mu.Lock()
		added[i] = time.Now()
		mu.Unlock()
		if _, err := q.Add(ctx, "lat", "x", map[string]int{"i": i}, job.Options{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	t.Logf("latency over %d jobs: p50 %v p99 %v max %v; %.2f trips/job (incl. idle reads)", len(lat),
		lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], float64(h.n.Load())/float64(n))
}
