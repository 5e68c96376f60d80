package httpapi_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/timesheet"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The shift used by the flow: Friday 27 Nov 2026 20:00 to Saturday 08:30
// in Berlin (UTC+1), 30 minutes break, priced with the table.
// Worked minutes by local clock (break 02:00-02:30, in the middle):
// Fri 20-22 regular 120, Fri 22-24 night 120, Sat 00-02 and 02:30-04:30
// weekend 240, then overtime 240 (after 480 worked minutes).
var domFlowLines = []pricing.Line{
	{Description: "nurse regular", Minutes: 120, HourlyRate: 3000, MultiplierPercent: 100, Amount: 6000},
	{Description: "nurse night", Minutes: 120, HourlyRate: 3000, MultiplierPercent: 120, Amount: 7200},
	{Description: "nurse weekend", Minutes: 240, HourlyRate: 3000, MultiplierPercent: 125, Amount: 15000},
	{Description: "nurse overtime", Minutes: 240, HourlyRate: 3000, MultiplierPercent: 150, Amount: 18000},
}

// TestFlowServicesOverHTTPOnAnInMemoryQueue walks schedule, complete,
// timesheet, invoice and email over HTTP with the in-memory bus and queue
// of the harness (domBus, domQueue: the queue de-duplicates job ids by
// itself), delivering each event and running each job three times by hand.
// It proves the services' own idempotency (one worked time, one invoice,
// one number, one email), the prices and the JSON; it does not prove the
// real queue's de-duplication: TestFlowOnTheRealBusQueuesAndMongoDB does.
func TestFlowServicesOverHTTPOnAnInMemoryQueue(t *testing.T) {
	a := domNewApp(t)
	ctx := domCtx(t)
	c := a.seed(domAdmin)

	var s shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", map[string]any{
		"clientId": c.ID, "workerId": "worker-7", "role": "nurse",
		"start": "2026-11-27T19:00:00Z", "end": "2026-11-28T07:00:00Z", "breakMinutes": 30, "notes": "ward 3",
	}, &s)
	if s.Status != shift.StatusScheduled || s.ClientID != c.ID {
		t.Fatalf("scheduled shift %+v", s)
	}
	if got := a.bus.ofType(event.ShiftCreated); len(got) != 1 {
		t.Fatalf("%d shift.created events, want 1 published right after the write", len(got))
	}
	// 404 until written.
	a.must(404, domViewer, "GET", "/shifts/"+s.ID+"/timesheet", nil, nil)
	a.must(404, domViewer, "GET", "/shifts/"+s.ID+"/invoice", nil, nil)

	a.must(200, domScheduler, "POST", "/shifts/"+s.ID+"/complete", `{"actualEnd":"2026-11-28T07:30:00Z"}`, &s)
	if s.Status != shift.StatusCompleted || !s.End.Equal(time.Date(2026, 11, 28, 7, 30, 0, 0, time.UTC)) {
		t.Fatalf("completed shift %+v", s)
	}
	completed := a.bus.ofType(event.ShiftCompleted)
	if len(completed) != 1 {
		t.Fatalf("%d shift.completed events", len(completed))
	}
	if n := a.counts()["outbox"]; n != 0 {
		t.Fatalf("%d events left in the outbox after a successful publish", n)
	}

	// The same event delivered three times.
	for i := 0; i < 3; i++ {
		if err := a.sheets.OnShiftCompleted(ctx, completed[0]); err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
	}
	if n, _ := a.db.Collection(mongodb.CollWorkedTimes).CountDocuments(ctx, bson.D{}); n != 1 {
		t.Fatalf("%d worked times after 3 deliveries, want 1", n)
	}
	jobs := a.queue.list(job.InvoiceGeneration)
	if len(jobs) != 1 || jobs[0].ID != s.ID {
		t.Fatalf("invoice jobs %+v, want one with id = shift id", jobs)
	}
	var data map[string]string
	_ = json.Unmarshal(jobs[0].Data, &data)
	if !reflect.DeepEqual(data, map[string]string{"shiftId": s.ID, "clientEmail": "ap@acme.test", "organizationId": "org-a"}) {
		t.Fatalf("job data %v", data)
	}

	// The same job run three times.
	for i := 0; i < 3; i++ {
		if err := a.invoices.Generate(ctx, jobs[0]); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
	}
	for coll, want := range map[string]int64{mongodb.CollInvoices: 1, mongodb.CollInvoiceNumbers: 1} {
		if n, _ := a.db.Collection(coll).CountDocuments(ctx, bson.D{}); n != want {
			t.Fatalf("%s: %d documents after 3 runs, want %d", coll, n, want)
		}
	}
	if mails := a.queue.list(job.EmailNotifications); len(mails) != 1 {
		t.Fatalf("%d email jobs, want 1", len(mails))
	}

	var wt timesheet.WorkedTime
	a.must(200, domViewer, "GET", "/shifts/"+s.ID+"/timesheet", nil, &wt)
	if wt.ShiftID != s.ID || wt.WorkedMinutes != 720 || wt.BreakMinutes != 30 || wt.RegularMinutes != 480 || wt.OvertimeMinutes != 240 {
		t.Fatalf("timesheet %+v", wt)
	}
	var inv invoice.Invoice
	a.must(200, domViewer, "GET", "/shifts/"+s.ID+"/invoice", nil, &inv)
	if inv.Number != "INV-000001" || inv.ShiftID != s.ID || inv.ClientID != c.ID || inv.Currency != "EUR" {
		t.Fatalf("invoice header %+v", inv)
	}
	if !reflect.DeepEqual(inv.Lines, domFlowLines) {
		t.Fatalf("lines\n got %+v\nwant %+v", inv.Lines, domFlowLines)
	}
	if inv.Subtotal != 46200 || inv.Tax != 9240 || inv.Total != 55440 {
		t.Fatalf("amounts %d/%d/%d, want 46200/9240/55440", inv.Subtotal, inv.Tax, inv.Total)
	}
	if got := inv.DueAt.Sub(inv.IssuedAt); got != 14*24*time.Hour {
		t.Fatalf("due %v after issue, want 14 days", got)
	}
	// The raw JSON carries exactly the field names the frontend uses.
	_, raw := a.do(domViewer, "GET", "/shifts/"+s.ID+"/invoice", nil)
	for _, f := range []string{`"id"`, `"number"`, `"shiftId"`, `"clientId"`, `"currency"`, `"lines"`, `"description"`, `"minutes"`, `"hourlyRate"`, `"multiplierPercent"`, `"amount"`, `"subtotal"`, `"tax"`, `"total"`, `"issuedAt"`, `"dueAt"`} {
		if !strings.Contains(string(raw), f) {
			t.Errorf("invoice JSON lacks %s: %s", f, raw)
		}
	}
	var list []invoice.Invoice
	a.must(200, domViewer, "GET", "/invoices?from=2026-01-01T00:00:00Z", nil, &list)
	if len(list) != 1 {
		t.Fatalf("GET /invoices: %d", len(list))
	}
	var sheets []timesheet.WorkedTime
	a.must(200, domViewer, "GET", "/timesheets?from=2026-11-27T00:00:00Z&to=2026-11-28T00:00:00Z", nil, &sheets)
	if len(sheets) != 1 {
		t.Fatalf("GET /timesheets: %d", len(sheets))
	}
	if gen := a.bus.ofType(event.InvoiceGenerated); len(gen) == 0 {
		t.Fatal("no invoice.generated event")
	}

	// The email worker writes the .eml to the outbox (no SMTP_URL).
	mail := a.queue.list(job.EmailNotifications)[0]
	for i := 0; i < 2; i++ {
		if err := a.mailer.Send(ctx, mail); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(a.outbox, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("outbox files %v", files)
	}
	body, _ := os.ReadFile(files[0])
	for _, want := range []string{"To: ap@acme.test", "INV-000001", "EUR 554.40"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("email lacks %q:\n%s", want, body)
		}
	}

	// The next shift's invoice gets the next number.
	var s2 shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", map[string]any{"clientId": c.ID, "workerId": "w", "role": "nurse",
		"start": "2026-11-30T08:00:00Z", "end": "2026-11-30T12:00:00Z"}, &s2)
	a.must(200, domScheduler, "POST", "/shifts/"+s2.ID+"/complete", nil, nil)
	ev := a.bus.ofType(event.ShiftCompleted)
	if err := a.sheets.OnShiftCompleted(ctx, ev[len(ev)-1]); err != nil {
		t.Fatal(err)
	}
	j2 := a.queue.list(job.InvoiceGeneration)
	if err := a.invoices.Generate(ctx, j2[len(j2)-1]); err != nil {
		t.Fatal(err)
	}
	var inv2 invoice.Invoice
	a.must(200, domViewer, "GET", "/shifts/"+s2.ID+"/invoice", nil, &inv2)
	if inv2.Number != "INV-000002" || inv2.Total != 14400 { // 240 min x 30.00/h = 120.00 + 20% tax
		t.Fatalf("second invoice %s total %d", inv2.Number, inv2.Total)
	}
}
