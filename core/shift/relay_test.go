package shift

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/core/event"
)

// memOutbox is an in-memory OutboxStore for the relay's own rules; the
// MongoDB implementation has its contract test in adapters/mongodb.
type memOutbox struct {
	mu sync.Mutex
	m  map[string][]event.Event
}

func (s *memOutbox) Outbox(_ context.Context, id string) ([]event.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event.Event(nil), s.m[id]...), nil
}

func (s *memOutbox) PendingShifts(_ context.Context, limit int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, evs := range s.m {
		if len(evs) > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) > limit {
		ids = ids[:limit]
	}
	return ids, nil
}

func (s *memOutbox) RemoveFromOutbox(_ context.Context, id string, evIDs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []event.Event
	for _, e := range s.m[id] {
		drop := false
		for _, x := range evIDs {
			drop = drop || x == e.ID
		}
		if !drop {
			keep = append(keep, e)
		}
	}
	s.m[id] = keep
	return nil
}

// flakyPublisher fails the events named in failIDs.
type flakyPublisher struct {
	got     []string
	failIDs map[string]bool
}

func (p *flakyPublisher) Publish(_ context.Context, e event.Event) error {
	if p.failIDs[e.ID] {
		return errors.New("bus down")
	}
	p.got = append(p.got, e.ID)
	return nil
}

func evs(ids ...string) []event.Event {
	out := make([]event.Event, len(ids))
	for i, id := range ids {
		out[i] = event.Event{ID: id, Type: event.ShiftUpdated}
	}
	return out
}

func TestRelayKeepsEachShiftsOrderAndFlushesTheOthers(t *testing.T) {
	store := &memOutbox{m: map[string][]event.Event{
		"a": evs("a1", "a2", "a3"),
		"b": evs("b1"),
		"c": evs("c1", "c2"),
	}}
	pub := &flakyPublisher{failIDs: map[string]bool{"a2": true}}
	r := NewRelay(store, pub, nil)
	r.Batch = 1 // several rounds
	n, err := r.Flush(context.Background())
	if err == nil {
		t.Fatal("a failed publish must be reported")
	}
	if n != 4 {
		t.Fatalf("published %d, want 4 (a1, b1, c1, c2)", n)
	}
	if want := []string{"a1", "b1", "c1", "c2"}; !reflect.DeepEqual(pub.got, want) {
		t.Fatalf("published %v, want %v: a3 must wait behind a2", pub.got, want)
	}
	if left, _ := store.Outbox(context.Background(), "a"); !reflect.DeepEqual(left, evs("a2", "a3")) {
		t.Fatalf("a's outbox %v, want a2, a3 kept", left)
	}
	pub.failIDs = nil
	if n, err := r.Flush(context.Background()); n != 2 || err != nil {
		t.Fatalf("second flush: %d, %v", n, err)
	}
	if pending, _ := store.PendingShifts(context.Background(), 10); len(pending) != 0 {
		t.Fatalf("pending %v", pending)
	}
}

func TestValidateShift(t *testing.T) {
	ok := Shift{ClientID: "c", WorkerID: "w", Role: "nurse", Status: StatusScheduled}
	ok.Start = mustTime(t, "2026-11-25T08:00:00Z")
	ok.End = mustTime(t, "2026-11-25T16:00:00Z")
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Shift){
		"no client":        func(s *Shift) { s.ClientID = "" },
		"no worker":        func(s *Shift) { s.WorkerID = "" },
		"no role":          func(s *Shift) { s.Role = "" },
		"zero start":       func(s *Shift) { s.Start = time.Time{} },
		"seconds":          func(s *Shift) { s.End = s.End.Add(1e9) },
		"end before start": func(s *Shift) { s.End = s.Start.Add(-6e10) },
		"25 hours":         func(s *Shift) { s.End = s.Start.Add(25 * 3600e9) },
		"break too long":   func(s *Shift) { s.BreakMinutes = 480 },
		"unknown status":   func(s *Shift) { s.Status = "done" },
	} {
		s := ok
		mutate(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustTime(t *testing.T, s string) (v time.Time) {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// recTracker records tracked events and fails those named in failIDs.
type recTracker struct {
	got     []string
	failIDs map[string]bool
}

func (r *recTracker) Track(_ context.Context, e event.Event) error {
	if r.failIDs[e.ID] {
		return errors.New("mongodb down")
	}
	r.got = append(r.got, e.ID)
	return nil
}

// TestRelayTracksCompletionsBeforeDroppingThem: a shift.completed event
// leaves the outbox only once the reconciler's pending record is written;
// if that write fails the entry stays and the next run publishes and
// tracks it again.
func TestRelayTracksCompletionsBeforeDroppingThem(t *testing.T) {
	completed := event.Event{ID: "a2", Type: event.ShiftCompleted}
	store := &memOutbox{m: map[string][]event.Event{"a": {evs("a1")[0], completed}}}
	tr := &recTracker{failIDs: map[string]bool{"a2": true}}
	r := NewRelay(store, &flakyPublisher{}, nil)
	r.Tracker = tr
	if _, err := r.Flush(context.Background()); err == nil {
		t.Fatal("a failed tracking write must be reported")
	}
	if left, _ := store.Outbox(context.Background(), "a"); !reflect.DeepEqual(left, []event.Event{completed}) {
		t.Fatalf("outbox %v, want the untracked completion kept", left)
	}
	tr.failIDs = nil
	if n, err := r.Flush(context.Background()); n != 1 || err != nil {
		t.Fatalf("second flush: %d, %v", n, err)
	}
	if !reflect.DeepEqual(tr.got, []string{"a2"}) {
		t.Fatalf("tracked %v, want only the shift.completed event", tr.got)
	}
}
