package redisstream

// Tests of the engine's guarantees (docs/design.md, "Engine guarantees")
// that need the package's internals: crashed consumers simulated at the
// stream level, a client hook that loses a reply, the lanes' reclaim.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
)

func TestEngineContract(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		q := NewQueues(tg.client, QueueOptions{Prefix: tg.prefix})
		ctx := context.Background()

		// Issue 9 item 6: a prefetched entry no handler started does not
		// spend an attempt when its worker crashes.
		t.Run("UnstartedEntryOfACrashedWorkerKeepsItsAttempt", func(t *testing.T) {
			queue := testenv.Unique("q")
			id := mustAdd(t, q, queue, "x", nil, job.Options{Attempts: 3})
			crashWorkerBeforeStart(t, tg.client, newQueueKeys(tg.prefix, queue).stream, workersGroup)
			o := fastOpts()
			o.VisibilityTimeout = 300 * time.Millisecond
			var attempt atomic.Int32
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { attempt.Store(int32(j.Attempt)); return nil }, o)
			time.Sleep(400 * time.Millisecond)
			s := drain(t, w, 10*time.Second)
			if s.Reclaimed != 1 || s.Succeeded != 1 || attempt.Load() != 1 {
				t.Fatalf("summary %+v, attempt %d: want the unstarted job reclaimed and run as attempt 1", s, attempt.Load())
			}
			if j, err := q.GetJob(ctx, queue, id); err != nil || j.Attempt != 1 {
				t.Fatalf("job %+v %v: want attempt 1", j, err)
			}
		})

		// The guard against a job that kills its worker before its start
		// mark is written: the third uncharged reclaim is charged.
		t.Run("ThirdUnstartedReclaimIsCharged", func(t *testing.T) {
			queue := testenv.Unique("q")
			id := mustAdd(t, q, queue, "x", nil, job.Options{Attempts: 1})
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { return nil }, fastOpts())
			stream := newQueueKeys(tg.prefix, queue).stream
			for i := 1; i <= 3; i++ {
				crashWorkerBeforeStart(t, tg.client, stream, workersGroup)
				time.Sleep(150 * time.Millisecond)
				if _, err := w.e.lane.maintain(ctx, "reclaimer", true, 100*time.Millisecond); err != nil {
					t.Fatal(err)
				}
				j, err := q.GetJob(ctx, queue, id)
				if err != nil {
					t.Fatal(err)
				}
				want := job.StateWaiting
				if i == 3 {
					want = job.StateFailed
				}
				if j.State != want || j.Attempt != 1 {
					t.Fatalf("after uncharged crash %d: job %+v, want %s at attempt 1", i, j, want)
				}
			}
		})

		// Item 8: the reclaim follows the pending list past entries that
		// are held by live consumers (XAUTOCLAIM gave up after scanning
		// ten times its COUNT).
		t.Run("ReclaimFindsStalledEntriesBehindLiveOnes", func(t *testing.T) {
			if tg.name != "redis" && tg.name != "embedded" {
				t.Skip("1005 jobs: plain servers only")
			}
			queue := testenv.Unique("q")
			const live, stalled = 1000, 5
			pipe := tg.client.Pipeline()
			k := newQueueKeys(tg.prefix, queue)
			for i := range live + stalled {
				id := fmt.Sprint("j", i)
				rec := jobRecord(3, defaultJobBackoff, time.Now(), "", "x", []byte("null"))
				addScript.Run(ctx, pipe, []string{k.job(id), k.stream, k.delayed, k.dedup(id)}, id, rec, 100, 0, 0)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if err := tg.client.XGroupCreateMkStream(ctx, k.stream, workersGroup, "0").Err(); err != nil {
				t.Fatal(err)
			}
			res, err := tg.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: workersGroup, Consumer: "dead",
				Streams: []string{k.stream, ">"}, Count: live + stalled, Block: -1}).Result()
			if err != nil || len(res[0].Messages) != live+stalled {
				t.Fatalf("read %v", err)
			}
			time.Sleep(400 * time.Millisecond)
			// The first entries are taken over by a live consumer (fresh
			// lease); the last ones stay stalled.
			args := []any{"XCLAIM", k.stream, workersGroup, "live", 0}
			for _, m := range res[0].Messages[:live] {
				args = append(args, m.ID)
			}
			if err := tg.client.Do(ctx, append(args, "JUSTID")...).Err(); err != nil {
				t.Fatal(err)
			}
			o := fastOpts()
			o.VisibilityTimeout = 300 * time.Millisecond
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { return nil }, o)
			s := drain(t, w, 10*time.Second)
			if s.Reclaimed != stalled || s.Succeeded != stalled {
				t.Fatalf("summary %+v: want the %d stalled entries behind %d live ones reclaimed", s, stalled, live)
			}
		})

		// Item 10: the summary counts what was recorded, not what the
		// handlers returned.
		t.Run("SummaryCountsOnlyRecordedResults", func(t *testing.T) {
			queue := testenv.Unique("q")
			mustAdd(t, q, queue, "removed", nil, job.Options{JobID: "gone"})
			mustAdd(t, q, queue, "normal", nil, job.Options{})
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
				if j.Name == "removed" {
					// Removed while running: its result changes nothing.
					return q.Remove(ctx, queue, j.ID)
				}
				return nil
			}, fastOpts())
			s := drain(t, w, 10*time.Second)
			if s.Succeeded != 1 || s.Processed != 1 {
				t.Fatalf("summary %+v: want only the recorded success counted", s)
			}
		})

		// Item 4 (serverless): a warm worker whose group vanished between
		// drains recreates it instead of failing every later drain.
		t.Run("WarmDrainRecreatesAVanishedGroup", func(t *testing.T) {
			queue := testenv.Unique("q")
			var runs atomic.Int32
			w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { runs.Add(1); return nil }, fastOpts())
			mustAdd(t, q, queue, "x", nil, job.Options{})
			drain(t, w, 10*time.Second)
			if err := tg.client.Del(ctx, newQueueKeys(tg.prefix, queue).stream).Err(); err != nil {
				t.Fatal(err)
			}
			mustAdd(t, q, queue, "x", nil, job.Options{})
			for range 3 {
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := w.Drain(ctx)
				cancel()
				if err != nil && !isNoGroup(err) {
					t.Fatal(err)
				}
				if runs.Load() == 2 {
					return
				}
			}
			t.Fatalf("job added after the group vanished ran %d times in 3 drains, want once", runs.Load()-1)
		})
	})
}

