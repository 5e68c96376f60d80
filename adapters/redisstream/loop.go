package redisstream

import (
	"context"
	"time"
)

// The dispatcher of one drain or Run (see the engine's overview in
// engine.go). It runs on one goroutine and owns all of the fields below;
// every round trip to Redis runs on a goroutine of its own and reports
// back on flushDone or readDone, so no result ever waits for a read:
//
//   - recorder (startFlush/flush): a finished handler's result goes out at
//     once, batched with whatever else finished meanwhile and with the
//     start marks due, fetching the next entries when no read is in flight;
//   - fetcher (startRead/read, recover): a blocking XREADGROUP for new
//     entries when there is room and no record call fetches, or the
//     consumer's own pending entries after a record call that fetched lost
//     its reply;
//   - dispatch: fetched entries go to the handler goroutines;
//   - shutdown (beginStop/shutdownStep): at cancellation or the drain's
//     last start time, unstarted entries are handed back, running
//     handlers get ShutdownTimeout, then are cancelled, then given up on.

// maxFlushes record calls may be on the wire at once, each with its own
// batch: while one round trip is out, handlers keep finishing entries and
// the next batch goes out without waiting for it.
const maxFlushes = 2

// markDelay is how long a start mark waits for a record call to carry it
// before it goes out in a small call of its own. Most handlers finish
// within it, and then no mark is needed at all; a crash inside it leaves
// the entry unmarked, which the reclaim's uncharged-reclaim count bounds.
const markDelay = 10 * time.Millisecond

// maxBatch bounds the results of one record call.
const maxBatch = 4096

type flushRes struct {
	fetch     int
	outs      []outcome
	ds        []*delivery
	fetchLost bool // a call that fetched failed: its entries may be ours
}

type readRes struct {
	count int
	block time.Duration
	ds    []*delivery
}

type loop struct {
	r     *runState
	ctx   context.Context
	bg    context.Context
	limit int

	held     int                 // fetched, not yet received back from a handler
	heldIDs  map[string]struct{} // fetched, result not yet recorded (or given up)
	reserved int                 // entries the calls in flight may fetch
	flushes  int                 // record calls in flight
	fetching int                 // of them, those that fetch
	reading  bool                // a read (or recovery) in flight
	recover  bool                // recover own pending entries at the next read
	empty    bool                // drain mode: a non-blocking read found nothing

	pending []outcome   // results waiting for a record call
	marks   []*delivery // started, start mark not yet sent
	markAt  time.Time   // when the oldest mark must go out
	wake    *time.Timer // markAt or the shutdown's next step
	timerOn bool

	stoppedBy  string
	graceUntil time.Time
	aborted    bool

	flushDone chan flushRes
	readDone  chan readRes
}

// drive runs the dispatcher until the drain is done, stopped or failed.
func (r *runState) drive(ctx context.Context) (string, error) {
	e := r.e
	l := &loop{
		r: r, ctx: ctx, bg: context.WithoutCancel(ctx),
		limit:     r.conc + e.opt.Prefetch,
		heldIDs:   map[string]struct{}{},
		flushDone: make(chan flushRes, maxFlushes+1),
		readDone:  make(chan readRes, 1),
		wake:      time.NewTimer(time.Hour),
	}
	l.wake.Stop()
	defer l.wake.Stop()
	// A read asks each stream for up to the free space, so a lane with k
	// streams may hold k times the limit (and a recovery adds at most the
	// free space): the channels never block with twice that.
	n := 2 * l.limit * len(e.lane.streams())
	r.work = make(chan *delivery, n)
	r.outs = make(chan outcome, n)
	r.started = make(chan *delivery, n)
	var lastStart <-chan time.Time
	if r.hasDL {
		t := time.NewTimer(time.Until(r.stopAt.Add(-e.opt.HandlerTimeout)))
		defer t.Stop()
		lastStart = t.C
	}
	var pool = make(chan struct{}, r.conc)
	for range r.conc {
		go func() { defer func() { pool <- struct{}{} }(); r.worker() }()
	}
	defer func() {
		close(r.work)
		if !r.gaveUp {
			for range r.conc {
				<-pool
			}
		}
	}()

	for {
		l.checkStop()
		if l.stoppedBy != "" && l.idle() {
			return l.stoppedBy, nil
		}
		if l.empty {
			l.empty = false
			if l.idle() && len(l.marks) == 0 {
				done, err := l.drainedEmpty()
				if err != nil {
					return "error", err
				}
				if done {
					return "empty", nil
				}
			}
		}
		l.launch()
		l.wait(lastStart)
	}
}

// idle says nothing is held, pending or on the wire.
func (l *loop) idle() bool {
	return l.held == 0 && l.flushes == 0 && !l.reading && len(l.pending) == 0
}

