package app

import (
	"context"
	"errors"
	"time"

	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/redislimit"
	"github.com/shiftflow/shiftflow/adapters/redisstream"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/wake"
)

// Who wakes whom (docs/design.md, "Wake on publish and scale-out"): an
// appended event wakes the drains of its durable subscribers, an added
// job the drain of its queue.
var (
	wakeOnEvent = map[string]string{event.ShiftCompleted: OnShiftCompleted}
	wakeOnJob   = map[string]string{job.InvoiceGeneration: InvoiceWorker, job.EmailNotifications: InvoiceWorker}
)

// wakeConfig is DRAIN_MAX_CONCURRENCY, DRAIN_THROUGHPUT and WAKE_COALESCE.
type wakeConfig struct {
	limits   wake.Limits
	coalesce time.Duration
}

func loadWakeConfig(getenv func(string) string) (wakeConfig, error) {
	maxConc, merr := config.Int(getenv, "DRAIN_MAX_CONCURRENCY", 10, 1, 1000)
	tput, terr := config.Int(getenv, "DRAIN_THROUGHPUT", 200, 1, 1_000_000)
	coalesce, cerr := config.Duration(getenv, "WAKE_COALESCE", 100*time.Millisecond, 10*time.Millisecond, 10*time.Second)
	return wakeConfig{coalesce: coalesce,
		limits: wake.Limits{Throughput: float64(tput), Budget: wake.DefaultBudget, MaxConcurrency: maxConc},
	}, errors.Join(merr, terr, cerr)
}

// wiring is what the wake decorators share; nil without a Waker (the
// local runner and containers, whose Run loops block on XREADGROUP).
type wiring struct {
	trigger  *wake.Trigger
	registry *redisstream.Registry
}

// newWiring builds the trigger and the dispatcher; the lanes are filled
// in by drains once the consumers exist.
func (a *App) newWiring(w wake.Waker, cfg wakeConfig) *wiring {
	reg := redisstream.NewRegistry(a.Redis, a.prefix)
	d := &wake.Dispatcher{Waker: w, Registry: reg, Lanes: map[string][]wake.Backlog{}, Limits: cfg.limits}
	return &wiring{registry: reg, trigger: &wake.Trigger{Dispatcher: d,
		Gate: redislimit.NewGate(a.Redis, a.prefix, cfg.coalesce), Log: a.Logger}}
}

// wakeBus notifies the drains of an event's subscribers after each
// successful publish: the API's relay, the drains' relay, the reconciler
// and the invoice worker all publish through it.
type wakeBus struct {
	Bus
	t *wake.Trigger
}

func (b wakeBus) Publish(ctx context.Context, e event.Event) error {
	if err := b.Bus.Publish(ctx, e); err != nil {
		return err
	}
	if d, ok := wakeOnEvent[e.Type]; ok {
		b.t.Notify(ctx, d)
	}
	return nil
}

// wakeJobs notifies the drain of a queue after each successful Add (a
// de-duplicated Add too: waking is harmless, missing one is not).
type wakeJobs struct {
	*redisstream.Queues
	t *wake.Trigger
}

func (q wakeJobs) Add(ctx context.Context, queue, name string, data any, opts job.Options) (string, error) {
	id, err := q.Queues.Add(ctx, queue, name, data, opts)
	if err != nil {
		return id, err
	}
	if d, ok := wakeOnJob[queue]; ok {
		q.t.Notify(ctx, d)
	}
	return id, nil
}
