// Package event is the contract of the event bus: the envelope, the
// publisher and subscribers (docs/design.md decisions 1 and 2).
package event

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Well-known event types.
const (
	ShiftCreated     = "shift.created"
	ShiftUpdated     = "shift.updated"
	ShiftCompleted   = "shift.completed"
	ShiftCancelled   = "shift.cancelled"
	InvoiceGenerated = "invoice.generated"
)

// SchemaVersion is the envelope version written by this code.
const SchemaVersion = 1

// Event is the envelope every event travels in.
type Event struct {
	ID             string          `json:"id"`   // unique, time-sortable (ULID)
	Type           string          `json:"type"` // e.g. shift.completed
	OrganizationID string          `json:"organizationId"`
	Time           time.Time       `json:"time"`
	CorrelationID  string          `json:"correlationId"`
	SchemaVersion  int             `json:"schemaVersion"`
	Payload        json.RawMessage `json:"payload"`
}

// Handler handles one event. Returning an error asks for a retry.
// Handlers must be idempotent: delivery is at-least-once.
type Handler func(ctx context.Context, e Event) error

// Publisher publishes events: local subscribers run at once, and the event is
// appended durably for durable subscribers.
type Publisher interface {
	Publish(ctx context.Context, e Event) error
}

// Mode says whether a subscriber is in-process only or durable.
type Mode int

const (
	// Local subscribers run synchronously inside Publish, in the
	// publishing process (the old EventEmitter behaviour).
	Local Mode = iota
	// Durable subscribers are consumer groups on the Redis stream; every
	// durable subscriber receives every event of its types, and instances
	// of one subscriber share the work.
	Durable
)

// DrainSummary reports what one drain did.
type DrainSummary struct {
	Processed    int           `json:"processed"`
	Succeeded    int           `json:"succeeded"`
	Failed       int           `json:"failed"` // failed an attempt, will retry
	DeadLettered int           `json:"deadLettered"`
	Reclaimed    int           `json:"reclaimed"` // stalled entries taken over
	Promoted     int           `json:"promoted"`  // due retries/delayed made ready
	Remaining    int64         `json:"remaining"` // left when the drain stopped (best effort)
	StoppedBy    string        `json:"stoppedBy"` // "empty", "deadline", "context"
	Duration     time.Duration `json:"duration"`
	// Lost counts entries that stream retention removed before this
	// subscriber processed them (only a length cap can; the adapter's
	// docs state the guarantees). Always 0 for job queues.
	Lost int64 `json:"lost,omitempty"`
	// ConsumersRemoved counts idle, empty consumers this drain deleted
	// from its consumer groups (serverless instances that are gone).
	ConsumersRemoved int `json:"consumersRemoved,omitempty"`
}

// Drainer is what every consumer function runs (docs/design.md#2).
type Drainer interface {
	// Drain processes until there is no work or ctx's deadline minus a
	// safety margin, never starting work it cannot finish in time.
	Drain(ctx context.Context) (DrainSummary, error)
	// DrainLongPoll is Drain that keeps waiting for new work until the
	// deadline instead of returning when empty.
	DrainLongPoll(ctx context.Context) (DrainSummary, error)
	// Run loops until ctx is cancelled (local runner, containers) and
	// then finishes or hands back in-flight work.
	Run(ctx context.Context) error
}

// Subscriber registers handlers for event types under a subscriber name.
// A Durable subscription is a consumer group: it returns the Drainer the
// consumer function runs. A Local one runs inside Publish and its Drainer
// has nothing to do.
type Subscriber interface {
	Subscribe(types []string, name string, h Handler, mode Mode) (Drainer, error)
}

// Permanent marks a handler error as one that retrying cannot fix (bad
// payload, missing entity): the event is dead-lettered at once instead of
// spending its remaining attempts.
func Permanent(err error) error { return &permanentError{err} }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
