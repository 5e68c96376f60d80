package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
)

// fast worker options for tests: short timeouts so deadlines and
// reclaiming happen within a test's time.
func fastOpts() WorkerOptions {
	return WorkerOptions{
		Concurrency:       4,
		VisibilityTimeout: 2 * time.Second,
		HandlerTimeout:    2 * time.Second,
		SafetyMargin:      100 * time.Millisecond,
		PollInterval:      50 * time.Millisecond,
		BlockInterval:     100 * time.Millisecond,
		ShutdownTimeout:   time.Second,
		Logger:            quiet,
	}
}

var quiet = slog.New(slog.DiscardHandler)

func mustAdd(t *testing.T, q *Queues, queue, name string, data any, o job.Options) string {
	t.Helper()
	id, err := q.Add(context.Background(), queue, name, data, o)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	return id
}

func counts(t *testing.T, q *Queues, queue string) job.Counts {
	t.Helper()
	c, err := q.Counts(context.Background(), queue)
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return c
}

const cannotStartMsg = "drain could not start any handler: its deadline is shorter than HandlerTimeout + SafetyMargin; set HandlerTimeout well below the function timeout"

func drain(t *testing.T, d event.Drainer, timeout time.Duration) event.DrainSummary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := d.Drain(ctx)
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	return s
}

