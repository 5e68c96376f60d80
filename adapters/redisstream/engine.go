package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/core/event"
)

// The engine is the consumer loop shared by job workers and durable
// subscriptions. A lane says what its streams are and what finishing an
// entry means; the engine does the reading, concurrency, batching,
// heartbeats, reclaiming, promotion, drains and shutdown.
//
// Round trips: under load no separate read is needed, because the script
// that records a batch of results (ack, retry, dead-letter) also fetches
// the next batch (XREADGROUP inside the script, as BullMQ's
// moveToFinished fetches the next job), up to Concurrency + Prefetch held
// entries. An idle consumer records its last results and blocks for new
// work in one pipelined round trip. Heartbeats cover all held entries in
// one call per interval.

// Outcome kinds, as the finish scripts spell them.
const (
	outOK      = "c" // done: acknowledge (and for jobs: completed)
	outSkip    = "s" // not for this subscriber: acknowledge
	outRetry   = "r" // failed attempt: retry after a delay
	outFail    = "f" // last attempt failed or permanent error: dead-letter
	outRequeue = "h" // hand back without spending an attempt (shutdown)
)

// delivery is one stream entry held by this consumer.
type delivery struct {
	stream int // index into lane.streams()
	id     string
	fields map[string]string

	started  time.Time
	deadline time.Time // started + HandlerTimeout; zero while waiting for a slot
	leased   time.Time // delivered or last extended
	cancel   context.CancelCauseFunc
	lost     atomic.Bool
}

type outcome struct {
	d     *delivery
	kind  string
	delay time.Duration
	err   string
}

type maintResult struct {
	promoted, reclaimed, dead int
	lost                      int64
}

type lane interface {
	label() string
	streams() []string
	group() string
	// ensure creates the consumer groups (once, or again when force).
	ensure(ctx context.Context, force bool) error
	// handle runs the handler for d and says what to record.
	handle(ctx context.Context, d *delivery) outcome
	// finishCall is the script call that records outcomes and fetches up
	// to fetch new entries for consumer; it replies {_, XREADGROUP reply}.
	finishCall(consumer string, outs []outcome, fetch int) (*redis.Script, []string, []any)
	// maintain promotes due retries/delayed entries and, when reclaim is
	// set, takes back entries idle longer than minIdle.
	maintain(ctx context.Context, consumer string, reclaim bool, minIdle time.Duration) (maintResult, error)
	// remaining estimates the work left (for the summary).
	remaining(ctx context.Context) int64
	// pruneLock is the key (with the lane's hash tag) that rate-limits
	// pruning idle consumers across all processes.
	pruneLock() string
}

var (
	errLeaseLost = errors.New("lease lost: the entry was reclaimed by another consumer")
	errTimeout   = errors.New("handler timeout")
	// errShutdown is the cause of a handler context cancelled because a
	// drain or Run is shutting down: the entry is handed back without
	// spending an attempt, and the lanes log it as such.
	errShutdown = errors.New("shutdown: handler cancelled, entry handed back")
	// ErrAlreadyRunning is returned when a drain or Run is started on a
	// Worker or Subscription that is already draining: one consumer name
	// must not be used by two loops at once.
	ErrAlreadyRunning = errors.New("redisstream: already draining")
)

type engine struct {
	client  redis.UniversalClient
	lane    lane
	opt     ConsumerOptions
	log     *slog.Logger
	running atomic.Bool

	// Pruning idle consumers (consumers.go): at most once per pruneEvery
	// per engine, and per group across processes.
	pruneEvery time.Duration
	lastPrune  atomic.Int64 // unix ns of the last attempt
	pruneOff   atomic.Bool  // the server lacks XINFO CONSUMERS / XGROUP DELCONSUMER
}

func newEngine(c redis.UniversalClient, l lane, opt ConsumerOptions) *engine {
	opt = opt.withDefaults()
	return &engine{client: c, lane: l, opt: opt, log: opt.Logger.With("consumer", opt.Consumer, "lane", l.label()),
		pruneEvery: consumerPruneInterval}
}

