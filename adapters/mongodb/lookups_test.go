package mongodb_test

// Tests of the lookups by _id alone (FerretDB pushes nothing else down):
// organisation isolation checked in Go, the invoice number hint and the
// shift -> invoice pointers.

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/ulid"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestShiftRepoUpdateOfAnotherOrganisationsShiftChangesNothing(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	r := mongodb.NewShiftRepo(db)
	ensure(t, ctx, r)
	s := mkShift("org1", time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	if err := r.Insert(ctx, s, mkEvent(event.ShiftCreated, s)); err != nil {
		t.Fatal(err)
	}
	// Same id and version, another organisation: refused like a stale
	// version, and neither the shift nor its outbox changes.
	evil := s
	evil.OrganizationID, evil.Notes, evil.Version = "org2", "taken over", 2
	if err := r.Update(ctx, evil, 1, mkEvent(event.ShiftUpdated, evil)); core.ErrorCode(err) != core.EConflict {
		t.Fatalf("update as org2: %v, want conflict", err)
	}
	// A shift that does not exist: conflict as well, nothing created.
	ghost := mkShift("org1", s.Start)
	if err := r.Update(ctx, ghost, 1, mkEvent(event.ShiftUpdated, ghost)); core.ErrorCode(err) != core.EConflict {
		t.Fatalf("update of a missing shift: %v, want conflict", err)
	}
	if _, err := r.Get(ctx, "org1", ghost.ID); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("missing shift after update: %v", err)
	}
	back, err := r.Get(ctx, "org1", s.ID)
	if err != nil || back.Notes != "" || back.Version != 1 || back.OrganizationID != "org1" {
		t.Fatalf("get = %+v, %v", back, err)
	}
	if out, _ := r.Outbox(ctx, s.ID); len(out) != 1 {
		t.Fatalf("outbox has %d events, want the insert's only", len(out))
	}
}

