package event_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/core/event"
)

type stubDrainer struct{ ran atomic.Int32 }

func (s *stubDrainer) Drain(context.Context) (event.DrainSummary, error) {
	s.ran.Add(1)
	return event.DrainSummary{}, nil
}
func (s *stubDrainer) DrainLongPoll(context.Context) (event.DrainSummary, error) {
	s.ran.Add(1)
	return event.DrainSummary{}, nil
}
func (s *stubDrainer) Run(ctx context.Context) error { s.ran.Add(1); <-ctx.Done(); return nil }

// The step runs before each drain, and at the start of Run and then
// periodically while it runs; the wrapped drainer still runs every time.
func TestBeforeRunsTheStepInsideEveryDrain(t *testing.T) {
	d := &stubDrainer{}
	var steps atomic.Int32
	w := event.Before(d, 5*time.Millisecond, func(context.Context) { steps.Add(1) })
	_, _ = w.Drain(context.Background())
	_, _ = w.DrainLongPoll(context.Background())
	if steps.Load() != 2 || d.ran.Load() != 2 {
		t.Fatalf("steps %d, drains %d after Drain and DrainLongPoll; want 2 and 2", steps.Load(), d.ran.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for steps.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil || steps.Load() < 5 || d.ran.Load() != 3 {
		t.Fatalf("Run: err %v, steps %d (want >= 5: start + ticks), drains %d", err, steps.Load(), d.ran.Load())
	}
}