// Item 7: a record call that fetched entries but whose reply was lost
// (connection reset after the script ran) does not orphan them: the
// consumer recovers its own pending entries and runs them at once, so no
// job is reclaimed as stalled without ever running.
func TestEngineLostRecordReplyOrphansNothing(t *testing.T) {
	c := testenv.RedisPlain(t).(*redis.Client)
	prefix := testenv.Unique("sft")
	t.Cleanup(func() { deletePrefix(t, c, prefix) })
	var dropped atomic.Int32
	c.AddHook(loseFinishReply{sha: finishJobsScript.Hash(), dropped: &dropped})
	q := NewQueues(c, QueueOptions{Prefix: prefix})
	queue := testenv.Unique("q")
	const n = 40
	for i := range n {
		mustAdd(t, q, queue, "x", nil, job.Options{JobID: fmt.Sprint("j", i), Attempts: 1})
	}
	var mu sync.Mutex
	runs := map[string]int{}
	o := fastOpts()
	o.Concurrency, o.Prefetch = 2, 2
	o.VisibilityTimeout = 500 * time.Millisecond
	w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
		mu.Lock()
		runs[j.ID]++
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		return nil
	}, o)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		cnt := counts(t, q, queue)
		if cnt.Completed+cnt.Failed == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts %+v after 15s", cnt)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * o.VisibilityTimeout) // a late reclaim would show here
	cancel()
	<-done
	if dropped.Load() == 0 {
		t.Fatal("no reply was dropped: the test did not exercise the fault")
	}
	if cnt := counts(t, q, queue); cnt.Completed != n || cnt.Failed != 0 {
		t.Fatalf("counts %+v: want all %d completed, none failed as stalled", cnt, n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if r := runs[fmt.Sprint("j", i)]; r != 1 {
			t.Errorf("job j%d ran %d times, want once", i, r)
		}
	}
}

// loseFinishReply lets the first two record calls that fetch run in Redis
// and then reports an error instead of their reply, as a connection reset
// after the script ran would.
type loseFinishReply struct {
	sha     string
	dropped *atomic.Int32
}

func (h loseFinishReply) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h loseFinishReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h loseFinishReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		a := cmd.Args()
		if err != nil || len(a) < 3 || a[0] != "evalsha" || a[1] != h.sha {
			return err
		}
		nk, _ := strconv.Atoi(fmt.Sprint(a[2]))
		if len(a) <= 3+nk+2 || fmt.Sprint(a[3+nk+2]) == "0" {
			return err // does not fetch
		}
		v, _ := cmd.(*redis.Cmd).Slice()
		if len(v) < 2 || v[1] == nil || h.dropped.Load() >= 2 {
			return err // fetched nothing
		}
		h.dropped.Add(1)
		lost := errors.New("read tcp: connection reset by peer (test)")
		cmd.SetErr(lost)
		return lost
	}
}

var _ event.Drainer = (*Worker)(nil)
