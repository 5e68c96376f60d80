package redisstream

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/job"
)

// groupConsumers returns the group's consumers and their pending counts.
func groupConsumers(t *testing.T, c redis.UniversalClient, stream, group string) map[string]int64 {
	t.Helper()
	cs, err := c.XInfoConsumers(context.Background(), stream, group).Result()
	if err != nil {
		t.Fatalf("XINFO CONSUMERS %s %s: %v", stream, group, err)
	}
	out := map[string]int64{}
	for _, x := range cs {
		out[x.Name] = x.Pending
	}
	return out
}

// joinGroup makes consumers join a group without taking anything, as a
// cold-started instance that found no work does.
func joinGroup(t *testing.T, c redis.UniversalClient, stream, group string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := c.XGroupCreateConsumer(context.Background(), stream, group, n).Err(); err != nil {
			t.Fatalf("XGROUP CREATECONSUMER %s: %v", n, err)
		}
	}
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// attr returns attribute key of the last record with message msg.
func (l *logRecorder) attr(msg, key string) (slog.Value, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.recs) - 1; i >= 0; i-- {
		if l.recs[i].Message != msg {
			continue
		}
		var v slog.Value
		found := false
		l.recs[i].Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				v, found = a.Value, true
				return false
			}
			return true
		})
		return v, found
	}
	return slog.Value{}, false
}

const prunedMsg = "removed idle consumers from the group"

// TestIdleConsumersArePruned runs on the real redis-server, where idle
// times are exact: consumers left behind by gone serverless instances are
// deleted, never one holding pending entries (a drain reclaims those
// first, then deletes the emptied consumer), never the caller, and at
// most once per interval per group across processes.
func TestIdleConsumersArePruned(t *testing.T) {
	c := testenv.RedisPlain(t) // skips unless SHIFTFLOW_TEST_REDIS_URL is set
	prefix := testenv.Unique("sft")
	t.Cleanup(func() { deletePrefix(t, c, prefix) })
	ctx := context.Background()
	q := NewQueues(c, QueueOptions{Prefix: prefix})
	queue := testenv.Unique("q")
	for range 3 {
		mustAdd(t, q, queue, "x", nil, job.Options{})
	}
	stream := newQueueKeys(prefix, queue).stream
	if err := c.XGroupCreateMkStream(ctx, stream, workersGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	joinGroup(t, c, stream, workersGroup, "cold-1", "cold-2", "caller")
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: workersGroup, Consumer: "cold-pending",
		Streams: []string{stream, ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	joinGroup(t, c, stream, workersGroup, "fresh")

	logs := &logRecorder{}
	o := fastOpts()
	o.Consumer = "caller"
	o.IdleConsumerTimeout = 200 * time.Millisecond
	o.VisibilityTimeout = 10 * time.Second
	o.Logger = slog.New(logs)
	w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { return nil }, o)
	w.e.pruneEvery = 100 * time.Millisecond

	t.Run("OnlyIdleConsumersWithNothingPendingGoAndNeverTheCaller", func(t *testing.T) {
		// No reclaim before this call: cold-pending's entry is still its own.
		if n := w.e.pruneConsumers(ctx, "caller"); n != 2 {
			t.Fatalf("removed %d, want 2 (cold-1, cold-2)", n)
		}
		want := map[string]int64{"caller": 0, "cold-pending": 1, "fresh": 0}
		if got := groupConsumers(t, c, stream, workersGroup); !maps.Equal(got, want) {
			t.Fatalf("consumers %v, want %v", got, want)
		}
		v, ok := logs.attr(prunedMsg, "removed")
		if !ok || v.Int64() != 2 {
			t.Fatalf("log: removed=%v (found %v)", v, ok)
		}
		names, _ := logs.attr(prunedMsg, "names")
		if got, _ := names.Any().([]string); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"cold-1", "cold-2"}) {
			t.Fatalf("logged names %v", names)
		}
	})

	t.Run("DrainReclaimsADeadConsumersEntriesThenRemovesIt", func(t *testing.T) {
		time.Sleep(300 * time.Millisecond) // all idle past the threshold; the lock expired
		o2 := o
		o2.Consumer = "drainer"
		o2.VisibilityTimeout = 200 * time.Millisecond
		w2, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { return nil }, o2)
		s := drain(t, w2, 10*time.Second)
		if s.Reclaimed != 1 || s.Succeeded != 3 || s.ConsumersRemoved != 3 {
			t.Fatalf("summary %+v: want 1 reclaimed, 3 succeeded, 3 consumers removed (cold-pending, caller, fresh)", s)
		}
		if got := groupConsumers(t, c, stream, workersGroup); !maps.Equal(got, map[string]int64{"drainer": 0}) {
			t.Fatalf("consumers %v, want only the drainer", got)
		}

		// Another process within the interval (the lock key's TTL, 1m by
		// default for w2) does not list the group again.
		joinGroup(t, c, stream, workersGroup, "cold-3")
		time.Sleep(250 * time.Millisecond)
		o3 := o2
		o3.Consumer = "other-process"
		w3, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { return nil }, o3)
		if s := drain(t, w3, 10*time.Second); s.ConsumersRemoved != 0 {
			t.Fatalf("pruned again within the interval: %+v", s)
		}
		if _, ok := groupConsumers(t, c, stream, workersGroup)["cold-3"]; !ok {
			t.Fatal("cold-3 removed within the interval")
		}
	})
}

