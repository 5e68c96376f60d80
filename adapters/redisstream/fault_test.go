package redisstream_test

// Fault tests of the job queue against a real redis-server that each test
// starts, kills and restarts itself (AOF, appendfsync everysec). They need
// SHIFTFLOW_TEST_REDIS_SERVER=/path/to/redis-server and skip without it.
// They use only the package's exported API, as an application would.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/redisstream"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/job"
)

// faultRedis starts the test's own redis-server with the persistence the
// issue names: AOF with fsync every second.
func faultRedis(t *testing.T) (*testenv.RedisServer, *redis.Client) {
	t.Helper()
	srv := testenv.StartRedisServer(t, "--appendonly", "yes", "--appendfsync", "everysec")
	return srv, srv.Client()
}

// logBuffer collects the queue's log lines; they are printed only when a
// test fails, so expected warnings (Redis down, retries) do not drown the
// output, yet are there to read when something goes wrong.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t *testing.T) *slog.Logger {
	b := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("queue log:\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// runWorker runs w.Run in the background; the returned stop cancels it
// and returns Run's error.
func runWorker(t *testing.T, w *redisstream.Worker) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return within 30s of cancellation")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustCounts(t *testing.T, q *redisstream.Queues, queue string) job.Counts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := q.Counts(ctx, queue)
	if err != nil {
		t.Fatalf("counts of %s: %v", queue, err)
	}
	return c
}

// Environment of the worker process of TestFaultWorkerKilledMidJob.
const (
	envFaultWorker = "SHIFTFLOW_FAULT_WORKER" // "1" in the child
	envFaultAddr   = "SHIFTFLOW_FAULT_ADDR"
	envFaultPrefix = "SHIFTFLOW_FAULT_PREFIX"
	envFaultQueue  = "SHIFTFLOW_FAULT_QUEUE"
	envFaultVT     = "SHIFTFLOW_FAULT_VISIBILITY"
)

// effectHandler is the handler both the killed worker process and the
// surviving worker run: it counts runs, then applies the job's effect
// idempotently (a marker keyed by the job id, set once) and counts how
// often the effect was really applied. hang makes it stop after applying
// the effect, as if the process died before acknowledging the job.
func effectHandler(c *redis.Client, prefix string, hang func(ctx context.Context, j *job.Job)) job.Handler {
	return func(ctx context.Context, j *job.Job) error {
		if err := c.Incr(ctx, prefix+":fx:runs:"+j.ID).Err(); err != nil {
			return err
		}
		applied, err := c.SetNX(ctx, prefix+":fx:effect:"+j.ID, strconv.Itoa(j.Attempt), 0).Result()
		if err != nil {
			return err
		}
		if applied {
			if err := c.Incr(ctx, prefix+":fx:applied:"+j.ID).Err(); err != nil {
				return err
			}
		}
		if hang != nil {
			hang(ctx, j)
		}
		return nil
	}
}