// Consumer returns this consumer's name in its group.
func (e *engine) Consumer() string { return e.opt.Consumer }

const (
	modeDrain = iota
	modePoll
)

// Drain processes until there is no work left or the context deadline
// minus SafetyMargin, whichever is first.
func (e *engine) Drain(ctx context.Context) (event.DrainSummary, error) {
	return e.run(ctx, modeDrain)
}

// DrainLongPoll is Drain that keeps blocking for new work until the
// deadline (or cancellation, without a deadline).
func (e *engine) DrainLongPoll(ctx context.Context) (event.DrainSummary, error) {
	return e.run(ctx, modePoll)
}

// Run processes until ctx is cancelled, then waits up to ShutdownTimeout
// for in-flight handlers and hands back whatever did not finish. Redis
// being unreachable at start or later is logged and retried, not fatal:
// a long-running worker outlives a Redis restart. It returns nil once ctx
// is cancelled, or ErrAlreadyRunning.
func (e *engine) Run(ctx context.Context) error {
	wait := 100 * time.Millisecond
	for {
		_, err := e.run(ctx, modePoll)
		switch {
		case errors.Is(err, ErrAlreadyRunning):
			return err
		case ctx.Err() != nil:
			return nil
		case err == nil:
			// Only a deadline on ctx ends a poll without cancellation.
			return nil
		}
		e.log.Error("consumer loop failed; restarting", "err", err, "in", wait)
		if !sleepCtx(ctx, wait) {
			return nil
		}
		wait = min(wait*2, 5*time.Second)
	}
}

type runState struct {
	e        *engine
	consumer string
	conc     int
	mode     int

	outs     chan outcome   // results, to the driver
	work     chan *delivery // held entries, to the handler goroutines
	stopping atomic.Bool    // no new handler may start
	gaveUp   bool           // shutdown handed back handlers that ignored cancellation

	abortCtx context.Context // parent of handler contexts; cancelled to abort
	abort    context.CancelCauseFunc
	hasDL    bool
	stopAt   time.Time

	mu       sync.Mutex
	inflight map[*delivery]struct{}

	processed, succeeded, failed, dead, requeued atomic.Int64
	promoted, reclaimed                          atomic.Int64
	lost                                         atomic.Int64
	consumersRemoved                             atomic.Int64
}

