package mongodb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/org"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/timesheet"
	"github.com/shiftflow/shiftflow/core/ulid"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type indexer interface{ EnsureIndexes(context.Context) error }

// ensure runs EnsureIndexes twice: the second run must be a no-op.
func ensure(t *testing.T, ctx context.Context, repos ...indexer) {
	t.Helper()
	for i := 0; i < 2; i++ {
		for _, r := range repos {
			if err := r.EnsureIndexes(ctx); err != nil {
				t.Fatalf("EnsureIndexes run %d: %v", i+1, err)
			}
		}
	}
}

func mkShift(org string, start time.Time) shift.Shift {
	return shift.Shift{ID: ulid.New(), OrganizationID: org, ClientID: "c1", WorkerID: "w1", Role: "nurse",
		Start: start, End: start.Add(8 * time.Hour), Status: shift.StatusScheduled, Version: 1,
		CreatedAt: start, UpdatedAt: start}
}

func mkEvent(typ string, s shift.Shift) event.Event {
	p, _ := json.Marshal(s)
	return event.Event{ID: ulid.New(), Type: typ, OrganizationID: s.OrganizationID,
		Time: time.Now().UTC().Truncate(time.Millisecond), CorrelationID: "corr", SchemaVersion: 1, Payload: p}
}

func TestShiftRepoOutboxKeepsEventsAppendedWhileRemoving(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	r := mongodb.NewShiftRepo(db)
	ensure(t, ctx, r)
	s := mkShift("org1", time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	e1 := mkEvent(event.ShiftCreated, s)
	if err := r.Insert(ctx, s, e1); err != nil {
		t.Fatal(err)
	}
	got, err := r.Outbox(ctx, s.ID)
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], e1) {
		t.Fatalf("outbox = %+v, %v; want exactly %+v", got, err, e1)
	}
	// A change appends e2 before the relay removes e1.
	s2 := s
	s2.Status, s2.Version = shift.StatusCompleted, 2
	e2 := mkEvent(event.ShiftCompleted, s2)
	if err := r.Update(ctx, s2, 1, e2); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveFromOutbox(ctx, s.ID, []string{e1.ID}); err != nil {
		t.Fatal(err)
	}
	got, _ = r.Outbox(ctx, s.ID)
	if len(got) != 1 || got[0].ID != e2.ID {
		t.Fatalf("after removing e1, outbox = %+v; want only e2", got)
	}
	pending, _ := r.PendingShifts(ctx, 10)
	if len(pending) != 1 || pending[0] != s.ID {
		t.Fatalf("pending = %v", pending)
	}
	if err := r.RemoveFromOutbox(ctx, s.ID, []string{e2.ID}); err != nil {
		t.Fatal(err)
	}
	if pending, _ := r.PendingShifts(ctx, 10); len(pending) != 0 {
		t.Fatalf("pending after removing all = %v", pending)
	}
	// A stale version is a conflict, and writes nothing.
	if err := r.Update(ctx, s2, 1, mkEvent(event.ShiftUpdated, s2)); core.ErrorCode(err) != core.EConflict {
		t.Fatalf("stale update: %v", err)
	}
	if got, _ := r.Outbox(ctx, s.ID); len(got) != 0 {
		t.Fatalf("stale update wrote to the outbox: %+v", got)
	}
	back, err := r.Get(ctx, "org1", s.ID)
	if err != nil || back.Status != shift.StatusCompleted || back.Version != 2 || !back.Start.Equal(s.Start) {
		t.Fatalf("get = %+v, %v", back, err)
	}
	if _, err := r.Get(ctx, "org2", s.ID); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("another organisation's shift: %v, want not found", err)
	}
}

