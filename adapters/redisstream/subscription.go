package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
)

// Subscription is a durable subscriber: a consumer group named after it on
// the event stream. Every subscription receives every event of its types;
// instances of one subscription (in one process or many) share the work.
// It is an event.Drainer.
type Subscription struct {
	e    *engine
	name string
}

var _ event.Drainer = (*Subscription)(nil)

// Drain processes events (and due retries) until none is ready or until
// the last moment a handler may start (ctx's deadline − SafetyMargin −
// HandlerTimeout), after reclaiming stalled entries.
func (s *Subscription) Drain(ctx context.Context) (event.DrainSummary, error) { return s.e.Drain(ctx) }

// DrainLongPoll is Drain that keeps waiting for new events until that moment.
func (s *Subscription) DrainLongPoll(ctx context.Context) (event.DrainSummary, error) {
	return s.e.DrainLongPoll(ctx)
}

// Run processes events until ctx is cancelled, then shuts down gracefully.
func (s *Subscription) Run(ctx context.Context) error { return s.e.Run(ctx) }

// Consumer is this instance's name in the subscription's consumer group.
func (s *Subscription) Consumer() string { return s.e.Consumer() }

// Name returns the subscription (consumer group) name.
func (s *Subscription) Name() string { return s.name }

// SubscribeDurable subscribes h under name to events of types ("*" for
// all). The consumer group is created on the first drain. Errors:
// core.EInvalid for a bad name or type list.
func (b *Bus) SubscribeDurable(types []string, name string, h event.Handler, opts SubscribeOptions) (*Subscription, error) {
	if err := validName("subscription", name); err != nil {
		return nil, err
	}
	set, err := typeSet(types)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("redisstream: nil event handler")
	}
	def := b.opt.Subscription
	if opts.Attempts <= 0 {
		opts.Attempts = def.Attempts
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	// The bus-wide default is itself completed from the package default
	// first: a zero BusOptions.Subscription.Backoff (the usual wiring)
	// must mean "the default", not an empty backoff type.
	defBo, err := normBackoff(def.Backoff, defaultEventBackoff)
	if err != nil {
		return nil, fmt.Errorf("BusOptions.Subscription: %w", err)
	}
	bo, err := normBackoff(opts.Backoff, defBo)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = b.opt.Logger
	}
	l := &eventLane{b: b, name: name, k: b.keys.sub(name), types: set, h: h,
		attempts: opts.Attempts, backoff: bo, startAtEnd: opts.StartAtEnd}
	return &Subscription{e: newEngine(b.client, l, opts.ConsumerOptions), name: name}, nil
}

type eventLane struct {
	b          *Bus
	name       string
	k          subKeys
	types      map[string]bool
	h          event.Handler
	attempts   int
	backoff    job.Backoff
	startAtEnd bool
	ensured    bool
}

func (l *eventLane) label() string     { return "subscription=" + l.name }
func (l *eventLane) streams() []string { return []string{l.b.keys.stream, l.k.retry} }
func (l *eventLane) group() string     { return l.name }
func (l *eventLane) pruneLock() string { return l.k.pruned }

func (l *eventLane) ensure(ctx context.Context) error {
	if l.ensured {
		return nil
	}
	start := "0"
	if l.startAtEnd {
		start = "$"
	}
	for _, g := range [][2]string{{l.b.keys.stream, start}, {l.k.retry, "0"}} {
		if _, err := createGroup(ctx, l.b.client, g[0], l.name, g[1]); err != nil {
			return fmt.Errorf("create consumer group %s: %w", l.name, err)
		}
	}
	l.ensured = true
	return nil
}

// recreate creates the groups again after NOGROUP, both at id 0. For the
// retry stream that re-delivers exactly the unfinished retries (finished
// ones are deleted). For the shared event stream it re-delivers every
// event still in it, including ones this subscription already handled
// before the group vanished: handlers are idempotent (docs/design.md,
// "Engine guarantees"), and skipping to the end would lose the events
// published meanwhile. The log says how many entries that is.
func (l *eventLane) recreate(ctx context.Context) error {
	for _, key := range []string{l.b.keys.stream, l.k.retry} {
		created, err := createGroup(ctx, l.b.client, key, l.name, "0")
		if err != nil {
			return fmt.Errorf("recreate consumer group %s: %w", l.name, err)
		}
		if created {
			l.b.opt.Logger.Warn("consumer group vanished (Redis lost data, or the stream was deleted); recreated from the start of the stream, so its entries are delivered again (handlers are idempotent)",
				"subscription", l.name, "stream", key, "entries", l.b.client.XLen(ctx, key).Val())
		}
	}
	return nil
}

