package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/shift"
)

// downPublisher is the bus of a process whose publish failed after the
// MongoDB write (Redis down, or a crash): the event stays in the outbox.
type downPublisher struct{}

func (downPublisher) Publish(context.Context, event.Event) error { return errors.New("redis down") }

// TestShippedDrainRelaysTheOutbox runs the drain exactly as the functions
// get it from the composition root (App.Drain) and proves that it
// publishes an event left in a shift's outbox (docs/design.md decision 4:
// the relay runs inside every drain). It fails when the composition root
// stops wrapping the subscriber's drain with the relay: the crash test in
// adapters/httpapi wires the relay itself and cannot see that.
func TestShippedDrainRelaysTheOutbox(t *testing.T) {
	a := newTestApp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := recSeed(t, a, "ap@acme.test")
	start := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	s, err := a.Scheduler.Schedule(ctx, recOrg, shift.Input{ClientID: c.ID, WorkerID: "w-1", Role: "nurse", Start: start, End: start.Add(8 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// Another process completes the shift and cannot publish.
	repo := mongodb.NewShiftRepo(a.DB)
	other := shift.NewScheduler(repo, a.Clients, a.Pricing, downPublisher{}, nil)
	if _, err := other.Complete(ctx, recOrg, s.ID, shift.Completion{}); err != nil {
		t.Fatalf("complete with the bus down: %v", err)
	}
	if pending, err := repo.Outbox(ctx, s.ID); err != nil || len(pending) != 1 || pending[0].Type != event.ShiftCompleted {
		t.Fatalf("outbox before the drain = %+v, %v; want the shift.completed event", pending, err)
	}

	// Nothing but the shipped drain runs: it must relay, then consume.
	if _, err := a.Drain(OnShiftCompleted)(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if left, err := repo.Outbox(ctx, s.ID); err != nil || len(left) != 0 {
		t.Fatalf("outbox after the shipped drain holds %d events (%v); want it relayed and emptied", len(left), err)
	}
	// The relayed event reached the subscriber in the same drain or, if it
	// was published after the read, in the next one.
	for i := 0; ; i++ {
		if _, err := a.Sheets.Get(ctx, recOrg, s.ID); err == nil {
			break
		} else if i == 20 {
			t.Fatalf("no worked time after %d drains: %v", i+1, err)
		}
		if _, err := a.Drain(OnShiftCompleted)(ctx); err != nil {
			t.Fatalf("drain: %v", err)
		}
	}
}
