package lambda

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/aws/aws-lambda-go/events"
	awslambda "github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/shiftflow/shiftflow/adapters/logging"
	"github.com/shiftflow/shiftflow/core/event"
)

// DrainFunc is one consumer function's work (docs/design.md#2): it
// processes until there is nothing left or the context's deadline minus a
// margin, and reports what it did.
type DrainFunc func(ctx context.Context) (event.DrainSummary, error)

// Drain adapts a DrainFunc to Lambda. Any payload starts it: an EventBridge
// scheduled event (the template's schedules), an empty or arbitrary JSON
// object from `aws lambda invoke`, or a retry of either. The answer is the
// drain's summary as JSON, which the console, the CLI and the logs show.
type Drain struct {
	name string
	fn   DrainFunc
	log  *slog.Logger
}

var _ awslambda.Handler = (*Drain)(nil)

// NewDrain returns the adapter; name labels its log lines.
func NewDrain(name string, fn DrainFunc, logger *slog.Logger) *Drain {
	if logger == nil {
		logger = slog.Default()
	}
	return &Drain{name: name, fn: fn, log: logger}
}

// StartDrain serves fn as this process's Lambda handler; it never returns.
func StartDrain(name string, fn DrainFunc, logger *slog.Logger) {
	awslambda.Start(NewDrain(name, fn, logger))
}

// Invoke runs the drain once. The invocation's deadline (the function's
// timeout) is in ctx and the drain stops short of it, so a summary is
// always returned before Lambda would kill the process.
func (d *Drain) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	attrs := []any{"function", d.name}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		attrs = append(attrs, "awsRequestId", lc.AwsRequestID)
	}
	var ev events.EventBridgeEvent
	if len(payload) > 0 && json.Unmarshal(payload, &ev) == nil && ev.DetailType != "" {
		attrs = append(attrs, "trigger", ev.DetailType, "triggerId", ev.ID, "source", ev.Source)
	} else {
		attrs = append(attrs, "trigger", "direct")
	}
	ctx = logging.With(ctx, attrs...)
	log := logging.FromContext(ctx, d.log)

	s, err := d.fn(ctx)
	if err != nil {
		// Returning the error makes Lambda count a failed invocation (and
		// the scheduler's async retry run the drain again, which is safe:
		// work is at-least-once with idempotent handlers).
		log.ErrorContext(ctx, "drain failed", "summary", s, "err", err)
		return nil, fmt.Errorf("drain %s: %w", d.name, err)
	}
	log.InfoContext(ctx, "drain finished", "processed", s.Processed, "succeeded", s.Succeeded,
		"failed", s.Failed, "deadLettered", s.DeadLettered, "remaining", s.Remaining,
		"stoppedBy", s.StoppedBy, "duration", s.Duration)
	return json.Marshal(s)
}
