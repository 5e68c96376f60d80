package invoice

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/ulid"
)

func TestFormatMoneyAndNumber(t *testing.T) {
	for _, tc := range []struct {
		cur   string
		minor int64
		want  string
	}{
		{"EUR", 55440, "EUR 554.40"}, {"EUR", 5, "EUR 0.05"}, {"EUR", -150, "EUR -1.50"}, {"JPY", 1200, "JPY 1200"},
	} {
		if got := FormatMoney(tc.cur, tc.minor); got != tc.want {
			t.Errorf("FormatMoney(%s, %d) = %q, want %q", tc.cur, tc.minor, got, tc.want)
		}
	}
	if got := FormatNumber("INV-", 42); got != "INV-000042" {
		t.Errorf("FormatNumber = %q", got)
	}
	if got := FormatNumber("", 1234567); got != "1234567" {
		t.Errorf("FormatNumber beyond six digits = %q", got)
	}
}

func TestRenderAndValidate(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	inv := Invoice{ID: "01J", OrganizationID: "o", Number: "INV-000001", Sequence: 1, ShiftID: "s", Currency: "EUR",
		Lines:    []pricing.Line{{Description: "nurse regular", Minutes: 60, HourlyRate: 3000, MultiplierPercent: 100, Amount: 3000}},
		Subtotal: 3000, Tax: 600, Total: 3600, IssuedAt: now, DueAt: now.AddDate(0, 0, 14)}
	if err := inv.Validate(); err != nil {
		t.Fatal(err)
	}
	m := Render(inv, "from@x.test", "to@y.test")
	if m.ID != "invoice-01J" || !strings.Contains(m.Subject, "INV-000001") || !strings.Contains(m.Text, "Total: EUR 36.00") || !strings.Contains(m.Text, "Due: 2026-12-12") {
		t.Fatalf("rendered %+v", m)
	}
	bad := inv
	bad.Total = 3601
	if bad.Validate() == nil {
		t.Fatal("amounts that do not add up accepted")
	}
}

func TestBadJobDataIsPermanent(t *testing.T) {
	w := NewWorker(Deps{})
	for _, data := range []string{`nope`, `{"shiftId":""}`} {
		err := w.Generate(context.Background(), &job.Job{ID: "j", Data: []byte(data)})
		if !job.IsPermanent(err) {
			t.Errorf("data %s: err %v is not permanent", data, err)
		}
	}
	m := NewMailer(nil, nil, nil, "x@y.test")
	if err := m.Send(context.Background(), &job.Job{ID: "j", Data: []byte(`{}`)}); !job.IsPermanent(err) {
		t.Errorf("email job without fields: %v", err)
	}
}

type foundStore struct {
	Store
	inv Invoice
}

func (s foundStore) GetByShift(context.Context, string, string) (Invoice, error) { return s.inv, nil }

type recPub struct{ events []event.Event }

func (p *recPub) Publish(_ context.Context, e event.Event) error {
	p.events = append(p.events, e)
	return nil
}

type recJobs struct{ ids []string }

func (j *recJobs) Add(_ context.Context, _, _ string, _ any, o job.Options) (string, error) {
	j.ids = append(j.ids, o.JobID)
	return o.JobID, nil
}

func TestRerunPublishesTheSameInvoiceGeneratedEvent(t *testing.T) {
	issued := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	inv := Invoice{ID: ulid.New(), OrganizationID: "o", Number: "INV-000001", Sequence: 1, ShiftID: "s", Currency: "EUR", IssuedAt: issued}
	pub, jobs := &recPub{}, &recJobs{}
	clock := issued
	w := NewWorker(Deps{Store: foundStore{inv: inv}, Publisher: pub, Jobs: jobs, Now: func() time.Time { clock = clock.Add(time.Minute); return clock }})
	j := &job.Job{ID: "s", Data: []byte(`{"shiftId":"s","organizationId":"o","clientEmail":"ap@c.test"}`)}
	for run := 0; run < 3; run++ {
		if err := w.Generate(context.Background(), j); err != nil {
			t.Fatal(err)
		}
	}
	if len(pub.events) != 3 {
		t.Fatalf("%d events", len(pub.events))
	}
	first := pub.events[0]
	if !ulid.Valid(first.ID) || first.ID != GeneratedEventID(inv) || !first.Time.Equal(issued) {
		t.Fatalf("event %s at %s, want a valid id derived from the invoice, at its issue time", first.ID, first.Time)
	}
	for _, e := range pub.events[1:] {
		if e.ID != first.ID || !e.Time.Equal(first.Time) {
			t.Fatalf("re-run published %s at %s, first run %s at %s", e.ID, e.Time, first.ID, first.Time)
		}
	}
	other := inv
	other.ID = ulid.New()
	if GeneratedEventID(other) == first.ID {
		t.Fatal("two invoices share an event id")
	}
	if jobs.ids[0] != MessageKey(inv.ID) || jobs.ids[2] != jobs.ids[0] {
		t.Fatalf("email job ids %v", jobs.ids)
	}
}

func TestMessageIDIsTheKeyAtTheSenderDomain(t *testing.T) {
	for from, want := range map[string]string{
		"invoices@billing.example.com": "<invoice-01J@billing.example.com>",
		"nobody":                       "<invoice-01J@shiftflow.invalid>",
		"billing@[192.0.2.1]":          "<invoice-01J@shiftflow.invalid>",
	} {
		if got := MessageID(MessageKey("01J"), from); got != want {
			t.Errorf("MessageID(from %s) = %s, want %s", from, got, want)
		}
	}
}
