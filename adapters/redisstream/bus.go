package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
)

// BusOptions configure the event bus. Zero values take the defaults named
// on each field.
type BusOptions struct {
	// Prefix starts every key (default "sf").
	Prefix string
	// Stream names the event stream and its hash tag (default "events").
	Stream string
	// MaxAge is the age retention: entries older than this are trimmed
	// once every subscription group has been delivered them and
	// acknowledged them (default 7 days; negative: no age rule).
	MaxAge time.Duration
	// MaxLen is the hard length cap: beyond it the oldest entries are
	// trimmed even if a subscription has not been delivered them, and that
	// subscription's next drain reports how many it lost (default
	// 1,000,000; negative: no cap). The cap never trims an entry a
	// consumer still holds (see HeldGrace), nor any entry after it.
	MaxLen int64
	// HeldGrace is how long the length cap spares an entry delivered to a
	// consumer and not yet acknowledged since its lease was last extended
	// (default 1h). A live consumer extends every HeartbeatInterval, so
	// what it holds is never trimmed; an entry whose consumer died is
	// spared this long for a drain to reclaim it, after which the cap may
	// trim it (the reclaim then counts it lost), so an abandoned
	// subscription cannot hold the stream's memory for ever.
	HeldGrace time.Duration
	// RetentionInterval is how often this process applies retention,
	// from Publish and from subscription drains (default 1m).
	RetentionInterval time.Duration
	// DeadLetterMaxLen caps each subscription's dead-letter stream
	// (approximately, oldest first; default 100,000; negative: no cap).
	DeadLetterMaxLen int64
	// Subscription holds the defaults of durable subscriptions.
	Subscription SubscribeOptions
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// SubscribeOptions tune one durable subscription.
type SubscribeOptions struct {
	ConsumerOptions
	// Attempts is the total number of handler attempts per event before
	// it is dead-lettered (default 5).
	Attempts int
	// Backoff between attempts (default exponential, base 1s, cap 5m,
	// with jitter).
	Backoff job.Backoff
	// StartAtEnd makes a subscription whose group does not exist yet
	// start with events published from now on. By default a new group
	// starts at the oldest retained event, so events published before a
	// subscriber's first drain (a fresh deploy) are not missed.
	StartAtEnd bool
}

// Bus is the event bus: Publish runs local subscribers and appends the
// event to one Redis stream; every durable subscription is a consumer
// group on that stream (docs/queue.md, "Why one shared stream").
type Bus struct {
	client redis.UniversalClient
	opt    BusOptions
	keys   streamKeys

	mu    sync.RWMutex
	local []localSub

	lastTrim atomic.Int64 // unix nanos of the last retention run
}

var (
	_ event.Publisher  = (*Bus)(nil)
	_ event.Subscriber = (*Bus)(nil)
)

type localSub struct {
	name  string
	types map[string]bool // nil: every type
	h     event.Handler
}

// NewBus returns the bus on client's Redis. It panics if opts.Stream is
// not a valid name (a programming error caught at cold start).
func NewBus(client redis.UniversalClient, opts BusOptions) *Bus {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Stream == "" {
		opts.Stream = "events"
	}
	if err := validName("stream", opts.Stream); err != nil {
		panic(err)
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = 7 * 24 * time.Hour
	}
	if opts.MaxLen == 0 {
		opts.MaxLen = 1_000_000
	}
	if opts.RetentionInterval <= 0 {
		opts.RetentionInterval = time.Minute
	}
	if opts.HeldGrace <= 0 {
		opts.HeldGrace = time.Hour
	}
	if opts.DeadLetterMaxLen == 0 {
		opts.DeadLetterMaxLen = 100_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Bus{client: client, opt: opts, keys: newStreamKeys(opts.Prefix, opts.Stream)}
}

// Envelope returns e with its empty envelope fields filled: a new
// time-sortable ID, the current time (UTC, milliseconds), the schema
// version, and the correlation id (the event's own id when it starts a
// chain). Publish calls it; an outbox writer calls it first so that a
// re-published event keeps its id.
func Envelope(e event.Event) event.Event {
	if e.ID == "" {
		e.ID = NewID()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC().Truncate(time.Millisecond)
	}
	if e.SchemaVersion == 0 {
		e.SchemaVersion = event.SchemaVersion
	}
	if e.CorrelationID == "" {
		e.CorrelationID = e.ID
	}
	return e
}

func validateEvent(e event.Event) error {
	if e.Type == "" || len(e.Type) > 200 || hasControl(e.Type) {
		return core.Invalid("event type must be 1 to 200 characters without control characters")
	}
	if len(e.Payload) > 0 && !json.Valid(e.Payload) {
		return core.Invalid("event payload is not valid JSON")
	}
	return nil
}

// LocalHandlerError reports local subscribers that failed after the event
// was appended durably: the event is published, so the caller must not
// publish it again.
type LocalHandlerError struct {
	Event event.Event
	Err   error // errors.Join of each failing subscriber's error
}

func (e *LocalHandlerError) Error() string {
	return fmt.Sprintf("event %s (%s) published; local subscribers failed: %v", e.Event.ID, e.Event.Type, e.Err)
}
func (e *LocalHandlerError) Unwrap() error { return e.Err }

// Publish fills the envelope (see Envelope), appends the event to the
// stream (one XADD) and then runs the local subscribers of its type,
// synchronously, in the order they subscribed. The durable append comes
// first so that a caller retrying after an error never runs local
// subscribers twice for an event that was not stored. Errors:
// core.EInvalid (nothing stored), core.EUnavailable (Redis failed; it may
// still have stored the event, so retry with the same ID),
// *LocalHandlerError (stored; local subscribers failed).
func (b *Bus) Publish(ctx context.Context, e event.Event) error {
	if err := validateEvent(e); err != nil {
		return err
	}
	e = Envelope(e)
	data, err := json.Marshal(e)
	if err != nil {
		return core.Invalid("event is not JSON-encodable: %v", err)
	}
	err = b.client.XAdd(ctx, &redis.XAddArgs{Stream: b.keys.stream, Values: []string{"t", e.Type, "e", string(data)}}).Err()
	if err != nil {
		return &core.Error{Code: core.EUnavailable, Message: "event bus unavailable", Err: fmt.Errorf("publish %s %s: %w", e.Type, e.ID, err)}
	}
	b.maybeTrim(ctx)
	var errs []error
	b.mu.RLock()
	local := b.local
	b.mu.RUnlock()
	for _, s := range local {
		if s.types != nil && !s.types[e.Type] {
			continue
		}
		if err := handlerCall(func() error { return s.h(ctx, e) }); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	if len(errs) > 0 {
		return &LocalHandlerError{Event: e, Err: errors.Join(errs...)}
	}
	return nil
}

func typeSet(types []string) (map[string]bool, error) {
	if len(types) == 0 {
		return nil, core.Invalid("subscribe to at least one event type (or \"*\")")
	}
	set := map[string]bool{}
	for _, t := range types {
		if t == "*" {
			return nil, nil
		}
		if t == "" || hasControl(t) {
			return nil, core.Invalid("event type %q", t)
		}
		set[t] = true
	}
	return set, nil
}

// Subscribe implements event.Subscriber: event.Local runs h inside
// Publish; event.Durable makes a consumer group with the bus's default
// SubscribeOptions and returns its Drainer.
func (b *Bus) Subscribe(types []string, name string, h event.Handler, mode event.Mode) (event.Drainer, error) {
	if mode == event.Local {
		if err := b.SubscribeLocal(types, name, h); err != nil {
			return nil, err
		}
		return noDrain{}, nil
	}
	return b.SubscribeDurable(types, name, h, b.opt.Subscription)
}

// SubscribeLocal registers h to run synchronously inside Publish in this
// process, for events of types ("*" for all): the old EventEmitter.
func (b *Bus) SubscribeLocal(types []string, name string, h event.Handler) error {
	set, err := typeSet(types)
	if err != nil {
		return err
	}
	if h == nil {
		return errors.New("redisstream: nil event handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.local = append(b.local[:len(b.local):len(b.local)], localSub{name: name, types: set, h: h})
	return nil
}

// noDrain is the Drainer of a local subscription: it has nothing to do.
type noDrain struct{}

func (noDrain) Drain(context.Context) (event.DrainSummary, error) {
	return event.DrainSummary{StoppedBy: "empty"}, nil
}
func (noDrain) DrainLongPoll(context.Context) (event.DrainSummary, error) {
	return event.DrainSummary{StoppedBy: "empty"}, nil
}
func (noDrain) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// maybeTrim applies retention if this process has not in the last
// RetentionInterval. Failures are logged: publishing must not fail
// because trimming did.
func (b *Bus) maybeTrim(ctx context.Context) {
	now := time.Now().UnixNano()
	last := b.lastTrim.Load()
	if now-last < int64(b.opt.RetentionInterval) || !b.lastTrim.CompareAndSwap(last, now) {
		return
	}
	// One script call (at most 10,000 entries capped): a publisher must
	// not wait for a big backlog to be trimmed; the next run goes on.
	if _, err := b.trimOnce(ctx); err != nil {
		b.opt.Logger.Warn("event stream retention failed", "err", err)
	}
}

const trimChunk = 10_000

func (b *Bus) trimOnce(ctx context.Context) (TrimResult, error) {
	maxAge := max(b.opt.MaxAge.Milliseconds(), 0)
	maxLen := max(b.opt.MaxLen, 0)
	v, err := trimScript.Run(ctx, b.client, []string{b.keys.stream, b.keys.lost},
		maxAge, maxLen, trimChunk, b.opt.HeldGrace.Milliseconds()).Slice()
	if err != nil || len(v) < 3 {
		return TrimResult{}, fmt.Errorf("trim event stream: %w", err)
	}
	n := func(x any) int64 { i, _ := x.(int64); return i }
	res := TrimResult{Aged: n(v[0]), Capped: n(v[1]), Held: n(v[2])}
	// The loss itself is reported by the subscription's next drain; the
	// ids are only known here, so that it can be traced (and its effects
	// reconciled from MongoDB, docs/design.md#11).
	for i := 3; i+3 < len(v); i += 4 {
		group, _ := v[i].(string)
		first, _ := v[i+2].(string)
		last, _ := v[i+3].(string)
		b.opt.Logger.Error("event stream length cap removed entries a subscription had not been delivered",
			"stream", b.keys.stream, "subscription", group, "lost", n(v[i+1]), "firstId", first, "lastId", last)
	}
	return res, nil
}

// TrimResult says what one retention run removed.
type TrimResult struct {
	// Aged is how many entries the age rule removed (all of them
	// acknowledged by every group).
	Aged int64
	// Capped is how many entries the length cap removed; those some
	// group had not been delivered are counted against it, reported by
	// its next drain as DrainSummary.Lost and logged with their id range.
	Capped int64
	// Held is how many entries beyond MaxLen the cap left because a
	// consumer holds them or one before them (see BusOptions.HeldGrace).
	Held int64
}

// trimScript applies retention to the event stream (docs/queue.md,
// "Retention guarantees"). The age rule trims below the smallest of: the
// age cutoff, and for every group its oldest pending entry and the first
// entry it has not been delivered, so it never removes an entry some group
// still needs. The length cap then removes the oldest entries beyond
// MaxLen, but never one at or after the oldest entry a consumer holds
// (pending, lease extended within the grace): trimming it would make the
// next lease extension (XCLAIM … JUSTID) drop it from the pending list and
// cancel a live handler as "lease lost". For each group it counts the
// removed entries the group had not been delivered, and returns their id
// range. (A pending entry older than the grace, whose consumer died, may
// be removed; the reclaim finds it gone and counts it lost then.)
//
// KEYS[1] event stream, KEYS[2] lost hash
// ARGV[1] max age ms (0: no age rule), ARGV[2] max length (0: no cap),
// ARGV[3] most entries the cap removes per call, ARGV[4] held grace ms
// Returns {aged, capped, held, then per group that lost entries: name, count, first id, last id}.
var trimScript = redis.NewScript(`
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then return tonumber(string.match(id, '^(%d+)')) or 0, 0 end
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm end
  return as < bs
end
-- The oldest entry a consumer of group still holds, or nil. Entries whose
-- lease was not extended within the grace do not count; if the first 100
-- pending are all such, the 100th is taken (never trim what was not seen).
local function held(name, grace)
  local p = redis.call('XPENDING', KEYS[1], name, '-', '+', 100)
  for _, e in ipairs(p) do
    if tonumber(e[3]) < grace then return e[1] end
  end
  if #p == 100 then return p[100][1] end
  return nil
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[4])
local bounds = {}
local heldmin = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  local ms, seq = parse(last)
  local undelivered = string.format('%d-%d', ms, seq + 1)
  local b = undelivered
  local p = redis.call('XPENDING', KEYS[1], name)
  if tonumber(p[1]) > 0 then
    if less(p[2], b) then b = p[2] end
    local h = held(name, grace)
    if h and (heldmin == nil or less(h, heldmin)) then heldmin = h end
  end
  bounds[#bounds + 1] = {name, b, undelivered}
end
local aged = 0
local maxage = tonumber(ARGV[1])
if maxage > 0 then
  local minid = string.format('%d-0', now - maxage)
  for _, gb in ipairs(bounds) do
    if less(gb[2], minid) then minid = gb[2] end
  end
  aged = redis.call('XTRIM', KEYS[1], 'MINID', minid)
end
local capped, spared = 0, 0
local out = {}
local maxlen = tonumber(ARGV[2])
if maxlen > 0 then
  local excess = redis.call('XLEN', KEYS[1]) - maxlen
  if excess > 0 then
    if excess > tonumber(ARGV[3]) then excess = tonumber(ARGV[3]) end
    local r = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess + 1)
    -- k: how many of the oldest may go (all before the first held one).
    local k = excess
    if heldmin then
      k = 0
      while k < excess and less(r[k + 1][1], heldmin) do k = k + 1 end
    end
    spared = excess - k
    if k > 0 then
      for _, gb in ipairs(bounds) do
        local lost, first = 0, nil
        for i = 1, k do
          if not less(r[i][1], gb[3]) then
            lost = lost + 1
            if not first then first = r[i][1] end
          end
        end
        if lost > 0 then
          redis.call('HINCRBY', KEYS[2], gb[1], lost)
          out[#out + 1] = gb[1]
          out[#out + 1] = lost
          out[#out + 1] = first
          out[#out + 1] = r[k][1]
        end
      end
      capped = redis.call('XTRIM', KEYS[1], 'MINID', r[k + 1][1])
    end
  end
end
local res = {aged, capped, spared}
for _, v in ipairs(out) do res[#res + 1] = v end
return res
`)

// Trim applies retention now. Drains and Publish call it every
// RetentionInterval; an operator can call it after changing limits.
func (b *Bus) Trim(ctx context.Context) (TrimResult, error) {
	var res TrimResult
	for {
		r, err := b.trimOnce(ctx)
		if err != nil {
			return res, err
		}
		res.Aged += r.Aged
		res.Capped += r.Capped
		res.Held = r.Held
		if r.Capped < trimChunk {
			return res, nil
		}
	}
}

// DeadLetter is one event a subscription gave up on.
type DeadLetter struct {
	ID       string      `json:"id"` // entry id in the dead-letter stream
	Event    event.Event `json:"event"`
	Attempts int         `json:"attempts"`
	Error    string      `json:"error"`
	Time     time.Time   `json:"time"`
}

// DeadLetters lists up to limit dead-lettered events of subscription
// name, oldest first.
func (b *Bus) DeadLetters(ctx context.Context, name string, limit int) ([]DeadLetter, error) {
	if err := validName("subscription", name); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	msgs, err := b.client.XRangeN(ctx, b.keys.sub(name).dead, "-", "+", int64(limit)).Result()
	if err != nil {
		return nil, &core.Error{Code: core.EUnavailable, Message: "event bus unavailable", Err: err}
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		dl := DeadLetter{ID: m.ID}
		s := func(k string) string { v, _ := m.Values[k].(string); return v }
		_ = json.Unmarshal([]byte(s("e")), &dl.Event)
		dl.Attempts, _ = strconv.Atoi(s("a"))
		dl.Error = s("err")
		dl.Time = msTime(s("at"))
		out = append(out, dl)
	}
	return out, nil
}

// replayScript moves dead letters to the subscription's retry stream
// with a fresh set of attempts; only that subscription sees them again.
//
// KEYS[1] dead-letter stream, KEYS[2] retry stream
// ARGV[1] max entries, ARGV[2..] dead-letter entry ids (none: the oldest ARGV[1])
// Returns the number replayed.
var replayScript = redis.NewScript(`
local entries = {}
if #ARGV > 1 then
  for i = 2, #ARGV do
    local r = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
    if #r == 1 then entries[#entries + 1] = r[1] end
  end
else
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))
end
for _, e in ipairs(entries) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  redis.call('XADD', KEYS[2], '*', 't', f['t'] or '', 'e', f['e'] or '', 'a', 1, 'o', f['o'] or e[1], 'err', f['err'] or '')
  redis.call('XDEL', KEYS[1], e[1])
end
return #entries
`)

// Replay moves the given dead letters (by DeadLetter.ID) back to
// subscription name, which processes them again with fresh attempts.
// Errors: core.ENotFound if none of the ids exists.
func (b *Bus) Replay(ctx context.Context, name string, ids ...string) (int, error) {
	if err := validName("subscription", name); err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, core.Invalid("no dead-letter ids given (ReplayAll replays every one)")
	}
	k := b.keys.sub(name)
	args := []any{len(ids)}
	for _, id := range ids {
		args = append(args, id)
	}
	n, err := replayScript.Run(ctx, b.client, []string{k.dead, k.retry}, args...).Int()
	if err != nil {
		if strings.Contains(err.Error(), "Invalid stream ID") {
			return 0, core.Invalid("bad dead-letter id")
		}
		return 0, &core.Error{Code: core.EUnavailable, Message: "event bus unavailable", Err: err}
	}
	if n == 0 {
		return 0, core.NotFound("no such dead letter in %s", name)
	}
	return n, nil
}

// ReplayAll replays every dead letter of subscription name, in batches.
func (b *Bus) ReplayAll(ctx context.Context, name string) (int, error) {
	if err := validName("subscription", name); err != nil {
		return 0, err
	}
	k := b.keys.sub(name)
	total := 0
	for {
		n, err := replayScript.Run(ctx, b.client, []string{k.dead, k.retry}, 1000).Int()
		if err != nil {
			return total, &core.Error{Code: core.EUnavailable, Message: "event bus unavailable", Err: err}
		}
		total += n
		if n < 1000 {
			return total, nil
		}
	}
}

// RemoveSubscription deletes subscription name's consumer group and keys:
// the stream stops retaining events for it. Its drains must be stopped.
func (b *Bus) RemoveSubscription(ctx context.Context, name string) error {
	if err := validName("subscription", name); err != nil {
		return err
	}
	k := b.keys.sub(name)
	err := b.client.XGroupDestroy(ctx, b.keys.stream, name).Err()
	if err != nil && !strings.Contains(err.Error(), "NOGROUP") && !strings.Contains(err.Error(), "no such key") {
		return &core.Error{Code: core.EUnavailable, Message: "event bus unavailable", Err: err}
	}
	for _, key := range []string{k.retry, k.delayed, k.held, k.dead, k.pruned} {
		if err := b.client.Del(ctx, key).Err(); err != nil {
			return &core.Error{Code: core.EUnavailable, Message: "event bus unavailable", Err: err}
		}
	}
	return b.client.HDel(ctx, b.keys.lost, name).Err()
}