func (l *eventLane) handle(ctx context.Context, d *delivery) outcome {
	attempt := 1
	if d.stream == 1 {
		attempt, _ = strconv.Atoi(d.fields["a"])
	}
	typ := d.fields["t"]
	if l.types != nil && !l.types[typ] {
		return outcome{d: d, kind: outSkip}
	}
	var ev event.Event
	if err := json.Unmarshal([]byte(d.fields["e"]), &ev); err != nil {
		l.b.opt.Logger.Error("undecodable event dead-lettered", "subscription", l.name, "entry", d.id, "err", err)
		return outcome{d: d, kind: outFail, err: "undecodable event: " + err.Error()}
	}
	err := handlerCall(func() error { return l.h(ctx, ev) })
	if err == nil {
		return outcome{d: d, kind: outOK}
	}
	if c := context.Cause(ctx); c != nil && !errors.Is(err, c) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", c, err)
	}
	msg := errText(err)
	log := l.b.opt.Logger.With("subscription", l.name, "event", ev.ID, "type", ev.Type,
		"correlationId", ev.CorrelationID, "attempt", attempt, "maxAttempts", l.attempts)
	if errors.Is(context.Cause(ctx), errShutdown) {
		// Handed back without spending the attempt (see runOne).
		log.Info("event handed back on shutdown", "err", msg)
		return outcome{d: d, kind: outRequeue}
	}
	if event.IsPermanent(err) || job.IsPermanent(err) || attempt >= l.attempts {
		log.Error("event handler failed; dead-lettered", "err", msg)
		return outcome{d: d, kind: outFail, err: msg}
	}
	delay := backoffDelay(l.backoff, attempt)
	log.Warn("event handler failed; will retry", "err", msg, "retryIn", delay)
	return outcome{d: d, kind: outRetry, err: msg, delay: delay}
}

// eventLua is shared by the subscription scripts: Redis's clock, and the
// dead-letter append with the stream's optional approximate cap.
const eventLua = `
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function dead(key, maxlen, typ, ev, attempt, origin, err, now)
  if tonumber(maxlen) > 0 then
    redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 't', typ, 'e', ev, 'a', attempt, 'o', origin, 'err', err, 'at', now)
  else
    redis.call('XADD', key, '*', 't', typ, 'e', ev, 'a', attempt, 'o', origin, 'err', err, 'at', now)
  end
end
`

// finishEventsScript marks started entries, records a batch of a
// subscription's results and fetches the next batch. A result counts only
// while its entry is still pending (see finishJobsScript). A retry is a
// copy of the event in the subscription's own retry stream (after its
// backoff, via the delayed set), so the shared stream entry is
// acknowledged at once and only this subscription sees the event again.
//
// KEYS[1] event stream, KEYS[2] retry stream, KEYS[3] delayed zset,
// KEYS[4] held hash, KEYS[5] dead-letter stream
// ARGV[1] group, ARGV[2] consumer, ARGV[3] entries to fetch, ARGV[4] dead-letter cap (0: none),
// ARGV[5] start marks m1 in the event stream, ARGV[6] start marks m2 in the retry stream,
// then m1 entry ids, then m2 entry ids,
// then per item (9 values): stream (1|2), entry id, outcome (c|s|r|f|h), retry delay ms,
// attempt, error, origin id, type, event JSON
// Returns {indexes (1-based) of the items applied, XREADGROUP reply or false}.
var finishEventsScript = redis.NewScript(eventLua + markLua + `
local now = nowms()
local m1, m2 = tonumber(ARGV[5]), tonumber(ARGV[6])
markstarted(KEYS[1], ARGV[1], ARGV[2], 7, 6 + m1)
markstarted(KEYS[2], ARGV[1], ARGV[2], 7 + m1, 6 + m1 + m2)
local applied = {}
local first = 7 + m1 + m2
local n = (#ARGV - first + 1) / 9
for i = 0, n - 1 do
  local b = first + i * 9
  local key = KEYS[tonumber(ARGV[b])]
  local mid, out = ARGV[b + 1], ARGV[b + 2]
  if redis.call('XACK', key, ARGV[1], mid) == 1 then
    applied[#applied + 1] = i + 1
    if key == KEYS[2] then redis.call('XDEL', key, mid) end
    local attempt, err, origin, typ, ev = tonumber(ARGV[b + 4]), ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
    if out == 'r' then
      local delay = tonumber(ARGV[b + 3])
      if delay > 0 then
        redis.call('HSET', KEYS[4], origin, cjson.encode({t = typ, e = ev, a = attempt + 1, err = err}))
        redis.call('ZADD', KEYS[3], now + delay, origin)
      else
        redis.call('XADD', KEYS[2], '*', 't', typ, 'e', ev, 'a', attempt + 1, 'o', origin, 'err', err)
      end
    elseif out == 'h' then
      redis.call('XADD', KEYS[2], '*', 't', typ, 'e', ev, 'a', attempt, 'o', origin, 'err', err)
    elseif out == 'f' then
      dead(KEYS[5], ARGV[4], typ, ev, attempt, origin, err, now)
    end
  end
end
local fetched = false
local want = tonumber(ARGV[3])
if want > 0 then
  fetched = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', KEYS[1], KEYS[2], '>', '>')
end
return {applied, fetched}
`)