// drainedEmpty is the end of a Drain: nothing to read; promote what is
// due and stop if nothing was.
func (l *loop) drainedEmpty() (bool, error) {
	r := l.r
	m, err := r.e.lane.maintain(l.ctx, r.consumer, false, 0)
	if err != nil {
		if l.ctx.Err() != nil || r.e.regroup(l.ctx, err) {
			return false, nil
		}
		return false, err
	}
	r.addMaint(m)
	return m.promoted == 0, nil
}

// space is how many more entries may be fetched now.
func (l *loop) space() int {
	if l.stoppedBy != "" {
		return 0
	}
	return max(l.limit-l.held-l.reserved, 0)
}

// launch starts the round trips that are due: results first, then start
// marks, then a read.
func (l *loop) launch() {
	for len(l.pending) > 0 && l.flushes < maxFlushes {
		batch := l.pending
		if len(batch) > maxBatch {
			batch, l.pending = batch[:maxBatch:maxBatch], batch[maxBatch:]
		} else {
			l.pending = nil
		}
		fetch := 0
		if !l.reading && !l.recover {
			fetch = l.space()
		}
		l.startFlush(batch, fetch)
	}
	if len(l.marks) > 0 && l.flushes < maxFlushes && !time.Now().Before(l.markAt) {
		l.startFlush(nil, 0)
	}
	if l.reading || l.fetching > 0 || l.stoppedBy != "" {
		return
	}
	if l.recover {
		l.startRecover()
		return
	}
	// Under load the record calls fetch; a read is for idle handlers.
	if l.flushes > 0 && l.held >= l.r.conc {
		return
	}
	space := l.space()
	if space <= 0 {
		return
	}
	block := l.r.blockFor(l.r.e.opt.BlockInterval)
	if l.r.mode == modeDrain {
		if l.idle() {
			block = -1 // never wait: empty means done
		} else {
			block = l.r.blockFor(100 * time.Millisecond)
		}
	}
	if block == 0 {
		return // the last start time is within a millisecond
	}
	l.startRead(space, block)
}

// startFlush sends outs (possibly none) with the start marks due, on a
// goroutine of its own.
func (l *loop) startFlush(outs []outcome, fetch int) {
	marks := l.takeMarks()
	if len(outs) == 0 && len(marks) == 0 {
		return
	}
	l.flushes++
	l.reserved += fetch
	if fetch > 0 {
		l.fetching++
	}
	go func() { l.flushDone <- l.r.flush(outs, marks, fetch) }()
}

// takeMarks returns the entries still running whose start is not marked.
func (l *loop) takeMarks() []*delivery {
	var out []*delivery
	for _, d := range l.marks {
		if !d.finished.Load() {
			out = append(out, d)
		}
	}
	l.marks, l.markAt = nil, time.Time{}
	return out
}

func (l *loop) startRead(count int, block time.Duration) {
	l.reading = true
	l.reserved += count
	go func() {
		ds, err := l.r.read(l.ctx, count, block)
		if err != nil {
			l.r.readFailed(l.ctx, err)
		}
		l.readDone <- readRes{count: count, block: block, ds: ds}
	}()
}

// startRecover reads this consumer's own pending entries that it does not
// hold: after a record call that fetched failed, the script may have run
// and fetched entries whose reply was lost.
func (l *loop) startRecover() {
	l.recover = false
	l.reading = true
	skip := make(map[string]struct{}, len(l.heldIDs))
	for k := range l.heldIDs {
		skip[k] = struct{}{}
	}
	room := max(cap(l.r.work)-l.held, 0)
	go func() {
		ds := l.r.recoverOwn(l.bg, skip, room)
		l.readDone <- readRes{ds: ds}
	}()
}

// wait blocks for the next thing to react to.
func (l *loop) wait(lastStart <-chan time.Time) {
	r := l.r
	l.armTimer()
	var done <-chan struct{}
	if l.stoppedBy == "" {
		done = l.ctx.Done()
	} else {
		lastStart = nil
	}
	select {
	case o := <-r.outs:
		l.onOutcome(o)
		l.collect()
	case d := <-r.started:
		l.onStarted(d)
	case res := <-l.flushDone:
		l.onFlushed(res)
	case res := <-l.readDone:
		l.onRead(res)
	case <-l.wake.C:
		l.timerOn = false
		if l.stoppedBy != "" && !time.Now().Before(l.graceUntil) {
			l.shutdownStep()
		}
	case <-done:
	case <-lastStart:
	}
}