// consumerHygieneQueue is part of the queue contract suite.
func consumerHygieneQueue(t *testing.T, tg target, q *Queues) {
	t.Run("IdleConsumersOfGoneInstancesAreRemoved", func(t *testing.T) {
		queue := testenv.Unique("q")
		mustAdd(t, q, queue, "x", nil, job.Options{})
		stream := newQueueKeys(tg.prefix, queue).stream
		crashWorker(t, tg.client, stream, workersGroup)
		joinGroup(t, tg.client, stream, workersGroup, "cold-1", "cold-2")
		time.Sleep(400 * time.Millisecond)

		o := fastOpts()
		o.VisibilityTimeout = 300 * time.Millisecond
		o.IdleConsumerTimeout = 300 * time.Millisecond
		w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { return nil }, o)
		s := drain(t, w, 10*time.Second)
		if !tg.real {
			// miniredis reports idle -1 for consumers that only read:
			// only "crashed" (it claimed, to mark its entry started) is
			// removed, and the drain is otherwise unaffected.
			if s.Reclaimed != 1 || s.Succeeded != 1 || s.ConsumersRemoved != 1 {
				t.Fatalf("summary %+v: want the crashed entry reclaimed and only the crashed consumer removed", s)
			}
			return
		}
		if s.Reclaimed != 1 || s.Succeeded != 1 || s.ConsumersRemoved != 3 {
			t.Fatalf("summary %+v: want the crashed entry reclaimed and 3 consumers removed", s)
		}
		if got := groupConsumers(t, tg.client, stream, workersGroup); !maps.Equal(got, map[string]int64{w.Consumer(): 0}) {
			t.Fatalf("consumers %v, want only the caller", got)
		}

		joinGroup(t, tg.client, stream, workersGroup, "cold-3")
		time.Sleep(400 * time.Millisecond)
		off := o
		off.Consumer = ""
		off.IdleConsumerTimeout = -1
		wOff, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { return nil }, off)
		wOff.e.pruneEvery = time.Millisecond
		if s := drain(t, wOff, 10*time.Second); s.ConsumersRemoved != 0 {
			t.Fatalf("a negative IdleConsumerTimeout removed consumers: %+v", s)
		}
		if _, ok := groupConsumers(t, tg.client, stream, workersGroup)["cold-3"]; !ok {
			t.Fatal("cold-3 removed although pruning is off")
		}
	})
}

// consumerHygieneBus is part of the bus contract suite: a subscription's
// consumers live in two groups (event stream and retry stream).
func consumerHygieneBus(t *testing.T, tg target, newBus func(BusOptions) *Bus) {
	t.Run("IdleConsumersOfGoneSubscriberInstancesAreRemoved", func(t *testing.T) {
		b := newBus(BusOptions{})
		var r recorder
		o := subOpts()
		o.VisibilityTimeout = 300 * time.Millisecond
		o.IdleConsumerTimeout = 300 * time.Millisecond
		s, _ := b.SubscribeDurable([]string{"*"}, "tidy", r.handle, o)
		s.e.pruneEvery = 100 * time.Millisecond
		drain(t, s, 5*time.Second) // creates both groups
		publish(t, b, "x.y", nil)
		crashWorker(t, tg.client, b.keys.stream, "tidy")
		retry := b.keys.sub("tidy").retry
		for _, st := range []string{b.keys.stream, retry} {
			joinGroup(t, tg.client, st, "tidy", "cold-1")
		}
		time.Sleep(400 * time.Millisecond)
		sum := drain(t, s, 5*time.Second)
		if !tg.real { // miniredis: idle -1 for readers, only "crashed" removed (see the queue test)
			if sum.Reclaimed != 1 || sum.Succeeded != 1 || sum.ConsumersRemoved != 1 {
				t.Fatalf("summary %+v", sum)
			}
			return
		}
		// Distinct names: cold-1 is counted once for its two groups.
		if sum.Reclaimed != 1 || sum.Succeeded != 1 || sum.ConsumersRemoved != 2 {
			t.Fatalf("summary %+v: want 1 reclaimed, 2 consumers removed (crashed, cold-1)", sum)
		}
		for _, st := range []string{b.keys.stream, retry} {
			// The caller joins a group only by reading from it (the
			// reclaim lists pending entries without claiming), so it may
			// be absent from the event stream's group.
			got := groupConsumers(t, tg.client, st, "tidy")
			delete(got, s.Consumer())
			if len(got) != 0 {
				t.Fatalf("%s consumers %v, want at most the caller", st, got)
			}
		}
	})
}
