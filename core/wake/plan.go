package wake

import (
	"math"
	"time"
)

// Limits are the dispatcher's parameters (DRAIN_THROUGHPUT,
// DRAIN_MAX_CONCURRENCY; docs/deploy.md).
type Limits struct {
	// Throughput is how many entries per second one drain instance
	// handles (measured, see docs/deploy.md).
	Throughput float64
	// Budget is the time within which the backlog should be worked off:
	// the plan starts as many instances as clear it within Budget.
	Budget time.Duration
	// MaxConcurrency caps the instances of one drain, running or starting.
	MaxConcurrency int
}

// DefaultBudget: a burst is planned to be worked off within 5 s, well
// inside a drain's deadline, so an instance started for it is used fully.
const DefaultBudget = 5 * time.Second

// Plan decides how many more instances of a drain to start: as many as
// clear backlog within the budget at the given throughput, minus those
// running, never beyond MaxConcurrency, and at least one when there is
// work and nobody to do it. A backlog that shrank plans 0: instances are
// never stopped, they end when their drain is empty.
func Plan(backlog int64, running int, l Limits) int {
	if backlog <= 0 || running >= l.MaxConcurrency {
		return 0
	}
	perInstance := l.Throughput * l.Budget.Seconds()
	need := l.MaxConcurrency
	if perInstance > 0 {
		need = int(min(math.Ceil(float64(backlog)/perInstance), float64(l.MaxConcurrency)))
	}
	n := max(need-max(running, 0), 0)
	if running <= 0 {
		n = max(n, 1)
	}
	return min(n, l.MaxConcurrency-max(running, 0))
}