// eventually drains until cond holds or the time is up.
func eventually(t *testing.T, d event.Drainer, within time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(within)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("condition not met within %v", within)
		}
		drain(t, d, 5*time.Second)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestQueueContract(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		q := NewQueues(tg.client, QueueOptions{Prefix: tg.prefix})
		ctx := context.Background()

		t.Run("AddingTheSameJobIDTwiceKeepsOneJob", func(t *testing.T) {
			queue := testenv.Unique("q")
			a := mustAdd(t, q, queue, "invoice", map[string]string{"v": "first"}, job.Options{JobID: "shift-1"})
			b := mustAdd(t, q, queue, "invoice", map[string]string{"v": "second"}, job.Options{JobID: "shift-1"})
			if a != "shift-1" || b != "shift-1" {
				t.Fatalf("ids %q %q", a, b)
			}
			if c := counts(t, q, queue); c.Waiting != 1 {
				t.Fatalf("counts %+v, want one waiting job", c)
			}
			var runs atomic.Int32
			var data string
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				runs.Add(1)
				data = string(j.Data)
				return nil
			}, fastOpts())
			drain(t, w, 10*time.Second)
			// Completed and kept: adding it again still de-duplicates.
			mustAdd(t, q, queue, "invoice", nil, job.Options{JobID: "shift-1"})
			drain(t, w, 10*time.Second)
			if runs.Load() != 1 || data != `{"v":"first"}` {
				t.Fatalf("runs %d data %s", runs.Load(), data)
			}
		})

		t.Run("WorkerRunsEveryJobWithItsDataAndCompletesIt", func(t *testing.T) {
			queue := testenv.Unique("q")
			for i := range 30 {
				mustAdd(t, q, queue, "email", map[string]int{"n": i}, job.Options{CorrelationID: "corr-1"})
			}
			var mu sync.Mutex
			seen := map[int]bool{}
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				var d struct{ N int }
				if err := json.Unmarshal(j.Data, &d); err != nil {
					return err
				}
				if j.Name != "email" || j.Attempt != 1 || j.MaxAttempts != 3 || j.CorrelationID != "corr-1" || j.Queue != queue || j.CreatedAt.IsZero() {
					return job.Permanent(fmt.Errorf("bad job %+v", j))
				}
				mu.Lock()
				seen[d.N] = true
				mu.Unlock()
				return nil
			}, fastOpts())
			s := drain(t, w, 10*time.Second)
			if s.Processed != 30 || s.Succeeded != 30 || s.StoppedBy != "empty" || s.Remaining != 0 {
				t.Fatalf("summary %+v", s)
			}
			if len(seen) != 30 {
				t.Fatalf("saw %d distinct jobs", len(seen))
			}
			if c := counts(t, q, queue); c != (job.Counts{Completed: 30}) {
				t.Fatalf("counts %+v", c)
			}
			done, err := q.ListCompleted(ctx, queue, 0, 1)
			if err != nil || len(done) != 1 || done[0].State != job.StateCompleted || done[0].FinishedAt.IsZero() || done[0].ProcessedAt.IsZero() {
				t.Fatalf("completed %+v %v", done, err)
			}
		})

		t.Run("DelayedJobWaitsForItsTime", func(t *testing.T) {
			queue := testenv.Unique("q")
			id := mustAdd(t, q, queue, "later", nil, job.Options{Delay: 600 * time.Millisecond})
			var runs atomic.Int32
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { runs.Add(1); return nil }, fastOpts())
			s := drain(t, w, 10*time.Second)
			if s.Processed != 0 || s.Remaining != 1 || runs.Load() != 0 {
				t.Fatalf("ran early: %+v", s)
			}
			j, err := q.GetJob(ctx, queue, id)
			if err != nil || j.State != job.StateDelayed {
				t.Fatalf("job %+v %v", j, err)
			}
			time.Sleep(700 * time.Millisecond)
			s = drain(t, w, 10*time.Second)
			if s.Processed != 1 || s.Promoted != 1 || runs.Load() != 1 {
				t.Fatalf("summary %+v runs %d", s, runs.Load())
			}
		})

		t.Run("FailingJobIsRetriedWithBackoffThenFailsWithItsError", func(t *testing.T) {
			queue := testenv.Unique("q")
			id := mustAdd(t, q, queue, "flaky", nil, job.Options{Attempts: 3, Backoff: job.Backoff{Type: job.BackoffFixed, Base: 150 * time.Millisecond}})
			var mu sync.Mutex
			var attempts []int
			var times []time.Time
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				mu.Lock()
				defer mu.Unlock()
				attempts = append(attempts, j.Attempt)
				times = append(times, time.Now())
				return fmt.Errorf("boom %d", j.Attempt)
			}, fastOpts())
			eventually(t, w, 10*time.Second, func() bool { return counts(t, q, queue).Failed == 1 })
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(attempts, []int{1, 2, 3}) {
				t.Fatalf("attempts %v", attempts)
			}
			for i := 1; i < len(times); i++ {
				if gap := times[i].Sub(times[i-1]); gap < 140*time.Millisecond {
					t.Fatalf("retry %d came after %v, backoff is 150ms", i, gap)
				}
			}
			failed, err := q.ListFailed(ctx, queue, 0, 10)
			if err != nil || len(failed) != 1 {
				t.Fatalf("failed %+v %v", failed, err)
			}
			f := failed[0]
			if f.ID != id || f.LastError != "boom 3" || f.Attempt != 3 || f.MaxAttempts != 3 || f.State != job.StateFailed || f.FinishedAt.IsZero() || f.ProcessedAt.IsZero() {
				t.Fatalf("failed job %+v", f)
			}
			if c := counts(t, q, queue); c != (job.Counts{Failed: 1}) {
				t.Fatalf("counts %+v", c)
			}
		})

		t.Run("PermanentErrorAndPanicFailWithoutWaste", func(t *testing.T) {
			queue := testenv.Unique("q")
			mustAdd(t, q, queue, "bad", nil, job.Options{JobID: "perm", Attempts: 5})
			mustAdd(t, q, queue, "panics", nil, job.Options{JobID: "panic", Attempts: 1})
			var runs atomic.Int32
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				runs.Add(1)
				if j.Name == "panics" {
					panic("kaboom")
				}
				return job.Permanent(errors.New("no such shift"))
			}, fastOpts())
			s := drain(t, w, 10*time.Second)
			if s.DeadLettered != 2 || runs.Load() != 2 {
				t.Fatalf("summary %+v runs %d", s, runs.Load())
			}
			j, _ := q.GetJob(ctx, queue, "panic")
			if j.State != job.StateFailed || j.LastError != "handler panic: kaboom" {
				t.Fatalf("panicked job %+v", j)
			}
		})

		t.Run("RetryFailedRunsFailedJobsAgain", func(t *testing.T) {
			queue := testenv.Unique("q")
			for i := range 3 {
				mustAdd(t, q, queue, "x", nil, job.Options{JobID: fmt.Sprint("f", i), Attempts: 1})
			}
			var ok atomic.Bool
			var runs atomic.Int32
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				runs.Add(1)
				if !ok.Load() {
					return errors.New("down")
				}
				return nil
			}, fastOpts())
			drain(t, w, 10*time.Second)
			if c := counts(t, q, queue); c.Failed != 3 {
				t.Fatalf("counts %+v", c)
			}
			ok.Store(true)
			if err := q.RetryFailed(ctx, queue, "f1"); err != nil {
				t.Fatal(err)
			}
			if c := counts(t, q, queue); c.Failed != 2 || c.Waiting != 1 {
				t.Fatalf("after retry one: %+v", c)
			}
			if err := q.RetryFailed(ctx, queue, "f1"); core.ErrorCode(err) != core.ENotFound {
				t.Fatalf("retrying a job that is not failed: %v", err)
			}
			drain(t, w, 10*time.Second)
			n, err := q.RetryAllFailed(ctx, queue)
			if err != nil || n != 2 {
				t.Fatalf("RetryAllFailed %d %v", n, err)
			}
			drain(t, w, 10*time.Second)
			if c := counts(t, q, queue); c != (job.Counts{Completed: 3}) || runs.Load() != 6 {
				t.Fatalf("counts %+v runs %d", c, runs.Load())
			}
			j, _ := q.GetJob(ctx, queue, "f0")
			if j.Attempt != 1 || j.LastError != "down" {
				t.Fatalf("retried job keeps its last error and restarts attempts: %+v", j)
			}
		})

		t.Run("RemoveDeletesAJobInAnyState", func(t *testing.T) {
			queue := testenv.Unique("q")
			mustAdd(t, q, queue, "d", nil, job.Options{JobID: "delayed", Delay: time.Hour})
			mustAdd(t, q, queue, "f", nil, job.Options{JobID: "failed", Attempts: 1})
			mustAdd(t, q, queue, "c", nil, job.Options{JobID: "done"})
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				if j.Name == "f" {
					return errors.New("x")
				}
				return nil
			}, fastOpts())
			drain(t, w, 10*time.Second)
			mustAdd(t, q, queue, "w", nil, job.Options{JobID: "waiting"})
			if c := counts(t, q, queue); c != (job.Counts{Waiting: 1, Delayed: 1, Completed: 1, Failed: 1}) {
				t.Fatalf("setup counts %+v", c)
			}
			for _, id := range []string{"waiting", "delayed", "failed", "done"} {
				if err := q.Remove(ctx, queue, id); err != nil {
					t.Fatalf("Remove %s: %v", id, err)
				}
				if _, err := q.GetJob(ctx, queue, id); core.ErrorCode(err) != core.ENotFound {
					t.Fatalf("GetJob after Remove %s: %v", id, err)
				}
			}
			if err := q.Remove(ctx, queue, "waiting"); core.ErrorCode(err) != core.ENotFound {
				t.Fatalf("second Remove: %v", err)
			}
			if c := counts(t, q, queue); c != (job.Counts{}) {
				t.Fatalf("counts after removing all %+v", c)
			}
			// A removed id can be added again.
			mustAdd(t, q, queue, "w", nil, job.Options{JobID: "waiting"})
			if c := counts(t, q, queue); c.Waiting != 1 {
				t.Fatalf("re-added %+v", c)
			}
		})

		t.Run("RemovingAnActiveJobDropsItsResult", func(t *testing.T) {
			queue := testenv.Unique("q")
			mustAdd(t, q, queue, "slow", nil, job.Options{JobID: "a", Attempts: 1})
			started := make(chan struct{})
			release := make(chan struct{})
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				close(started)
				<-release
				return errors.New("would fail")
			}, fastOpts())
			done := make(chan event.DrainSummary)
			go func() { done <- drain(t, w, 10*time.Second) }()
			<-started
			if c := counts(t, q, queue); c.Active != 1 {
				t.Fatalf("counts while running %+v", c)
			}
			if j, err := q.GetJob(ctx, queue, "a"); err != nil || j.State != job.StateActive {
				t.Fatalf("GetJob while running %+v %v", j, err)
			}
			if err := q.Remove(ctx, queue, "a"); err != nil {
				t.Fatal(err)
			}
			close(release)
			<-done
			if c := counts(t, q, queue); c != (job.Counts{}) {
				t.Fatalf("removed job came back: %+v", c)
			}
		})

		t.Run("BadInputIsRefusedAndChangesNothing", func(t *testing.T) {
			queue := testenv.Unique("q")
			cases := []struct {
				name, queue, job string
				data             any
				opts             job.Options
			}{
				{"empty queue", "", "n", nil, job.Options{}},
				{"brace in queue", "a{b}", "n", nil, job.Options{}},
				{"space in queue", "a b", "n", nil, job.Options{}},
				{"empty name", queue, "", nil, job.Options{}},
				{"data not encodable", queue, "n", func() {}, job.Options{}},
				{"raw data not JSON", queue, "n", json.RawMessage("{"), job.Options{}},
				{"negative delay", queue, "n", nil, job.Options{Delay: -time.Second}},
				{"negative attempts", queue, "n", nil, job.Options{Attempts: -1}},
				{"unknown backoff", queue, "n", nil, job.Options{Backoff: job.Backoff{Type: "linear"}}},
				{"control character in id", queue, "n", nil, job.Options{JobID: "a\nb"}},
				{"control character in correlation id", queue, "n", nil, job.Options{CorrelationID: "a\x1fb"}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					_, err := q.Add(ctx, c.queue, c.job, c.data, c.opts)
					if core.ErrorCode(err) != core.EInvalid {
						t.Fatalf("err %v, want invalid", err)
					}
				})
			}
			if c := counts(t, q, queue); c != (job.Counts{}) {
				t.Fatalf("counts %+v", c)
			}
			if _, err := q.Counts(ctx, "bad{queue}"); core.ErrorCode(err) != core.EInvalid {
				t.Fatalf("Counts bad queue: %v", err)
			}
		})

		t.Run("ConcurrencyBoundsRunningHandlers", func(t *testing.T) {
			queue := testenv.Unique("q")
			for range 12 {
				mustAdd(t, q, queue, "x", nil, job.Options{})
			}
			var now, peak atomic.Int32
			o := fastOpts()
			o.Concurrency = 3
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				n := now.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(40 * time.Millisecond)
				now.Add(-1)
				return nil
			}, o)
			s := drain(t, w, 10*time.Second)
			if s.Processed != 12 || peak.Load() != 3 {
				t.Fatalf("summary %+v peak %d", s, peak.Load())
			}
		})

		t.Run("KeepCompletedBoundsWhatIsKept", func(t *testing.T) {
			queue := testenv.Unique("q")
			// The count is the queue's (retention, retention.go); a job's
			// own KeepCompleted < 0 still deletes it at once.
			q := NewQueues(tg.client, QueueOptions{Prefix: tg.prefix, KeepCompleted: 2, Logger: quiet})
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { return nil }, fastOpts())
			// One at a time, so that the completion order is known.
			for i := range 5 {
				mustAdd(t, q, queue, "x", nil, job.Options{JobID: fmt.Sprint("k", i)})
				drain(t, w, 10*time.Second)
			}
			mustAdd(t, q, queue, "x", nil, job.Options{JobID: "gone", KeepCompleted: -1})
			drain(t, w, 10*time.Second)
			applyRetention(t, q, queue)
			kept, err := q.ListCompleted(ctx, queue, 0, 10)
			if err != nil || len(kept) != 2 || kept[0].ID != "k4" || kept[1].ID != "k3" {
				t.Fatalf("kept %+v %v", kept, err)
			}
			if _, err := q.GetJob(ctx, queue, "k0"); core.ErrorCode(err) != core.ENotFound {
				t.Fatalf("trimmed job still there: %v", err)
			}
			if _, err := q.GetJob(ctx, queue, "gone"); core.ErrorCode(err) != core.ENotFound {
				t.Fatalf("job with KeepCompleted<0 still there: %v", err)
			}
		})

		t.Run("DrainUnderAShortDeadlineLeavesNothingHalfDone", func(t *testing.T) {
			queue := testenv.Unique("q")
			for range 20 {
				mustAdd(t, q, queue, "x", nil, job.Options{})
			}
			o := fastOpts()
			o.Concurrency = 2
			o.HandlerTimeout = 300 * time.Millisecond
			o.SafetyMargin = 100 * time.Millisecond
			var mu sync.Mutex
			var started, finished []string
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				mu.Lock()
				started = append(started, j.ID)
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
				mu.Lock()
				finished = append(finished, j.ID)
				mu.Unlock()
				return nil
			}, o)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			begin := time.Now()
			s, err := w.Drain(ctx)
			// The drain hands back before its deadline (the safety margin),
			// whatever the machine's speed: the deadline itself is the event
			// checked, not a wall-clock bound.
			if ctx.Err() != nil {
				t.Fatalf("the drain returned after its deadline (%v): %v", time.Since(begin), context.Cause(ctx))
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.StoppedBy != "deadline" {
				t.Fatalf("summary %+v after %v", s, time.Since(begin))
			}
			mu.Lock()
			defer mu.Unlock()
			c := counts(t, q, queue)
			if c.Active != 0 || c.Completed != int64(len(finished)) || c.Completed+c.Waiting != 20 || len(started) != len(finished) || s.Processed != len(finished) {
				t.Fatalf("counts %+v, %d started, %d finished, summary %+v", c, len(started), len(finished), s)
			}
			if len(finished) == 0 || len(finished) > 14 {
				t.Fatalf("%d jobs finished in a 1s drain of 100ms jobs at concurrency 2", len(finished))
			}
		})

		t.Run("DrainDoesNotStartWhatCannotFinishBeforeTheDeadline", func(t *testing.T) {
			queue := testenv.Unique("q")
			mustAdd(t, q, queue, "x", nil, job.Options{})
			o := fastOpts()
			o.HandlerTimeout = 5 * time.Second
			logs := &logRecorder{}
			o.Logger = slog.New(logs)
			var runs atomic.Int32
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { runs.Add(1); return nil }, o)
			s := drain(t, w, 2*time.Second)
			if s.StoppedBy != "deadline" || runs.Load() != 0 || counts(t, q, queue).Waiting != 1 {
				t.Fatalf("summary %+v runs %d", s, runs.Load())
			}
			// Starting nothing must not be silent: one Warn with the numbers.
			if v, ok := logs.attr(cannotStartMsg, "handlerTimeout"); !ok || v.Duration() != 5*time.Second {
				t.Errorf("no %q log with handlerTimeout=5s (got %v %v)", cannotStartMsg, v, ok)
			}
		})

		t.Run("LongPollDrainPicksUpJobsAddedWhileItWaits", func(t *testing.T) {
			queue := testenv.Unique("q")
			o := fastOpts()
			o.HandlerTimeout = 200 * time.Millisecond
			got := make(chan time.Time, 1)
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { got <- time.Now(); return nil }, o)
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			res := make(chan event.DrainSummary)
			go func() { s, _ := w.DrainLongPoll(ctx); res <- s }()
			time.Sleep(400 * time.Millisecond)
			added := time.Now()
			mustAdd(t, q, queue, "x", nil, job.Options{})
			select {
			case at := <-got:
				if lat := at.Sub(added); lat > 250*time.Millisecond {
					t.Errorf("job started %v after it was added", lat)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("long poll did not pick up the job")
			}
			s := <-res
			if s.Processed != 1 || s.StoppedBy != "deadline" {
				t.Fatalf("summary %+v", s)
			}
		})

		t.Run("RunFinishesInFlightJobsOnShutdown", func(t *testing.T) {
			queue := testenv.Unique("q")
			started := make(chan struct{}, 1)
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				started <- struct{}{}
				time.Sleep(200 * time.Millisecond) // within ShutdownTimeout
				return nil
			}, fastOpts())
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- w.Run(ctx) }()
			mustAdd(t, q, queue, "x", nil, job.Options{})
			<-started
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if c := counts(t, q, queue); c != (job.Counts{Completed: 1}) {
				t.Fatalf("in-flight job not finished on shutdown: %+v", c)
			}
		})

		t.Run("ShutdownHandsBackJobsThatDoNotFinishInTime", func(t *testing.T) {
			queue := testenv.Unique("q")
			id := mustAdd(t, q, queue, "x", nil, job.Options{})
			started := make(chan struct{}, 1)
			var calls atomic.Int32
			o := fastOpts()
			o.ShutdownTimeout = 100 * time.Millisecond
			logs := &logRecorder{}
			o.Logger = slog.New(logs)
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				if calls.Add(1) == 1 {
					started <- struct{}{}
					<-ctx.Done() // a long job that honours cancellation
					return ctx.Err()
				}
				return nil
			}, o)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- w.Run(ctx) }()
			<-started
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return")
			}
			j, err := q.GetJob(context.Background(), queue, id)
			if err != nil || j.State != job.StateWaiting || j.Attempt != 1 {
				t.Fatalf("handed-back job %+v %v (no attempt spent)", j, err)
			}
			// The log must say what happened: handed back, not "will retry".
			if _, ok := logs.attr("job handed back on shutdown", "err"); !ok {
				t.Error(`no "job handed back on shutdown" log`)
			}
			if _, ok := logs.attr("job attempt failed; will retry", "err"); ok {
				t.Error(`a handed-back job was logged as "will retry"`)
			}
			s := drain(t, w, 10*time.Second)
			if s.Succeeded != 1 || calls.Load() != 2 {
				t.Fatalf("summary %+v calls %d", s, calls.Load())
			}
		})

		t.Run("ShutdownHandsBackJobsWhoseHandlerIgnoresCancellation", func(t *testing.T) {
			queue := testenv.Unique("q")
			id := mustAdd(t, q, queue, "x", nil, job.Options{})
			started := make(chan struct{}, 1)
			release := make(chan struct{})
			o := fastOpts()
			o.ShutdownTimeout = 100 * time.Millisecond
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				started <- struct{}{}
				<-release
				return errors.New("late result")
			}, o)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- w.Run(ctx) }()
			<-started
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return")
			}
			close(release)
			time.Sleep(100 * time.Millisecond)
			j, err := q.GetJob(context.Background(), queue, id)
			if err != nil || j.State != job.StateWaiting || j.Attempt != 1 || j.LastError != "" {
				t.Fatalf("job %+v %v: the stuck handler's late failure must be dropped", j, err)
			}
		})

		t.Run("JobOfACrashedWorkerIsRetriedAfterTheVisibilityTimeout", func(t *testing.T) {
			queue := testenv.Unique("q")
			id := mustAdd(t, q, queue, "x", nil, job.Options{})
			crashWorker(t, tg.client, newQueueKeys(tg.prefix, queue).stream, workersGroup)
			o := fastOpts()
			o.VisibilityTimeout = 500 * time.Millisecond
			var attempt atomic.Int32
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { attempt.Store(int32(j.Attempt)); return nil }, o)
			s := drain(t, w, 10*time.Second)
			if s.Processed != 0 || counts(t, q, queue).Active != 1 {
				t.Fatalf("taken from a live lease: %+v", s)
			}
			time.Sleep(600 * time.Millisecond)
			s = drain(t, w, 10*time.Second)
			if s.Reclaimed != 1 || s.Succeeded != 1 || attempt.Load() != 2 {
				t.Fatalf("summary %+v, attempt %d (the crashed run counts)", s, attempt.Load())
			}
			if _, err := q.GetJob(ctx, queue, id); err != nil {
				t.Fatal(err)
			}
			if c := counts(t, q, queue); c != (job.Counts{Completed: 1}) {
				t.Fatalf("counts %+v", c)
			}
		})

		t.Run("JobThatKeepsCrashingItsWorkerIsDeadLettered", func(t *testing.T) {
			queue := testenv.Unique("q")
			id := mustAdd(t, q, queue, "x", nil, job.Options{Attempts: 1})
			crashWorker(t, tg.client, newQueueKeys(tg.prefix, queue).stream, workersGroup)
			o := fastOpts()
			o.VisibilityTimeout = 300 * time.Millisecond
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { return nil }, o)
			time.Sleep(400 * time.Millisecond)
			s := drain(t, w, 10*time.Second)
			j, _ := q.GetJob(ctx, queue, id)
			if s.DeadLettered != 1 || j.State != job.StateFailed || j.LastError == "" {
				t.Fatalf("summary %+v job %+v", s, j)
			}
		})

		t.Run("LongJobExtendsItsLease", func(t *testing.T) {
			queue := testenv.Unique("q")
			mustAdd(t, q, queue, "x", nil, job.Options{})
			o := fastOpts()
			o.VisibilityTimeout = 400 * time.Millisecond
			o.HandlerTimeout = 5 * time.Second
			var runs atomic.Int32
			h := func(ctx context.Context, j *job.Job) error {
				runs.Add(1)
				select {
				case <-time.After(1500 * time.Millisecond):
					return nil
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
			w1, _ := q.Worker(queue, h, o)
			w2, _ := q.Worker(queue, h, o)
			done := make(chan event.DrainSummary)
			go func() { done <- drain(t, w1, 10*time.Second) }()
			// Another consumer keeps trying to reclaim meanwhile.
			reclaimed := 0
			for end := time.Now().Add(1800 * time.Millisecond); time.Now().Before(end); {
				reclaimed += drain(t, w2, 5*time.Second).Reclaimed
				time.Sleep(100 * time.Millisecond)
			}
			s := <-done
			if runs.Load() != 1 || reclaimed != 0 || s.Succeeded != 1 {
				t.Fatalf("runs %d reclaimed %d summary %+v", runs.Load(), reclaimed, s)
			}
		})

		consumerHygieneQueue(t, tg, q)
	})
}

