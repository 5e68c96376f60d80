package mongodb_test

import (
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestShiftRepoMongoDBBranchFiltersOnTheVersion runs the shift writes the
// way they run on a real MongoDB (ForceMongoDBBranch: no lease, the update
// filtered on _id, organisation and version), sequentially on the
// wire-protocol server: a stale version or another organisation matches
// nothing and changes nothing, the current version writes, and the outbox
// removal filtered on the version works.
func TestShiftRepoMongoDBBranchFiltersOnTheVersion(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	r := mongodb.NewShiftRepo(db)
	ensure(t, ctx, r)
	mongodb.ForceMongoDBBranch(r)
	s := mkShift("org1", time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	if err := r.Insert(ctx, s, mkEvent(event.ShiftCreated, s)); err != nil {
		t.Fatal(err)
	}
	next := s
	next.Notes, next.Version = "first", 2
	first := mkEvent(event.ShiftUpdated, next)
	if err := r.Update(ctx, next, 1, first); err != nil {
		t.Fatalf("update at the current version: %v", err)
	}
	// The same version again (a lost race on MongoDB): refused, unchanged.
	stale := s
	stale.Notes, stale.Version = "stale", 2
	if err := r.Update(ctx, stale, 1, mkEvent(event.ShiftUpdated, stale)); core.ErrorCode(err) != core.EConflict {
		t.Fatalf("update at a stale version: %v, want conflict", err)
	}
	evil := next
	evil.OrganizationID, evil.Notes, evil.Version = "org2", "taken over", 3
	if err := r.Update(ctx, evil, 2, mkEvent(event.ShiftUpdated, evil)); core.ErrorCode(err) != core.EConflict {
		t.Fatalf("update as another organisation: %v, want conflict", err)
	}
	got, err := r.Get(ctx, "org1", s.ID)
	if err != nil || got.Notes != "first" || got.Version != 2 {
		t.Fatalf("after the refused updates: %+v, %v; want notes first, version 2", got, err)
	}
	out, err := r.Outbox(ctx, s.ID)
	if err != nil || len(out) != 2 || out[1].ID != first.ID {
		t.Fatalf("outbox %d events, %v; want created and the first update only", len(out), err)
	}
	// The version-filtered outbox removal.
	if err := r.RemoveFromOutbox(ctx, s.ID, []string{out[0].ID}); err != nil {
		t.Fatal(err)
	}
	if out, _ = r.Outbox(ctx, s.ID); len(out) != 1 || out[0].ID != first.ID {
		t.Fatalf("outbox after removal: %+v", out)
	}
	// No lease was taken: the MongoDB branch really ran.
	if n, err := db.Collection(mongodb.CollShiftLeases).CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
		t.Fatalf("%d leases (%v): the FerretDB branch ran", n, err)
	}
}
