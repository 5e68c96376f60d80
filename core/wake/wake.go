// Package wake is the contract of wake-on-publish (issue 10): when an event
// is appended or a job added, the platform is asked to start the drain that
// will handle it, at once, instead of waiting for the next schedule tick.
// The core decides when and how many (coalescing, the dispatcher's plan);
// the adapters only carry the wake (a Lambda asynchronous invoke, a Pub/Sub
// publish, a signal to a waiting loop). See docs/design.md, "Wake on
// publish".
package wake

import "context"

// Waker asks the platform to start n instances of the consumer function
// named drain (one of app.DrainFunctions). It returns once the platform
// accepted the request, without waiting for the drains. A failed wake must
// never fail the request that caused it: callers log it, and the schedule
// stays the safety net.
type Waker interface {
	Wake(ctx context.Context, drain string, n int) error
}

// Nop wakes nothing (no platform to ask: the schedule alone starts drains).
type Nop struct{}

// Wake does nothing.
func (Nop) Wake(context.Context, string, int) error { return nil }
