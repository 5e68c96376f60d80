package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
)

// Worker processes one queue's jobs. It is an event.Drainer: a serverless
// function calls Drain or DrainLongPoll, the local runner and containers
// call Run. A Worker can run in any process; workers of one queue share
// its jobs through the consumer group.
type Worker struct {
	e     *engine
	queue string
}

var _ event.Drainer = (*Worker)(nil)

// Drain processes jobs until the queue has none ready or until the last
// moment a job may start (ctx's deadline − SafetyMargin − HandlerTimeout),
// after reclaiming stalled jobs and promoting due ones.
func (w *Worker) Drain(ctx context.Context) (event.DrainSummary, error) { return w.e.Drain(ctx) }

// DrainLongPoll is Drain that keeps waiting for new jobs until that moment.
func (w *Worker) DrainLongPoll(ctx context.Context) (event.DrainSummary, error) {
	return w.e.DrainLongPoll(ctx)
}

// Run processes jobs until ctx is cancelled, then shuts down gracefully
// (in-flight jobs finish within ShutdownTimeout or are handed back).
func (w *Worker) Run(ctx context.Context) error { return w.e.Run(ctx) }

// Consumer is the worker's name in the queue's consumer group.
func (w *Worker) Consumer() string { return w.e.Consumer() }

// Worker returns a worker for queue running h. Errors: core.EInvalid for a
// bad queue name or a nil handler.
func (q *Queues) Worker(queue string, h job.Handler, opts WorkerOptions) (*Worker, error) {
	k, err := q.keys(queue)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("redisstream: nil job handler")
	}
	if opts.Logger == nil {
		opts.Logger = q.opt.Logger
	}
	l := &jobLane{q: q, queue: queue, k: k, h: h, log: opts.Logger}
	return &Worker{e: newEngine(q.client, l, opts), queue: queue}, nil
}

type jobLane struct {
	q       *Queues
	queue   string
	k       queueKeys
	h       job.Handler
	log     *slog.Logger
	ensured bool

	retention retentionState // retention.go
}

func (l *jobLane) label() string     { return "queue=" + l.queue }
func (l *jobLane) streams() []string { return []string{l.k.stream} }
func (l *jobLane) group() string     { return workersGroup }
func (l *jobLane) pruneLock() string { return l.k.pruned }

func (l *jobLane) ensure(ctx context.Context) error {
	if l.ensured {
		return nil
	}
	// From id 0: jobs added before the first worker ever ran are not skipped.
	if _, err := createGroup(ctx, l.q.client, l.k.stream, workersGroup, "0"); err != nil {
		return unavailable("create consumer group for "+l.queue, err)
	}
	l.ensured = true
	return nil
}

// recreate creates the group again at id 0 after NOGROUP: acknowledged
// jobs are deleted from the stream, so 0 re-delivers exactly the entries
// no worker finished (none, when the whole dataset was lost).
func (l *jobLane) recreate(ctx context.Context) error {
	created, err := createGroup(ctx, l.q.client, l.k.stream, workersGroup, "0")
	if err != nil {
		return unavailable("recreate consumer group for "+l.queue, err)
	}
	if created {
		l.log.Warn("consumer group vanished (Redis lost data, or the stream was deleted); recreated from the start of the stream",
			"queue", l.queue, "stream", l.k.stream, "entries", l.q.client.XLen(ctx, l.k.stream).Val())
	}
	return nil
}

// createGroup creates group on stream (and the stream) at id start and
// says whether it did; an existing group is left as it is.
func createGroup(ctx context.Context, c redis.UniversalClient, stream, group, start string) (bool, error) {
	err := c.XGroupCreateMkStream(ctx, stream, group, start).Err()
	if err != nil && strings.Contains(err.Error(), "BUSYGROUP") {
		return false, nil
	}
	return err == nil, err
}