// crashWorker takes the next entry of stream as a consumer that starts
// its handler (and marks it started, as the engine does) and then "dies":
// the entry stays pending and is never acknowledged.
func crashWorker(t *testing.T, c redis.UniversalClient, stream, group string) {
	t.Helper()
	id := crashWorkerBeforeStart(t, c, stream, group)
	err := c.Do(context.Background(), "XCLAIM", stream, group, "crashed", 0, id, "RETRYCOUNT", 2, "JUSTID").Err()
	if err != nil {
		t.Fatal(err)
	}
}

// crashWorkerBeforeStart takes the next entry of stream as a consumer
// that dies before any handler started it (a prefetched entry).
func crashWorkerBeforeStart(t *testing.T, c redis.UniversalClient, stream, group string) string {
	t.Helper()
	ctx := context.Background()
	if err := c.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil && err.Error() != "BUSYGROUP Consumer Group name already exists" {
		t.Fatal(err)
	}
	res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "crashed", Streams: []string{stream, ">"}, Count: 1, Block: -1}).Result()
	if err != nil || len(res) != 1 || len(res[0].Messages) != 1 {
		t.Fatalf("crashed worker read %v %v", res, err)
	}
	return res[0].Messages[0].ID
}

func TestBackoffDelay(t *testing.T) {
	exp := job.Backoff{Type: job.BackoffExponential, Base: time.Second, Cap: 10 * time.Second}
	cases := []struct {
		name     string
		b        job.Backoff
		attempt  int
		min, max time.Duration
	}{
		{"fixed ignores the attempt", job.Backoff{Type: job.BackoffFixed, Base: 3 * time.Second, Cap: 3 * time.Second}, 7, 3 * time.Second, 3 * time.Second},
		{"exponential first retry is base, jittered", exp, 1, 500 * time.Millisecond, time.Second},
		{"exponential doubles", exp, 3, 2 * time.Second, 4 * time.Second},
		{"exponential is capped", exp, 30, 5 * time.Second, 10 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 200 {
				d := backoffDelay(c.b, c.attempt)
				if d < c.min || d > c.max {
					t.Fatalf("delay %v outside [%v, %v]", d, c.min, c.max)
				}
			}
		})
	}
	if got := decodeBackoff(encodeBackoff(exp)); got != exp {
		t.Fatalf("encode/decode %+v", got)
	}
}

