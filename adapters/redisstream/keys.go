package redisstream

import (
	"strings"

	"github.com/shiftflow/shiftflow/core"
)

// All Redis key names of this package are built here (the drain
// registry's in registry.go).
//
// docs/design.md#5: every key a Lua script or a multi-key command
// touches carries the hash tag of its queue or event stream, so one script
// only ever touches one cluster slot.
//
//	job queue "q" (tag {q}):
//	  <p>:q:{q}:stream        ready jobs: a stream with consumer group "workers"
//	  <p>:q:{q}:job:<id>      job hash: data, options, state, attempts, error, times
//	  <p>:q:{q}:dedup:<id>    string with a TTL: the id was added within the de-duplication window
//	  <p>:q:{q}:delayed       zset id -> due ms (delayed jobs and retries in backoff)
//	  <p>:q:{q}:completed     list of kept completed job ids, newest first
//	  <p>:q:{q}:failed        zset id -> fail ms (dead-lettered jobs)
//	  <p>:q:{q}:pruned        string with a TTL: idle consumers were pruned lately (consumers.go)
//
//	event stream "s" (tag {s}; default s = "events"):
//	  <p>:ev:{s}:stream             the shared event stream; one consumer group per durable subscription
//	  <p>:ev:{s}:lost               hash subscription -> entries the length cap trimmed before it processed them
//	  <p>:ev:{s}:sub:<n>:retry      subscription n's retry stream (same group name n)
//	  <p>:ev:{s}:sub:<n>:delayed    zset origin id -> due ms (retries in backoff)
//	  <p>:ev:{s}:sub:<n>:held       hash origin id -> retry record while in backoff
//	  <p>:ev:{s}:sub:<n>:dead       dead-letter stream of subscription n
//	  <p>:ev:{s}:sub:<n>:pruned     string with a TTL: group n's idle consumers were pruned lately
//
//	drain "d" (tag {d}; registry.go, the wake dispatcher's instance count):
//	  <p>:drains:{d}            zset consumer -> lease expiry ms: running instances
//	  <p>:drains:{d}:starting   zset placeholder -> expiry ms: woken, not yet registered
//
// A subscription's keys carry the stream's tag rather than one of their
// own because the consumer group lives inside the stream key: the script
// that acknowledges an event in the group and schedules its retry must
// touch both (see docs/queue.md, "Why one shared stream").

// DefaultPrefix starts every key unless options say otherwise.
const DefaultPrefix = "sf"

// workersGroup is the consumer group of every job queue stream.
const workersGroup = "workers"

type queueKeys struct {
	stream, delayed, completed, failed string
	pruned                             string
	jobPrefix                          string // + job id
	dedupPrefix                        string // + job id
}

func newQueueKeys(prefix, queue string) queueKeys {
	base := prefix + ":q:{" + queue + "}:"
	return queueKeys{
		stream:      base + "stream",
		delayed:     base + "delayed",
		completed:   base + "completed",
		failed:      base + "failed",
		pruned:      base + "pruned",
		jobPrefix:   base + "job:",
		dedupPrefix: base + "dedup:",
	}
}

func (k queueKeys) job(id string) string { return k.jobPrefix + id }

// dedup is the key that remembers a caller-chosen job id for the
// de-duplication window, after the job hash is gone (docs/design.md,
// "De-duplication and retention").
func (k queueKeys) dedup(id string) string { return k.dedupPrefix + id }

type streamKeys struct {
	stream, lost string
	subPrefix    string
}

func newStreamKeys(prefix, stream string) streamKeys {
	base := prefix + ":ev:{" + stream + "}:"
	return streamKeys{stream: base + "stream", lost: base + "lost", subPrefix: base + "sub:"}
}

type subKeys struct {
	retry, delayed, held, dead string
	pruned                     string
}

func (k streamKeys) sub(name string) subKeys {
	base := k.subPrefix + name + ":"
	return subKeys{retry: base + "retry", delayed: base + "delayed", held: base + "held", dead: base + "dead", pruned: base + "pruned"}
}

// validName checks a queue, stream or subscription name. Names become part
// of key names and of a hash tag, so braces are refused (they would move
// the tag) and so are spaces and control characters (unreadable keys).
func validName(kind, s string) error {
	if s == "" || len(s) > 100 {
		return core.Invalid("%s name must be 1 to 100 characters", kind)
	}
	if i := strings.IndexFunc(s, func(r rune) bool {
		return r == '{' || r == '}' || r <= ' ' || r == 0x7f
	}); i >= 0 {
		return core.Invalid("%s name %q: braces, spaces and control characters are not allowed", kind, s)
	}
	return nil
}

// validJobID checks a caller-chosen job id (often a domain id such as a
// shift id). It is the tail of a key, after the tag, so braces are harmless;
// control characters and huge ids are refused.
func validJobID(id string) error {
	if len(id) > 200 {
		return core.Invalid("job id longer than 200 characters")
	}
	if hasControl(id) {
		return core.Invalid("job id %q contains control characters", id)
	}
	return nil
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0
}