func (l *jobLane) handle(ctx context.Context, d *delivery) outcome {
	f, ok := parseJobFields(d.fields["j"])
	if !ok {
		return outcome{d: d, kind: outFail, err: "malformed stream entry"}
	}
	attempt, maxA := f.attempt, f.max
	j := &job.Job{
		ID: d.fields["id"], Queue: l.queue, Name: f.name, Data: f.data,
		Attempt: attempt, MaxAttempts: maxA, CorrelationID: f.corr, State: job.StateActive,
		CreatedAt: f.created, ProcessedAt: d.started.UTC(),
	}
	err := handlerCall(func() error { return l.h(ctx, j) })
	if err == nil {
		return outcome{d: d, kind: outOK}
	}
	if c := context.Cause(ctx); c != nil && !errors.Is(err, c) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", c, err)
	}
	msg := errText(err)
	log := l.log.With("queue", l.queue, "job", j.ID, "name", j.Name, "attempt", attempt, "maxAttempts", maxA)
	if errors.Is(context.Cause(ctx), errShutdown) {
		// The engine hands the job back without spending the attempt;
		// saying "will retry" or "dead-lettered" here would be false.
		log.Info("job handed back on shutdown", "err", msg)
		return outcome{d: d, kind: outRequeue}
	}
	if job.IsPermanent(err) || attempt >= maxA {
		log.Error("job failed; dead-lettered", "err", msg)
		return outcome{d: d, kind: outFail, err: msg}
	}
	delay := backoffDelay(f.backoff, attempt)
	log.Warn("job attempt failed; will retry", "err", msg, "retryIn", delay)
	return outcome{d: d, kind: outRetry, err: msg, delay: delay}
}

// finishJobsScript marks started entries, records a batch of results and
// fetches the next batch. An entry's result counts only if the entry is
// still pending (XACK returns 1): every path that takes an entry from a
// consumer (reclaim, remove, hand-back) acknowledges it in the same
// script, so "still pending" means "still ours" and a reclaimed entry's
// late result is dropped. The job hash is changed only if it still points
// at this entry (a removed or re-added job is left alone). Ack, state
// change and the retry's new entry happen in one script: no crash point
// loses the job. A completed job's id is pushed on the completed list;
// the list is trimmed by the queue's retention step, not here (every key
// a script touches is in KEYS).
//
// A start mark sets the entry's delivery count to 2 (it was read with 1),
// which tells the reclaim that a handler ran it (see reclaimJobsScript);
// XCLAIM to ourselves with min-idle 0 also renews the lease.
//
// KEYS[1] stream, KEYS[2] delayed, KEYS[3] completed list, KEYS[4] failed
// KEYS[4+i] job hash of item i
// ARGV[1] group, ARGV[2] consumer, ARGV[3] entries to fetch, ARGV[4] number of start marks m
// ARGV[5..4+m] entry ids to mark started
// then per item i (6 values): entry id, job id, outcome (c|r|f|h), retry delay ms, error, started ms
// Returns {indexes (1-based) of the items applied, XREADGROUP reply or false}.
var finishJobsScript = redis.NewScript(enqueueLua + markLua + `
local now = nowms()
local m = tonumber(ARGV[4])
markstarted(KEYS[1], ARGV[1], ARGV[2], 5, 4 + m)
local applied = {}
local first = 5 + m
local n = (#ARGV - first + 1) / 6
for i = 0, n - 1 do
  local b = first + i * 6
  local mid, id, out = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local hk = KEYS[5 + i]
  if redis.call('XACK', KEYS[1], ARGV[1], mid) == 1 then
    redis.call('XDEL', KEYS[1], mid)
    -- One HMGET for the ownership check and the fields the outcomes need.
    local f = redis.call('HMGET', hk, 'msg', 'keep', 'attempt')
    if f[1] == mid then
      applied[#applied + 1] = i + 1
      if out == 'c' then
        if tonumber(f[2]) <= 0 then
          redis.call('DEL', hk)
        else
          redis.call('HSET', hk, 'state', 'completed', 'processed', ARGV[b + 5], 'finished', now, 'msg', '')
          redis.call('LPUSH', KEYS[3], id)
        end
      elseif out == 'r' then
        local attempt = tonumber(f[3]) + 1
        redis.call('HSET', hk, 'err', ARGV[b + 4], 'processed', ARGV[b + 5], 'attempt', attempt, 'msg', '')
        local delay = tonumber(ARGV[b + 3])
        if delay > 0 then
          redis.call('HSET', hk, 'state', 'delayed')
          redis.call('ZADD', KEYS[2], now + delay, id)
        else
          enqueue(KEYS[1], hk, id, attempt)
        end
      elseif out == 'h' then
        enqueue(KEYS[1], hk, id, tonumber(f[3]))
      else
        redis.call('HSET', hk, 'state', 'failed', 'err', ARGV[b + 4], 'processed', ARGV[b + 5], 'finished', now, 'msg', '')
        redis.call('ZADD', KEYS[4], now, id)
      end
    end
  end
end
local fetched = false
local want = tonumber(ARGV[3])
if want > 0 then
  fetched = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', KEYS[1], '>')
end
return {applied, fetched}
`)

