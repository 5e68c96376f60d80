// Package invoice turns a completed shift's worked time into an invoice,
// exactly once per shift, with a per-organisation sequential number, and
// mails it. Its Worker.Generate is the invoice-generation job handler and
// Mailer.Send the email-notifications one.
package invoice

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/org"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/timesheet"
	"github.com/shiftflow/shiftflow/core/ulid"
)

// Invoice of one shift. JSON names are the API's.
type Invoice struct {
	ID             string `json:"id" bson:"_id"`
	OrganizationID string `json:"-" bson:"organizationId"`
	Number         string `json:"number" bson:"number"`
	// Sequence is the number's integer part, unique per organisation.
	Sequence int64          `json:"-" bson:"sequence"`
	ShiftID  string         `json:"shiftId" bson:"shiftId"`
	ClientID string         `json:"clientId" bson:"clientId"`
	Currency string         `json:"currency" bson:"currency"`
	Lines    []pricing.Line `json:"lines" bson:"lines"`
	Subtotal int64          `json:"subtotal" bson:"subtotal"`
	Tax      int64          `json:"tax" bson:"tax"`
	Total    int64          `json:"total" bson:"total"`
	IssuedAt time.Time      `json:"issuedAt" bson:"issuedAt"`
	DueAt    time.Time      `json:"dueAt" bson:"dueAt"`
}

// Validate checks the invoice adds up. Errors: core.EInvalid.
func (i Invoice) Validate() error {
	if i.ID == "" || i.OrganizationID == "" || i.ShiftID == "" || i.Sequence <= 0 || i.Number == "" {
		return core.Invalid("invoice needs id, organization, shift and number")
	}
	if !pricing.ValidCurrency(i.Currency) {
		return core.Invalid("invoice currency %q", i.Currency)
	}
	var sum int64
	for _, l := range i.Lines {
		sum += l.Amount
	}
	if sum != i.Subtotal || i.Subtotal+i.Tax != i.Total {
		return core.Invalid("invoice amounts do not add up")
	}
	if i.DueAt.Before(i.IssuedAt) {
		return core.Invalid("invoice due before issue")
	}
	return nil
}

// FormatNumber is prefix + the sequence zero-padded to six digits.
func FormatNumber(prefix string, seq int64) string { return fmt.Sprintf("%s%06d", prefix, seq) }

// Store persists invoices. Reads are scoped to an organisation.
type Store interface {
	// Create inserts the invoice unless the shift has one, and returns the
	// stored invoice either way (unique by shift id).
	Create(ctx context.Context, inv Invoice) (Invoice, error)
	Get(ctx context.Context, orgID, id string) (Invoice, error)
	GetByShift(ctx context.Context, orgID, shiftID string) (Invoice, error)
	// List returns invoices issued in [from, to).
	List(ctx context.Context, orgID string, from, to time.Time, limit int) ([]Invoice, error)
}

// Numbers hands out per-organisation sequential numbers. Reserve returns
// the shift's number, taking the next one only the first time it is asked
// for that shift: re-runs and concurrent runs get the same number, and no
// number is skipped.
type Numbers interface {
	Reserve(ctx context.Context, orgID, shiftID string) (int64, error)
}

// Shifts reads shifts (core/shift's Scheduler is one).
type Shifts interface {
	Get(ctx context.Context, orgID, id string) (shift.Shift, error)
}

// WorkedTimes reads worked times (core/timesheet's Service is one).
type WorkedTimes interface {
	Get(ctx context.Context, orgID, shiftID string) (timesheet.WorkedTime, error)
}

// Pricing gives a client's effective table, through the cache.
type Pricing interface {
	Effective(ctx context.Context, orgID, clientID string) (pricing.Table, error)
}

// Settings gives the organisation's settings, through the cache.
type Settings interface {
	Get(ctx context.Context, orgID string) (org.Settings, error)
}

