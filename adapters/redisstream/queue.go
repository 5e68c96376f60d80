package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/job"
)

// QueueOptions are the defaults of every queue of a Queues. Zero values
// take the defaults named on each field.
type QueueOptions struct {
	// Prefix starts every key (default "sf").
	Prefix string
	// Attempts is the default total number of attempts (default 3).
	Attempts int
	// Backoff is the default retry backoff (default exponential, base 1s,
	// cap 10m, with jitter).
	Backoff job.Backoff
	// KeepCompleted is how many completed jobs a queue keeps for
	// inspection (default 100; negative keeps none). It no longer bounds
	// de-duplication (DedupWindow does). Retention trims the completed
	// list to it in a maintenance step (see RetentionInterval), so the
	// list can briefly hold more.
	KeepCompleted int
	// CompletedMaxAge removes kept completed jobs older than this
	// (default 7 days; negative: no age limit).
	CompletedMaxAge time.Duration
	// KeepFailed is how many failed (dead-lettered) jobs a queue keeps,
	// the most recently failed ones (default 10,000 as asynq's archive;
	// negative: no count limit).
	KeepFailed int
	// FailedMaxAge removes failed jobs that failed longer ago than this
	// (default 90 days as asynq's archive; negative: no age limit).
	FailedMaxAge time.Duration
	// DedupWindow is how long after Add a caller-chosen job id keeps
	// de-duplicating, whatever happened to the job meanwhile (completed
	// and trimmed, failed and removed by retention): adding the id again
	// within the window adds nothing (default 7 days; negative: only
	// while the job exists). Per job: job.Options.DedupWindow.
	DedupWindow time.Duration
	// RetentionInterval is how often each worker applies the age rules
	// and the failed count (default 1m); the completed count is checked
	// every second while a worker runs.
	RetentionInterval time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Queues is the job queue on Redis Streams: it adds jobs (job.Adder),
// inspects queues (job.Inspector) and makes workers.
type Queues struct {
	client redis.UniversalClient
	opt    QueueOptions
}

var (
	_ job.Adder     = (*Queues)(nil)
	_ job.Inspector = (*Queues)(nil)
)

// NewQueues returns the job queues stored in client's Redis (plain, TLS or
// cluster: every script touches the keys of one queue's hash tag).
func NewQueues(client redis.UniversalClient, opts QueueOptions) *Queues {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 3
	}
	opts.Backoff, _ = normBackoff(opts.Backoff, defaultJobBackoff)
	if opts.KeepCompleted == 0 {
		opts.KeepCompleted = 100
	}
	if opts.CompletedMaxAge == 0 {
		opts.CompletedMaxAge = 7 * 24 * time.Hour
	}
	if opts.KeepFailed == 0 {
		opts.KeepFailed = 10_000
	}
	if opts.FailedMaxAge == 0 {
		opts.FailedMaxAge = 90 * 24 * time.Hour
	}
	if opts.DedupWindow == 0 {
		opts.DedupWindow = 7 * 24 * time.Hour
	}
	if opts.RetentionInterval <= 0 {
		opts.RetentionInterval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Queues{client: client, opt: opts}
}

func (q *Queues) keys(queue string) (queueKeys, error) {
	if err := validName("queue", queue); err != nil {
		return queueKeys{}, err
	}
	return newQueueKeys(q.opt.Prefix, queue), nil
}

func unavailable(what string, err error) error {
	return &core.Error{Code: core.EUnavailable, Message: "job queue unavailable", Err: fmt.Errorf("%s: %w", what, err)}
}

// enqueueLua is shared by the scripts that put a job (back) in its stream.
// The stream entry carries everything a worker needs, so running a job
// costs no extra read of its hash. It has two fields, "id" and "j": the
// attempt, then the job's record "r" (max attempts, backoff, created ms,
// correlation id, name, data), joined by the unit separator 0x1f, data
// last. Few fields keep Redis's work small: it walks an entry's fields when
// it deletes one, and a short HSET/XADD is most of what Add costs. Names
// and correlation ids never contain control characters (Add refuses
// them), so only the data may hold a separator.
const enqueueLua = `
local function enqueue(stream, hk, id, attempt)
  local mid = redis.call('XADD', stream, '*', 'id', id, 'j', attempt .. '\31' .. redis.call('HGET', hk, 'r'))
  redis.call('HSET', hk, 'state', 'waiting', 'attempt', attempt, 'msg', mid)
  return mid
end
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function maxattempts(hk)
  return tonumber(string.match(redis.call('HGET', hk, 'r'), '^(%d+)'))
end
`

// addScript adds a job unless its id exists or was added within the
// de-duplication window (the dedup key outlives the job hash, which
// retention may trim long before), either to the stream (ready) or to the
// delayed set. Due times use Redis's clock, so producers with skewed
// clocks agree on them.
//
// KEYS[1] job hash
// KEYS[2] stream
// KEYS[3] delayed zset
// KEYS[4] dedup key of the id
// ARGV[1] job id
// ARGV[2] record: max attempts, backoff, created ms, correlation id, name, data (0x1f-separated)
// ARGV[3] keep completed (<= 0: keep none)
// ARGV[4] delay ms
// ARGV[5] de-duplication window ms (0: none beyond the job hash)
// Returns 1 if added, 0 if the id existed.
var addScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1], KEYS[4]) > 0 then return 0 end
local delay = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
-- The window counts from the due time, so a delayed job's id is kept as
-- long after it became due as an immediate one's.
if window > 0 then redis.call('SET', KEYS[4], '1', 'PX', window + delay) end
if delay > 0 then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[3], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + delay, ARGV[1])
  redis.call('HSET', KEYS[1], 'r', ARGV[2], 'keep', ARGV[3], 'attempt', 1, 'state', 'delayed', 'msg', '')
