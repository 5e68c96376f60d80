package mongodb_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/reconcile"
)

func TestReconcileRepoKeepsTheEventAndOrdersByDue(t *testing.T) {
	ctx := ctxT(t)
	r := mongodb.NewReconcileRepo(testenv.MongoDB(t))
	if err := r.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	ev := func(id string) event.Event {
		return event.Event{ID: "ev-" + id, Type: event.ShiftCompleted, OrganizationID: "org1", Time: base,
			CorrelationID: "c-" + id, SchemaVersion: 1, Payload: json.RawMessage(`{"id":"` + id + `", "organizationId":"org1"}`)}
	}
	for i, id := range []string{"s3", "s1", "s2"} {
		p := reconcile.Pending{ShiftID: id, OrganizationID: "org1", Event: ev(id), DueAt: base.Add(time.Duration(3-i) * time.Minute)}
		if err := r.Put(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// Put again replaces (the relay re-tracks a re-published event).
	if err := r.Put(ctx, reconcile.Pending{ShiftID: "s3", OrganizationID: "org1", Event: ev("s3"), DueAt: base.Add(4 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	due, err := r.Due(ctx, base.Add(2*time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 || due[0].ShiftID != "s2" || due[1].ShiftID != "s1" {
		t.Fatalf("due %+v, want s2 then s1", due)
	}
	if got := due[1].Event; string(got.Payload) != string(ev("s1").Payload) || got.ID != "ev-s1" || got.CorrelationID != "c-s1" || !got.Time.Equal(base) {
		t.Fatalf("event came back as %+v", got)
	}
	if err := r.Postpone(ctx, "s2", base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := r.Postpone(ctx, "gone", base); err != nil { // no upsert
		t.Fatal(err)
	}
	due, _ = r.Due(ctx, base.Add(5*time.Minute), 10)
	if len(due) != 1 || due[0].ShiftID != "s3" {
		t.Fatalf("due %+v, want only s3", due)
	}
}