// TestFaultWorkerProcess is not a test: it is the worker process that
// TestFaultWorkerKilledMidJob starts (the test binary re-executed) and
// kills with SIGKILL while it holds a job.
func TestFaultWorkerProcess(t *testing.T) {
	if os.Getenv(envFaultWorker) != "1" {
		t.Skip("helper process for TestFaultWorkerKilledMidJob")
	}
	vt, err := time.ParseDuration(os.Getenv(envFaultVT))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: os.Getenv(envFaultAddr)})
	prefix, queue := os.Getenv(envFaultPrefix), os.Getenv(envFaultQueue)
	q := redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix, Logger: testLogger(t)})
	// The job's handler applies the effect, says it holds the job, and
	// keeps running (heartbeating its lease) until the parent kills the
	// process.
	h := effectHandler(c, prefix, func(ctx context.Context, j *job.Job) {
		c.Set(ctx, prefix+":fx:holder", strconv.Itoa(os.Getpid()), 0)
		<-ctx.Done()
	})
	w, err := q.Worker(queue, h, redisstream.WorkerOptions{
		Concurrency: 1, VisibilityTimeout: vt, HandlerTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A parent that dies without killing us must not leave us behind.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_ = w.Run(ctx)
}

// A worker process killed with SIGKILL while it runs a job: while it is
// alive its lease is extended and no other worker takes the job; after
// the kill, another worker reclaims the job once the visibility timeout
// passes and completes it, and the job's effect is applied exactly once.
func TestFaultWorkerKilledMidJob(t *testing.T) {
	srv, c := faultRedis(t)
	ctx := context.Background()
	prefix, queue := testenv.Unique("sff"), "kill"
	const vt = 2 * time.Second
	q := redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix, Logger: testLogger(t)})
	id, err := q.Add(ctx, queue, "effect", map[string]int{"n": 1}, job.Options{JobID: "job-kill-1", Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe, "-test.run=^TestFaultWorkerProcess$", "-test.count=1")
	child.Env = append(os.Environ(),
		envFaultWorker+"=1", envFaultAddr+"="+srv.Addr, envFaultPrefix+"="+prefix,
		envFaultQueue+"="+queue, envFaultVT+"="+vt.String())
	var childOut bytes.Buffer
	child.Stdout, child.Stderr = &childOut, &childOut
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	childDone := make(chan error, 1)
	go func() { childDone <- child.Wait() }()
	t.Cleanup(func() {
		_ = child.Process.Kill()
		<-childDone
		if t.Failed() {
			t.Logf("worker process output:\n%s", childOut.String())
		}
	})
	eventually(t, 30*time.Second, "the worker process to take the job", func() bool {
		return c.Get(ctx, prefix+":fx:holder").Val() == strconv.Itoa(child.Process.Pid)
	})

	// A second worker runs alongside: while the process lives, it must not
	// take the job, however long the job runs past the visibility timeout.
	type run struct {
		at      time.Time
		attempt int
	}
	var mu sync.Mutex
	var runs []run
	h := effectHandler(c, prefix, nil)
	w, err := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
		mu.Lock()
		runs = append(runs, run{time.Now(), j.Attempt})
		mu.Unlock()
		return h(ctx, j)
	}, redisstream.WorkerOptions{Concurrency: 2, VisibilityTimeout: vt, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	time.Sleep(2*vt + vt/2)
	mu.Lock()
	early := len(runs)
	mu.Unlock()
	if early != 0 {
		t.Fatalf("the surviving worker ran the job %d time(s) while its holder was alive and heartbeating", early)
	}
	if got := mustCounts(t, q, queue); got.Active != 1 {
		t.Fatalf("counts while the process holds the job = %+v, want 1 active", got)
	}

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	if err := <-childDone; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("worker process: %v, want killed", err)
	}
	childDone <- nil // for the cleanup

	var got *job.Job
	eventually(t, 6*vt+5*time.Second, "the job to complete after the kill", func() bool {
		got, err = q.GetJob(ctx, queue, id)
		return err == nil && got.State == job.StateCompleted
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(runs) != 1 {
		t.Fatalf("surviving worker ran the job %d times, want 1", len(runs))
	}
	// The lease was last extended at most VisibilityTimeout/3 before the
	// kill (the default heartbeat), so no reclaim may come earlier than
	// two thirds of the timeout after it.
	if wait := runs[0].at.Sub(killedAt); wait < vt*2/3-100*time.Millisecond {
		t.Errorf("job reclaimed %v after the kill, before the visibility timeout (%v) could have passed", wait, vt)
	}
	if runs[0].attempt != 2 {
		t.Errorf("reclaimed run saw attempt %d, want 2 (the crashed run counts as an attempt)", runs[0].attempt)
	}
	if n := c.Get(ctx, prefix+":fx:runs:"+id).Val(); n != "2" {
		t.Errorf("handler runs = %s, want 2 (killed run + reclaimed run)", n)
	}
	if n := c.Get(ctx, prefix+":fx:applied:"+id).Val(); n != "1" {
		t.Errorf("effect applied %s times, want exactly 1", n)
	}
	if got.Attempt != 2 || got.FinishedAt.IsZero() {
		t.Errorf("completed job = %+v, want attempt 2 and a finish time", got)
	}
	if cnt := mustCounts(t, q, queue); cnt.Active != 0 || cnt.Waiting != 0 || cnt.Failed != 0 || cnt.Completed != 1 {
		t.Errorf("counts = %+v, want only 1 completed", cnt)
	}
}

// Redis killed with SIGKILL and restarted (AOF, fsync every second) while
// 10,000 jobs are being added and processed: producers retry failed adds
// with the same job id (which de-duplicates while the job exists, so a
// retry of an add that did reach Redis adds nothing; completed jobs are not
// kept here, so a very late retry may run a job twice, which at-least-once
// allows and the test reports), the worker keeps running through the
// outage, and every job is processed at least once; nothing is left
// waiting, active or failed.
func TestFaultRedisRestartLosesNoJob(t *testing.T) {
	srv, c := faultRedis(t)
	const n = 10000
	prefix, queue := testenv.Unique("sff"), "restart"
	q := redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix, KeepCompleted: -1, Logger: testLogger(t)})

	seen := make([]atomic.Int32, n)
	var processed atomic.Int64
	w, err := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
		i, err := strconv.Atoi(strings.TrimPrefix(j.ID, "r-"))
		if err != nil || i < 0 || i >= n {
			return job.Permanent(fmt.Errorf("unexpected job id %q", j.ID))
		}
		if seen[i].Add(1) == 1 {
			processed.Add(1)
		}
		return nil
	}, redisstream.WorkerOptions{Concurrency: 10, VisibilityTimeout: 3 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}

	// Four producers add the jobs at a steady pace (about 4 s in all) so
	// that the restart falls in the middle of both adding and processing.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var next, added, addRetries atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				if d := time.Until(start.Add(time.Duration(i) * 400 * time.Microsecond)); d > 0 {
					time.Sleep(d)
				}
				for {
					_, err := q.Add(ctx, queue, "count", map[string]int64{"i": i}, job.Options{JobID: "r-" + strconv.FormatInt(i, 10)})
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						return
					}
					addRetries.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
				added.Add(1)
			}
		})
	}

	// The worker starts late so that a backlog of waiting jobs exists when
	// Redis dies: those must come back from the AOF.
	eventually(t, time.Minute, "2,000 jobs added", func() bool { return added.Load() >= 2000 })
	stop := runWorker(t, w)
	eventually(t, time.Minute, "1,000 jobs processed", func() bool { return processed.Load() >= 1000 })
	srv.Kill()
	addedAtKill, processedAtKill := added.Load(), processed.Load()
	// Down long enough that go-redis's own retries (3, up to 512 ms apart)
	// give up and the producers see errors.
	time.Sleep(1500 * time.Millisecond)
	srv.Start()
	t.Logf("redis killed with %d of %d jobs added and %d processed (%d waiting or running), restarted",
		addedAtKill, n, processedAtKill, addedAtKill-processedAtKill)
	if addedAtKill >= n || addedAtKill-processedAtKill < 100 {
		t.Errorf("the restart did not fall in the middle: %d added, %d processed", addedAtKill, processedAtKill)
	}

	wg.Wait()
	if added.Load() != n {
		t.Fatalf("producers added %d of %d jobs: %v", added.Load(), n, ctx.Err())
	}
	deadline := time.Now().Add(2 * time.Minute)
	for processed.Load() < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Errorf("Run returned %v, want it to ride out the restart", err)
	}
	var missing []int
	dupes := 0
	for i := range seen {
		switch s := seen[i].Load(); {
		case s == 0:
			missing = append(missing, i)
		case s > 1:
			dupes += int(s - 1)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d jobs were never processed (lost), e.g. r-%d; counts %+v",
			len(missing), n, missing[0], mustCounts(t, q, queue))
	}
	cnt := mustCounts(t, q, queue)
	if cnt.Waiting != 0 || cnt.Active != 0 || cnt.Delayed != 0 || cnt.Failed != 0 {
		t.Errorf("counts after all jobs ran = %+v, want nothing waiting, delayed, active or failed", cnt)
	}
	t.Logf("all %d jobs processed; %d processed more than once (at-least-once), %d adds retried", n, dupes, addRetries.Load())
}