func (l *jobLane) finishCall(consumer string, outs []outcome, marks []*delivery, fetch int) (*redis.Script, []string, []any) {
	keys := make([]string, 4, 4+len(outs))
	keys[0], keys[1], keys[2], keys[3] = l.k.stream, l.k.delayed, l.k.completed, l.k.failed
	args := make([]any, 0, 4+len(marks)+6*len(outs))
	args = append(args, workersGroup, consumer, fetch, len(marks))
	for _, d := range marks {
		args = append(args, d.id)
	}
	for _, o := range outs {
		id := o.d.fields["id"]
		keys = append(keys, l.k.job(id))
		started := o.d.started.UnixMilli()
		if o.d.started.IsZero() {
			started = 0
		}
		args = append(args, o.d.id, id, o.kind, o.delay.Milliseconds(), o.err, started)
	}
	return finishJobsScript, keys, args
}

// dueJobsScript lists delayed jobs and retries whose time has come, by
// Redis's clock (producers with skewed clocks agree on due times).
//
// KEYS[1] delayed zset
// ARGV[1] max ids
// Returns the due ids, the earliest first.
var dueJobsScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
`)

// promoteJobsScript moves the given due jobs from the delayed set to the
// stream. Their ids were read by dueJobsScript; each is checked again (still
// in the set and due, its hash still delayed), so a job removed or re-added
// meanwhile is left alone.
//
// KEYS[1] delayed zset, KEYS[2] stream, KEYS[2+i] job hash of id i
// ARGV[i] job id i
// Returns the number promoted.
var promoteJobsScript = redis.NewScript(enqueueLua + `
local now = nowms()
local n = 0
for i, id in ipairs(ARGV) do
  local hk = KEYS[2 + i]
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and tonumber(due) <= now then
    redis.call('ZREM', KEYS[1], id)
    if redis.call('HGET', hk, 'state') == 'delayed' then
      enqueue(KEYS[2], hk, id, tonumber(redis.call('HGET', hk, 'attempt')))
      n = n + 1
    end
  end
end
return n
`)

// promoteBatch is the most jobs one promotion script call moves.
const promoteBatch = 500

// promoteDue moves every due delayed job and retry to the stream, in
// batches: the ids are read first, then promoted with their hash keys in
// KEYS (docs/design.md#5).
func (l *jobLane) promoteDue(ctx context.Context) (int, error) {
	c := l.q.client
	total := 0
	for {
		ids, err := dueJobsScript.Run(ctx, c, []string{l.k.delayed}, promoteBatch).StringSlice()
		if err != nil || len(ids) == 0 {
			return total, err
		}
		keys := make([]string, 2, 2+len(ids))
		keys[0], keys[1] = l.k.delayed, l.k.stream
		args := make([]any, len(ids))
		for i, id := range ids {
			keys = append(keys, l.k.job(id))
			args[i] = id
		}
		n, err := promoteJobsScript.Run(ctx, c, keys, args...).Int()
		total += n
		if err != nil || len(ids) < promoteBatch {
			return total, err
		}
	}
}

// reclaimJobsScript takes back entries whose consumer stopped
// heartbeating for longer than the visibility timeout (a crashed or
// frozen worker). The Go side lists them (XPENDING IDLE, following the
// range to the end) and passes their job hashes in KEYS; the script
// checks each is still pending and idle (an owner's heartbeat may have
// come in between) and takes it.
//
// Only started work counts as an attempt (docs/queue.md, "Attempts"): an
// entry whose delivery count is 2 or more was marked started by its
// handler's consumer, and the crashed run is charged: the job goes back
// with the next attempt number, or fails with a "stalled" error after its
// last one, so a job that kills its worker every time is dead-lettered
// instead of looping. An entry never marked started (prefetched, or its
// consumer died before the mark went out) goes back with the same
// attempt; the job hash counts such uncharged reclaims ("unstarted") and
// the third one is charged anyway, so a job that kills its worker before
// its start mark is written cannot loop forever either. The consumers it
// empties are deleted afterwards by pruneConsumersScript (consumers.go).
//
// KEYS[1] stream, KEYS[2] failed zset, KEYS[2+i] job hash of entry i
// ARGV[1] group, ARGV[2] min idle ms, then per entry i (2 values): entry id, job id
// Returns {requeued with the next attempt, dead, handed back with the same attempt}.
var reclaimJobsScript = redis.NewScript(enqueueLua + `
local now = nowms()
local minIdle = tonumber(ARGV[2])
local requeued, dead, same = 0, 0, 0
for i = 1, #KEYS - 2 do
  local mid, id, hk = ARGV[1 + 2 * i], ARGV[2 + 2 * i], KEYS[2 + i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], mid, mid, 1)
  if #p == 1 and tonumber(p[1][3]) >= minIdle then
    local started = tonumber(p[1][4]) >= 2
    redis.call('XACK', KEYS[1], ARGV[1], mid)
    redis.call('XDEL', KEYS[1], mid)
    if id ~= '' and redis.call('HGET', hk, 'msg') == mid then
      local attempt = tonumber(redis.call('HGET', hk, 'attempt'))
      if not started and redis.call('HINCRBY', hk, 'unstarted', 1) < 3 then
        enqueue(KEYS[1], hk, id, attempt)
        same = same + 1
      else
        redis.call('HDEL', hk, 'unstarted')
        local err = 'stalled: no heartbeat for the visibility timeout (worker crashed or frozen) in attempt ' .. attempt
        if attempt < maxattempts(hk) then
          redis.call('HSET', hk, 'err', err)
          enqueue(KEYS[1], hk, id, attempt + 1)
          requeued = requeued + 1
        else
          redis.call('HSET', hk, 'state', 'failed', 'err', err, 'finished', now, 'msg', '')
          redis.call('ZADD', KEYS[2], now, id)
          dead = dead + 1
        end
      end
    end
  end