func (e *engine) run(ctx context.Context, mode int) (sum event.DrainSummary, err error) {
	if !e.running.CompareAndSwap(false, true) {
		return sum, ErrAlreadyRunning
	}
	defer e.running.Store(false)
	began := time.Now()
	r := &runState{
		e: e, consumer: e.opt.Consumer, conc: e.opt.Concurrency, mode: mode,
		inflight: map[*delivery]struct{}{},
	}
	if dl, ok := ctx.Deadline(); ok {
		r.hasDL, r.stopAt = true, dl.Add(-e.opt.SafetyMargin)
	}
	// Handlers outlive a cancelled ctx for up to ShutdownTimeout (graceful
	// shutdown), so their contexts hang off a detached one that keeps ctx's
	// values.
	r.abortCtx, r.abort = context.WithCancelCause(context.WithoutCancel(ctx))
	defer r.abort(errShutdown)
	bg := context.WithoutCancel(ctx)

	if err := e.lane.ensure(ctx, false); err != nil {
		return sum, err
	}
	// Each drain first takes back stalled entries and promotes due ones
	// (docs/design.md#2).
	m, err := e.lane.maintain(ctx, r.consumer, true, e.opt.VisibilityTimeout)
	if err != nil {
		return sum, err
	}
	r.addMaint(m)
	// After the reclaim: the consumers it emptied can go in the same pass.
	r.consumersRemoved.Add(int64(e.pruneConsumers(ctx, r.consumer)))

	bgStop := make(chan struct{})
	var bgWG sync.WaitGroup
	bgWG.Add(2)
	go func() { defer bgWG.Done(); r.heartbeat(bg, bgStop) }()
	go func() { defer bgWG.Done(); r.maintenance(ctx, bgStop) }()

	stoppedBy, loopErr := r.drive(ctx)

	close(bgStop)
	bgWG.Wait()

	rctx, cancel := context.WithTimeout(bg, 2*time.Second)
	sum.Remaining = e.lane.remaining(rctx)
	cancel()
	sum.Processed = int(r.processed.Load())
	sum.Succeeded = int(r.succeeded.Load())
	sum.Failed = int(r.failed.Load())
	sum.DeadLettered = int(r.dead.Load())
	sum.Reclaimed = int(r.reclaimed.Load())
	sum.Promoted = int(r.promoted.Load())
	sum.Lost = r.lost.Load()
	sum.ConsumersRemoved = int(r.consumersRemoved.Load())
	sum.StoppedBy = stoppedBy
	sum.Duration = time.Since(began)
	if sum.Lost > 0 {
		e.log.Error("stream retention removed entries before they were processed", "lost", sum.Lost)
	}
	if r.hasDL && !began.Add(e.opt.HandlerTimeout).Before(r.stopAt) {
		// No handler could ever start: a function whose timeout is not
		// well above HandlerTimeout + SafetyMargin never processes a job,
		// and the summary alone ("deadline", 0 processed) does not say why.
		e.log.Warn("drain could not start any handler: its deadline is shorter than HandlerTimeout + SafetyMargin; set HandlerTimeout well below the function timeout",
			"timeLeft", r.stopAt.Add(e.opt.SafetyMargin).Sub(began).Round(time.Millisecond),
			"handlerTimeout", e.opt.HandlerTimeout, "safetyMargin", e.opt.SafetyMargin,
			"remaining", sum.Remaining)
	}
	return sum, loopErr
}

func (r *runState) addMaint(m maintResult) {
	r.promoted.Add(int64(m.promoted))
	r.reclaimed.Add(int64(m.reclaimed))
	r.dead.Add(int64(m.dead))
	r.lost.Add(m.lost)
}

// canStart says whether a handler started now would finish before the
// deadline minus the safety margin.
func (r *runState) canStart() bool {
	return !r.hasDL || time.Now().Add(r.e.opt.HandlerTimeout).Before(r.stopAt)
}

