package redisstream

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The backlog readers feed the wake dispatcher (core/wake's Backlog;
// docs/design.md, "Wake on publish and scale-out"): one script per lane,
// read-only, so a dispatch costs one round trip per lane. Entries pending
// with a consumer are not counted: a running drain holds them, and a
// stalled one's are reclaimed by the next drain.

// jobBacklogScript counts a queue's jobs a drain could start now.
//
// KEYS[1] stream, KEYS[2] delayed zset
// ARGV[1] group, ARGV[2] now in ms
// Returns undelivered entries + delayed jobs that are due.
var jobBacklogScript = redis.NewScript(`
local n = redis.call('XLEN', KEYS[1])
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(p) == 'table' and not p.err then n = n - tonumber(p[1]) end
return n + redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[2])
`)

// Backlog returns how many jobs wait for a drain now: ready and not
// delivered, plus delayed jobs and retries that are due.
func (w *Worker) Backlog(ctx context.Context) (int64, error) {
	l := w.e.lane.(*jobLane)
	n, err := jobBacklogScript.Run(ctx, l.q.client, []string{l.k.stream, l.k.delayed}, workersGroup, nowMS()).Int64()
	if err != nil {
		return 0, unavailable("read the backlog of "+w.queue, err)
	}
	return max(n, 0), nil
}

// eventBacklogScript counts the events a subscription could start now.
// Nothing is undelivered when the group's last delivered id is the
// stream's last entry; otherwise the group's lag, exact on Redis 7+ while
// the stream has no gaps, and 1 when Redis cannot tell (lag nil after
// deletions, or Redis 6): enough for the dispatcher to start someone.
//
// KEYS[1] event stream, KEYS[2] retry stream, KEYS[3] delayed zset
// ARGV[1] group, ARGV[2] now in ms
var eventBacklogScript = redis.NewScript(`
local n = 0
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if ok then
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == ARGV[1] then
      local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
      if #last > 0 and last[1][1] ~= f['last-delivered-id'] then
        n = 1
        if type(f['lag']) == 'number' and f['lag'] > 0 then n = f['lag'] end
      end
    end
  end
end
local len = redis.call('XLEN', KEYS[2])
local p = redis.pcall('XPENDING', KEYS[2], ARGV[1])
if type(p) == 'table' and not p.err then len = len - tonumber(p[1]) end
return n + len + redis.call('ZCOUNT', KEYS[3], '-inf', ARGV[2])
`)

// Backlog returns how many events wait for a drain of this subscription:
// undelivered on the event stream (the group's lag), in the retry stream,
// and retries whose backoff is over. A group not created yet counts 0
// (the publisher's wake asks for one instance regardless).
func (s *Subscription) Backlog(ctx context.Context) (int64, error) {
	l := s.e.lane.(*eventLane)
	keys := []string{l.b.keys.stream, l.k.retry, l.k.delayed}
	n, err := eventBacklogScript.Run(ctx, l.b.client, keys, l.name, nowMS()).Int64()
	if err != nil {
		return 0, unavailable("read the backlog of "+s.name, err)
	}
	return max(n, 0), nil
}

func nowMS() string { return strconv.FormatInt(time.Now().UnixMilli(), 10) }