func TestShiftRepoListFiltersByOrganisationTimeAndStatus(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	r := mongodb.NewShiftRepo(db)
	ensure(t, ctx, r)
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 5; i++ {
		s := mkShift("org1", base.AddDate(0, 0, i))
		if i == 4 {
			s.Status = shift.StatusCancelled
		}
		ids = append(ids, s.ID)
		if err := r.Insert(ctx, s, mkEvent(event.ShiftCreated, s)); err != nil {
			t.Fatal(err)
		}
	}
	other := mkShift("org2", base)
	_ = r.Insert(ctx, other, mkEvent(event.ShiftCreated, other))
	got, err := r.List(ctx, "org1", shift.Filter{From: base.AddDate(0, 0, 1), To: base.AddDate(0, 0, 4)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != ids[1] || got[2].ID != ids[3] {
		t.Fatalf("range list = %d shifts", len(got))
	}
	got, _ = r.List(ctx, "org1", shift.Filter{Status: shift.StatusCancelled})
	if len(got) != 1 || got[0].ID != ids[4] {
		t.Fatalf("status list = %+v", got)
	}
	got, _ = r.List(ctx, "org1", shift.Filter{})
	if len(got) != 5 {
		t.Fatalf("all = %d, want 5 (other organisation excluded)", len(got))
	}
}

func TestWorkedTimeUpsertIsFirstWriterWins(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	r := mongodb.NewWorkedTimeRepo(db)
	ensure(t, ctx, r)
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	w := timesheet.WorkedTime{ShiftID: ulid.New(), OrganizationID: "org1", ClientID: "c1", WorkerID: "w", Role: "nurse",
		Start: start, End: start.Add(8 * time.Hour), WorkedMinutes: 450, BreakMinutes: 30, RegularMinutes: 450, CreatedAt: start}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			x := w
			x.CreatedAt = start.Add(time.Duration(i) * time.Second)
			if _, err := r.Upsert(ctx, x); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, _ := db.Collection(mongodb.CollWorkedTimes).CountDocuments(ctx, bson.D{})
	if n != 1 {
		t.Fatalf("%d worked times, want 1", n)
	}
	got, err := r.Get(ctx, "org1", w.ShiftID)
	if err != nil || got.WorkedMinutes != 450 {
		t.Fatalf("get = %+v, %v", got, err)
	}
	if _, err := r.Get(ctx, "org2", w.ShiftID); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("another organisation: %v", err)
	}
	list, _ := r.List(ctx, "org1", start, start.Add(time.Hour), 10)
	if len(list) != 1 {
		t.Fatalf("list = %d", len(list))
	}
}

// TestInvoiceNumbersAreGaplessAndOncePerShift races many reservations
// at once, round after round: in each round every contender (16 shifts,
// each reserved by 2 workers) is released by one barrier, so they all
// read the same starting point and collide on the same numbers. A
// numbering race (two shifts sharing a number, a skipped number, a shift
// with two numbers) then shows in every round, not by luck.
func TestInvoiceNumbersAreGaplessAndOncePerShift(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	n := mongodb.NewInvoiceNumbers(db)
	ensure(t, ctx, n)
	const rounds, shifts, runs = 6, 16, 2
	got := map[string][]int64{}
	for round := 0; round < rounds; round++ {
		var mu sync.Mutex
		var ready, wg sync.WaitGroup
		barrier := make(chan struct{})
		for s := 0; s < shifts; s++ {
			for r := 0; r < runs; r++ {
				wg.Add(1)
				ready.Add(1)
				go func(id string) {
					defer wg.Done()
					ready.Done()
					<-barrier
					seq, err := n.Reserve(ctx, "org1", id)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					got[id] = append(got[id], seq)
					mu.Unlock()
				}(fmt.Sprintf("shift-%d-%02d", round, s))
			}
		}
		ready.Wait()
		close(barrier)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		var all []int64
		for id, seqs := range got {
			for _, s := range seqs[1:] {
				if s != seqs[0] {
					t.Fatalf("round %d: shift %s got numbers %v", round, id, seqs)
				}
			}
			all = append(all, seqs[0])
		}
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		for i, s := range all {
			if s != int64(i+1) {
				t.Fatalf("round %d: numbers %v are not 1..%d", round, all, len(all))
			}
		}
		// The stored numbers agree: one document per shift, each seq once.
		if c, err := db.Collection(mongodb.CollInvoiceNumbers).CountDocuments(ctx, bson.D{{Key: "organizationId", Value: "org1"}}); err != nil || c != int64(len(all)) {
			t.Fatalf("round %d: %d number documents, %v; want %d", round, c, err, len(all))
		}
	}
	// Another organisation counts from 1.
	if s, err := n.Reserve(ctx, "org2", "shift-00"); err != nil || s != 1 {
		t.Fatalf("org2 first number = %d, %v", s, err)
	}
}

func TestInvoiceRepoCreateReturnsTheExistingInvoiceOfTheShift(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	r := mongodb.NewInvoiceRepo(db)
	ensure(t, ctx, r)
	now := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	inv := invoice.Invoice{ID: ulid.New(), OrganizationID: "org1", Number: "INV-000001", Sequence: 1, ShiftID: "s1",
		ClientID: "c1", Currency: "EUR", Lines: []pricing.Line{{Description: "nurse regular", Minutes: 60, HourlyRate: 3000, MultiplierPercent: 100, Amount: 3000}},
		Subtotal: 3000, Tax: 600, Total: 3600, IssuedAt: now, DueAt: now.AddDate(0, 0, 30)}
	first, err := r.Create(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	again := inv
	again.ID, again.Sequence, again.Number = ulid.New(), 2, "INV-000002"
	second, err := r.Create(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || second.Number != "INV-000001" {
		t.Fatalf("second create returned %+v, want the first", second)
	}
	if !reflect.DeepEqual(second, inv) {
		t.Fatalf("round trip changed the invoice:\n got %+v\nwant %+v", second, inv)
	}
	if c, _ := db.Collection(mongodb.CollInvoices).CountDocuments(ctx, bson.D{}); c != 1 {
		t.Fatalf("%d invoices", c)
	}
	if _, err := r.Get(ctx, "org2", inv.ID); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("another organisation: %v", err)
	}
	list, _ := r.List(ctx, "org1", now, now.Add(time.Second), 10)
	if len(list) != 1 {
		t.Fatalf("list = %d", len(list))
	}
}

func TestPricingSettingsAndClientsRoundTrip(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	pr, sr, cr := mongodb.NewPricingRepo(db), mongodb.NewSettingsRepo(db), mongodb.NewClientRepo(db)
	ensure(t, ctx, pr, sr, cr)
	if _, err := pr.GetTable(ctx, "org1"); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("missing table: %v", err)
	}
	tb := pricing.Table{Currency: "EUR", TaxRateBasisPoints: 2000, Roles: map[string]pricing.Role{"nurse": {HourlyRate: 3000}},
		Overtime: pricing.Overtime{AfterMinutes: 480, MultiplierPercent: 150}, Weekend: pricing.Weekend{MultiplierPercent: 125},
		Night: pricing.Night{From: "22:00", To: "06:00", MultiplierPercent: 120}}
	for i := 0; i < 2; i++ { // the second put replaces
		if err := pr.PutTable(ctx, "org1", tb, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := pr.GetTable(ctx, "org1"); err != nil || !reflect.DeepEqual(got, tb) {
		t.Fatalf("table = %+v, %v", got, err)
	}
	tax := int64(0)
	o := pricing.Override{TaxRateBasisPoints: &tax, Roles: map[string]pricing.Role{"nurse": {HourlyRate: 4000}}}
	if err := pr.PutOverride(ctx, "org1", "c1", o, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, err := pr.GetOverride(ctx, "org1", "c1"); err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("override = %+v, %v", got, err)
	}
	if _, err := pr.GetOverride(ctx, "org2", "c1"); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("another organisation's override: %v", err)
	}
	s := org.Settings{OrganizationID: "org1", TimeZone: "Europe/Berlin", Currency: "EUR", InvoiceTermsDays: 14, InvoicePrefix: "B-", UpdatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if err := sr.PutSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, err := sr.GetSettings(ctx, "org1"); err != nil || got != s {
		t.Fatalf("settings = %+v, %v", got, err)
	}
	c := client.Client{ID: ulid.New(), OrganizationID: "org1", Name: "Acme", BillingEmail: "ap@acme.test", CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if err := cr.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got, err := cr.GetClient(ctx, "org1", c.ID); err != nil || got != c {
		t.Fatalf("client = %+v, %v", got, err)
	}
	if _, err := cr.GetClient(ctx, "org2", c.ID); core.ErrorCode(err) != core.ENotFound {
		t.Fatalf("another organisation's client: %v", err)
	}
	if l, _ := cr.ListClients(ctx, "org2", 10); len(l) != 0 {
		t.Fatalf("org2 sees %d clients", len(l))
	}
}