// drive is the one loop that talks to Redis for entries: it records the
// results that came in during the last round trip and, in the same script
// call, fetches enough new entries to fill the free slots and the prefetch
// buffer. Handlers (Concurrency goroutines) take entries from that buffer
// as soon as they are free, so they keep working while the round trip is
// on the wire, and every round trip serves a whole batch both ways. Only
// an idle consumer issues a plain blocking XREADGROUP, which new work
// wakes at once.
func (r *runState) drive(ctx context.Context) (string, error) {
	e := r.e
	bg := context.WithoutCancel(ctx)
	var lastStart <-chan time.Time
	if r.hasDL {
		t := time.NewTimer(time.Until(r.stopAt.Add(-e.opt.HandlerTimeout)))
		defer t.Stop()
		lastStart = t.C
	}
	limit := r.conc + e.opt.Prefetch
	// A read asks each stream for up to the free space, so a lane with k
	// streams may hold k times the limit; the channels never block then.
	r.work = make(chan *delivery, limit*len(e.lane.streams()))
	r.outs = make(chan outcome, limit*len(e.lane.streams()))
	var pool sync.WaitGroup
	for range r.conc {
		pool.Add(1)
		go func() { defer pool.Done(); r.worker() }()
	}
	defer func() {
		close(r.work)
		if !r.gaveUp {
			pool.Wait()
		}
	}()

	held := 0 // entries fetched and not yet recorded (queued, running or finished)
	// Up to maxFlushes finish calls are on the wire at once, each with its
	// own batch: while one round trip is out, the handlers keep finishing
	// entries and the next batch goes out without waiting for it.
	const maxFlushes = 2
	type flushRes struct {
		fetch int
		ds    []*delivery
	}
	flushDone := make(chan flushRes, maxFlushes)
	flushes, reserved := 0, 0 // in flight, and the entries they may fetch
	stoppedBy := ""
	var graceUntil time.Time
	aborted := false
	var batch, pending []outcome
	collect := func() {
		for len(batch) < 4096 {
			select {
			case o := <-r.outs:
				held--
				batch = append(batch, o)
			default:
				return
			}
		}
	}
	dispatch := func(ds []*delivery) {
		now := time.Now()
		for _, d := range ds {
			// Held entries are heartbeated like running ones; a zero
			// deadline means "not started yet", extended however long
			// it waits for a slot.
			d.started, d.deadline, d.leased = now, time.Time{}, now
			r.mu.Lock()
			r.inflight[d] = struct{}{}
			r.mu.Unlock()
			held++
			r.work <- d // never blocks: held <= cap(r.work)
		}
	}
	startFlush := func(b []outcome, fetch int) {
		flushes++
		reserved += fetch
		go func() { flushDone <- flushRes{fetch, r.flush(bg, b, fetch)} }()
	}
	flushed := func(res flushRes) {
		flushes--
		reserved -= res.fetch
		dispatch(res.ds)
	}
	for {
		// A batch handed to a flush goroutine is never reused.
		batch, pending = pending, nil
		collect()
	landed:
		for flushes > 0 {
			select {
			case res := <-flushDone:
				flushed(res)
			default:
				break landed
			}
		}
		if stoppedBy == "" {
			switch {
			case ctx.Err() != nil:
				stoppedBy = "context"
				graceUntil = time.Now().Add(e.opt.ShutdownTimeout)
			case !r.canStart():
				stoppedBy = "deadline"
				// Handlers were started only if HandlerTimeout fit; their
				// own timeouts end them before the deadline.
				graceUntil = r.stopAt.Add(e.opt.SafetyMargin / 2)
			}
			if stoppedBy != "" {
				r.stopping.Store(true)
				// Entries not started yet go back at once.
			drainQueue:
				for {
					select {
					case d := <-r.work:
						held--
						r.mu.Lock()
						delete(r.inflight, d)
						r.mu.Unlock()
						batch = append(batch, outcome{d: d, kind: outRequeue})
					default:
						break drainQueue
					}
				}
			}
		}
		space := 0
		if stoppedBy == "" {
			space = max(limit-held-reserved, 0)
		}
		if len(batch) > 0 {
			if held == 0 && flushes == 0 && stoppedBy == "" && r.mode == modePoll {
				if block := r.blockFor(e.opt.BlockInterval); block > 0 {
					dispatch(r.finishAndWait(bg, batch, space, block))
					continue
				}
			}
			if flushes < maxFlushes {
				startFlush(batch, space)
				continue
			}
			flushed(<-flushDone)
			pending = batch
			continue
		}
		if flushes > 0 && (stoppedBy != "" || held == 0) {
			flushed(<-flushDone)
			continue
		}
		if stoppedBy != "" {
			if held == 0 {
				return stoppedBy, nil
			}
			r.waitShutdown(&held, &pending, &graceUntil, &aborted, bg)
			if held == 0 && len(pending) == 0 {
				return stoppedBy, nil
			}
			continue
		}
		if held > 0 {
			// Wait for a result to record; with idle handlers, only
			// briefly, then read for them (a long handler must not idle
			// the rest).
			var timeout <-chan time.Time
			var t *time.Timer
			if held < r.conc && flushes == 0 {
				t = time.NewTimer(time.Millisecond)
				timeout = t.C
			}
			got := false
			select {
			case res := <-flushDone:
				flushed(res)
				got = true
			case o := <-r.outs:
				held--
				pending = append(pending, o) // recorded at the loop top
				got = true
				// Handlers started together tend to finish together: give
				// the others a moment so one round trip records them all.
				held = r.gather(held, &pending, 200*time.Microsecond)
			case <-ctx.Done():
				got = true
			case <-lastStart:
				got = true
			case <-timeout:
			}
			if t != nil {
				t.Stop()
			}
			if got || space <= 0 {
				continue
			}
			ds, err := r.read(ctx, space, r.blockFor(100*time.Millisecond))
			if err != nil {
				r.readFailed(ctx, err)
				continue
			}
			dispatch(ds)
			continue
		}
		// Idle: nothing held.
		block := r.blockFor(e.opt.BlockInterval)
		if r.mode == modeDrain {
			block = -1 // never wait: empty means done
		}
		if block == 0 {
			continue // the last start time is within a millisecond
		}
		ds, err := r.read(ctx, space, block)
		if err != nil {
			r.readFailed(ctx, err)
			continue
		}
		if len(ds) == 0 && r.mode == modeDrain {
			m, err := e.lane.maintain(ctx, r.consumer, false, 0)
			if err != nil {
				if ctx.Err() != nil {
					continue
				}
				return "error", err
			}
			r.addMaint(m)
			if m.promoted == 0 {
				return "empty", nil
			}
			continue
		}
		dispatch(ds)
	}
}