func TestInvoiceNumbersStayGaplessWhateverTheHintSays(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	n := mongodb.NewInvoiceNumbers(db)
	ensure(t, ctx, n)
	hints := db.Collection(mongodb.CollInvoiceHints)
	reserve := func(shiftID string) int64 {
		t.Helper()
		seq, err := n.Reserve(ctx, "org1", shiftID)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	for i := 1; i <= 5; i++ {
		if got := reserve(fmt.Sprint("s", i)); got != int64(i) {
			t.Fatalf("shift %d got %d", i, got)
		}
	}
	// A hint that fell behind (a racing writer moved it back on FerretDB)
	// only costs failed inserts: the next number is still 6.
	if _, err := hints.UpdateOne(ctx, bson.D{{Key: "_id", Value: "org1"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "seq", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if got := reserve("s6"); got != 6 {
		t.Fatalf("after a stale hint: %d, want 6", got)
	}
	// No hint at all (numbers taken before hints existed): continues
	// after the highest number.
	if _, err := hints.DeleteMany(ctx, bson.D{}); err != nil {
		t.Fatal(err)
	}
	if got := reserve("s7"); got != 7 {
		t.Fatalf("without a hint: %d, want 7", got)
	}
	// A shift that has a number keeps it, whatever the hint.
	if got := reserve("s3"); got != 3 {
		t.Fatalf("s3 again: %d", got)
	}
	// Racing workers with a stale hint: every shift one number, 8..19.
	if _, err := hints.UpdateOne(ctx, bson.D{{Key: "_id", Value: "org1"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "seq", Value: 2}}}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int64{}
	var wg sync.WaitGroup
	for i := 8; i < 20; i++ {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprint("s", i)
				seq, err := n.Reserve(ctx, "org1", id)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if prev, ok := got[id]; ok && prev != seq {
					t.Errorf("%s got %d and %d", id, prev, seq)
				}
				got[id] = seq
			}()
		}
	}
	wg.Wait()
	var all []int64
	for _, s := range got {
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for i, s := range all {
		if s != int64(i+8) {
			t.Fatalf("numbers %v are not 8..19", all)
		}
	}
}

func testInvoice(org, shiftID string, seq int64) invoice.Invoice {
	now := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	return invoice.Invoice{ID: ulid.New(), OrganizationID: org, Number: fmt.Sprintf("INV-%06d", seq), Sequence: seq, ShiftID: shiftID,
		ClientID: "c1", Currency: "EUR", Lines: []pricing.Line{{Description: "nurse regular", Minutes: 60, HourlyRate: 3000, MultiplierPercent: 100, Amount: 3000}},
		Subtotal: 3000, Tax: 600, Total: 3600, IssuedAt: now, DueAt: now.AddDate(0, 0, 30)}
}

func TestInvoiceRepoGetByShift(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	r := mongodb.NewInvoiceRepo(db)
	ensure(t, ctx, r)
	inv := testInvoice("org1", "s1", 1)
	if _, err := r.Create(ctx, inv); err != nil {
		t.Fatal(err)
	}
	if got, err := r.GetByShift(ctx, "org1", "s1"); err != nil || got.ID != inv.ID {
		t.Fatalf("by shift = %+v, %v", got, err)
	}
	for _, c := range []struct{ org, shift string }{{"org2", "s1"}, {"org1", "s2"}, {"", ""}} {
		if _, err := r.GetByShift(ctx, c.org, c.shift); core.ErrorCode(err) != core.ENotFound {
			t.Fatalf("GetByShift(%q, %q) = %v, want not found", c.org, c.shift, err)
		}
	}

	// A creator that crashed after claiming the shift and before inserting
	// its invoice: nothing to read yet, and the retry inserts its invoice
	// under the claimed id.
	pointers := db.Collection(mongodb.CollInvoiceShifts)
	claimed := ulid.New()
	if _, err := pointers.InsertOne(ctx, bson.D{{Key: "_id", Value: "org1/s2"}, {Key: "organizationId", Value: "org1"}, {Key: "invoiceId", Value: claimed}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetByShift(ctx, "org1", "s2"); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("claimed but not inserted: %v, want not found", err)
	}
	retry := testInvoice("org1", "s2", 2)
	stored, err := r.Create(ctx, retry)
	if err != nil || stored.ID != claimed || stored.Number != "INV-000002" {
		t.Fatalf("retry stored %+v, %v; want id %s", stored, err, claimed)
	}
	if got, err := r.GetByShift(ctx, "org1", "s2"); err != nil || got.ID != claimed {
		t.Fatalf("by shift after retry = %+v, %v", got, err)
	}

	// Racing creators of one shift end up with one invoice.
	var wg sync.WaitGroup
	ids := make([]string, 6)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := r.Create(ctx, testInvoice("org1", "s3", 3))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = got.ID
		}()
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("racing creators got ids %v", ids)
		}
	}
	if c, _ := db.Collection(mongodb.CollInvoices).CountDocuments(ctx, bson.D{{Key: "shiftId", Value: "s3"}}); c != 1 {
		t.Fatalf("%d invoices for s3", c)
	}
}

func TestInvoiceRepoFindsInvoicesStoredBeforePointers(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	// Invoices as stored before pointers existed: no pointer, no marker.
	old := []invoice.Invoice{testInvoice("org1", "s1", 1), testInvoice("org1", "s2", 2)}
	for _, inv := range old {
		if _, err := db.Collection(mongodb.CollInvoices).InsertOne(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	r := mongodb.NewInvoiceRepo(db)
	ensure(t, ctx, r)
	for _, inv := range old {
		if got, err := r.GetByShift(ctx, "org1", inv.ShiftID); err != nil || got.ID != inv.ID {
			t.Fatalf("by shift %s = %+v, %v", inv.ShiftID, got, err)
		}
	}
	// An invoice without a pointer stored after the backfill (an old
	// version still running): a re-run of its job gets it back, and from
	// then on it is found by shift.
	late := testInvoice("org1", "s3", 3)
	if _, err := db.Collection(mongodb.CollInvoices).InsertOne(ctx, late); err != nil {
		t.Fatal(err)
	}
	again := testInvoice("org1", "s3", 3)
	got, err := r.Create(ctx, again)
	if err != nil || got.ID != late.ID {
		t.Fatalf("create over an unpointed invoice = %+v, %v; want %s", got, err, late.ID)
	}
	if got, err := r.GetByShift(ctx, "org1", "s3"); err != nil || got.ID != late.ID {
		t.Fatalf("by shift s3 = %+v, %v", got, err)
	}
	if c, _ := db.Collection(mongodb.CollInvoices).CountDocuments(ctx, bson.D{}); c != 3 {
		t.Fatalf("%d invoices, want 3", c)
	}
}
