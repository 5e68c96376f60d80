// Package job is the contract of background job queues (the BullMQ
// replacement): adding jobs, processing them and inspecting queues.
package job

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Well-known queues.
const (
	InvoiceGeneration  = "invoice-generation"
	EmailNotifications = "email-notifications"
)

// Backoff kinds.
const (
	BackoffExponential = "exponential" // base * 2^(attempt-1), capped, with jitter
	BackoffFixed       = "fixed"
)

// Backoff says how long to wait before the next attempt.
type Backoff struct {
	Type string        `json:"type"`
	Base time.Duration `json:"base"`
	Cap  time.Duration `json:"cap"`
}

// Options for Add. Zero values take the queue's defaults.
type Options struct {
	// JobID de-duplicates: adding an id that exists, or that was added
	// within the de-duplication window, keeps the one job.
	JobID    string
	Delay    time.Duration
	Attempts int // total attempts including the first; default 3
	Backoff  Backoff
	// KeepCompleted < 0 deletes the job as soon as it completes; 0 or
	// more keeps it under the queue's retention (count and age).
	KeepCompleted int
	// DedupWindow is how long after Add the JobID keeps de-duplicating,
	// even once the job itself is gone (0: the queue default; negative:
	// only while the job exists).
	DedupWindow time.Duration
	// CorrelationID is carried into the handler's Job.
	CorrelationID string
}

// State of a job.
const (
	StateWaiting   = "waiting"
	StateDelayed   = "delayed" // includes retries waiting for backoff
	StateActive    = "active"
	StateCompleted = "completed"
	StateFailed    = "failed" // dead-lettered after its last attempt
)

// Job as seen by a handler and by inspection.
type Job struct {
	ID            string          `json:"id"`
	Queue         string          `json:"queue"`
	Name          string          `json:"name"`
	Data          json.RawMessage `json:"data"`
	Attempt       int             `json:"attempt"` // 1 for the first run
	MaxAttempts   int             `json:"maxAttempts"`
	CorrelationID string          `json:"correlationId,omitempty"`
	State         string          `json:"state,omitempty"`
	LastError     string          `json:"lastError,omitempty"`
	CreatedAt     time.Time       `json:"createdAt"`
	ProcessedAt   time.Time       `json:"processedAt,omitzero"`
	FinishedAt    time.Time       `json:"finishedAt,omitzero"`
}

// Handler processes one job. Returning an error retries it with backoff
// until its attempts are spent, then the job is failed (dead-lettered).
// Handlers must be idempotent: delivery is at-least-once.
type Handler func(ctx context.Context, j *Job) error

// Adder adds jobs; it is the port services depend on.
type Adder interface {
	// Add enqueues a job and returns its id. Adding an existing JobID
	// returns that id and adds nothing.
	Add(ctx context.Context, queue, name string, data any, opts Options) (string, error)
}

// Counts per state.
type Counts struct {
	Waiting   int64 `json:"waiting"`
	Delayed   int64 `json:"delayed"`
	Active    int64 `json:"active"`
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`
}

// Inspector is the admin view of a queue.
type Inspector interface {
	Counts(ctx context.Context, queue string) (Counts, error)
	ListFailed(ctx context.Context, queue string, offset, limit int) ([]Job, error)
	GetJob(ctx context.Context, queue, id string) (*Job, error)
	RetryFailed(ctx context.Context, queue, id string) error
	RetryAllFailed(ctx context.Context, queue string) (int, error)
	Remove(ctx context.Context, queue, id string) error
}

// Permanent marks a handler error as one that retrying cannot fix (bad
// data, missing entity): the job fails (is dead-lettered) at once instead
// of spending its remaining attempts (BullMQ's UnrecoverableError,
// asynq's SkipRetry).
func Permanent(err error) error { return &permanentError{err} }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