end
return {requeued, dead, same}
`)

// reclaimPage is how many stalled entries one reclaim script takes.
const reclaimPage = 100

func (l *jobLane) maintain(ctx context.Context, consumer string, reclaim bool, minIdle time.Duration) (maintResult, error) {
	var m maintResult
	if reclaim {
		r, err := l.reclaimStalled(ctx, minIdle)
		m = r
		if err != nil {
			return m, err
		}
	}
	n, err := l.promoteDue(ctx)
	m.promoted += n
	if err != nil {
		return m, fmt.Errorf("promote due jobs of %s: %w", l.queue, err)
	}
	l.applyRetention(ctx)
	return m, nil
}

// reclaimStalled takes back every entry idle longer than minIdle, a page
// at a time, following the pending list to its end.
func (l *jobLane) reclaimStalled(ctx context.Context, minIdle time.Duration) (maintResult, error) {
	var m maintResult
	c := l.q.client
	start := "-"
	for {
		ps, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: l.k.stream, Group: workersGroup, Idle: max(minIdle, time.Millisecond), Start: start, End: "+", Count: reclaimPage,
		}).Result()
		if err != nil {
			return m, fmt.Errorf("list stalled jobs of %s: %w", l.queue, err)
		}
		if len(ps) == 0 {
			return m, nil
		}
		// The job ids are in the entries: one pipelined XRANGE each.
		pipe := c.Pipeline()
		cmds := make([]*redis.XMessageSliceCmd, len(ps))
		for i, p := range ps {
			cmds[i] = pipe.XRange(ctx, l.k.stream, p.ID, p.ID)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return m, fmt.Errorf("read stalled jobs of %s: %w", l.queue, err)
		}
		keys := make([]string, 2, 2+len(ps))
		keys[0], keys[1] = l.k.stream, l.k.failed
		args := make([]any, 0, 2+2*len(ps))
		args = append(args, workersGroup, minIdle.Milliseconds())
		for i, p := range ps {
			id := ""
			if ms := cmds[i].Val(); len(ms) == 1 {
				id, _ = ms[0].Values["id"].(string)
			}
			keys = append(keys, l.k.job(id))
			args = append(args, p.ID, id)
		}
		v, err := reclaimJobsScript.Run(ctx, c, keys, args...).Int64Slice()
		if err != nil {
			return m, fmt.Errorf("reclaim stalled jobs of %s: %w", l.queue, err)
		}
		m.reclaimed += int(v[0] + v[1] + v[2])
		m.dead += int(v[1])
		if len(ps) < reclaimPage {
			return m, nil
		}
		start = nextID(ps[len(ps)-1].ID)
	}
}

func (l *jobLane) remaining(ctx context.Context) int64 {
	c, err := l.q.Counts(ctx, l.queue)
	if err != nil {
		return -1
	}
	return c.Waiting + c.Delayed
}