// armTimer sets the wake timer to the next mark or shutdown step.
func (l *loop) armTimer() {
	var at time.Time
	if len(l.marks) > 0 && l.flushes < maxFlushes {
		at = l.markAt
	}
	if l.stoppedBy != "" && l.held+l.flushes > 0 && (at.IsZero() || l.graceUntil.Before(at)) {
		at = l.graceUntil
	}
	if l.timerOn {
		if !l.wake.Stop() {
			<-l.wake.C
		}
		l.timerOn = false
	}
	if !at.IsZero() {
		l.wake.Reset(max(time.Until(at), 0))
		l.timerOn = true
	}
}

func (l *loop) onOutcome(o outcome) {
	l.held--
	l.pending = append(l.pending, o)
}

// collect takes the results that are already there, so that one record
// call carries all of them.
func (l *loop) collect() {
	for len(l.pending) < maxBatch {
		select {
		case o := <-l.r.outs:
			l.onOutcome(o)
		default:
			return
		}
	}
}

func (l *loop) onStarted(d *delivery) {
	if d.finished.Load() {
		return
	}
	if len(l.marks) == 0 {
		l.markAt = time.Now().Add(markDelay)
	}
	l.marks = append(l.marks, d)
}

func (l *loop) onFlushed(res flushRes) {
	l.flushes--
	l.reserved -= res.fetch
	if res.fetch > 0 {
		l.fetching--
	}
	for _, o := range res.outs {
		delete(l.heldIDs, o.d.key())
	}
	if res.fetchLost {
		l.recover = true
	}
	l.dispatch(res.ds)
}

func (l *loop) onRead(res readRes) {
	l.reading = false
	l.reserved -= res.count
	if res.block < 0 && len(res.ds) == 0 {
		l.empty = true
	}
	l.dispatch(res.ds)
}

// dispatch hands fetched entries to the handler goroutines, or back to
// the stream when stopping.
func (l *loop) dispatch(ds []*delivery) {
	r := l.r
	now := time.Now()
	for _, d := range ds {
		l.heldIDs[d.key()] = struct{}{}
		if l.stoppedBy != "" {
			d.finished.Store(true)
			l.pending = append(l.pending, outcome{d: d, kind: outRequeue})
			continue
		}
		// Held entries are heartbeated like running ones; a zero
		// deadline means "not started yet", extended however long it
		// waits for a slot.
		d.started, d.deadline, d.leased = now, time.Time{}, now
		r.mu.Lock()
		r.inflight[d] = struct{}{}
		r.mu.Unlock()
		l.held++
		r.work <- d // never blocks: held <= cap(r.work)
	}
}

// checkStop begins the shutdown at cancellation or at the last moment a
// handler may start.
func (l *loop) checkStop() {
	if l.stoppedBy != "" {
		return
	}
	r := l.r
	switch {
	case l.ctx.Err() != nil:
		l.stoppedBy = "context"
		l.graceUntil = time.Now().Add(r.e.opt.ShutdownTimeout)
	case !r.canStart():
		l.stoppedBy = "deadline"
		// Handlers were started only if HandlerTimeout fit; their own
		// timeouts end them before the deadline.
		l.graceUntil = r.stopAt.Add(r.e.opt.SafetyMargin / 2)
	default:
		return
	}
	r.stopping.Store(true)
	l.handBackQueued()
}

// handBackQueued returns the entries no handler started yet.
func (l *loop) handBackQueued() {
	r := l.r
	for {
		select {
		case d := <-r.work:
			l.held--
			r.mu.Lock()
			delete(r.inflight, d)
			r.mu.Unlock()
			d.finished.Store(true)
			l.pending = append(l.pending, outcome{d: d, kind: outRequeue})
		default:
			return
		}
	}
}

// shutdownStep runs when the grace time is over: first it cancels the
// running handlers (their entries are handed back), a second later it
// hands back the entries of handlers that ignore cancellation (their late
// results fail the still-pending check and are dropped), and a second
// after that it stops retrying record calls.
func (l *loop) shutdownStep() {
	r := l.r
	e := r.e
	switch {
	case !l.aborted:
		l.aborted = true
		if l.held > 0 {
			e.log.Warn("shutdown: cancelling in-flight handlers; their entries are handed back", "running", l.held)
		}
		r.abort(errShutdown)
		l.graceUntil = time.Now().Add(time.Second)
	case !r.gaveUp:
		r.mu.Lock()
		var stuck []outcome
		for d := range r.inflight {
			stuck = append(stuck, outcome{d: d, kind: outRequeue})
			delete(r.inflight, d)
		}
		r.mu.Unlock()
		if len(stuck) > 0 {
			e.log.Error("handlers ignored cancellation; their entries were handed back", "entries", len(stuck))
		}
		l.held -= len(stuck)
		l.pending = append(l.pending, stuck...)
		r.gaveUp = true
		l.graceUntil = time.Now().Add(time.Second)
	default:
		r.recCancel()
		l.graceUntil = time.Now().Add(time.Hour)
	}
}