// EmailJob is the data of an email-notifications job.
type EmailJob struct {
	InvoiceID      string `json:"invoiceId"`
	OrganizationID string `json:"organizationId"`
	To             string `json:"to"`
}

// Worker generates invoices.
type Worker struct {
	store    Store
	numbers  Numbers
	shifts   Shifts
	worked   WorkedTimes
	pricing  Pricing
	settings Settings
	pub      event.Publisher
	jobs     job.Adder
	now      func() time.Time
	newID    func() string
	log      *slog.Logger
}

// Deps are the Worker's dependencies.
type Deps struct {
	Store       Store
	Numbers     Numbers
	Shifts      Shifts
	WorkedTimes WorkedTimes
	Pricing     Pricing
	Settings    Settings
	Publisher   event.Publisher
	Jobs        job.Adder
	Now         func() time.Time // nil: time.Now
	Log         *slog.Logger     // nil: slog.Default()
}

// NewWorker returns the invoice worker.
func NewWorker(d Deps) *Worker {
	w := &Worker{
		store: d.Store, numbers: d.Numbers, shifts: d.Shifts, worked: d.WorkedTimes, pricing: d.Pricing,
		settings: d.Settings, pub: d.Publisher, jobs: d.Jobs, now: d.Now, newID: ulid.New, log: d.Log,
	}
	if w.now == nil {
		w.now = time.Now
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	return w
}

// Get returns an invoice. Errors: core.ENotFound.
func (w *Worker) Get(ctx context.Context, orgID, id string) (Invoice, error) {
	return w.store.Get(ctx, orgID, id)
}

// GetByShift returns a shift's invoice. Errors: core.ENotFound.
func (w *Worker) GetByShift(ctx context.Context, orgID, shiftID string) (Invoice, error) {
	return w.store.GetByShift(ctx, orgID, shiftID)
}

// MaxList bounds list answers.
const MaxList = 1000

// List returns invoices issued in [from, to).
func (w *Worker) List(ctx context.Context, orgID string, from, to time.Time) ([]Invoice, error) {
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return nil, core.Invalid("to must be after from")
	}
	return w.store.List(ctx, orgID, from, to, MaxList)
}

// Generate is the job.Handler of invoice-generation. It is idempotent: a
// re-run finds the shift's invoice (or its reserved number) and only
// repeats the invoice.generated event (same event id and time) and the
// email job add, which the job id de-duplicates.
func (w *Worker) Generate(ctx context.Context, j *job.Job) error {
	var d timesheet.InvoiceJob
	if err := json.Unmarshal(j.Data, &d); err != nil {
		return job.Permanent(core.Invalid("job %s: data is not an invoice job: %v", j.ID, err))
	}
	if d.ShiftID == "" || d.OrganizationID == "" {
		return job.Permanent(core.Invalid("job %s: shiftId and organizationId are required", j.ID))
	}
	inv, err := w.store.GetByShift(ctx, d.OrganizationID, d.ShiftID)
	if core.ErrorCode(err) == core.ENotFound {
		inv, err = w.create(ctx, d)
	}
	if err != nil {
		return err
	}
	if err := w.announce(ctx, inv, d.ClientEmail, j.CorrelationID); err != nil {
		return err
	}
	return nil
}

