package redisstream

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Job retention (docs/design.md, "De-duplication and retention"): kept
// completed jobs are bounded by KeepCompleted and CompletedMaxAge, failed
// ones by KeepFailed and FailedMaxAge. A maintenance step of every worker
// applies them: Go reads the candidate ids (the oldest ones), then one
// script per batch re-checks each candidate and deletes it with its hash,
// every hash key passed in KEYS (docs/design.md#5). De-duplication does
// not depend on what is kept: the dedup key of an id outlives its hash.

// retentionBatch is the most candidates one script call checks, so that
// Redis is never blocked for long.
const retentionBatch = 500

// retentionPassBatches bounds one maintenance pass per kind (20,000 jobs);
// a pass that reaches it is followed by another at the next maintenance
// call, so a backlog is worked off without stalling promotion.
const retentionPassBatches = 40

// completedCheckEvery is how often a running worker checks the completed
// count (one LLEN); the age rules and the failed count run every
// QueueOptions.RetentionInterval.
const completedCheckEvery = time.Second

// RetentionResult says what one retention pass removed.
type RetentionResult struct {
	Completed int // completed jobs beyond KeepCompleted or older than CompletedMaxAge
	Failed    int // failed jobs beyond KeepFailed or older than FailedMaxAge
}

// trimCompletedScript removes the oldest kept completed jobs while the list
// is longer than the count or the job is older than the max age. Go passes
// the ids at the list's tail, oldest first; the script pops each only
// while it is still the tail, so a concurrent finish (LPUSH at the head)
// or Remove (LREM) cannot make it remove the wrong one. It stops at the
// first candidate that is kept. A stale id (its job gone or re-added) is
// popped without touching the hash.
//
// KEYS[1] completed list, KEYS[1+i] job hash of candidate i
// ARGV[1] keep count, ARGV[2] max age ms (0: no age rule), ARGV[2+i] candidate id i
// Returns the number of ids popped.
var trimCompletedScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep, age = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV do
  local id, hk = ARGV[i], KEYS[i - 1]
  if redis.call('LINDEX', KEYS[1], -1) ~= id then break end
  local f = redis.call('HMGET', hk, 'state', 'finished')
  local fin = tonumber(f[2] or '')
  local stale = f[1] ~= 'completed'
  local old = age > 0 and fin ~= nil and fin <= now - age
  if not stale and not old and redis.call('LLEN', KEYS[1]) <= keep then break end
  redis.call('RPOP', KEYS[1])
  if not stale then redis.call('DEL', hk) end
  n = n + 1
end
return n
`)

// trimFailedScript removes failed jobs while the set is larger than the
// count or the job failed longer ago than the max age. Go passes the
// oldest ids, oldest first; each is re-checked (still failed, still due),
// so a job retried or removed meanwhile is left alone.
//
// KEYS[1] failed zset, KEYS[1+i] job hash of candidate i
// ARGV[1] keep count (-1: no count rule), ARGV[2] max age ms (0: no age rule), ARGV[2+i] candidate id i
// Returns the number removed.
var trimFailedScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep, age = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV do
  local id, hk = ARGV[i], KEYS[i - 1]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score then
    local over = keep >= 0 and redis.call('ZCARD', KEYS[1]) > keep
    local old = age > 0 and tonumber(score) <= now - age
    if over or old then
      redis.call('ZREM', KEYS[1], id)
      if redis.call('HGET', hk, 'state') == 'failed' then redis.call('DEL', hk) end
      n = n + 1
    end
  end
end
return n
`)

// retentionLimits are the queue's limits as script arguments.
func (q *Queues) retentionLimits() (keepCompleted, completedAge, keepFailed, failedAge int64) {
	keepCompleted = int64(max(q.opt.KeepCompleted, 0))
	completedAge = max(q.opt.CompletedMaxAge.Milliseconds(), 0)
	keepFailed = int64(q.opt.KeepFailed)
	if keepFailed < 0 {
		keepFailed = -1
	}
	failedAge = max(q.opt.FailedMaxAge.Milliseconds(), 0)
	return
}

// ApplyRetention applies the retention rules of queue now, to the end.
// Workers apply them on their own (every second for the completed count,
// every RetentionInterval for the rest); an operator can call this after
// changing limits.
func (q *Queues) ApplyRetention(ctx context.Context, queue string) (RetentionResult, error) {
	k, err := q.keys(queue)
	if err != nil {
		return RetentionResult{}, err
	}
	res, err := q.retain(ctx, k, true, -1)
	if err != nil {
		return res, unavailable("apply retention to "+queue, err)
	}
	return res, nil
}

// retain runs one retention pass: the completed count always, the age
// rules and the failed count when full. At most maxBatches script calls
// per list (negative: until done).
func (q *Queues) retain(ctx context.Context, k queueKeys, full bool, maxBatches int) (RetentionResult, error) {
	var res RetentionResult
	n, err := q.trimCompleted(ctx, k, full, maxBatches)
	res.Completed = n
	if err != nil || !full {
		return res, err
	}
	res.Failed, err = q.trimFailed(ctx, k, maxBatches)
	return res, err
}