// A poison job (its handler always fails) is dead-lettered after its
// attempts with its last error, attempts and times, while the jobs added
// around it keep flowing through the same workers.
func TestFaultPoisonJobDeadLetteredWhileOthersFlow(t *testing.T) {
	_, c := faultRedis(t)
	ctx := context.Background()
	prefix, queue := testenv.Unique("sff"), "poison"
	q := redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix, KeepCompleted: -1, Logger: testLogger(t)})
	const attempts, normal = 3, 500
	backoff := job.Backoff{Type: job.BackoffFixed, Base: 200 * time.Millisecond}

	var mu sync.Mutex
	var poisonRuns []time.Time
	var normalDone []time.Time
	w, err := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
		mu.Lock()
		defer mu.Unlock()
		if j.Name == "poison" {
			poisonRuns = append(poisonRuns, time.Now())
			return fmt.Errorf("boom: cannot render attempt %d", j.Attempt)
		}
		normalDone = append(normalDone, time.Now())
		return nil
	}, redisstream.WorkerOptions{Concurrency: 4, PollInterval: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)

	// Normal jobs arrive every 2 ms for a second; the poison job comes in
	// after the first hundred.
	for i := range normal {
		if i == 100 {
			if _, err := q.Add(ctx, queue, "poison", map[string]string{"why": "bad"},
				job.Options{JobID: "poison-1", Attempts: attempts, Backoff: backoff}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := q.Add(ctx, queue, "normal", map[string]int{"i": i}, job.Options{Backoff: backoff}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	var got *job.Job
	eventually(t, 20*time.Second, "the poison job to be dead-lettered", func() bool {
		got, err = q.GetJob(ctx, queue, "poison-1")
		return err == nil && got.State == job.StateFailed
	})
	eventually(t, 20*time.Second, "all normal jobs to complete", func() bool {
		mu.Lock()
		n := len(normalDone)
		mu.Unlock()
		if n > normal {
			t.Fatalf("%d normal jobs completed, want %d", n, normal)
		}
		if n < normal && time.Since(got.FinishedAt) > 15*time.Second {
			t.Fatalf("%d of %d normal jobs completed 15s after the poison job failed; counts %+v", n, normal, mustCounts(t, q, queue))
		}
		return n == normal
	})
	time.Sleep(300 * time.Millisecond) // a wrong extra retry would show up here
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(poisonRuns) != attempts {
		t.Fatalf("poison job ran %d times, want %d", len(poisonRuns), attempts)
	}
	if got.Attempt != attempts || got.MaxAttempts != attempts {
		t.Errorf("failed job attempts = %d/%d, want %d/%d", got.Attempt, got.MaxAttempts, attempts, attempts)
	}
	if !strings.Contains(got.LastError, fmt.Sprintf("boom: cannot render attempt %d", attempts)) {
		t.Errorf("failed job last error = %q, want the last attempt's error", got.LastError)
	}
	if got.CreatedAt.IsZero() || got.FinishedAt.IsZero() || got.FinishedAt.Before(got.CreatedAt) {
		t.Errorf("failed job times: created %v finished %v", got.CreatedAt, got.FinishedAt)
	}
	for i := 1; i < len(poisonRuns); i++ {
		if gap := poisonRuns[i].Sub(poisonRuns[i-1]); gap < backoff.Base-20*time.Millisecond {
			t.Errorf("retry %d came %v after the previous attempt, before the %v backoff", i, gap, backoff.Base)
		}
	}
	// Flowing: normal jobs completed while the poison job was between its
	// first and last attempt.
	during := 0
	for _, at := range normalDone {
		if at.After(poisonRuns[0]) && at.Before(poisonRuns[len(poisonRuns)-1]) {
			during++
		}
	}
	if during < 50 {
		t.Errorf("only %d normal jobs completed while the poison job was retrying, want them to keep flowing", during)
	}
	failed, err := q.ListFailed(ctx, queue, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || failed[0].ID != "poison-1" || failed[0].LastError == "" {
		t.Errorf("ListFailed = %+v, want only poison-1 with its error", failed)
	}
	if cnt := mustCounts(t, q, queue); cnt.Failed != 1 || cnt.Waiting != 0 || cnt.Active != 0 || cnt.Delayed != 0 {
		t.Errorf("counts = %+v, want 1 failed and nothing pending", cnt)
	}
}

// Adding the same job id twice, or twenty times at once, keeps one job,
// which runs once; adding it again while it is delayed, or after it
// completed (while it is kept), adds nothing either.
func TestFaultSameJobIDTwiceIsOneJob(t *testing.T) {
	_, c := faultRedis(t)
	ctx := context.Background()
	prefix, queue := testenv.Unique("sff"), "dedupe"
	q := redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix, Logger: testLogger(t)})

	first, err := q.Add(ctx, queue, "invoice", map[string]string{"v": "first"}, job.Options{JobID: "shift-42"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := q.Add(ctx, queue, "invoice", map[string]string{"v": "second"}, job.Options{JobID: "shift-42"})
	if err != nil {
		t.Fatal(err)
	}
	if first != "shift-42" || second != "shift-42" {
		t.Fatalf("ids = %q, %q; want shift-42 twice", first, second)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if id, err := q.Add(ctx, queue, "invoice", map[string]string{"v": "race"}, job.Options{JobID: "shift-43"}); err != nil || id != "shift-43" {
				errs <- fmt.Errorf("concurrent add: id %q, err %v", id, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for range 2 {
		if _, err := q.Add(ctx, queue, "invoice", nil, job.Options{JobID: "later", Delay: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	if cnt := mustCounts(t, q, queue); cnt.Waiting != 2 || cnt.Delayed != 1 {
		t.Fatalf("counts = %+v, want 2 waiting (shift-42, shift-43) and 1 delayed", cnt)
	}

	runs := map[string][]string{}
	var mu sync.Mutex
	w, err := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
		mu.Lock()
		defer mu.Unlock()
		runs[j.ID] = append(runs[j.ID], string(j.Data))
		return nil
	}, redisstream.WorkerOptions{Concurrency: 4, HandlerTimeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// A drain starts a job only if HandlerTimeout fits before its deadline
	// minus the safety margin, hence the short HandlerTimeout.
	drain := func() {
		t.Helper()
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := w.Drain(dctx); err != nil {
			t.Fatal(err)
		}
	}
	drain()
	// Completed and kept: adding the id again must not run it again.
	if _, err := q.Add(ctx, queue, "invoice", map[string]string{"v": "after"}, job.Options{JobID: "shift-42"}); err != nil {
		t.Fatal(err)
	}
	drain()

	mu.Lock()
	defer mu.Unlock()
	if got := runs["shift-42"]; len(got) != 1 || got[0] != `{"v":"first"}` {
		t.Errorf("shift-42 ran with %v, want once with the first add's data", got)
	}
	if got := runs["shift-43"]; len(got) != 1 {
		t.Errorf("shift-43 (20 concurrent adds) ran %d times, want 1", len(got))
	}
	if _, ran := runs["later"]; ran {
		t.Errorf("the delayed job ran before its delay")
	}
	if cnt := mustCounts(t, q, queue); cnt.Completed != 2 || cnt.Delayed != 1 || cnt.Waiting != 0 {
		t.Errorf("counts = %+v, want 2 completed and 1 delayed", cnt)
	}
}

// A drain under a short deadline never leaves a job half-done: it starts
// only jobs whose HandlerTimeout fits before the deadline minus the safety
// margin, returns before the deadline with every started job finished and
// recorded, and leaves the rest waiting, with nothing stuck active. A
// drain whose context is cancelled hands its running jobs back to waiting
// without spending an attempt. The next drain finishes the rest, each job
// exactly once.
func TestFaultDrainShortDeadlineLeavesNothingHalfDone(t *testing.T) {
	_, c := faultRedis(t)
	ctx := context.Background()
	const n = 100
	const handlerTimeout, margin, work = 300 * time.Millisecond, 200 * time.Millisecond, 60 * time.Millisecond

	setup := func(t *testing.T) (*redisstream.Queues, string) {
		prefix, queue := testenv.Unique("sff"), "drain"
		q := redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix, KeepCompleted: 1000, Logger: testLogger(t)})
		for i := range n {
			if _, err := q.Add(ctx, queue, "slow", nil, job.Options{JobID: "d-" + strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
		return q, queue
	}
	// tally counts a handler's starts, finishes and runs per job.
	type tally struct {
		mu                sync.Mutex
		running, maxAfter int
		lastStart         time.Time
		runs              map[string]int
		attempts          map[string][]int
	}
	handler := func(tl *tally, hangUntilCancelled bool) job.Handler {
		return func(ctx context.Context, j *job.Job) error {
			tl.mu.Lock()
			tl.running++
			tl.lastStart = time.Now()
			tl.runs[j.ID]++
			tl.attempts[j.ID] = append(tl.attempts[j.ID], j.Attempt)
			tl.mu.Unlock()
			defer func() {
				tl.mu.Lock()
				tl.running--
				tl.mu.Unlock()
			}()
			d := work
			if hangUntilCancelled {
				d = time.Hour
			}
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	}
	newTally := func() *tally { return &tally{runs: map[string]int{}, attempts: map[string][]int{}} }

	t.Run("deadline", func(t *testing.T) {
		q, queue := setup(t)
		tl := newTally()
		w, err := q.Worker(queue, handler(tl, false), redisstream.WorkerOptions{
			Concurrency: 4, HandlerTimeout: handlerTimeout, SafetyMargin: margin, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithTimeout(ctx, 1200*time.Millisecond)
		defer cancel()
		deadline, _ := dctx.Deadline()
		sum, err := w.Drain(dctx)
		returned := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if !returned.Before(deadline) {
			t.Errorf("Drain returned %v after its deadline", returned.Sub(deadline))
		}
		tl.mu.Lock()
		running, lastStart, started := tl.running, tl.lastStart, len(tl.runs)
		tl.mu.Unlock()
		if running != 0 {
			t.Errorf("%d handlers still running after Drain returned", running)
		}
		if latest := deadline.Add(-margin - handlerTimeout); lastStart.After(latest.Add(100 * time.Millisecond)) {
			t.Errorf("a job started %v after the last moment its HandlerTimeout fitted", lastStart.Sub(latest))
		}
		if sum.StoppedBy != "deadline" || sum.Succeeded != started || sum.Processed != started || started == 0 || started == n {
			t.Errorf("summary %+v with %d jobs started, want stopped by deadline with every started job succeeded", sum, started)
		}
		cnt := mustCounts(t, q, queue)
		if cnt.Active != 0 || cnt.Completed != int64(started) || cnt.Waiting != int64(n-started) {
			t.Errorf("counts after the drain = %+v with %d started, want %d completed, %d waiting, none active",
				cnt, started, started, n-started)
		}

		// Too short to fit one HandlerTimeout: nothing starts, nothing moves.
		sctx, scancel := context.WithTimeout(ctx, margin+handlerTimeout/2)
		defer scancel()
		sum, err = w.Drain(sctx)
		if err != nil || sum.Processed != 0 {
			t.Errorf("drain shorter than HandlerTimeout: %+v, %v; want nothing processed", sum, err)
		}
		if cnt2 := mustCounts(t, q, queue); cnt2 != cnt {
			t.Errorf("counts changed from %+v to %+v by a drain that started nothing", cnt, cnt2)
		}

		// The next drain finishes the rest; no job ran twice.
		lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
		defer lcancel()
		if sum, err = w.Drain(lctx); err != nil || sum.StoppedBy != "empty" {
			t.Fatalf("final drain: %+v, %v", sum, err)
		}
		tl.mu.Lock()
		defer tl.mu.Unlock()
		if len(tl.runs) != n {
			t.Errorf("%d of %d jobs ran", len(tl.runs), n)
		}
		for id, r := range tl.runs {
			if r != 1 {
				t.Errorf("job %s ran %d times, want 1", id, r)
			}
		}
		if cnt := mustCounts(t, q, queue); cnt.Completed != n || cnt.Active != 0 || cnt.Waiting != 0 {
			t.Errorf("final counts = %+v, want all %d completed", cnt, n)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		q, queue := setup(t)
		tl := newTally()
		w, err := q.Worker(queue, handler(tl, true), redisstream.WorkerOptions{
			Concurrency: 4, HandlerTimeout: 10 * time.Second, ShutdownTimeout: 200 * time.Millisecond, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { _, err := w.Drain(dctx); done <- err }()
		eventually(t, 10*time.Second, "four handlers running", func() bool {
			tl.mu.Lock()
			defer tl.mu.Unlock()
			return tl.running == 4
		})
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("cancelled drain: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("cancelled drain did not return")
		}
		tl.mu.Lock()
		running, handed := tl.running, len(tl.runs)
		tl.mu.Unlock()
		if running != 0 {
			t.Errorf("%d handlers still running after the cancelled drain returned", running)
		}
		if cnt := mustCounts(t, q, queue); cnt.Active != 0 || cnt.Waiting != n || cnt.Completed != 0 || cnt.Failed != 0 {
			t.Errorf("counts after the cancelled drain = %+v, want all %d back to waiting, none active", cnt, n)
		}

		// The handed-back jobs run again with the attempt they had.
		tl2 := newTally()
		w2, err := q.Worker(queue, handler(tl2, false), redisstream.WorkerOptions{Concurrency: 4, HandlerTimeout: 5 * time.Second, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
		defer lcancel()
		if sum, err := w2.Drain(lctx); err != nil || sum.Succeeded != n {
			t.Fatalf("drain after hand-back: %+v, %v", sum, err)
		}
		tl2.mu.Lock()
		defer tl2.mu.Unlock()
		tl.mu.Lock()
		defer tl.mu.Unlock()
		for id := range tl.runs {
			if a := tl2.attempts[id]; len(a) != 1 || a[0] != 1 {
				t.Errorf("handed-back job %s ran again with attempts %v, want [1] (hand-back spends no attempt)", id, a)
			}
		}
		if handed == 0 {
			t.Error("no job was running when the drain was cancelled")
		}
	})
}
