package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
// One dispatcher goroutine (loop) owns the bookkeeping and never waits on
// Redis itself: it hands each round trip to a goroutine of its own and
// reacts to what comes back. A finished handler's result goes out at once,
// with whatever else finished meanwhile (up to maxFlushes record calls on
// the wire), never behind a blocking read (docs/design.md, "Engine
// guarantees"). Under load no separate read is needed, because the script
// that records a batch of results (ack, retry, dead-letter) also fetches
// the next batch (XREADGROUP inside the script, as BullMQ's
// moveToFinished fetches the next job), up to Concurrency + Prefetch held
// entries, whenever no read is in flight. An idle consumer keeps one
// blocking XREADGROUP on its own connection, which new work wakes at once.
// Heartbeats cover all held entries in one call per interval.
//
// Only started work counts as an attempt: entries are read with delivery
// count 1, and the engine marks the ones whose handler started by setting
// their count to 2 (XCLAIM ... RETRYCOUNT 2 JUSTID), carried by the next
// record call or a small call of its own after markDelay. The reclaim
// charges an attempt only for count >= 2 (see reclaimJobsScript).

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
	// finished is set when the handler returned (or the entry was handed
	// back unstarted): a start mark for it is no longer needed.
	finished atomic.Bool
}

// key identifies a held entry among the lane's streams.
func (d *delivery) key() string { return strconv.Itoa(d.stream) + "/" + d.id }

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
	// ensure creates the consumer groups once per lane.
	ensure(ctx context.Context) error
	// recreate creates the consumer groups again after Redis reported
	// NOGROUP (FLUSHALL, a restart without persistence, a deleted key),
	// at the position that loses the least, and logs what it created.
	recreate(ctx context.Context) error
	// handle runs the handler for d and says what to record.
	handle(ctx context.Context, d *delivery) outcome
	// finishCall is the script call that marks the entries of marks as
	// started, records outs and fetches up to fetch new entries for
	// consumer; it replies {applied item indexes (1-based), XREADGROUP
	// reply or false}.
	finishCall(consumer string, outs []outcome, marks []*delivery, fetch int) (*redis.Script, []string, []any)
	// maintain promotes due retries/delayed entries and, when reclaim is
	// set, takes back entries idle longer than minIdle.
	maintain(ctx context.Context, consumer string, reclaim bool, minIdle time.Duration) (maintResult, error)
	// remaining estimates the work left (for the summary).
	remaining(ctx context.Context) int64
	// pruneLock is the key (with the lane's hash tag) that rate-limits
	// pruning idle consumers across all processes.
	pruneLock() string
}

// markLua is shared by the finish scripts: markstarted sets the delivery
// count of the entries ARGV[from..to] of stream to 2, which tells the
// reclaim that their handler started (see the engine's overview).
// XCLAIM to ourselves with min-idle 0 also renews their lease; an entry no
// longer pending is skipped by XCLAIM.
const markLua = `
local function markstarted(stream, group, consumer, from, to)
  for s = from, to, 500 do
    local c = {'XCLAIM', stream, group, consumer, 0}
    for i = s, math.min(s + 499, to) do c[#c + 1] = ARGV[i] end
    c[#c + 1] = 'RETRYCOUNT'
    c[#c + 1] = 2
    c[#c + 1] = 'JUSTID'
    redis.call(unpack(c))
  end
end
`

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

	outs     chan outcome   // results, to the dispatcher
	work     chan *delivery // held entries, to the handler goroutines
	started  chan *delivery // entries whose handler started, to the dispatcher
	stopping atomic.Bool    // no new handler may start
	gaveUp   bool           // shutdown handed back handlers that ignored cancellation

	abortCtx context.Context // parent of handler contexts; cancelled to abort
	abort    context.CancelCauseFunc
	// recCtx bounds recording retries: cancelled only when a shutdown
	// has given up on everything else, so a Redis outage cannot hold a
	// stopping process forever.
	recCtx    context.Context
	recCancel context.CancelFunc
	hasDL     bool
	stopAt    time.Time

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
	r.recCtx, r.recCancel = context.WithCancel(bg)
	defer r.recCancel()

	if err := e.lane.ensure(ctx); err != nil {
		return sum, err
	}
	// Each drain first takes back stalled entries and promotes due ones
	// (docs/design.md#2).
	m, err := e.lane.maintain(ctx, r.consumer, true, e.opt.VisibilityTimeout)
	if err != nil && e.regroup(ctx, err) {
		m, err = e.lane.maintain(ctx, r.consumer, true, e.opt.VisibilityTimeout)
	}
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

// isNoGroup says whether err is Redis's NOGROUP: the consumer group (or
// its stream) is gone.
func isNoGroup(err error) bool {
	return err != nil && strings.Contains(err.Error(), "NOGROUP")
}

// regroup recreates the lane's consumer groups when err is NOGROUP and
// says whether it was. Any step may meet it (read, record, reclaim, lease
// extension); creating a group that exists is a no-op, so concurrent
// steps meeting the same loss are harmless.
func (e *engine) regroup(ctx context.Context, err error) bool {
	if !isNoGroup(err) {
		return false
	}
	if rerr := e.lane.recreate(context.WithoutCancel(ctx)); rerr != nil {
		e.log.Warn("recreating the vanished consumer group failed", "err", rerr)
	}
	return true
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

// worker is one of Concurrency handler goroutines: it runs held entries
// in order and hands its results to the dispatcher.
func (r *runState) worker() {
	for d := range r.work {
		if r.stopping.Load() || !r.canStart() {
			// Never start what cannot finish in time: hand it back.
			r.mu.Lock()
			delete(r.inflight, d)
			r.mu.Unlock()
			d.finished.Store(true)
			r.outs <- outcome{d: d, kind: outRequeue}
			continue
		}
		if d.lost.Load() {
			// Reclaimed by another consumer while it waited here: its
			// result is not ours to record (the ack is a no-op).
			d.finished.Store(true)
			r.outs <- outcome{d: d, kind: outSkip}
			continue
		}
		r.started <- d // never blocks: each held entry starts once
		o, mine := r.runOne(d)
		d.finished.Store(true)
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
			if !e.regroup(ctx, err) {
				e.log.Warn("lease extension failed", "err", err)
			}
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
			if ctx.Err() == nil && !e.regroup(ctx, err) {
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
// owns, so that the reclaim elsewhere (XPENDING IDLE) does not take them,
// and reports the ones it no longer owns (reclaimed after a pause longer
// than the visibility timeout). JUSTID keeps the delivery count, which
// says whether the entry started (see the engine's overview).
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