func (q *Queues) trimCompleted(ctx context.Context, k queueKeys, withAge bool, maxBatches int) (int, error) {
	keep, age, _, _ := q.retentionLimits()
	if age == 0 {
		withAge = false
	}
	// The age rule probes a few of the oldest first: usually none is old.
	probe := int64(0)
	if withAge {
		probe = 50
	}
	total := 0
	for b := 0; maxBatches < 0 || b < maxBatches; b++ {
		llen, err := q.client.LLen(ctx, k.completed).Result()
		if err != nil {
			return total, fmt.Errorf("count completed jobs: %w", err)
		}
		want := min(max(llen-keep, probe), retentionBatch, llen)
		if want <= 0 {
			return total, nil
		}
		ids, err := q.client.LRange(ctx, k.completed, -want, -1).Result()
		if err != nil {
			return total, fmt.Errorf("read oldest completed jobs: %w", err)
		}
		slices.Reverse(ids) // the list is newest first
		ageArg := int64(0)
		if withAge {
			ageArg = age
		}
		n, err := q.runTrim(ctx, trimCompletedScript, k.completed, k, keep, ageArg, ids)
		total += n
		if err != nil {
			return total, fmt.Errorf("trim completed jobs: %w", err)
		}
		if n < len(ids) {
			return total, nil // stopped at a job that is kept
		}
		if withAge {
			probe = retentionBatch
		}
	}
	return total, nil
}

func (q *Queues) trimFailed(ctx context.Context, k queueKeys, maxBatches int) (int, error) {
	_, _, keep, age := q.retentionLimits()
	if keep < 0 && age == 0 {
		return 0, nil
	}
	total := 0
	for b := 0; maxBatches < 0 || b < maxBatches; b++ {
		pipe := q.client.Pipeline()
		card := pipe.ZCard(ctx, k.failed)
		oldest := pipe.ZRangeWithScores(ctx, k.failed, 0, retentionBatch-1)
		if _, err := pipe.Exec(ctx); err != nil {
			return total, fmt.Errorf("read oldest failed jobs: %w", err)
		}
		// Candidates: the oldest beyond the count, and then those old
		// enough by this clock (the script decides by Redis's clock).
		zs := oldest.Val()
		want := 0
		if keep >= 0 {
			want = int(min(max(card.Val()-keep, 0), int64(len(zs))))
		}
		cutoff := float64(time.Now().UnixMilli() - age)
		for age > 0 && want < len(zs) && zs[want].Score <= cutoff {
			want++
		}
		if want == 0 {
			return total, nil
		}
		ids := make([]string, want)
		for i := range want {
			ids[i], _ = zs[i].Member.(string)
		}
		n, err := q.runTrim(ctx, trimFailedScript, k.failed, k, keep, age, ids)
		total += n
		if err != nil {
			return total, fmt.Errorf("trim failed jobs: %w", err)
		}
		if want < retentionBatch || n == 0 {
			return total, nil
		}
	}
	return total, nil
}

// runTrim runs a trim script on set with the candidates' hash keys.
func (q *Queues) runTrim(ctx context.Context, s *redis.Script, set string, k queueKeys, keep, age int64, ids []string) (int, error) {
	keys := make([]string, 1, 1+len(ids))
	keys[0] = set
	args := make([]any, 0, 2+len(ids))
	args = append(args, keep, age)
	for _, id := range ids {
		keys = append(keys, k.job(id))
		args = append(args, id)
	}
	return s.Run(ctx, q.client, keys, args...).Int()
}

// retentionState rate-limits a worker's retention step.
type retentionState struct {
	mu      sync.Mutex
	full    time.Time // last full pass
	checked time.Time // last completed-count check
}

// applyRetention is the worker's retention step, called from maintain:
// the completed count at most every completedCheckEvery, everything at
// most every RetentionInterval, each pass bounded (the next goes on at
// once).
// Failures are logged and never fail a drain.
func (l *jobLane) applyRetention(ctx context.Context) {
	s := &l.retention
	if !s.mu.TryLock() {
		return // another goroutine of this worker is at it
	}
	defer s.mu.Unlock()
	now := time.Now()
	full := now.Sub(s.full) >= l.q.opt.RetentionInterval
	if !full && now.Sub(s.checked) < completedCheckEvery {
		return
	}
	s.checked = now
	if full {
		s.full = now
	}
	res, err := l.q.retain(ctx, l.k, full, retentionPassBatches)
	if res.Completed >= retentionPassBatches*retentionBatch {
		s.checked = time.Time{} // more to do: go on at the next call
	}
	if res.Failed >= retentionPassBatches*retentionBatch {
		s.full = time.Time{}
	}
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("job retention failed", "queue", l.queue, "err", err)
		}
		return
	}
	if res.Completed+res.Failed > 0 {
		l.log.Debug("job retention", "queue", l.queue, "completedRemoved", res.Completed, "failedRemoved", res.Failed)
	}
}
