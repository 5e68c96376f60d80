package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
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

func subOpts() SubscribeOptions {
	return SubscribeOptions{ConsumerOptions: fastOpts(), Backoff: job.Backoff{Type: job.BackoffFixed, Base: 100 * time.Millisecond}}
}

func publish(t *testing.T, b *Bus, typ string, payload any) {
	t.Helper()
	raw, _ := json.Marshal(payload)
	if err := b.Publish(context.Background(), event.Event{Type: typ, OrganizationID: "org-1", Payload: raw}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// recorder is a handler that records the events it got.
type recorder struct {
	mu  sync.Mutex
	ids []string
	err func(e event.Event) error
}

func (r *recorder) handle(ctx context.Context, e event.Event) error {
	r.mu.Lock()
	r.ids = append(r.ids, e.ID)
	r.mu.Unlock()
	if r.err != nil {
		return r.err(e)
	}
	return nil
}

func (r *recorder) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

func TestBusContract(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		newBus := func(o BusOptions) *Bus {
			o.Prefix = tg.prefix
			o.Logger = quiet
			o.Subscription = subOpts()
			o.Stream = testenv.Unique("ev")
			return NewBus(tg.client, o)
		}
		streamLen := func(b *Bus) int64 {
			n, err := tg.client.XLen(ctx, b.keys.stream).Result()
			if err != nil {
				t.Fatal(err)
			}
			return n
		}

		t.Run("PublishFillsTheEnvelopeAndRunsLocalSubscribersAtOnce", func(t *testing.T) {
			b := newBus(BusOptions{})
			var got []event.Event
			if _, err := b.Subscribe([]string{event.ShiftCompleted}, "emitter", func(ctx context.Context, e event.Event) error {
				got = append(got, e)
				return nil
			}, event.Local); err != nil {
				t.Fatal(err)
			}
			other := 0
			_ = b.SubscribeLocal([]string{event.InvoiceGenerated}, "other", func(ctx context.Context, e event.Event) error { other++; return nil })
			publish(t, b, event.ShiftCompleted, map[string]string{"shiftId": "s1"})
			if len(got) != 1 || other != 0 {
				t.Fatalf("local subscribers ran %d/%d times", len(got), other)
			}
			e := got[0]
			if len(e.ID) != 26 || e.Time.IsZero() || e.SchemaVersion != event.SchemaVersion || e.CorrelationID != e.ID || e.OrganizationID != "org-1" || string(e.Payload) != `{"shiftId":"s1"}` {
				t.Fatalf("envelope %+v", e)
			}
			if streamLen(b) != 1 {
				t.Fatal("event not appended to the stream")
			}
			// A given correlation id is carried, not replaced.
			if err := b.Publish(ctx, event.Event{Type: event.ShiftCompleted, CorrelationID: "c-9"}); err != nil || got[1].CorrelationID != "c-9" {
				t.Fatalf("correlation %v %+v", err, got[1])
			}
		})

		t.Run("FailingLocalSubscriberIsReportedButTheEventIsStored", func(t *testing.T) {
			b := newBus(BusOptions{})
			_ = b.SubscribeLocal([]string{"*"}, "bad", func(ctx context.Context, e event.Event) error { return errors.New("nope") })
			err := b.Publish(ctx, event.Event{Type: "x.y"})
			var le *LocalHandlerError
			if !errors.As(err, &le) || le.Event.ID == "" || streamLen(b) != 1 {
				t.Fatalf("err %v", err)
			}
		})

		t.Run("BadEventsAreRefusedAndNothingIsStored", func(t *testing.T) {
			b := newBus(BusOptions{})
			for _, e := range []event.Event{{}, {Type: "a\nb"}, {Type: "x", Payload: json.RawMessage("{")}} {
				if err := b.Publish(ctx, e); core.ErrorCode(err) != core.EInvalid {
					t.Errorf("%+v: %v", e, err)
				}
			}
			if n, _ := tg.client.Exists(ctx, b.keys.stream).Result(); n != 0 {
				t.Fatal("stream written")
			}
			if _, err := b.SubscribeDurable(nil, "s", func(context.Context, event.Event) error { return nil }, subOpts()); core.ErrorCode(err) != core.EInvalid {
				t.Fatalf("no types: %v", err)
			}
			if _, err := b.SubscribeDurable([]string{"x"}, "a{b}", func(context.Context, event.Event) error { return nil }, subOpts()); core.ErrorCode(err) != core.EInvalid {
				t.Fatalf("bad name: %v", err)
			}
		})

		t.Run("EveryDurableSubscriberGetsEveryEventOfItsTypes", func(t *testing.T) {
			b := newBus(BusOptions{})
			var shifts, all recorder
			s1, _ := b.SubscribeDurable([]string{event.ShiftCompleted}, "timesheets", shifts.handle, subOpts())
			// Through the core port, with the bus's default options.
			s2, err := b.Subscribe([]string{"*"}, "audit", all.handle, event.Durable)
			if err != nil {
				t.Fatal(err)
			}
			for range 10 {
				publish(t, b, event.ShiftCompleted, nil)
			}
			for range 5 {
				publish(t, b, event.InvoiceGenerated, nil)
			}
			d1 := drain(t, s1, 10*time.Second)
			d2 := drain(t, s2, 10*time.Second)
			if shifts.n() != 10 || all.n() != 15 || d1.Processed != 10 || d2.Processed != 15 {
				t.Fatalf("timesheets %d (%+v), audit %d (%+v)", shifts.n(), d1, all.n(), d2)
			}
		})

		t.Run("InstancesOfOneSubscriberShareTheWork", func(t *testing.T) {
			b := newBus(BusOptions{})
			var mu sync.Mutex
			seen := map[string]int{}
			per := [2]atomic.Int32{}
			// Few entries in flight per instance, so that one instance
			// cannot take every event in one read before the other's
			// first read arrives (on TLS under -race that can take a while).
			shareOpts := subOpts()
			shareOpts.Concurrency = 2
			shareOpts.Prefetch = -1
			mk := func(i int) *Subscription {
				s, err := b.SubscribeDurable([]string{"*"}, "workers", func(ctx context.Context, e event.Event) error {
					mu.Lock()
					seen[e.ID]++
					mu.Unlock()
					per[i].Add(1)
					time.Sleep(5 * time.Millisecond)
					return nil
				}, shareOpts)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			a, c := mk(0), mk(1)
			if a.Consumer() == c.Consumer() {
				t.Fatal("instances share a consumer name")
			}
			drain(t, a, 5*time.Second) // creates the group
			drain(t, c, 5*time.Second) // both instances connected before the events arrive
			for range 60 {
				publish(t, b, "x.y", nil)
			}
			var wg sync.WaitGroup
			for _, s := range []*Subscription{a, c} {
				wg.Add(1)
				go func() { defer wg.Done(); drain(t, s, 10*time.Second) }()
			}
			wg.Wait()
			if len(seen) != 60 || per[0].Load() == 0 || per[1].Load() == 0 {
				t.Fatalf("distinct %d, split %d/%d", len(seen), per[0].Load(), per[1].Load())
			}
			for id, n := range seen {
				if n != 1 {
					t.Fatalf("event %s handled %d times", id, n)
				}
			}
		})

		t.Run("FailingEventIsRetriedThenDeadLetteredAndCanBeReplayed", func(t *testing.T) {
			b := newBus(BusOptions{})
			var healthy atomic.Bool
			var attempts []time.Time
			var mu sync.Mutex
			o := subOpts()
			o.Attempts = 3
			s, _ := b.SubscribeDurable([]string{"*"}, "invoicer", func(ctx context.Context, e event.Event) error {
				mu.Lock()
				attempts = append(attempts, time.Now())
				mu.Unlock()
				if !healthy.Load() {
					return errors.New("pricing down")
				}
				return nil
			}, o)
			drain(t, s, 5*time.Second)
			publish(t, b, event.ShiftCompleted, map[string]string{"shiftId": "s7"})
			var dead []DeadLetter
			eventually(t, s, 10*time.Second, func() bool {
				var err error
				dead, err = b.DeadLetters(ctx, "invoicer", 10)
				if err != nil {
					t.Fatal(err)
				}
				return len(dead) == 1
			})
			mu.Lock()
			n := len(attempts)
			gap := attempts[1].Sub(attempts[0])
			mu.Unlock()
			if n != 3 || gap < 90*time.Millisecond {
				t.Fatalf("%d attempts, first retry after %v", n, gap)
			}
			dl := dead[0]
			if dl.Attempts != 3 || dl.Error != "pricing down" || dl.Event.Type != event.ShiftCompleted || string(dl.Event.Payload) != `{"shiftId":"s7"}` || dl.Time.IsZero() {
				t.Fatalf("dead letter %+v", dl)
			}
			healthy.Store(true)
			if _, err := b.Replay(ctx, "invoicer", "1-1"); core.ErrorCode(err) != core.ENotFound {
				t.Fatalf("replay unknown id: %v", err)
			}
			if n, err := b.Replay(ctx, "invoicer", dl.ID); err != nil || n != 1 {
				t.Fatalf("Replay %d %v", n, err)
			}
			sum := drain(t, s, 10*time.Second)
			if sum.Succeeded != 1 {
				t.Fatalf("replayed event not handled: %+v", sum)
			}
			if left, _ := b.DeadLetters(ctx, "invoicer", 10); len(left) != 0 {
				t.Fatalf("dead letters left %+v", left)
			}
		})

		t.Run("ReplayAllAndPermanentErrors", func(t *testing.T) {
			b := newBus(BusOptions{})
			var healthy atomic.Bool
			var calls atomic.Int32
			s, _ := b.SubscribeDurable([]string{"*"}, "mailer", func(ctx context.Context, e event.Event) error {
				calls.Add(1)
				if !healthy.Load() {
					return event.Permanent(errors.New("template missing"))
				}
				return nil
			}, subOpts())
			drain(t, s, 5*time.Second)
			for range 3 {
				publish(t, b, "x.y", nil)
			}
			sum := drain(t, s, 10*time.Second)
			if sum.DeadLettered != 3 || calls.Load() != 3 {
				t.Fatalf("permanent errors must not be retried: %+v, calls %d", sum, calls.Load())
			}
			healthy.Store(true)
			if n, err := b.ReplayAll(ctx, "mailer"); err != nil || n != 3 {
				t.Fatalf("ReplayAll %d %v", n, err)
			}
			if sum := drain(t, s, 10*time.Second); sum.Succeeded != 3 {
				t.Fatalf("after replay %+v", sum)
			}
		})

		t.Run("NewSubscriberSeesEventsPublishedBeforeItsFirstDrain", func(t *testing.T) {
			b := newBus(BusOptions{})
			publish(t, b, "x.y", nil)
			var early, late recorder
			s1, _ := b.SubscribeDurable([]string{"*"}, "early", early.handle, subOpts())
			o := subOpts()
			o.StartAtEnd = true
			s2, _ := b.SubscribeDurable([]string{"*"}, "late", late.handle, o)
			drain(t, s1, 5*time.Second)
			drain(t, s2, 5*time.Second)
			publish(t, b, "x.y", nil)
			drain(t, s1, 5*time.Second)
			drain(t, s2, 5*time.Second)
			if early.n() != 2 || late.n() != 1 {
				t.Fatalf("default start %d (want 2), StartAtEnd %d (want 1)", early.n(), late.n())
			}
		})

		t.Run("AgeRetentionNeverTrimsWhatAGroupStillNeeds", func(t *testing.T) {
			b := newBus(BusOptions{MaxAge: time.Millisecond, MaxLen: -1})
			var r recorder
			s, _ := b.SubscribeDurable([]string{"*"}, "slow", r.handle, subOpts())
			drain(t, s, 5*time.Second) // group exists, nothing read
			for range 5 {
				publish(t, b, "x.y", nil)
			}
			// One entry is delivered to a consumer that dies: pending.
			crashWorker(t, tg.client, b.keys.stream, "slow")
			time.Sleep(10 * time.Millisecond)
			res, err := b.Trim(ctx)
			if err != nil || res.Aged != 0 || streamLen(b) != 5 {
				t.Fatalf("trimmed %+v %v, len %d: entries still needed were removed", res, err, streamLen(b))
			}
			drain(t, s, 5*time.Second) // processes the 4 undelivered ones
			if res, _ := b.Trim(ctx); res.Aged != 0 || streamLen(b) != 5 {
				t.Fatalf("the pending entry (and those after it) must stay: %+v len %d", res, streamLen(b))
			}
			// The crashed consumer's entry is settled by a reclaim.
			_ = tg.client.XAck(ctx, b.keys.stream, "slow", firstID(t, tg.client, b.keys.stream)).Err()
			if res, _ := b.Trim(ctx); res.Aged != 5 || streamLen(b) != 0 {
				t.Fatalf("acknowledged old entries not trimmed: %+v len %d", res, streamLen(b))
			}
		})

		t.Run("LengthCapTrimsAndTheSubscriberIsToldWhatItLost", func(t *testing.T) {
			b := newBus(BusOptions{MaxAge: -1, MaxLen: 5, RetentionInterval: time.Hour})
			var logs logRecorder
			b.opt.Logger = slog.New(&logs)
			var r recorder
			s, _ := b.SubscribeDurable([]string{"*"}, "behind", r.handle, subOpts())
			drain(t, s, 5*time.Second)
			for range 12 {
				publish(t, b, "x.y", nil)
			}
			all, _ := tg.client.XRange(ctx, b.keys.stream, "-", "+").Result()
			res, err := b.Trim(ctx)
			if err != nil || res.Capped != 7 || streamLen(b) != 5 {
				t.Fatalf("cap %+v %v len %d", res, err, streamLen(b))
			}
			// The lost entries are logged with their id range.
			const msg = "event stream length cap removed entries a subscription had not been delivered"
			first, _ := logs.attr(msg, "firstId")
			last, _ := logs.attr(msg, "lastId")
			lost, _ := logs.attr(msg, "lost")
			if len(all) != 12 || first.String() != all[0].ID || last.String() != all[6].ID || lost.Int64() != 7 {
				t.Fatalf("loss logged as %v..%v (%v), want %s..%s (7)", first, last, lost, all[0].ID, all[6].ID)
			}
			sum := drain(t, s, 5*time.Second)
			if sum.Lost != 7 || sum.Processed != 5 {
				t.Fatalf("summary %+v: want 7 lost, 5 processed", sum)
			}
			if sum := drain(t, s, 5*time.Second); sum.Lost != 0 {
				t.Fatalf("loss reported twice: %+v", sum)
			}
		})

		t.Run("PendingEntryOfACrashedConsumerIsSparedThenReclaimed", func(t *testing.T) {
			b := newBus(BusOptions{MaxAge: -1, MaxLen: 2, RetentionInterval: time.Hour})
			var r recorder
			o := subOpts()
			o.VisibilityTimeout = 300 * time.Millisecond
			s, _ := b.SubscribeDurable([]string{"*"}, "victim", r.handle, o)
			drain(t, s, 5*time.Second)
			publish(t, b, "x.y", nil)
			crashWorker(t, tg.client, b.keys.stream, "victim") // entry 1 pending, its consumer dead
			for range 3 {
				publish(t, b, "x.y", nil)
			}
			// Entry 1 is held (within HeldGrace): the cap stops before it.
			if res, err := b.Trim(ctx); err != nil || res.Capped != 0 || res.Held != 2 {
				t.Fatalf("trim %+v %v: want nothing capped, 2 held back", res, err)
			}
			time.Sleep(400 * time.Millisecond)
			sum := drain(t, s, 5*time.Second)
			if sum.Lost != 0 || r.n() != 4 {
				t.Fatalf("summary %+v, handled %d: want all 4 handled, none lost", sum, r.n())
			}
			if res, err := b.Trim(ctx); err != nil || res.Capped != 2 {
				t.Fatalf("trim after the reclaim %+v %v: want 2 capped", res, err)
			}
		})

		t.Run("PendingEntryTrimmedPastItsGraceIsReportedLost", func(t *testing.T) {
			if !tg.real {
				t.Skip("miniredis does not report deleted pending entries (XAUTOCLAIM's third reply)")
			}
			b := newBus(BusOptions{MaxAge: -1, MaxLen: 2, RetentionInterval: time.Hour, HeldGrace: 100 * time.Millisecond})
			var r recorder
			o := subOpts()
			o.VisibilityTimeout = 300 * time.Millisecond
			s, _ := b.SubscribeDurable([]string{"*"}, "victim", r.handle, o)
			drain(t, s, 5*time.Second)
			publish(t, b, "x.y", nil)
			crashWorker(t, tg.client, b.keys.stream, "victim") // entry 1 pending, its consumer dead
			for range 3 {
				publish(t, b, "x.y", nil)
			}
			time.Sleep(400 * time.Millisecond) // past the grace and the visibility timeout
			if res, err := b.Trim(ctx); err != nil || res.Capped != 2 {
				t.Fatalf("trim %+v %v", res, err)
			}
			sum := drain(t, s, 5*time.Second)
			// Entry 2 was never delivered (counted at trim time); entry 1
			// was pending under the dead consumer (counted by the reclaim).
			if sum.Lost != 2 || sum.Processed != 2 {
				t.Fatalf("summary %+v: want 2 lost, 2 processed", sum)
			}
		})

		// Issue 9, item 5: the cap trimmed an entry a live handler was
		// running; the next lease extension dropped it from the pending
		// list and the handler was cancelled as "lease lost", its result
		// dropped.
		t.Run("LengthCapNeverTrimsWhatALiveConsumerHolds", func(t *testing.T) {
			if !tg.real {
				t.Skip("miniredis keeps a trimmed entry's lease (XCLAIM JUSTID does not drop it)")
			}
			b := newBus(BusOptions{MaxAge: -1, MaxLen: 2, RetentionInterval: time.Hour})
			o := subOpts()
			o.Concurrency, o.Prefetch = 1, -1
			o.VisibilityTimeout = 600 * time.Millisecond // heartbeat every 200ms
			o.HandlerTimeout = 10 * time.Second
			started, release := make(chan string, 10), make(chan struct{})
			var cancelled atomic.Value
			var done recorder
			s, _ := b.SubscribeDurable([]string{"*"}, "holder", func(ctx context.Context, e event.Event) error {
				if e.Type == "hold" {
					started <- e.ID
					select {
					case <-release:
					case <-ctx.Done():
						cancelled.Store(context.Cause(ctx).Error())
						return ctx.Err()
					}
				}
				return done.handle(ctx, e)
			}, o)
			publish(t, b, "x.y", nil) // e0: processed first, then trimmable
			drain(t, s, 5*time.Second)
			publish(t, b, "hold", nil) // e1: held by the running handler
			sumc := make(chan event.DrainSummary, 1)
			go func() { sumc <- drain(t, s, 20*time.Second) }()
			held := <-started
			for range 4 {
				publish(t, b, "x.y", nil) // e2..e5: undelivered (no prefetch)
			}
			res, err := b.Trim(ctx)
			if err != nil || res.Capped != 1 || res.Held != 3 {
				t.Fatalf("trim %+v %v: want only e0 capped and 3 held back", res, err)
			}
			if n, _ := tg.client.XLen(ctx, b.keys.stream).Result(); n != 5 {
				t.Fatalf("stream length %d after the cap, want 5 (the held entry and after)", n)
			}
			time.Sleep(800 * time.Millisecond) // several lease extensions
			close(release)
			<-sumc
			if c := cancelled.Load(); c != nil {
				t.Fatalf("held handler was cancelled: %v", c)
			}
			drain(t, s, 10*time.Second)
			done.mu.Lock()
			ids := append([]string(nil), done.ids...)
			done.mu.Unlock()
			if len(ids) != 6 || ids[1] != held {
				t.Fatalf("handled %v: want e0, the held e1 once, then e2..e5", ids)
			}
			for _, id := range ids[2:] {
				if id == held {
					t.Fatalf("held event handled twice: %v", ids)
				}
			}
			if p, _ := tg.client.XPending(ctx, b.keys.stream, "holder").Result(); p.Count != 0 {
				t.Fatalf("%d entries still pending", p.Count)
			}
		})

		t.Run("StalledEventIsRetriedAfterTheVisibilityTimeout", func(t *testing.T) {
			b := newBus(BusOptions{})
			var r recorder
			o := subOpts()
			o.VisibilityTimeout = 300 * time.Millisecond
			s, _ := b.SubscribeDurable([]string{"*"}, "crashy", r.handle, o)
			drain(t, s, 5*time.Second)
			publish(t, b, "x.y", nil)
			crashWorker(t, tg.client, b.keys.stream, "crashy")
			if sum := drain(t, s, 5*time.Second); sum.Processed != 0 {
				t.Fatalf("taken from a live lease: %+v", sum)
			}
			time.Sleep(400 * time.Millisecond)
			sum := drain(t, s, 5*time.Second)
			if sum.Reclaimed != 1 || sum.Succeeded != 1 || r.n() != 1 {
				t.Fatalf("summary %+v", sum)
			}
		})

		t.Run("SubscriptionRunStopsOnCancel", func(t *testing.T) {
			b := newBus(BusOptions{})
			got := make(chan string, 1)
			s, _ := b.SubscribeDurable([]string{"*"}, "runner", func(ctx context.Context, e event.Event) error { got <- e.ID; return nil }, subOpts())
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error)
			go func() { done <- s.Run(rctx) }()
			time.Sleep(200 * time.Millisecond)
			publish(t, b, "x.y", nil)
			select {
			case <-got:
			case <-time.After(3 * time.Second):
				t.Fatal("Run did not deliver")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if _, err := s.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			if err := b.RemoveSubscription(ctx, "runner"); err != nil {
				t.Fatal(err)
			}
		})

		consumerHygieneBus(t, tg, newBus)
	})
}

func firstID(t *testing.T, c redis.UniversalClient, stream string) string {
	t.Helper()
	m, err := c.XRangeN(context.Background(), stream, "-", "+", 1).Result()
	if err != nil || len(m) != 1 {
		t.Fatalf("first entry: %v %v", m, err)
	}
	return m[0].ID
}

// docs/queue.md wires a durable subscription with only Attempts set and a
// bus without Subscription defaults; both must take the default backoff
// (issue 9, item 9: they were refused with `backoff type ""`).
func TestDurableSubscriptionWithoutBackoffTakesTheDefault(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		// Only timings are set (short, for the test); Backoff stays zero.
		b := NewBus(tg.client, BusOptions{Prefix: tg.prefix, Stream: testenv.Unique("ev"), Logger: quiet,
			Subscription: SubscribeOptions{ConsumerOptions: fastOpts()}})
		var r recorder
		s, err := b.SubscribeDurable([]string{"x.y"}, "no-backoff", r.handle, SubscribeOptions{ConsumerOptions: fastOpts(), Attempts: 5})
		if err != nil {
			t.Fatalf("SubscribeDurable without Backoff: %v", err)
		}
		if got := s.e.lane.(*eventLane).backoff; got != defaultEventBackoff {
			t.Fatalf("backoff %+v, want the default %+v", got, defaultEventBackoff)
		}
		d, err := b.Subscribe([]string{"x.y"}, "via-subscribe", r.handle, event.Durable)
		if err != nil {
			t.Fatalf("Subscribe(Durable) on a bus without Subscription defaults: %v", err)
		}
		publish(t, b, "x.y", nil)
		drain(t, s, 10*time.Second)
		drain(t, d, 10*time.Second)
		if r.n() != 2 {
			t.Fatalf("handled %d, want 2", r.n())
		}
		// A bad bus-wide default is still refused, naming where it is.
		bad := NewBus(tg.client, BusOptions{Prefix: tg.prefix, Stream: testenv.Unique("ev"), Logger: quiet,
			Subscription: SubscribeOptions{Backoff: job.Backoff{Type: "linear"}}})
		if _, err := bad.SubscribeDurable([]string{"x.y"}, "bad", r.handle, SubscribeOptions{}); core.ErrorCode(err) != core.EInvalid {
			t.Fatalf("bad default backoff: %v", err)
		}
	})
}