func TestIDsAreUniqueAndSortInCreationOrder(t *testing.T) {
	prev := ""
	seen := map[string]bool{}
	for range 10000 {
		id := NewID()
		if len(id) != 26 || id <= prev || seen[id] {
			t.Fatalf("id %q after %q", id, prev)
		}
		seen[id] = true
		prev = id
	}
	a := ids.next(time.UnixMilli(1000))
	b := ids.next(time.UnixMilli(500)) // clock stepped back
	if b <= a {
		t.Fatalf("%s !> %s after a clock step back", b, a)
	}
}

func TestNames(t *testing.T) {
	for _, ok := range []string{"invoice-generation", "email.notifications", "a:b_c"} {
		if err := validName("queue", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a{b", "a}b", "a b", "tab\t", string(make([]byte, 101))} {
		if err := validName("queue", bad); core.ErrorCode(err) != core.EInvalid {
			t.Errorf("%q accepted", bad)
		}
	}
	k := newQueueKeys("sf", "invoice-generation")
	for _, key := range []string{k.stream, k.delayed, k.completed, k.failed, k.job("x{y}")} {
		if redisSlotTag(key) != "invoice-generation" {
			t.Errorf("%s: tag %q", key, redisSlotTag(key))
		}
	}
	sk := newStreamKeys("sf", "events")
	s := sk.sub("on-shift-completed")
	for _, key := range []string{sk.stream, sk.lost, s.retry, s.delayed, s.held, s.dead} {
		if redisSlotTag(key) != "events" {
			t.Errorf("%s: tag %q", key, redisSlotTag(key))
		}
	}
}

// redisSlotTag is the part of a key Redis Cluster hashes.
func redisSlotTag(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						return key[i+1 : j]
					}
					return key
				}
			}
			return key
		}
	}
	return key
}