func (w *Worker) create(ctx context.Context, d timesheet.InvoiceJob) (Invoice, error) {
	sh, err := w.shifts.Get(ctx, d.OrganizationID, d.ShiftID)
	if err != nil {
		return Invoice{}, fmt.Errorf("invoice of %s: load shift: %w", d.ShiftID, err)
	}
	if sh.Status != shift.StatusCompleted {
		return Invoice{}, job.Permanent(core.Conflict("invoice of %s: shift is %s, not completed", d.ShiftID, sh.Status))
	}
	wt, err := w.worked.Get(ctx, d.OrganizationID, d.ShiftID)
	if err != nil {
		return Invoice{}, fmt.Errorf("invoice of %s: load worked time: %w", d.ShiftID, err)
	}
	settings, err := w.settings.Get(ctx, d.OrganizationID)
	if err != nil {
		return Invoice{}, fmt.Errorf("invoice of %s: settings: %w", d.ShiftID, err)
	}
	table, err := w.pricing.Effective(ctx, d.OrganizationID, sh.ClientID)
	if err != nil {
		return Invoice{}, fmt.Errorf("invoice of %s: pricing: %w", d.ShiftID, err)
	}
	loc := settings.Location()
	q, err := table.Price(pricing.Input{
		Role: wt.Role, Start: wt.Start, End: wt.End, BreakMinutes: wt.BreakMinutes,
		RegularMinutes: wt.RegularMinutes, Location: loc,
	})
	if err != nil {
		// The role left the pricing table after the shift was scheduled:
		// retrying cannot help until an admin fixes the table and retries
		// the failed job, so fail it at once with the reason.
		return Invoice{}, job.Permanent(fmt.Errorf("invoice of %s: price: %w", d.ShiftID, err))
	}
	seq, err := w.numbers.Reserve(ctx, d.OrganizationID, d.ShiftID)
	if err != nil {
		return Invoice{}, fmt.Errorf("invoice of %s: reserve number: %w", d.ShiftID, err)
	}
	issued := w.now().UTC().Truncate(time.Millisecond)
	inv := Invoice{
		ID: w.newID(), OrganizationID: d.OrganizationID, Number: FormatNumber(settings.InvoicePrefix, seq), Sequence: seq,
		ShiftID: d.ShiftID, ClientID: sh.ClientID, Currency: q.Currency, Lines: q.Lines,
		Subtotal: q.Subtotal, Tax: q.Tax, Total: q.Total, IssuedAt: issued,
		// Terms count calendar days in the organisation's time zone.
		DueAt: issued.In(loc).AddDate(0, 0, settings.InvoiceTermsDays).UTC(),
	}
	if err := inv.Validate(); err != nil {
		return Invoice{}, err
	}
	stored, err := w.store.Create(ctx, inv)
	if err != nil {
		return Invoice{}, fmt.Errorf("invoice of %s: store: %w", d.ShiftID, err)
	}
	return stored, nil
}

// GeneratedEventID is the id of the invoice's invoice.generated event:
// derived from the invoice (a ULID at its issue time), so every re-run of
// the invoice job, and the reconciler, publish the same event id and
// subscribers de-duplicate it (docs/design.md, "Effects exactly once").
func GeneratedEventID(inv Invoice) string {
	return ulid.Derived(inv.IssuedAt, event.InvoiceGenerated+"/"+inv.ID)
}

func (w *Worker) announce(ctx context.Context, inv Invoice, to, correlationID string) error {
	payload, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	id := GeneratedEventID(inv)
	if correlationID == "" {
		correlationID = id
	}
	e := event.Event{
		ID: id, Type: event.InvoiceGenerated, OrganizationID: inv.OrganizationID,
		Time: inv.IssuedAt.UTC(), CorrelationID: correlationID,
		SchemaVersion: event.SchemaVersion, Payload: payload,
	}
	if err := w.pub.Publish(ctx, e); err != nil {
		return fmt.Errorf("invoice %s: publish %s: %w", inv.Number, event.InvoiceGenerated, err)
	}
	if strings.TrimSpace(to) == "" {
		w.log.WarnContext(ctx, "invoice: client has no billing email, not mailed", "invoiceId", inv.ID)
		return nil
	}
	data := EmailJob{InvoiceID: inv.ID, OrganizationID: inv.OrganizationID, To: to}
	if _, err := w.jobs.Add(ctx, job.EmailNotifications, "invoice-email", data,
		job.Options{JobID: MessageKey(inv.ID), CorrelationID: correlationID}); err != nil {
		return fmt.Errorf("invoice %s: add email job: %w", inv.Number, err)
	}
	return nil
}