else
  local mid = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'j', '1\31' .. ARGV[2])
  redis.call('HSET', KEYS[1], 'r', ARGV[2], 'keep', ARGV[3], 'attempt', 1, 'state', 'waiting', 'msg', mid)
end
return 1
`)

// jobRecord packs the immutable part of a job (see enqueueLua).
func jobRecord(maxAttempts int, bo job.Backoff, created time.Time, corr, name string, data []byte) string {
	var b strings.Builder
	b.Grow(64 + len(corr) + len(name) + len(data))
	b.WriteString(strconv.Itoa(maxAttempts))
	b.WriteByte(0x1f)
	b.WriteString(encodeBackoff(bo))
	b.WriteByte(0x1f)
	b.WriteString(strconv.FormatInt(created.UnixMilli(), 10))
	b.WriteByte(0x1f)
	b.WriteString(corr)
	b.WriteByte(0x1f)
	b.WriteString(name)
	b.WriteByte(0x1f)
	b.Write(data)
	return b.String()
}

// jobFields are the parts of "j" (attempt + record), or nil if malformed.
type jobFields struct {
	attempt, max int
	backoff      job.Backoff
	created      time.Time
	corr, name   string
	data         json.RawMessage
}

func parseJobFields(j string) (jobFields, bool) {
	p := strings.SplitN(j, "\x1f", 7)
	if len(p) != 7 {
		return jobFields{}, false
	}
	attempt, _ := strconv.Atoi(p[0])
	maxA, _ := strconv.Atoi(p[1])
	return jobFields{attempt: attempt, max: maxA, backoff: decodeBackoff(p[2]), created: msTime(p[3]),
		corr: p[4], name: p[5], data: json.RawMessage(p[6])}, true
}

// Add enqueues a job and returns its id. With opts.JobID set, adding an id
// that exists (waiting, delayed, active, failed, or completed and still
// kept) or that was added within the de-duplication window
// (QueueOptions.DedupWindow, job.Options.DedupWindow) returns that id and
// changes nothing. Errors: core.EInvalid for bad input, core.EUnavailable
// when Redis fails.
func (q *Queues) Add(ctx context.Context, queue, name string, data any, opts job.Options) (string, error) {
	k, err := q.keys(queue)
	if err != nil {
		return "", err
	}
	if name == "" || len(name) > 200 || hasControl(name) {
		return "", core.Invalid("job name must be 1 to 200 characters without control characters")
	}
	if len(opts.CorrelationID) > 200 || hasControl(opts.CorrelationID) {
		return "", core.Invalid("correlation id must be at most 200 characters without control characters")
	}
	raw, err := jobData(data)
	if err != nil {
		return "", err
	}
	id := opts.JobID
	if id == "" {
		id = NewID()
	} else if err := validJobID(id); err != nil {
		return "", err
	}
	if opts.Delay < 0 {
		return "", core.Invalid("delay must not be negative")
	}
	attempts := opts.Attempts
	if attempts == 0 {
		attempts = q.opt.Attempts
	}
	if attempts < 0 || attempts > 1000 {
		return "", core.Invalid("attempts must be 1 to 1000")
	}
	bo, err := normBackoff(opts.Backoff, q.opt.Backoff)
	if err != nil {
		return "", err
	}
	keep := opts.KeepCompleted
	if keep == 0 {
		keep = q.opt.KeepCompleted
	}
	if keep < 0 {
		keep = 0
	}
	window := q.dedupWindow(opts)
	if opts.JobID == "" {
		window = 0 // a generated id cannot come again: no key to remember it
	}
	delay := opts.Delay.Milliseconds()
	if opts.Delay > 0 && delay == 0 {
		delay = 1
	}
	rec := jobRecord(attempts, bo, time.Now(), opts.CorrelationID, name, raw)
	err = addScript.Run(ctx, q.client, []string{k.job(id), k.stream, k.delayed, k.dedup(id)}, id, rec, keep, delay, window).Err()
	if err != nil {
		return "", unavailable("add job to "+queue, err)
	}
	return id, nil
}

// dedupWindow is the de-duplication window of one Add in milliseconds
// (0: none beyond the job hash).
func (q *Queues) dedupWindow(opts job.Options) int64 {
	w := opts.DedupWindow
	if w == 0 {
		w = q.opt.DedupWindow
	}
	if w <= 0 {
		return 0
	}
	return max(w.Milliseconds(), 1)
}

func jobData(data any) (json.RawMessage, error) {
	var raw []byte
	switch v := data.(type) {
	case nil:
		raw = []byte("null")
	case json.RawMessage:
		raw = v
	case []byte:
		raw = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, core.Invalid("job data is not JSON-encodable: %v", err)
		}
		raw = b
	}
	if !json.Valid(raw) {
		return nil, core.Invalid("job data is not valid JSON")
	}
	return raw, nil
}

// countsScript reads every state's size at one instant.
//
// KEYS[1] stream, KEYS[2] delayed, KEYS[3] completed, KEYS[4] failed
// ARGV[1] group
// Returns {waiting, delayed, active, completed, failed}.
var countsScript = redis.NewScript(`
local len = redis.call('XLEN', KEYS[1])
local active = 0
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(p) == 'table' and not p.err then active = tonumber(p[1]) end
return {len - active, redis.call('ZCARD', KEYS[2]), active, redis.call('LLEN', KEYS[3]), redis.call('ZCARD', KEYS[4])}
`)

// Counts returns how many jobs of queue are in each state. Waiting jobs
// are stream entries not yet delivered, active ones are delivered and not
// acknowledged (XPENDING); a job whose worker died counts as active until
// its visibility timeout.
func (q *Queues) Counts(ctx context.Context, queue string) (job.Counts, error) {
	k, err := q.keys(queue)
	if err != nil {
		return job.Counts{}, err
	}
	v, err := countsScript.Run(ctx, q.client, []string{k.stream, k.delayed, k.completed, k.failed}, workersGroup).Int64Slice()
	if err != nil || len(v) != 5 {
		return job.Counts{}, unavailable("count jobs of "+queue, err)
	}
	return job.Counts{Waiting: v[0], Delayed: v[1], Active: v[2], Completed: v[3], Failed: v[4]}, nil
}

// getJobScript returns a job hash and whether its current entry is
// delivered (active).
//
// KEYS[1] job hash, KEYS[2] stream
// ARGV[1] group
// Returns {hash as a flat list, active 0|1} or false when missing.
var getJobScript = redis.NewScript(`
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return false end
local active = 0
local mid = redis.call('HGET', KEYS[1], 'msg')
if mid and mid ~= '' then
  local p = redis.pcall('XPENDING', KEYS[2], ARGV[1], mid, mid, 1)
  if type(p) == 'table' and not p.err and #p == 1 then active = 1 end