func (l *eventLane) finishCall(consumer string, outs []outcome, marks []*delivery, fetch int) (*redis.Script, []string, []any) {
	keys := []string{l.b.keys.stream, l.k.retry, l.k.delayed, l.k.held, l.k.dead}
	args := make([]any, 0, 6+len(marks)+9*len(outs))
	var m [2][]any
	for _, d := range marks {
		m[d.stream] = append(m[d.stream], d.id)
	}
	args = append(args, l.name, consumer, fetch, max(l.b.opt.DeadLetterMaxLen, 0), len(m[0]), len(m[1]))
	args = append(args, m[0]...)
	args = append(args, m[1]...)
	for _, o := range outs {
		d := o.d
		attempt, origin := 1, d.id
		if d.stream == 1 {
			attempt, _ = strconv.Atoi(d.fields["a"])
			origin = d.fields["o"]
		}
		ev, typ := "", ""
		if o.kind == outRetry || o.kind == outFail || o.kind == outRequeue {
			ev, typ = d.fields["e"], d.fields["t"]
		}
		args = append(args, d.stream+1, d.id, o.kind, o.delay.Milliseconds(), attempt, o.err, origin, typ, ev)
	}
	return finishEventsScript, keys, args
}

// promoteEventsScript moves retries whose backoff is over into the
// subscription's retry stream.
//
// KEYS[1] delayed zset, KEYS[2] held hash, KEYS[3] retry stream
// ARGV[1] max entries
// Returns the number promoted.
var promoteEventsScript = redis.NewScript(eventLua + `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', nowms(), 'LIMIT', 0, tonumber(ARGV[1]))
local n = 0
for _, origin in ipairs(ids) do
  redis.call('ZREM', KEYS[1], origin)
  local rec = redis.call('HGET', KEYS[2], origin)
  if rec then
    local r = cjson.decode(rec)
    redis.call('XADD', KEYS[3], '*', 't', r.t, 'e', r.e, 'a', r.a, 'o', origin, 'err', r.err)
    redis.call('HDEL', KEYS[2], origin)
    n = n + 1
  end
end
return n
`)

// reclaimEventsScript takes back entries of one of a subscription's
// streams whose consumer stopped heartbeating for the visibility timeout;
// the Go side lists them (XPENDING IDLE, following the range to the end).
// As for jobs (see reclaimJobsScript), only a started entry (delivery
// count >= 2) is charged: the event goes to the retry stream with the next
// attempt or, after the last, to the dead-letter stream. An unstarted one
// goes to the retry stream with the same attempt and its count of
// uncharged reclaims ("u") plus one; the third is charged. Pending entries
// that retention removed, and the count the length cap recorded for this
// group, are returned as lost. The consumers it empties are deleted
// afterwards by pruneConsumersScript (consumers.go).
//
// KEYS[1] event stream, KEYS[2] retry stream, KEYS[3] dead-letter stream, KEYS[4] lost hash
// ARGV[1] group, ARGV[2] min idle ms, ARGV[3] max attempts, ARGV[4] dead-letter cap,
// ARGV[5] stream of the entries (1|2), ARGV[6..] entry ids
// Returns {requeued with the next attempt, dead, lost, handed back with the same attempt}.
var reclaimEventsScript = redis.NewScript(eventLua + `
local now = nowms()
local idx = tonumber(ARGV[5])
local key = KEYS[idx]
local requeued, deadn, lost, same = 0, 0, 0, 0
for i = 6, #ARGV do
  local mid = ARGV[i]
  local p = redis.call('XPENDING', key, ARGV[1], mid, mid, 1)
  if #p == 1 and tonumber(p[1][3]) >= tonumber(ARGV[2]) then
    local started = tonumber(p[1][4]) >= 2
    local e = redis.call('XRANGE', key, mid, mid)
    redis.call('XACK', key, ARGV[1], mid)
    if idx == 2 then redis.call('XDEL', key, mid) end
    if #e == 1 then
      local f = e[1][2]
      local m = {}
      for j = 1, #f, 2 do m[f[j]] = f[j + 1] end
      local attempt, origin, u = 1, mid, 0
      if idx == 2 then attempt, origin, u = tonumber(m['a']), m['o'], tonumber(m['u'] or '0') end
      if not started and u + 1 < 3 then
        redis.call('XADD', KEYS[2], '*', 't', m['t'], 'e', m['e'], 'a', attempt, 'o', origin, 'err', m['err'] or '', 'u', u + 1)
        same = same + 1
      else
        local err = 'stalled: no heartbeat for the visibility timeout (consumer crashed or frozen) in attempt ' .. attempt
        if attempt < tonumber(ARGV[3]) then
          redis.call('XADD', KEYS[2], '*', 't', m['t'], 'e', m['e'], 'a', attempt + 1, 'o', origin, 'err', err)
          requeued = requeued + 1
        else
          dead(KEYS[3], ARGV[4], m['t'], m['e'], attempt, origin, err, now)
          deadn = deadn + 1
        end
      end
    else
      lost = lost + 1
    end
  end
end
if idx == 1 then
  local recorded = redis.call('HGET', KEYS[4], ARGV[1])
  if recorded then
    lost = lost + tonumber(recorded)
    redis.call('HDEL', KEYS[4], ARGV[1])
  end
end
return {requeued, deadn, lost, same}
`)

