package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/timesheet"
)

// The decisions on real servers are tested in adapters/app; these are the
// rules around them with in-memory fakes.

type memStore struct{ m map[string]Pending }

func (s *memStore) Put(_ context.Context, p Pending) error { s.m[p.ShiftID] = p; return nil }
func (s *memStore) Due(_ context.Context, now time.Time, limit int) ([]Pending, error) {
	var out []Pending
	for _, p := range s.m {
		if !p.DueAt.After(now) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ShiftID < out[j].ShiftID })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
func (s *memStore) Postpone(_ context.Context, id string, due time.Time) error {
	if p, ok := s.m[id]; ok {
		p.DueAt = due
		s.m[id] = p
	}
	return nil
}
func (s *memStore) Delete(_ context.Context, id string) error { delete(s.m, id); return nil }

type noWorked struct{ fail map[string]bool }

func (w noWorked) Get(_ context.Context, _, id string) (timesheet.WorkedTime, error) {
	if w.fail[id] {
		return timesheet.WorkedTime{}, errors.New("mongodb down")
	}
	return timesheet.WorkedTime{}, core.NotFound("no timesheet")
}

type pubs struct{ ids []string }

func (p *pubs) Publish(_ context.Context, e event.Event) error {
	p.ids = append(p.ids, e.ID)
	return nil
}

type gate bool

func (g gate) Allow(context.Context) (bool, error) { return bool(g), nil }

func completed(id string) event.Event {
	payload, _ := json.Marshal(map[string]any{"id": id, "organizationId": "o", "clientId": "c", "status": "completed"})
	return event.Event{ID: "ev-" + id, Type: event.ShiftCompleted, OrganizationID: "o", Payload: payload}
}

func newTest(store *memStore, pub *pubs, w noWorked, now *time.Time) *Reconciler {
	return New(Deps{Store: store, WorkedTimes: w, Invoices: nil, Clients: nil, Emails: nil, Publisher: pub,
		After: time.Minute, Now: func() time.Time { return *now }})
}

func TestTrackRunAndPostpone(t *testing.T) {
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	store, pub := &memStore{m: map[string]Pending{}}, &pubs{}
	r := newTest(store, pub, noWorked{fail: map[string]bool{"s2": true}}, &now)
	ctx := context.Background()
	for _, id := range []string{"s1", "s2", "s3"} {
		if err := r.Track(ctx, completed(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Track(ctx, event.Event{ID: "x", Type: event.ShiftUpdated}); err != nil || len(store.m) != 3 {
		t.Fatalf("only shift.completed is tracked: %v, %d", err, len(store.m))
	}
	if rep, _ := r.Run(ctx); rep.Checked != 0 {
		t.Fatalf("checked before After: %+v", rep)
	}
	now = now.Add(time.Minute)
	rep, err := r.Run(ctx)
	// s2's failure is reported and does not stop s1 and s3.
	if err == nil || len(rep.Errors) != 1 || rep.Checked != 3 || len(rep.Events) != 2 {
		t.Fatalf("report %+v, err %v", rep, err)
	}
	if len(pub.ids) != 2 || pub.ids[0] != "ev-s1" || pub.ids[1] != "ev-s3" {
		t.Fatalf("published %v", pub.ids)
	}
	// Re-emitted shifts wait After again; the failed one is tried next run.
	if rep, _ := r.Run(ctx); rep.Checked != 1 {
		t.Fatalf("second run %+v, want only the failed shift", rep)
	}
}

func TestMaybeRunHonoursTheGate(t *testing.T) {
	now := time.Now()
	store, pub := &memStore{m: map[string]Pending{}}, &pubs{}
	r := newTest(store, pub, noWorked{}, &now)
	r.d.Gate = gate(false)
	if rep, err := r.MaybeRun(context.Background()); err != nil || !rep.Skipped {
		t.Fatalf("closed gate: %+v, %v", rep, err)
	}
	r.d.Gate = gate(true)
	if rep, err := r.MaybeRun(context.Background()); err != nil || rep.Skipped {
		t.Fatalf("open gate: %+v, %v", rep, err)
	}
}

var (
	_ Clients      = (*client.Service)(nil)
	_ Invoices     = (*invoice.Worker)(nil)
	_ WorkedTimes  = (*timesheet.Service)(nil)
	_ EmailRecords = emailsFunc(nil)
)

type emailsFunc func(ctx context.Context, orgID, invoiceID string) (bool, error)

func (f emailsFunc) Sent(ctx context.Context, orgID, invoiceID string) (bool, error) {
	return f(ctx, orgID, invoiceID)
}
