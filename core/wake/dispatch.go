package wake

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Gate lets one wake of a drain through per coalescing interval across
// every process (adapters/redislimit's Gate: SET NX PX).
type Gate interface {
	Allow(ctx context.Context, drain string) (bool, error)
}

// Backlog reads how much work waits for one lane of a drain: entries not
// yet delivered, retries and delayed jobs that are due (adapters/
// redisstream's Worker and Subscription).
type Backlog interface {
	Backlog(ctx context.Context) (int64, error)
}

// Registry counts a drain's instances: those running (each registers
// itself while it runs, with a lease) and those a wake started that have
// not registered yet (adapters/redisstream's Registry).
type Registry interface {
	// Running returns the live instances, running or starting.
	Running(ctx context.Context, drain string) (int, error)
	// Starting records n instances about to be asked for, each counted
	// until it registers or its start lease ends; undo removes those not
	// taken yet (the wake failed).
	Starting(ctx context.Context, drain string, n int) (undo func(context.Context), err error)
}

// Dispatcher decides how many instances of a drain to start and asks the
// Waker for them (docs/design.md, "Wake on publish and scale-out").
type Dispatcher struct {
	Waker    Waker
	Registry Registry
	// Lanes are the backlogs each drain works off (invoiceWorker drains
	// two queues).
	Lanes  map[string][]Backlog
	Limits Limits
}

// Dispatch reads the drain's backlog and live instances and starts what
// Plan says. atLeast raises the backlog read (a publisher knows it just
// appended one, even if a running drain took it already). It returns
// how many it asked for.
func (d *Dispatcher) Dispatch(ctx context.Context, drain string, atLeast int64) (int, error) {
	backlog, err := d.backlog(ctx, drain)
	if err != nil {
		return 0, err
	}
	running, err := d.Registry.Running(ctx, drain)
	if err != nil {
		return 0, fmt.Errorf("count instances of %s: %w", drain, err)
	}
	n := Plan(max(backlog, atLeast), running, d.Limits)
	if n == 0 {
		return 0, nil
	}
	// Counted before the invoke, so a dispatch racing this one sees them.
	undo, err := d.Registry.Starting(ctx, drain, n)
	if err != nil {
		return 0, fmt.Errorf("record starting instances of %s: %w", drain, err)
	}
	if err := d.Waker.Wake(ctx, drain, n); err != nil {
		// Nobody is starting: the next publish may try again at once.
		undo(ctx)
		return 0, fmt.Errorf("wake %d of %s: %w", n, drain, err)
	}
	return n, nil
}

func (d *Dispatcher) backlog(ctx context.Context, drain string) (int64, error) {
	var sum int64
	for _, l := range d.Lanes[drain] {
		n, err := l.Backlog(ctx)
		if err != nil {
			return 0, fmt.Errorf("read backlog of %s: %w", drain, err)
		}
		sum += n
	}
	return sum, nil
}

// Trigger is the publishers' side: Notify after a successful append,
// coalesced through the Gate. It never fails its caller.
type Trigger struct {
	Dispatcher *Dispatcher
	Gate       Gate
	Log        *slog.Logger
	// Timeout bounds one notification (default 2 s): a slow platform
	// must not hold the request that published.
	Timeout time.Duration

	lastLog    atomic.Int64 // unix ns of the last logged failure
	suppressed atomic.Int64
}

// logEvery rate-limits the failure log: a platform outage under load
// would otherwise log once per coalescing interval per process.
const logEvery = 10 * time.Second

// Notify wakes drain unless a wake went out within the coalescing
// interval: a publisher calls it after a successful append. Failures are
// logged (rate-limited) and dropped: the schedule is the safety net.
func (t *Trigger) Notify(ctx context.Context, drain string) { t.run(ctx, drain, true, 1) }

// Tick is the dispatch of a drain instance as it starts (a schedule tick
// or a woken instance): it scales out when the backlog needs more
// instances, coalesced like Notify.
func (t *Trigger) Tick(ctx context.Context, drain string) { t.run(ctx, drain, true, 0) }

// HandOver is the dispatch of a drain instance that has stopped and left
// the registry: if work remains, the next instance starts. It is never
// coalesced: a publish whose wake the gate swallowed may rely on it
// (docs/design.md, "Wake on publish and scale-out").
func (t *Trigger) HandOver(ctx context.Context, drain string) { t.run(ctx, drain, false, 0) }

func (t *Trigger) run(ctx context.Context, drain string, gated bool, atLeast int64) {
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	// Detached: the request may end (or be cancelled) right after its
	// append, and the wake is still owed.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	ok, err := true, error(nil)
	if gated {
		ok, err = t.Gate.Allow(ctx, drain)
	}
	if err == nil && ok {
		_, err = t.Dispatcher.Dispatch(ctx, drain, atLeast)
	}
	if err != nil {
		t.logFailure(drain, err)
	}
}

func (t *Trigger) logFailure(drain string, err error) {
	now := time.Now().UnixNano()
	last := t.lastLog.Load()
	if now-last < int64(logEvery) || !t.lastLog.CompareAndSwap(last, now) {
		t.suppressed.Add(1)
		return
	}
	if t.Log != nil {
		t.Log.Warn("wake failed; the drain starts at the next schedule tick", "drain", drain, "err", err,
			"suppressedSinceLast", t.suppressed.Swap(0))
	}
}