func (l *eventLane) maintain(ctx context.Context, consumer string, reclaim bool, minIdle time.Duration) (maintResult, error) {
	var m maintResult
	c := l.b.client
	if reclaim {
		l.b.maybeTrim(ctx)
		r, err := l.reclaimStalled(ctx, minIdle)
		m = r
		if err != nil {
			return m, err
		}
	}
	for {
		n, err := promoteEventsScript.Run(ctx, c, []string{l.k.delayed, l.k.held, l.k.retry}, 500).Int()
		if err != nil {
			return m, fmt.Errorf("promote due retries of %s: %w", l.name, err)
		}
		m.promoted += n
		if n < 500 {
			break
		}
	}
	return m, nil
}

// reclaimStalled takes back every entry of both streams idle longer than
// minIdle, a page at a time, following each pending list to its end.
func (l *eventLane) reclaimStalled(ctx context.Context, minIdle time.Duration) (maintResult, error) {
	var m maintResult
	c := l.b.client
	keys := []string{l.b.keys.stream, l.k.retry, l.k.dead, l.b.keys.lost}
	for idx := 1; idx <= 2; idx++ {
		start := "-"
		for {
			ps, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{
				Stream: keys[idx-1], Group: l.name, Idle: max(minIdle, time.Millisecond), Start: start, End: "+", Count: reclaimPage,
			}).Result()
			if err != nil {
				return m, fmt.Errorf("list stalled events of %s: %w", l.name, err)
			}
			// The event stream's call always runs: it also collects the
			// count the length cap recorded as lost.
			if len(ps) == 0 && idx == 2 {
				break
			}
			args := make([]any, 0, 5+len(ps))
			args = append(args, l.name, minIdle.Milliseconds(), l.attempts, max(l.b.opt.DeadLetterMaxLen, 0), idx)
			for _, p := range ps {
				args = append(args, p.ID)
			}
			v, err := reclaimEventsScript.Run(ctx, c, keys, args...).Int64Slice()
			if err != nil {
				return m, fmt.Errorf("reclaim stalled events of %s: %w", l.name, err)
			}
			m.reclaimed += int(v[0] + v[1] + v[3])
			m.dead += int(v[1])
			m.lost += v[2]
			if len(ps) < reclaimPage {
				break
			}
			start = nextID(ps[len(ps)-1].ID)
		}
	}
	return m, nil
}

// remainingScript estimates a subscription's backlog: the group's lag on
// the event stream when Redis knows it (7.0+, no gaps), retries waiting in
// the retry stream and in backoff.
//
// KEYS[1] event stream, KEYS[2] retry stream, KEYS[3] delayed zset
// ARGV[1] group
var remainingScript = redis.NewScript(`
local n = 0
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if ok then
  for _, g in ipairs(groups) do
    local name, lag
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'lag' then lag = g[i + 1] end
    end
    if name == ARGV[1] and type(lag) == 'number' then n = n + lag end
  end
end
local len = redis.call('XLEN', KEYS[2])
local p = redis.pcall('XPENDING', KEYS[2], ARGV[1])
if type(p) == 'table' and not p.err then len = len - tonumber(p[1]) end
return n + len + redis.call('ZCARD', KEYS[3])
`)

func (l *eventLane) remaining(ctx context.Context) int64 {
	n, err := remainingScript.Run(ctx, l.b.client, []string{l.b.keys.stream, l.k.retry, l.k.delayed}, l.name).Int64()
	if err != nil {
		return -1
	}
	return n
}
