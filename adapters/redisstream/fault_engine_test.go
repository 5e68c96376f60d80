package redisstream_test

// Fault tests of the consumer engine's guarantees (docs/design.md,
// "Engine guarantees") against a redis-server each test starts itself.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/redisstream"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
)

// Issue 9 item 4: a warm worker and a warm subscription (Run) survive a
// FLUSHALL mid-run: they recreate their consumer groups and process the
// jobs and events added after it.
func TestFaultWarmConsumersSurviveFlushAll(t *testing.T) {
	srv := testenv.StartRedisServer(t)
	c := srv.Client()
	ctx := context.Background()
	prefix := testenv.Unique("sff")
	q := redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix, Logger: testLogger(t)})
	b := redisstream.NewBus(c, redisstream.BusOptions{Prefix: prefix, Logger: testLogger(t)})

	var jobs, events sync.Map
	w, err := q.Worker("flush", func(ctx context.Context, j *job.Job) error {
		jobs.Store(j.ID, true)
		return nil
	}, redisstream.WorkerOptions{Concurrency: 2, BlockInterval: 200 * time.Millisecond, PollInterval: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.SubscribeDurable([]string{"*"}, "flusher", func(ctx context.Context, e event.Event) error {
		events.Store(e.Type, true)
		return nil
	}, redisstream.SubscribeOptions{
		ConsumerOptions: redisstream.ConsumerOptions{Concurrency: 2, BlockInterval: 200 * time.Millisecond, PollInterval: 50 * time.Millisecond, Logger: testLogger(t)},
		Backoff:         job.Backoff{Type: job.BackoffFixed, Base: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopW := runWorker(t, w)
	sctx, cancel := context.WithCancel(ctx)
	sDone := make(chan error, 1)
	go func() { sDone <- s.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-sDone })

	publish := func(typ string) {
		t.Helper()
		if err := b.Publish(ctx, event.Event{Type: typ, OrganizationID: "org-1", Payload: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Add(ctx, "flush", "x", nil, job.Options{JobID: "before"}); err != nil {
		t.Fatal(err)
	}
	publish("before")
	eventually(t, 10*time.Second, "the first job and event", func() bool {
		_, j := jobs.Load("before")
		_, e := events.Load("before")
		return j && e
	})

	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the consumers meet the loss
	if _, err := q.Add(ctx, "flush", "x", nil, job.Options{JobID: "after"}); err != nil {
		t.Fatal(err)
	}
	publish("after")
	eventually(t, 20*time.Second, "the job and the event added after FLUSHALL", func() bool {
		_, j := jobs.Load("after")
		_, e := events.Load("after")
		return j && e
	})
	if err := stopW(); err != nil {
		t.Fatalf("worker Run: %v", err)
	}
	cancel()
	<-sDone

	// Warm objects started again after a FLUSHALL (a Run restarted, a
	// warm function instance): the groups they created once are gone.
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(ctx, "flush", "x", nil, job.Options{JobID: "restarted"}); err != nil {
		t.Fatal(err)
	}
	publish("restarted")
	runWorker(t, w)
	sctx2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	cancel = cancel2
	go func() { sDone <- s.Run(sctx2) }()
	eventually(t, 20*time.Second, "the job and the event added after FLUSHALL, by restarted consumers", func() bool {
		_, j := jobs.Load("restarted")
		_, e := events.Load("restarted")
		return j && e
	})
}

// Item 1(c): a finished job's result is recorded after a Redis outage of
// more than 30 s (recording keeps retrying while the lease is ours, and at
// least a minute), so the job is not run again. The visibility timeout is
// above the outage: with a shorter one, a consumer may reclaim the entry
// the moment Redis is back, before the recording retry lands.
func TestFaultRecordingSurvivesRedisOutage(t *testing.T) {
	srv, c := faultRedis(t)
	ctx := context.Background()
	prefix, queue := testenv.Unique("sff"), "outage"
	q := redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix, Logger: testLogger(t)})
	if _, err := q.Add(ctx, queue, "x", nil, job.Options{JobID: "o-1"}); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var started, runs atomic.Int32
	w, err := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
		runs.Add(1)
		started.Store(1)
		<-release
		return nil
	}, redisstream.WorkerOptions{Concurrency: 1, VisibilityTimeout: time.Minute, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	eventually(t, 10*time.Second, "the handler to start", func() bool { return started.Load() == 1 })
	time.Sleep(1500 * time.Millisecond) // AOF fsync every second: the delivery is on disk

	srv.Kill()
	close(release) // the job finishes while Redis is down
	const outage = 31 * time.Second
	time.Sleep(outage)
	srv.Start()

	// Well before the visibility timeout could pass.
	var got *job.Job
	eventually(t, 10*time.Second, "the job recorded as completed after the outage", func() bool {
		got, err = q.GetJob(ctx, queue, "o-1")
		return err == nil && got.State == job.StateCompleted
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := runs.Load(); n != 1 || got.Attempt != 1 {
		t.Fatalf("handler ran %d times, job attempt %d: want one run, attempt 1", n, got.Attempt)
	}
}

// Item 1(b): a finished handler's result is sent to Redis at once, not
// after a blocking read: with a long job holding one slot (the consumer
// reads for its idle slots meanwhile), quick jobs are recorded within a
// few milliseconds of their handler's return. The previous engine
// recorded them only when its 100 ms read returned.
func TestFaultFinishedJobRecordedWithoutWaitingForARead(t *testing.T) {
	_, c := faultRedis(t)
	ctx := context.Background()
	prefix, queue := testenv.Unique("sff"), "prompt"
	q := redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix, Logger: testLogger(t)})
	var mu sync.Mutex
	returned := map[string]time.Time{}
	w, err := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
		if j.Name == "long" {
			select {
			case <-time.After(20 * time.Second):
			case <-ctx.Done():
			}
			return nil
		}
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		returned[j.ID] = time.Now()
		mu.Unlock()
		return nil
	}, redisstream.WorkerOptions{Concurrency: 4, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	defer func() { _ = stop() }()
	if _, err := q.Add(ctx, queue, "long", nil, job.Options{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	const n = 15
	for i := range n {
		if _, err := q.Add(ctx, queue, "quick", nil, job.Options{JobID: "p-" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	var delays []time.Duration
	for i := range n {
		id := "p-" + strconv.Itoa(i)
		var j *job.Job
		eventually(t, 10*time.Second, id+" completed", func() bool {
			j, err = q.GetJob(ctx, queue, id)
			return err == nil && j.State == job.StateCompleted
		})
		mu.Lock()
		ret := returned[id]
		mu.Unlock()
		// FinishedAt is Redis's clock in ms, on this machine.
		delays = append(delays, j.FinishedAt.Sub(ret.Truncate(time.Millisecond)))
	}
	sort.Slice(delays, func(a, b int) bool { return delays[a] < delays[b] })
	if med := delays[n/2]; med > 40*time.Millisecond {
		t.Fatalf("median delay from handler return to recorded = %v (all: %v), want a few ms", med, delays)
	}
	t.Logf("delay from handler return to recorded: median %v, max %v", delays[n/2], delays[n-1])
}

// Item 6: a worker process SIGKILLed while it runs one job and holds
// four prefetched ones charges an attempt only to the job it started.
func TestFaultKilledWorkerChargesOnlyStartedJobs(t *testing.T) {
	srv, c := faultRedis(t)
	ctx := context.Background()
	prefix, queue := testenv.Unique("sff"), "kill"
	const vt = 2 * time.Second
	q := redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix, Logger: testLogger(t)})
	ids := []string{"job-kill-1", "p-1", "p-2", "p-3", "p-4"}
	for _, id := range ids {
		if _, err := q.Add(ctx, queue, "effect", nil, job.Options{JobID: id, Attempts: 3}); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The worker process of TestFaultWorkerKilledMidJob: Concurrency 1,
	// the default Prefetch (4), every handler hangs.
	child := exec.Command(exe, "-test.run=^TestFaultWorkerProcess$", "-test.count=1")
	child.Env = append(os.Environ(),
		envFaultWorker+"=1", envFaultAddr+"="+srv.Addr, envFaultPrefix+"="+prefix,
		envFaultQueue+"="+queue, envFaultVT+"="+vt.String())
	var out bytes.Buffer
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	childDone := make(chan error, 1)
	go func() { childDone <- child.Wait() }()
	t.Cleanup(func() {
		_ = child.Process.Kill()
		<-childDone
		if t.Failed() {
			t.Logf("worker process output:\n%s", out.String())
		}
	})
	eventually(t, 30*time.Second, "the worker process to run one job and hold the rest", func() bool {
		return c.Get(ctx, prefix+":fx:holder").Val() == strconv.Itoa(child.Process.Pid) &&
			mustCounts(t, q, queue).Active == int64(len(ids))
	})
	time.Sleep(300 * time.Millisecond) // its start mark goes out
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-childDone
	childDone <- nil

	var mu sync.Mutex
	attempts := map[string]int{}
	w, err := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
		mu.Lock()
		attempts[j.ID] = j.Attempt
		mu.Unlock()
		return nil
	}, redisstream.WorkerOptions{Concurrency: 2, VisibilityTimeout: vt, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	eventually(t, 6*vt+5*time.Second, "every job to complete after the kill", func() bool {
		return mustCounts(t, q, queue).Completed == int64(len(ids))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		want := 1
		if id == "job-kill-1" {
			want = 2 // it started: the crashed run counts
		}
		if attempts[id] != want {
			t.Errorf("%s ran as attempt %d, want %d (attempts %v)", id, attempts[id], want, attempts)
		}
	}
}
