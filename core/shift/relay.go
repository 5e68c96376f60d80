package shift

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shiftflow/shiftflow/core/event"
)

// Relay publishes the events waiting in shifts' outboxes and then removes
// them (docs/design.md#4). It runs right after every write and inside
// every drain, so an event whose publish was interrupted (crash, Redis
// down) is published by the next run: delayed, never lost. An event can be
// published twice (crash after the publish, before the removal); consumers
// are idempotent and the event keeps its id.
type Relay struct {
	store OutboxStore
	pub   event.Publisher
	log   *slog.Logger
	// Batch is how many shifts one Flush round reads.
	Batch int
	// Tracker, when set, records every published shift.completed event
	// before it leaves the outbox (docs/design.md, "Reconciler").
	Tracker CompletionTracker
}

// CompletionTracker records a completed shift whose downstream work
// (timesheet, invoice, email) is not yet known to be done, so that it can
// be re-emitted from MongoDB if Redis loses it (docs/design.md#11). Track
// must be idempotent: the relay may call it again for the same event.
type CompletionTracker interface {
	Track(ctx context.Context, e event.Event) error
}

// NewRelay returns a relay. log may be nil.
func NewRelay(store OutboxStore, pub event.Publisher, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.Default()
	}
	return &Relay{store: store, pub: pub, log: log, Batch: 100}
}

// FlushShift publishes one shift's pending events in order and removes
// the published ones. It stops at the first failed publish so that a
// shift's events are never published out of order.
func (r *Relay) FlushShift(ctx context.Context, shiftID string) (int, error) {
	evs, err := r.store.Outbox(ctx, shiftID)
	if err != nil {
		return 0, fmt.Errorf("relay: read outbox of %s: %w", shiftID, err)
	}
	if len(evs) == 0 {
		return 0, nil
	}
	var done []string
	var pubErr error
	for _, e := range evs {
		if err := r.pub.Publish(ctx, e); err != nil {
			pubErr = fmt.Errorf("relay: publish %s %s of shift %s: %w", e.Type, e.ID, shiftID, err)
			break
		}
		// Tracked before the entry leaves the outbox: a crash or a failed
		// write here keeps the entry, and the next run publishes and
		// tracks it again, so no completion is ever untracked.
		if err := r.track(ctx, e); err != nil {
			pubErr = fmt.Errorf("relay: track %s %s of shift %s: %w", e.Type, e.ID, shiftID, err)
			break
		}
		done = append(done, e.ID)
	}
	if len(done) > 0 {
		if err := r.store.RemoveFromOutbox(ctx, shiftID, done); err != nil {
			// Published but still in the outbox: the next run publishes
			// them again (same ids), which consumers tolerate.
			return len(done), errors.Join(pubErr, fmt.Errorf("relay: remove published events of %s: %w", shiftID, err))
		}
	}
	return len(done), pubErr
}

func (r *Relay) track(ctx context.Context, e event.Event) error {
	if r.Tracker == nil || e.Type != event.ShiftCompleted {
		return nil
	}
	return r.Tracker.Track(ctx, e)
}

// Flush publishes every pending event of every shift, until none is left
// or ctx ends. It returns how many events it published; errors of single
// shifts are joined and the other shifts still flushed.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	total := 0
	failed := map[string]bool{}
	var errs []error
	for {
		ids, err := r.store.PendingShifts(ctx, r.Batch+len(failed))
		if err != nil {
			return total, errors.Join(append(errs, fmt.Errorf("relay: list pending: %w", err))...)
		}
		// A round that only returns shifts which already failed is the
		// end: their events wait for the next run.
		fresh := false
		for _, id := range ids {
			if failed[id] {
				continue
			}
			fresh = true
			if ctx.Err() != nil {
				return total, errors.Join(append(errs, ctx.Err())...)
			}
			n, err := r.FlushShift(ctx, id)
			total += n
			if err != nil {
				failed[id] = true
				errs = append(errs, err)
				r.log.WarnContext(ctx, "relay: shift outbox not flushed", "shiftId", id, "err", err)
			}
		}
		if !fresh {
			return total, errors.Join(errs...)
		}
	}
}

// WithRelay wraps a drainer so that every drain first flushes the outbox
// (docs/design.md#4: the relay runs inside every drain). A relay error
// is logged and does not stop the drain.
func WithRelay(d event.Drainer, r *Relay) event.Drainer {
	return event.Before(d, RunFlushInterval, func(ctx context.Context) {
		if n, err := r.Flush(ctx); err != nil {
			r.log.WarnContext(ctx, "relay: flush before drain failed", "published", n, "err", err)
		}
	})
}

// RunFlushInterval is how often a running drainer flushes the outbox.
const RunFlushInterval = 5 * time.Second
