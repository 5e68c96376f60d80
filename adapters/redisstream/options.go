package redisstream

import (
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/job"
)

// ConsumerOptions tune a job worker or a durable event subscription. Zero
// values take the defaults named on each field.
type ConsumerOptions struct {
	// Concurrency is how many handlers run at once in this process
	// (default 10). It also bounds how many entries one process holds.
	Concurrency int
	// Prefetch is how many entries beyond Concurrency this process may
	// hold, fetched in the same round trip that records results, so that a
	// freed slot starts the next entry without waiting for Redis (default
	// 4 × Concurrency; negative: none). Held entries are heartbeated, and
	// handed back at shutdown or when a drain's deadline comes. The rate
	// is bounded by the entries in flight (docs/bench-findings.md measured
	// +10 % at Prefetch 40 and +23 % at 90 over 10); a held entry costs
	// only memory and a lease extension.
	Prefetch int
	// VisibilityTimeout is how long an entry may stay with a consumer
	// that stopped heartbeating before another consumer takes it back
	// (default 30s). The handler's lease is extended while it runs, so
	// this bounds how long a crashed worker delays its jobs, not how long
	// a job may take.
	VisibilityTimeout time.Duration
	// HeartbeatInterval is how often running entries' leases are
	// extended, in one round trip for all of them (default
	// VisibilityTimeout/3).
	HeartbeatInterval time.Duration
	// HandlerTimeout bounds one handler call; its context is cancelled
	// after it (default 30s). A drain never starts an entry unless
	// HandlerTimeout fits before its deadline minus SafetyMargin.
	HandlerTimeout time.Duration
	// BlockInterval is the longest one blocking XREADGROUP waits while
	// idle (default 1s). It bounds how fast Run notices cancellation;
	// new work wakes the read at once whatever its value.
	BlockInterval time.Duration
	// PollInterval is how often due delayed jobs and retries are promoted
	// while running (default 500ms); stalled entries are reclaimed every
	// VisibilityTimeout/2.
	PollInterval time.Duration
	// SafetyMargin is kept free before the context deadline so that the
	// function can return its summary (default 2s).
	SafetyMargin time.Duration
	// ShutdownTimeout is how long Run (and a drain whose context is
	// cancelled) waits for in-flight handlers before cancelling them and
	// handing their entries back (default 10s).
	ShutdownTimeout time.Duration
	// Consumer names this process in the consumer group (default
	// host-pid-random). Two concurrent drains must not share a name.
	Consumer string
	// IdleConsumerTimeout is how long a consumer of the group may go
	// without reading before a drain deletes it, provided it holds no
	// pending entry (default 1h; negative: never delete). Serverless
	// instances join under a new name on every cold start and never leave;
	// Redis would keep them forever. See docs/queue.md, "Idle consumers".
	IdleConsumerTimeout time.Duration
	// Logger receives failures and dead letters (default slog.Default()).
	Logger *slog.Logger
}

// WorkerOptions tune a job worker.
type WorkerOptions = ConsumerOptions

func (o ConsumerOptions) withDefaults() ConsumerOptions {
	if o.Concurrency <= 0 {
		o.Concurrency = 10
	}
	if o.Prefetch == 0 {
		o.Prefetch = 4 * o.Concurrency
	}
	if o.Prefetch < 0 {
		o.Prefetch = 0
	}
	if o.VisibilityTimeout <= 0 {
		o.VisibilityTimeout = 30 * time.Second
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = o.VisibilityTimeout / 3
	}
	if o.HandlerTimeout <= 0 {
		o.HandlerTimeout = 30 * time.Second
	}
	if o.BlockInterval <= 0 {
		o.BlockInterval = time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	if o.SafetyMargin <= 0 {
		o.SafetyMargin = 2 * time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Consumer == "" {
		o.Consumer = consumerName()
	}
	if o.IdleConsumerTimeout == 0 {
		o.IdleConsumerTimeout = time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func consumerName() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "host"
	}
	b := make([]byte, 4)
	_, _ = crand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Default retry policy of jobs and subscriptions.
var (
	defaultJobBackoff   = job.Backoff{Type: job.BackoffExponential, Base: time.Second, Cap: 10 * time.Minute}
	defaultEventBackoff = job.Backoff{Type: job.BackoffExponential, Base: time.Second, Cap: 5 * time.Minute}
)

// normBackoff validates b and fills its zero fields from def.
func normBackoff(b, def job.Backoff) (job.Backoff, error) {
	if b.Type == "" {
		b.Type = def.Type
	}
	if b.Type != job.BackoffExponential && b.Type != job.BackoffFixed {
		return b, core.Invalid("backoff type %q: want %q or %q", b.Type, job.BackoffExponential, job.BackoffFixed)
	}
	if b.Base < 0 || b.Cap < 0 {
		return b, core.Invalid("backoff base and cap must not be negative")
	}
	if b.Base == 0 {
		b.Base = def.Base
	}
	if b.Cap == 0 {
		b.Cap = def.Cap
	}
	if b.Cap < b.Base {
		b.Cap = b.Base
	}
	return b, nil
}

// encodeBackoff packs a backoff into a stream field ("e:1000:600000",
// milliseconds) so that a worker has the retry policy without reading the
// job hash.
func encodeBackoff(b job.Backoff) string {
	t := "e"
	if b.Type == job.BackoffFixed {
		t = "f"
	}
	return t + ":" + strconv.FormatInt(b.Base.Milliseconds(), 10) + ":" + strconv.FormatInt(b.Cap.Milliseconds(), 10)
}

func decodeBackoff(s string) job.Backoff {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return defaultJobBackoff
	}
	base, _ := strconv.ParseInt(parts[1], 10, 64)
	cp, _ := strconv.ParseInt(parts[2], 10, 64)
	b := job.Backoff{Type: job.BackoffExponential, Base: time.Duration(base) * time.Millisecond, Cap: time.Duration(cp) * time.Millisecond}
	if parts[0] == "f" {
		b.Type = job.BackoffFixed
	}
	return b
}

// backoffDelay is the wait before the attempt after attempt (1-based)
// failed. Exponential doubles from Base up to Cap with "equal jitter": a
// random point in the upper half, so that jobs failing together (a
// dependency went down) do not come back together, yet every wait is at
// least half the nominal one.
func backoffDelay(b job.Backoff, attempt int) time.Duration {
	if b.Type == job.BackoffFixed {
		return b.Base
	}
	d := b.Base
	for i := 1; i < attempt && d < b.Cap; i++ {
		d *= 2
	}
	if d > b.Cap {
		d = b.Cap
	}
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
