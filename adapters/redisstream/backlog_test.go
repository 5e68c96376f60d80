package redisstream

import (
	"context"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
)

func TestWorkerBacklogCountsReadyAndDueJobs(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		ctx := ctxT(t, 30*time.Second)
		q := NewQueues(tg.client, QueueOptions{Prefix: tg.prefix, Logger: quiet})
		queue := testenv.Unique("bq")
		w, err := q.Worker(queue, func(context.Context, *job.Job) error { return nil }, fastOpts())
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := q.Add(ctx, queue, "x", nil, job.Options{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := q.Add(ctx, queue, "later", nil, job.Options{Delay: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if n, err := w.Backlog(ctx); err != nil || n != 3 {
			t.Fatalf("backlog = %d, %v; want 3 (the job delayed an hour is not due)", n, err)
		}
		if _, err := w.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := w.Backlog(ctx); err != nil || n != 0 {
			t.Fatalf("after a drain: backlog = %d, %v; want 0", n, err)
		}
	})
}

func TestSubscriptionBacklogCountsUndeliveredEvents(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		ctx := ctxT(t, 30*time.Second)
		b := NewBus(tg.client, BusOptions{Prefix: tg.prefix, Stream: testenv.Unique("ev"), Logger: quiet})
		sub, err := b.SubscribeDurable([]string{event.ShiftCompleted}, "s", func(context.Context, event.Event) error { return nil }, subOpts())
		if err != nil {
			t.Fatal(err)
		}
		if n, err := sub.Backlog(ctx); err != nil || n != 0 {
			t.Fatalf("no stream yet: backlog = %d, %v; want 0", n, err)
		}
		if _, err := sub.Drain(ctx); err != nil { // creates the group
			t.Fatal(err)
		}
		for range 4 {
			publish(t, b, event.ShiftCompleted, map[string]string{"a": "b"})
		}
		n, err := sub.Backlog(ctx)
		// The embedded Redis reports no lag: an undelivered tail counts 1.
		if err != nil || n != 4 && !(n == 1 && !tg.real) {
			t.Fatalf("backlog = %d, %v; want 4", n, err)
		}
		if _, err := sub.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := sub.Backlog(ctx); err != nil || n != 0 {
			t.Fatalf("after a drain: backlog = %d, %v; want 0", n, err)
		}
	})
}

func TestRegistryCountsLiveInstancesOnly(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		ctx := ctxT(t, 30*time.Second)
		r := NewRegistry(tg.client, tg.prefix)
		r.StartLease = 300 * time.Millisecond
		count := func(want int, what string) {
			t.Helper()
			if n, err := r.Running(ctx, "d"); err != nil || n != want {
				t.Fatalf("%s: running = %d, %v; want %d", what, n, err, want)
			}
		}
		count(0, "empty")
		if _, err := r.Starting(ctx, "d", 2); err != nil {
			t.Fatal(err)
		}
		count(2, "two woken")
		if err := r.Enter(ctx, "d", "c1", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		count(2, "one of them registered in the place of a starting one")
		if err := r.Enter(ctx, "d", "c1", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		count(2, "a refresh takes no place")
		if err := r.Enter(ctx, "d", "c2", time.Now().Add(200*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		count(2, "the second registered")
		if err := r.Enter(ctx, "other", "c9", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		count(2, "another drain's instance does not count")
		time.Sleep(400 * time.Millisecond)
		count(1, "c2's lease expired (a killed instance)")
		undo, err := r.Starting(ctx, "d", 2)
		if err != nil {
			t.Fatal(err)
		}
		count(3, "two more asked for")
		undo(ctx)
		count(1, "their wake failed: undone")
		if _, err := r.Starting(ctx, "d", 3); err != nil {
			t.Fatal(err)
		}
		count(4, "three more woken")
		time.Sleep(400 * time.Millisecond)
		count(1, "woken instances that never registered expire")
		if err := r.Leave(ctx, "d", "c1"); err != nil {
			t.Fatal(err)
		}
		count(0, "left")
	})
}
