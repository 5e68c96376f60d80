package event

import (
	"context"
	"time"
)

// Before returns d with step run before every Drain and DrainLongPoll, and,
// while Run runs, once at its start and then every interval. It is how
// work that must happen "inside every drain" (the outbox relay, the
// reconciler; docs/design.md#2 and #4) joins a consumer function. step
// logs its own failures: they never stop the drain.
func Before(d Drainer, every time.Duration, step func(ctx context.Context)) Drainer {
	return before{d: d, every: every, step: step}
}

type before struct {
	d     Drainer
	every time.Duration
	step  func(ctx context.Context)
}

func (b before) Drain(ctx context.Context) (DrainSummary, error) {
	b.step(ctx)
	return b.d.Drain(ctx)
}

func (b before) DrainLongPoll(ctx context.Context) (DrainSummary, error) {
	b.step(ctx)
	return b.d.DrainLongPoll(ctx)
}

func (b before) Run(ctx context.Context) error {
	b.step(ctx)
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(b.every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				b.step(ctx)
			}
		}
	}()
	return b.d.Run(ctx)
}
