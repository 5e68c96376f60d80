package redisstream

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Consumer-group hygiene. A consumer joins a group on its first read and
// Redis keeps it until XGROUP DELCONSUMER. On Lambda and Cloud Functions
// every cold start reads under a new name (host-pid-random), so without
// pruning each group collects thousands of dead consumers: XINFO CONSUMERS
// grows without bound and so does the group's memory. asynq and BullMQ
// have no consumer groups and never see this.
//
// A drain therefore deletes, right after its reclaim, the consumers that
// have not read for IdleConsumerTimeout and hold no pending entry. Order
// matters: the reclaim takes a dead consumer's pending entries first
// (they are idle longer than the visibility timeout, far below the idle
// threshold), so the same pass finds it empty and deletes it.

// consumerPruneInterval bounds how often one engine, and all processes
// together for one group, list and prune the group's consumers.
const consumerPruneInterval = time.Minute

// pruneMaxNames bounds the names a prune reports for the log.
const pruneMaxNames = 10

// pruneConsumersScript deletes a group's consumers that are idle longer
// than a threshold and hold no pending entry, at most once per interval
// per group (a SET NX lock with a TTL shared by every process, so a burst
// of cold starts lists the group once). Check and delete happen in one
// script: a consumer cannot take an entry between them, and DELCONSUMER
// of a consumer with pending entries would drop them from the group's
// pending list, where no reclaim could find them again. The calling
// consumer is never deleted. "idle" counts from the consumer's last read
// or claim, successful or not (every Redis version), so a live consumer
// blocking on an empty stream stays young. An unknown idle time (miniredis
// reports -1 for consumers that only ever read) keeps the consumer.
//
// KEYS[1] lock key, KEYS[2..] streams of the group (one hash tag)
// ARGV[1] group, ARGV[2] calling consumer, ARGV[3] idle threshold ms,
// ARGV[4] lock ttl ms, ARGV[5] max names to return
// Returns false if another process pruned lately, else {removed, {names}}:
// distinct names (a subscription's consumer exists in both its streams).
var pruneConsumersScript = redis.NewScript(`
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[4])) then
  return false
end
local removed, names, seen = 0, {}, {}
local threshold, maxNames = tonumber(ARGV[3]), tonumber(ARGV[5])
for k = 2, #KEYS do
  local cs = redis.pcall('XINFO', 'CONSUMERS', KEYS[k], ARGV[1])
  if type(cs) == 'table' and cs.err then
    -- No stream or group yet (NOGROUP / no such key): nothing to prune.
    if not (string.find(cs.err, 'NOGROUP') or string.find(cs.err, 'no such key')) then
      return redis.error_reply(cs.err)
    end
    cs = {}
  end
  for _, c in ipairs(cs) do
    local name, pending, idle
    for i = 1, #c, 2 do
      if c[i] == 'name' then name = c[i + 1]
      elseif c[i] == 'pending' then pending = tonumber(c[i + 1])
      elseif c[i] == 'idle' then idle = tonumber(c[i + 1]) end
    end
    if name and name ~= ARGV[2] and pending == 0 and idle and idle >= threshold then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[k], ARGV[1], name)
      if not seen[name] then
        seen[name] = true
        removed = removed + 1
        if #names < maxNames then names[#names + 1] = name end
      end
    end
  end
end
return {removed, names}
`)

// pruneConsumers deletes the lane's idle, empty consumers (see above) and
// returns how many. It is best effort: a failure is logged and the drain
// goes on, since dead consumers cost memory, not correctness. At most once
// per pruneEvery per engine; a server without XINFO CONSUMERS or XGROUP
// DELCONSUMER turns it off for the engine's lifetime.
func (e *engine) pruneConsumers(ctx context.Context, consumer string) int {
	if e.opt.IdleConsumerTimeout < 0 || e.pruneOff.Load() {
		return 0
	}
	now := time.Now()
	if last := e.lastPrune.Load(); last != 0 && now.Sub(time.Unix(0, last)) < e.pruneEvery {
		return 0
	}
	e.lastPrune.Store(now.UnixNano())
	keys := append([]string{e.lane.pruneLock()}, e.lane.streams()...)
	v, err := pruneConsumersScript.Run(ctx, e.client, keys, e.lane.group(), consumer,
		max(e.opt.IdleConsumerTimeout.Milliseconds(), 1), max(e.pruneEvery.Milliseconds(), 1), pruneMaxNames).Slice()
	if errors.Is(err, redis.Nil) {
		return 0 // another process pruned this group within the interval
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		if msg := strings.ToLower(err.Error()); strings.Contains(msg, "unknown") || strings.Contains(msg, "not supported") {
			e.pruneOff.Store(true)
			e.log.Info("idle consumers are not pruned: the server lacks XINFO CONSUMERS or XGROUP DELCONSUMER", "err", err)
			return 0
		}
		e.log.Warn("pruning idle consumers failed", "err", err)
		return 0
	}
	if len(v) < 2 {
		return 0
	}
	n, _ := v[0].(int64)
	if n > 0 {
		var names []string
		if ns, ok := v[1].([]any); ok {
			for _, x := range ns {
				if s, ok := x.(string); ok {
					names = append(names, s)
				}
			}
		}
		e.log.Info("removed idle consumers from the group", "group", e.lane.group(), "removed", n,
			"idleFor", e.opt.IdleConsumerTimeout, "names", names)
	}
	return int(n)
}
