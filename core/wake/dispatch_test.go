package wake

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type fakeBacklog struct {
	n   int64
	err error
}

func (f fakeBacklog) Backlog(context.Context) (int64, error) { return f.n, f.err }

type fakeRegistry struct {
	running  int
	starting int
	err      error
}

func (f *fakeRegistry) Running(context.Context, string) (int, error) {
	return f.running + f.starting, f.err
}
func (f *fakeRegistry) Starting(_ context.Context, _ string, n int) (func(context.Context), error) {
	f.starting += n
	return func(context.Context) { f.starting -= n }, nil
}

type fakeWaker struct {
	woken []int
	err   error
}

func (f *fakeWaker) Wake(_ context.Context, _ string, n int) error {
	f.woken = append(f.woken, n)
	return f.err
}

type fakeGate struct {
	allow bool
	err   error
	asked int
}

func (f *fakeGate) Allow(context.Context, string) (bool, error) { f.asked++; return f.allow, f.err }

var limits = Limits{Throughput: 100, Budget: time.Second, MaxConcurrency: 5}

func TestDispatchSumsLanesAndCountsWhatItStarts(t *testing.T) {
	reg, w := &fakeRegistry{running: 1}, &fakeWaker{}
	d := &Dispatcher{Waker: w, Registry: reg, Limits: limits,
		Lanes: map[string][]Backlog{"d": {fakeBacklog{n: 150}, fakeBacklog{n: 150}}}}
	n, err := d.Dispatch(context.Background(), "d", 0)
	if err != nil || n != 2 || len(w.woken) != 1 || w.woken[0] != 2 {
		t.Fatalf("300 waiting, 1 running, 100 per instance: started %d (%v), woken %v; want 2", n, err, w.woken)
	}
	// A second dispatch at once counts the two as starting.
	if n, _ := d.Dispatch(context.Background(), "d", 0); n != 0 {
		t.Fatalf("second dispatch started %d more; the starting ones were not counted", n)
	}
}

func TestDispatchAtLeastStartsOneForAFreshPublish(t *testing.T) {
	w := &fakeWaker{}
	d := &Dispatcher{Waker: w, Registry: &fakeRegistry{}, Limits: limits, Lanes: map[string][]Backlog{"d": {fakeBacklog{}}}}
	if n, _ := d.Dispatch(context.Background(), "d", 1); n != 1 {
		t.Fatalf("a publish with the backlog read as 0 (a drain took it, or no group yet) started %d, want 1", n)
	}
	if n, _ := d.Dispatch(context.Background(), "other", 0); n != 0 {
		t.Fatalf("nothing waiting, started %d", n)
	}
}

func TestDispatchErrorsNameTheStep(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	d := &Dispatcher{Waker: &fakeWaker{}, Registry: &fakeRegistry{}, Limits: limits, Lanes: map[string][]Backlog{"d": {fakeBacklog{err: boom}}}}
	if _, err := d.Dispatch(ctx, "d", 1); !errors.Is(err, boom) || !strings.Contains(err.Error(), "backlog of d") {
		t.Errorf("backlog failure: %v", err)
	}
	d = &Dispatcher{Waker: &fakeWaker{err: boom}, Registry: &fakeRegistry{}, Limits: limits}
	if _, err := d.Dispatch(ctx, "d", 1); !errors.Is(err, boom) || !strings.Contains(err.Error(), "wake 1 of d") {
		t.Errorf("wake failure: %v", err)
	}
}

func TestTriggerCoalescesAndNeverFails(t *testing.T) {
	var logs bytes.Buffer
	w := &fakeWaker{err: errors.New("invoke refused")}
	g := &fakeGate{allow: true}
	tr := &Trigger{Dispatcher: &Dispatcher{Waker: w, Registry: &fakeRegistry{}, Limits: limits,
		Lanes: map[string][]Backlog{"d": {fakeBacklog{n: 1}}}}, Gate: g,
		Log: slog.New(slog.NewTextHandler(&logs, nil))}
	for range 5 {
		tr.Notify(context.Background(), "d") // must not panic or block
	}
	if len(w.woken) != 5 {
		t.Fatalf("gate open: %d wakes, want 5", len(w.woken))
	}
	if c := strings.Count(logs.String(), "wake failed"); c != 1 {
		t.Fatalf("5 failures logged %d times, want 1 (rate-limited):\n%s", c, logs.String())
	}
	g.allow = false
	tr.Notify(context.Background(), "d")
	tr.Tick(context.Background(), "d")
	if len(w.woken) != 5 {
		t.Fatal("a closed gate let a wake through")
	}
	tr.HandOver(context.Background(), "d")
	if len(w.woken) != 6 || g.asked != 7 {
		t.Fatalf("hand-over must bypass the gate: woken %d, gate asked %d", len(w.woken), g.asked)
	}
	g.err = errors.New("redis down")
	tr.Notify(context.Background(), "d") // a failed gate is dropped too
}
