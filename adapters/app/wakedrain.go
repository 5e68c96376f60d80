package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/shiftflow/shiftflow/adapters/redisstream"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/wake"
)

// drainLease is how long a registered drain instance counts without a
// refresh: a killed instance drops out of the dispatcher's count after it.
const drainLease = 15 * time.Second

// wakeDrain is a serverless drain that registers itself while it runs,
// scales out as it starts (Tick) and hands over as it ends (HandOver);
// Run (local runner, containers) is the inner drainer's own.
type wakeDrain struct {
	event.Drainer
	name      string
	w         *wiring
	lastStart time.Duration // HandlerTimeout + SafetyMargin: no handler starts later
	coalesce  time.Duration
}

func (d *wakeDrain) Drain(ctx context.Context) (event.DrainSummary, error) {
	return d.around(ctx, d.Drainer.Drain)
}

func (d *wakeDrain) DrainLongPoll(ctx context.Context) (event.DrainSummary, error) {
	return d.around(ctx, d.Drainer.DrainLongPoll)
}

func (d *wakeDrain) around(ctx context.Context, f func(context.Context) (event.DrainSummary, error)) (event.DrainSummary, error) {
	leave := d.enter(ctx)
	d.w.trigger.Tick(ctx, d.name)
	sum, err := f(ctx)
	leave()
	d.handOver(ctx)
	return sum, err
}

// enter registers this invocation until its lease or the last moment it
// may start a handler, whichever is first (a long-poll drain past that
// moment polls no more, so it must not count), refreshed until leave.
func (d *wakeDrain) enter(ctx context.Context) (leave func()) {
	member := d.name + "-" + randomHex()
	bg := context.WithoutCancel(ctx)
	register := func() {
		until := time.Now().Add(drainLease)
		if dl, ok := ctx.Deadline(); ok && dl.Add(-d.lastStart).Before(until) {
			until = dl.Add(-d.lastStart)
		}
		rctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		if err := d.w.registry.Enter(rctx, d.name, member, until); err != nil {
			d.w.trigger.Log.Warn("drain registry", "err", err)
		}
	}
	register()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(drainLease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				register()
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		rctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		_ = d.w.registry.Leave(rctx, d.name, member)
	}
}

// handOver waits one coalescing interval after leaving the registry and
// starts the next instance if work remains: a publish whose wake the gate
// swallowed within that interval is then seen (docs/design.md, "Wake on
// publish and scale-out"), and a long-poll drain at its end leaves a
// successor while there is work.
func (d *wakeDrain) handOver(ctx context.Context) {
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d.coalesce+500*time.Millisecond {
		time.Sleep(d.coalesce)
	}
	d.w.trigger.HandOver(ctx, d.name)
}

func randomHex() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// wrapDrains puts the wake decorator around every drain and gives the
// dispatcher each drain's lanes.
func (a *App) wrapDrains(lanes map[string][]event.Drainer) {
	if a.wake == nil {
		return
	}
	margin := a.consumer.SafetyMargin
	if margin <= 0 {
		margin = 2 * time.Second // redisstream's default
	}
	for name, ls := range lanes {
		for _, l := range ls {
			if b, ok := l.(wake.Backlog); ok {
				a.wake.trigger.Dispatcher.Lanes[name] = append(a.wake.trigger.Dispatcher.Lanes[name], b)
			}
		}
		a.drainers[name] = &wakeDrain{Drainer: a.drainers[name], name: name, w: a.wake,
			lastStart: a.consumer.HandlerTimeout + margin, coalesce: a.wakeCfg.coalesce}
	}
}

var _ wake.Backlog = (*redisstream.Worker)(nil)
var _ wake.Backlog = (*redisstream.Subscription)(nil)