end
return {h, active}
`)

// GetJob returns one job with its state. Errors: core.ENotFound.
func (q *Queues) GetJob(ctx context.Context, queue, id string) (*job.Job, error) {
	k, err := q.keys(queue)
	if err != nil {
		return nil, err
	}
	if err := validJobID(id); err != nil || id == "" {
		return nil, core.NotFound("job %q not found", id)
	}
	v, err := getJobScript.Run(ctx, q.client, []string{k.job(id), k.stream}, workersGroup).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, core.NotFound("job %q not found", id)
	}
	if err != nil || len(v) != 2 {
		return nil, unavailable("get job", err)
	}
	j := jobFromHash(queue, id, flatMap(v[0]))
	if a, _ := v[1].(int64); a == 1 {
		j.State = job.StateActive
	}
	return j, nil
}

func flatMap(v any) map[string]string {
	l, _ := v.([]any)
	m := make(map[string]string, len(l)/2)
	for i := 0; i+1 < len(l); i += 2 {
		k, _ := l[i].(string)
		s, _ := l[i+1].(string)
		m[k] = s
	}
	return m
}

func msTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

func jobFromHash(queue, id string, h map[string]string) *job.Job {
	f, _ := parseJobFields(h["attempt"] + "\x1f" + h["r"])
	return &job.Job{
		ID: id, Queue: queue, Name: f.name, Data: f.data,
		Attempt: f.attempt, MaxAttempts: f.max, CorrelationID: f.corr, State: h["state"],
		LastError: h["err"], CreatedAt: f.created, ProcessedAt: msTime(h["processed"]),
		FinishedAt: msTime(h["finished"]),
	}
}

// ListFailed returns failed (dead-lettered) jobs, most recently failed
// first, with their last error, attempts and times.
func (q *Queues) ListFailed(ctx context.Context, queue string, offset, limit int) ([]job.Job, error) {
	return q.list(ctx, queue, true, offset, limit)
}

// ListCompleted returns kept completed jobs, most recent first.
func (q *Queues) ListCompleted(ctx context.Context, queue string, offset, limit int) ([]job.Job, error) {
	return q.list(ctx, queue, false, offset, limit)
}

func (q *Queues) list(ctx context.Context, queue string, failed bool, offset, limit int) ([]job.Job, error) {
	k, err := q.keys(queue)
	if err != nil {
		return nil, err
	}
	if offset < 0 || limit < 0 || limit > 1000 {
		return nil, core.Invalid("offset must be >= 0 and limit 0 to 1000")
	}
	if limit == 0 {
		limit = 100
	}
	// The ids first, then their hashes in one pipeline (each key named by
	// the caller, docs/design.md#5); a job removed in between is skipped.
	from, to := int64(offset), int64(offset+limit-1)
	var ids []string
	if failed {
		ids, err = q.client.ZRevRange(ctx, k.failed, from, to).Result()
	} else {
		ids, err = q.client.LRange(ctx, k.completed, from, to).Result()
	}
	if err != nil {
		return nil, unavailable("list jobs", err)
	}
	if len(ids) == 0 {
		return []job.Job{}, nil
	}
	pipe := q.client.Pipeline()
	hs := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		hs[i] = pipe.HGetAll(ctx, k.job(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable("list jobs", err)
	}
	out := make([]job.Job, 0, len(ids))
	for i, id := range ids {
		h := hs[i].Val()
		if len(h) == 0 {
			continue // removed meanwhile
		}
		out = append(out, *jobFromHash(queue, id, h))
	}
	return out, nil
}

// retryFailedScript puts the given failed jobs back in the stream with a
// fresh set of attempts, keeping their last error for the record. The ids
// are read first (ZRANGE); each is checked again here (still in the failed
// set), so a job removed or retried meanwhile is left alone. An id whose
// hash is gone leaves the set.
//
// KEYS[1] failed zset, KEYS[2] stream, KEYS[2+i] job hash of id i
// ARGV[i] job id i
// Returns the number of jobs moved.
var retryFailedScript = redis.NewScript(enqueueLua + `
local n = 0
for i, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local hk = KEYS[2 + i]
    if redis.call('EXISTS', hk) == 1 then
      redis.call('HDEL', hk, 'finished')
      enqueue(KEYS[2], hk, id, 1)
      n = n + 1
    end
  end
