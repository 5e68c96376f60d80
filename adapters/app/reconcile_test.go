package app

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/org"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/reconcile"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/timesheet"
	"go.mongodb.org/mongo-driver/v2/bson"
)

const recOrg = "org-rec"

const recPricing = `{"currency":"EUR","taxRateBasisPoints":2000,"roles":{"nurse":{"hourlyRate":3000}},"overtime":{"afterMinutes":480,"multiplierPercent":150},"minimumBillableMinutes":0}`

// recSeed saves settings and pricing for recOrg and creates a client.
func recSeed(t *testing.T, a *App, billingEmail string) client.Client {
	t.Helper()
	ctx := context.Background()
	if _, err := a.Settings.Put(ctx, recOrg, org.Settings{TimeZone: "UTC", Currency: "EUR", InvoiceTermsDays: 14, InvoicePrefix: "R-"}); err != nil {
		t.Fatal(err)
	}
	var tbl pricing.Table
	if err := json.Unmarshal([]byte(recPricing), &tbl); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pricing.PutTable(ctx, recOrg, tbl); err != nil {
		t.Fatal(err)
	}
	if billingEmail == "" {
		// Clients made before billing emails were required (the API
		// insists on one now).
		c := client.Client{ID: "legacy-client", OrganizationID: recOrg, Name: "Legacy", CreatedAt: time.Now().UTC()}
		if err := mongodb.NewClientRepo(a.DB).CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c, err := a.Clients.Create(ctx, recOrg, "Acme Care", billingEmail)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// recComplete schedules and completes a weekday shift (day n of a week).
func recComplete(t *testing.T, a *App, clientID string, n int) shift.Shift {
	t.Helper()
	ctx := context.Background()
	start := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC).AddDate(0, 0, n%5).Add(time.Duration(n/5) * 7 * 24 * time.Hour)
	s, err := a.Scheduler.Schedule(ctx, recOrg, shift.Input{ClientID: clientID, WorkerID: "w-1", Role: "nurse", Start: start, End: start.Add(8 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if s, err = a.Scheduler.Complete(ctx, recOrg, s.ID, shift.Completion{}); err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeSent is the sent-record: invoice ids that were mailed.
type fakeSent struct {
	mu   sync.Mutex
	sent map[string]bool
	asks int
}

func (f *fakeSent) Sent(_ context.Context, _, invoiceID string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asks++
	return f.sent[invoiceID], nil
}

// recAt is a reconciler over the app's real repositories and queues whose
// clock is now+ahead, and no gate.
func recAt(a *App, emails reconcile.EmailRecords, ahead time.Duration) *reconcile.Reconciler {
	return reconcile.New(reconcile.Deps{Store: mongodb.NewReconcileRepo(a.DB), WorkedTimes: a.Sheets, Invoices: a.Invoices,
		Clients: a.Clients, Emails: emails, Publisher: a.Bus, Jobs: a.Queues, After: 2 * time.Minute,
		Now: func() time.Time { return time.Now().Add(ahead) }})
}

type recDoc struct {
	ID             string `bson:"_id"`
	OrganizationID string `bson:"organizationId"`
	Event          struct {
		ID string `bson:"id"`
	} `bson:"event"`
	DueAt time.Time `bson:"dueAt"`
}

func recPending(t *testing.T, a *App) []recDoc {
	t.Helper()
	cur, err := a.DB.Collection(mongodb.CollReconcile).Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []recDoc
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatal(err)
	}
	return docs
}

func recDrain(t *testing.T, a *App, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := a.Drainer(name).Drain(ctx); err != nil {
		t.Fatalf("drain %s: %v", name, err)
	}
}

func recRun(t *testing.T, r *reconcile.Reconciler) reconcile.Report {
	t.Helper()
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("reconcile: %v (%+v)", err, rep)
	}
	return rep
}

// TestReconcilerDecisions walks one completed shift through every decision
// on the wire server and Redis: each step's missing piece is re-emitted
// with its original id and data, and a shift with all its work is settled.
func TestReconcilerDecisions(t *testing.T) {
	a := newTestApp(t)
	ctx := context.Background()
	c := recSeed(t, a, "ap@acme.test")
	s := recComplete(t, a, c.ID, 0)

	// The relay tracked the completion before dropping it from the outbox.
	docs := recPending(t, a)
	if len(docs) != 1 || docs[0].ID != s.ID || docs[0].OrganizationID != recOrg {
		t.Fatalf("pending %v, want the completed shift", docs)
	}
	if left, _ := a.Scheduler.Relay().Flush(ctx); left != 0 {
		t.Fatalf("outbox still held %d events", left)
	}
	completedID := docs[0].Event.ID

	emails := &fakeSent{sent: map[string]bool{}}
	if rep := recRun(t, recAt(a, emails, 0)); rep.Checked != 0 {
		t.Fatalf("checked %+v before RECONCILE_AFTER", rep)
	}

	// 1. No timesheet: the same shift.completed event again.
	rep := recRun(t, recAt(a, emails, 3*time.Minute))
	if len(rep.Events) != 1 || rep.Events[0].ID != completedID || rep.Reemitted() != 1 {
		t.Fatalf("report %+v, want the event %s re-published", rep, completedID)
	}
	if rep := recRun(t, recAt(a, emails, 3*time.Minute)); rep.Checked != 0 {
		t.Fatalf("a re-emitted shift must wait RECONCILE_AFTER again: %+v", rep)
	}
	recDrain(t, a, OnShiftCompleted) // the original and the re-published event: one timesheet
	if _, err := a.Sheets.Get(ctx, recOrg, s.ID); err != nil {
		t.Fatalf("timesheet after the re-published event: %v", err)
	}
	original, err := a.Queues.GetJob(ctx, job.InvoiceGeneration, s.ID)
	if err != nil {
		t.Fatal(err)
	}

	// 2. Timesheet, no invoice: the invoice job again, same id and data.
	if err := a.Queues.Remove(ctx, job.InvoiceGeneration, s.ID); err != nil {
		t.Fatal(err)
	}
	rep = recRun(t, recAt(a, emails, 6*time.Minute))
	if len(rep.InvoiceJobs) != 1 || rep.InvoiceJobs[0].ID != s.ID || rep.Reemitted() != 1 {
		t.Fatalf("report %+v, want the invoice job %s", rep, s.ID)
	}
	again, err := a.Queues.GetJob(ctx, job.InvoiceGeneration, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	var d1, d2 timesheet.InvoiceJob
	_ = json.Unmarshal(original.Data, &d1)
	_ = json.Unmarshal(again.Data, &d2)
	if d1 != d2 || d2.ClientEmail != "ap@acme.test" || again.Name != original.Name || again.CorrelationID != original.CorrelationID {
		t.Fatalf("re-added job %+v %s, want the same as %+v %s", d2, again.Name, d1, original.Name)
	}

	// 3. Invoice, no email sent: the email job again, id invoice-<id>.
	// Its earlier run completed (its sent-record, as this fake sees it, is
	// missing: an email refused after another run finished the job), so
	// the re-add must not be swallowed by the id's de-duplication window.
	recDrain(t, a, InvoiceWorker)
	recDrain(t, a, InvoiceWorker)
	inv, err := a.Invoices.GetByShift(ctx, recOrg, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	emailJob := invoice.MessageKey(inv.ID)
	if j, err := a.Queues.GetJob(ctx, job.EmailNotifications, emailJob); err != nil || j.State != job.StateCompleted {
		t.Fatalf("email job before reconciling: %+v %v, want completed", j, err)
	}
	rep = recRun(t, recAt(a, emails, 9*time.Minute))
	if len(rep.EmailJobs) != 1 || rep.EmailJobs[0].ID != emailJob || rep.Reemitted() != 1 {
		t.Fatalf("report %+v, want the email job %s", rep, emailJob)
	}
	j, err := a.Queues.GetJob(ctx, job.EmailNotifications, emailJob)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != job.StateWaiting {
		t.Fatalf("re-added email job is %s, want waiting (a new run)", j.State)
	}
	var ej invoice.EmailJob
	_ = json.Unmarshal(j.Data, &ej)
	if ej != (invoice.EmailJob{InvoiceID: inv.ID, OrganizationID: recOrg, To: "ap@acme.test"}) || j.Name != "invoice-email" {
		t.Fatalf("email job %s %+v", j.Name, ej)
	}

	// 4. Everything there: the invoice worker's drain mailed it and the
	// mailer's sent-record (the real one now) says so: settled, no
	// longer read.
	rep = recRun(t, recAt(a, mongodb.NewEmailRepo(a.DB), 12*time.Minute))
	if rep.Settled != 1 || rep.Reemitted() != 0 {
		t.Fatalf("report %+v, want settled", rep)
	}
	if docs := recPending(t, a); len(docs) != 0 {
		t.Fatalf("pending after settling: %v", docs)
	}
	if rep := recRun(t, recAt(a, emails, time.Hour)); rep.Checked != 0 {
		t.Fatalf("a settled shift is read again: %+v", rep)
	}
}

// TestReconcilerSettlesAShiftWhoseClientHasNoEmail: no billing email (a client
// stored before one was required) means no email is expected; the sent-record is not even asked.
func TestReconcilerSettlesAShiftWhoseClientHasNoEmail(t *testing.T) {
	a := newTestApp(t)
	c := recSeed(t, a, "")
	recComplete(t, a, c.ID, 1)
	recDrain(t, a, OnShiftCompleted)
	recDrain(t, a, InvoiceWorker)
	emails := &fakeSent{sent: map[string]bool{}}
	rep := recRun(t, recAt(a, emails, 3*time.Minute))
	if rep.Settled != 1 || rep.Reemitted() != 0 || emails.asks != 0 {
		t.Fatalf("report %+v, sent-record asked %d times", rep, emails.asks)
	}
}

// TestReconcileRunsAtMostOncePerInterval: the drains of every process
// share one gate in Redis.
func TestReconcileRunsAtMostOncePerInterval(t *testing.T) {
	a := newTestApp(t)
	first, err := a.Reconciler.MaybeRun(context.Background())
	if err != nil || first.Skipped {
		t.Fatalf("first run %+v, %v", first, err)
	}
	// Another process of the same deployment (same prefix, same Redis).
	b, err := New(context.Background(), Options{Getenv: func(k string) string { return a.Config.Env(k) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	for _, r := range []*reconcile.Reconciler{a.Reconciler, b.Reconciler} {
		if rep, err := r.MaybeRun(context.Background()); err != nil || !rep.Skipped {
			t.Fatalf("a second run within RECONCILE_INTERVAL: %+v, %v", rep, err)
		}
	}
}