// gather collects more results for up to d while entries are held.
func (r *runState) gather(held int, into *[]outcome, d time.Duration) int {
	if held == 0 {
		return 0
	}
	runtime.Gosched()
	t := time.NewTimer(d)
	defer t.Stop()
	for held > 0 {
		select {
		case o := <-r.outs:
			held--
			*into = append(*into, o)
		case <-t.C:
			return held
		}
	}
	return held
}

// blockFor bounds a blocking read by the last moment a handler may start.
// It returns 0 when that moment is less than a millisecond away (XREADGROUP
// BLOCK 0 would wait forever).
func (r *runState) blockFor(d time.Duration) time.Duration {
	if r.hasDL {
		if left := time.Until(r.stopAt.Add(-r.e.opt.HandlerTimeout)); left < d {
			d = left
		}
		if d < time.Millisecond {
			return 0
		}
	}
	return d
}

func (r *runState) readFailed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	r.e.log.Warn("read failed; retrying", "err", err)
	sleepCtx(ctx, 200*time.Millisecond)
}

// waitShutdown waits for running handlers while stopping: until the grace
// time, then it cancels them (their entries are handed back), and a
// second later hands back the entries of handlers that ignore
// cancellation; their late results fail the still-pending check and are
// dropped.
func (r *runState) waitShutdown(held *int, batch *[]outcome, graceUntil *time.Time, aborted *bool, bg context.Context) {
	e := r.e
	t := time.NewTimer(max(time.Until(*graceUntil), 0))
	defer t.Stop()
	select {
	case o := <-r.outs:
		*held--
		*batch = append(*batch, o)
		return
	case <-t.C:
	}
	if !*aborted {
		*aborted = true
		e.log.Warn("shutdown: cancelling in-flight handlers; their entries are handed back", "running", *held)
		r.abort(errShutdown)
		*graceUntil = time.Now().Add(time.Second)
		return
	}
	r.mu.Lock()
	var stuck []outcome
	for d := range r.inflight {
		stuck = append(stuck, outcome{d: d, kind: outRequeue})
		delete(r.inflight, d)
	}
	r.mu.Unlock()
	e.log.Error("handlers ignored cancellation; their entries were handed back", "entries", len(stuck))
	r.flush(bg, stuck, 0)
	r.gaveUp = true
	*held = 0
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// read is one XREADGROUP over the lane's streams for new entries.
func (r *runState) read(ctx context.Context, count int, block time.Duration) ([]*delivery, error) {
	l := r.e.lane
	keys := l.streams()
	args := make([]string, 0, 2*len(keys))
	args = append(args, keys...)
	for range keys {
		args = append(args, ">")
	}
	a := &redis.XReadGroupArgs{Group: l.group(), Consumer: r.consumer, Streams: args, Count: int64(count), Block: block}
	if block < 0 {
		a.Block = -1
	}
	res, err := r.e.client.XReadGroup(ctx, a).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil && strings.Contains(err.Error(), "NOGROUP") {
		// The group or stream vanished (deleted, or a Redis without
		// persistence restarted): create it again and read next time.
		if eerr := l.ensure(ctx, true); eerr != nil {
			return nil, eerr
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*delivery
	for _, s := range res {
		idx := indexOf(keys, s.Stream)
		for _, m := range s.Messages {
			f := make(map[string]string, len(m.Values))
			for k, v := range m.Values {
				if sv, ok := v.(string); ok {
					f[k] = sv
				}
			}
			out = append(out, &delivery{stream: idx, id: m.ID, fields: f})
		}
	}
	return out, nil
}

func indexOf(keys []string, k string) int {
	for i, s := range keys {
		if s == k {
			return i
		}
	}
	return 0
}

// worker is one of Concurrency handler goroutines: it runs held entries
// in order and hands its results to the driver.
func (r *runState) worker() {
	for d := range r.work {
		if r.stopping.Load() || !r.canStart() {
			// Never start what cannot finish in time: hand it back.
			r.mu.Lock()
			delete(r.inflight, d)
			r.mu.Unlock()
			r.outs <- outcome{d: d, kind: outRequeue}
			continue
		}
		if d.lost.Load() {
			// Reclaimed by another consumer while it waited here: its
			// result is not ours to record (the ack is a no-op).
			r.outs <- outcome{d: d, kind: outSkip}
			continue
		}
		o, mine := r.runOne(d)
		if mine { // else handed back already by a shutdown that gave up on it
			r.outs <- o
		}
	}
}

func (r *runState) runOne(d *delivery) (outcome, bool) {
	now := time.Now()
	hctx, cancelT := context.WithDeadlineCause(r.abortCtx, now.Add(r.e.opt.HandlerTimeout), errTimeout)
	defer cancelT()
	hctx, cancel := context.WithCancelCause(hctx)
	defer cancel(nil)
	r.mu.Lock()
	d.started, d.deadline, d.cancel = now, now.Add(r.e.opt.HandlerTimeout), cancel
	r.mu.Unlock()
	o := r.e.lane.handle(hctx, d)
	if o.kind != outOK && r.abortCtx.Err() != nil {
		// Aborted by shutdown: not the job's fault, hand it back.
		o = outcome{d: d, kind: outRequeue}
	}
	r.mu.Lock()
	_, mine := r.inflight[d]
	delete(r.inflight, d)
	r.mu.Unlock()
	return o, mine
}

func (r *runState) finish(ctx context.Context, batch []outcome, fetch int) ([]*delivery, error) {
	script, keys, args := r.e.lane.finishCall(r.consumer, batch, fetch)
	v, err := script.Run(ctx, r.e.client, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("record results (%s): %w", r.e.lane.label(), err)
	}
	return r.parseFinish(v), nil
}

func (r *runState) parseFinish(v []any) []*delivery {
	if len(v) < 2 {
		return nil
	}
	return parseStreamsReply(v[1], r.e.lane.streams())
}

// finishAndWait is flush for an otherwise idle consumer: the script that
// records the batch and a blocking XREADGROUP go in one pipeline, so
// recording a job and waiting for the next one cost one round trip
// between them. The read returns at once when entries are waiting.
func (r *runState) finishAndWait(ctx context.Context, batch []outcome, count int, block time.Duration) []*delivery {
	script, keys, args := r.e.lane.finishCall(r.consumer, batch, 0)
	streams := r.e.lane.streams()
	sargs := make([]string, 0, 2*len(streams))
	sargs = append(sargs, streams...)
	for range streams {
		sargs = append(sargs, ">")
	}
	pipe := r.e.client.Pipeline()
	fin := script.EvalSha(ctx, pipe, keys, args...)
	rd := pipe.XReadGroup(ctx, &redis.XReadGroupArgs{Group: r.e.lane.group(), Consumer: r.consumer, Streams: sargs, Count: int64(count), Block: block})
	_, _ = pipe.Exec(ctx)
	// The read's entries are ours whatever happened to the script (a
	// NOSCRIPT after a Redis restart fails only the script).
	var out []*delivery
	if err := rd.Err(); err == nil {
		for _, s := range rd.Val() {
			idx := indexOf(streams, s.Stream)
			for _, m := range s.Messages {
				f := make(map[string]string, len(m.Values))
				for k, v := range m.Values {
					if sv, ok := v.(string); ok {
						f[k] = sv
					}
				}
				out = append(out, &delivery{stream: idx, id: m.ID, fields: f})
			}
		}
	} else if !errors.Is(err, redis.Nil) {
		r.readFailed(ctx, err)
	}
	if err := fin.Err(); err != nil {
		// Record the normal way: it loads the script and retries, and a
		// result counts only once however often the script runs.
		return append(out, r.flush(ctx, batch, 0)...)
	}
	r.count(batch)
	return out
}

func (r *runState) count(batch []outcome) {
	for _, o := range batch {
		switch o.kind {
		case outOK:
			r.processed.Add(1)
			r.succeeded.Add(1)
		case outRetry:
			r.processed.Add(1)
			r.failed.Add(1)
		case outFail:
			r.processed.Add(1)
			r.dead.Add(1)
		case outRequeue:
			r.requeued.Add(1)
		}
	}
}

// flush records a batch, retrying transient errors: a result counts only
// while its entry is still pending, so running a finish script twice
// changes nothing. If Redis stays unreachable the entries stay pending and
// are reclaimed after the visibility timeout: at-least-once, never lost.
func (r *runState) flush(ctx context.Context, batch []outcome, fetch int) []*delivery {
	var err error
	for i, wait := 0, 50*time.Millisecond; i < 6; i, wait = i+1, wait*2 {
		var ds []*delivery
		ds, err = r.finish(ctx, batch, fetch)
		if err == nil {
			r.count(batch)
			return ds
		}
		// A reply lost after the script ran already fetched entries for
		// us; they will be reclaimed. Do not fetch again on retry.
		fetch = 0
		if !sleepCtx(ctx, wait) {
			break
		}
	}
	r.e.log.Error("recording results failed; entries will be reclaimed after the visibility timeout",
		"entries", len(batch), "err", err)
	return nil
}

// heartbeat extends the lease of running entries, all in one call.
func (r *runState) heartbeat(ctx context.Context, stop <-chan struct{}) {
	e := r.e
	t := time.NewTicker(e.opt.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		var ds []*delivery
		r.mu.Lock()
		for d := range r.inflight {
			// A handler past its timeout (ignoring cancellation) stops
			// being extended, so another consumer can take the entry.
			if now.Sub(d.leased) >= e.opt.HeartbeatInterval/2 && (d.deadline.IsZero() || now.Before(d.deadline.Add(e.opt.HeartbeatInterval))) {
				ds = append(ds, d)
			}
		}
		r.mu.Unlock()
		if len(ds) == 0 {
			continue
		}
		lost, err := extendLeases(ctx, e.client, e.lane, r.consumer, ds)
		if err != nil {
			e.log.Warn("lease extension failed", "err", err)
			continue
		}
		r.mu.Lock()
		for _, d := range ds {
			d.leased = now
		}
		for _, d := range lost {
			d.lost.Store(true)
			if d.cancel != nil {
				d.cancel(errLeaseLost)
			}
			e.log.Warn("lease lost; handler cancelled", "entry", d.id)
		}
		r.mu.Unlock()
	}
}

// maintenance promotes due entries every PollInterval and reclaims
// stalled ones every VisibilityTimeout/2 (then prunes idle consumers, at
// most once per pruneEvery).
func (r *runState) maintenance(ctx context.Context, stop <-chan struct{}) {
	e := r.e
	t := time.NewTicker(e.opt.PollInterval)
	defer t.Stop()
	lastReclaim := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		reclaim := time.Since(lastReclaim) >= e.opt.VisibilityTimeout/2
		m, err := e.lane.maintain(ctx, r.consumer, reclaim, e.opt.VisibilityTimeout)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("promote/reclaim failed", "err", err)
			}
			continue
		}
		r.addMaint(m)
		if reclaim {
			lastReclaim = time.Now()
			r.consumersRemoved.Add(int64(e.pruneConsumers(ctx, r.consumer)))
		}
	}
}