end
return n
`)

func (q *Queues) retryFailed(ctx context.Context, k queueKeys, ids []string) (int, error) {
	keys := make([]string, 2, 2+len(ids))
	keys[0], keys[1] = k.failed, k.stream
	args := make([]any, len(ids))
	for i, id := range ids {
		keys = append(keys, k.job(id))
		args[i] = id
	}
	return retryFailedScript.Run(ctx, q.client, keys, args...).Int()
}

// RetryFailed moves one failed job back to waiting with its attempts
// reset. Errors: core.ENotFound if it is not failed.
func (q *Queues) RetryFailed(ctx context.Context, queue, id string) error {
	k, err := q.keys(queue)
	if err != nil {
		return err
	}
	if id == "" {
		return core.Invalid("job id required")
	}
	if validJobID(id) != nil {
		return core.NotFound("no failed job %q in %s", id, queue)
	}
	n, err := q.retryFailed(ctx, k, []string{id})
	if err != nil {
		return unavailable("retry job", err)
	}
	if n == 0 {
		return core.NotFound("no failed job %q in %s", id, queue)
	}
	return nil
}

// RetryAllFailed moves every failed job back to waiting, in batches of
// 1000 per script so that Redis is never blocked for long.
func (q *Queues) RetryAllFailed(ctx context.Context, queue string) (int, error) {
	k, err := q.keys(queue)
	if err != nil {
		return 0, err
	}
	total := 0
	for {
		ids, err := q.client.ZRange(ctx, k.failed, 0, 999).Result()
		if err != nil {
			return total, unavailable("retry failed jobs", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		n, err := q.retryFailed(ctx, k, ids)
		total += n
		if err != nil {
			return total, unavailable("retry failed jobs", err)
		}
		if len(ids) < 1000 {
			return total, nil
		}
	}
}

// removeScript deletes a job in any state and its de-duplication key, so
// that the id can be added again. An active job's entry is acknowledged
// and deleted, so its worker's result is dropped (the ownership check
// fails) and the job is not retried.
//
// KEYS[1] job hash, KEYS[2] stream, KEYS[3] delayed, KEYS[4] completed, KEYS[5] failed,
// KEYS[6] dedup key
// ARGV[1] group, ARGV[2] job id
// Returns 1 if removed, 0 if missing (neither the job nor its dedup key).
var removeScript = redis.NewScript(`
local remembered = redis.call('DEL', KEYS[6])
if redis.call('EXISTS', KEYS[1]) == 0 then return remembered end
local mid = redis.call('HGET', KEYS[1], 'msg')
if mid and mid ~= '' then
  redis.pcall('XACK', KEYS[2], ARGV[1], mid)
  redis.call('XDEL', KEYS[2], mid)
end
redis.call('ZREM', KEYS[3], ARGV[2])
if redis.call('HGET', KEYS[1], 'state') == 'completed' then redis.call('LREM', KEYS[4], 0, ARGV[2]) end
redis.call('ZREM', KEYS[5], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
`)

// Remove deletes a job in any state, or only the memory of its id when
// retention already removed the job but the de-duplication window still
// holds; its id can then be added again. Errors: core.ENotFound.
func (q *Queues) Remove(ctx context.Context, queue, id string) error {
	k, err := q.keys(queue)
	if err != nil {
		return err
	}
	if id == "" || validJobID(id) != nil {
		return core.NotFound("job %q not found", id)
	}
	n, err := removeScript.Run(ctx, q.client, []string{k.job(id), k.stream, k.delayed, k.completed, k.failed, k.dedup(id)}, workersGroup, id).Int()
	if err != nil {
		return unavailable("remove job", err)
	}
	if n == 0 {
		return core.NotFound("job %q not found", id)
	}
	return nil
}