// extendLeasesScript resets the idle time of entries this consumer still
// owns, so that XAUTOCLAIM elsewhere does not take them, and reports the
// ones it no longer owns (reclaimed after a pause longer than the
// visibility timeout).
//
// KEYS[i]  stream of entry i
// ARGV[1]  group
// ARGV[2]  consumer
// ARGV[2+i] entry id i
// Returns the indexes (1-based) of entries no longer owned.
var extendLeasesScript = redis.NewScript(`
local lost = {}
for i = 1, #KEYS do
  local id = ARGV[2 + i]
  local own = redis.call('XPENDING', KEYS[i], ARGV[1], id, id, 1, ARGV[2])
  if #own == 1 then
    redis.call('XCLAIM', KEYS[i], ARGV[1], ARGV[2], 0, id, 'JUSTID')
  else
    lost[#lost + 1] = i
  end
end
return lost
`)

func extendLeases(ctx context.Context, c redis.UniversalClient, l lane, consumer string, ds []*delivery) ([]*delivery, error) {
	keys := make([]string, len(ds))
	args := make([]any, 0, 2+len(ds))
	args = append(args, l.group(), consumer)
	for i, d := range ds {
		keys[i] = l.streams()[d.stream]
		args = append(args, d.id)
	}
	res, err := extendLeasesScript.Run(ctx, c, keys, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("extend leases: %w", err)
	}
	lost := make([]*delivery, 0, len(res))
	for _, i := range res {
		if i >= 1 && int(i) <= len(ds) {
			lost = append(lost, ds[i-1])
		}
	}
	return lost, nil
}

// parseStreamsReply turns an XREADGROUP reply returned by a script
// ({{stream, {{id, {f, v, ...}}, ...}}, ...}) into deliveries.
func parseStreamsReply(v any, keys []string) []*delivery {
	streams, _ := v.([]any)
	var out []*delivery
	for _, s := range streams {
		pair, _ := s.([]any)
		if len(pair) != 2 {
			continue
		}
		name, _ := pair[0].(string)
		idx := indexOf(keys, name)
		msgs, _ := pair[1].([]any)
		for _, m := range msgs {
			mp, _ := m.([]any)
			if len(mp) != 2 {
				continue
			}
			id, _ := mp[0].(string)
			kv, _ := mp[1].([]any)
			f := make(map[string]string, len(kv)/2)
			for i := 0; i+1 < len(kv); i += 2 {
				k, _ := kv[i].(string)
				val, _ := kv[i+1].(string)
				f[k] = val
			}
			out = append(out, &delivery{stream: idx, id: id, fields: f})
		}
	}
	return out
}

// handlerCall runs h, turning a panic into an error so that one bad
// entry cannot take the worker down.
func handlerCall(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return f()
}

// errText bounds an error message stored in Redis.
func errText(err error) string {
	s := err.Error()
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}
