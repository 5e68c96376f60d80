// Package reconcile makes the system converge from MongoDB when Redis
// loses data (docs/design.md#11 and "Reconciler"). The relay tracks every
// completed shift in a small pending collection before its event leaves
// the outbox; the Reconciler reads only that collection, checks what each
// tracked shift still lacks (timesheet, invoice, email) once it has been
// pending longer than After, and re-emits that work with the same ids, so
// the idempotent consumers do the rest. A shift whose work is complete is
// no longer tracked.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/timesheet"
)

// Defaults of RECONCILE_INTERVAL and RECONCILE_AFTER.
const (
	DefaultInterval = time.Minute
	DefaultAfter    = 2 * time.Minute
)

// Pending is one completed shift whose work is not known to be done.
type Pending struct {
	ShiftID        string
	OrganizationID string
	// Event is the shift.completed event exactly as the relay published it.
	Event event.Event
	// DueAt is when the reconciler looks at it next.
	DueAt time.Time
}

// Store keeps the pending shifts (adapters/mongodb's ReconcileRepo).
type Store interface {
	// Put inserts or replaces the shift's pending document.
	Put(ctx context.Context, p Pending) error
	// Due returns up to limit pending shifts with DueAt <= now, earliest first.
	Due(ctx context.Context, now time.Time, limit int) ([]Pending, error)
	// Postpone sets a pending shift's DueAt (no-op if it is gone).
	Postpone(ctx context.Context, shiftID string, dueAt time.Time) error
	// Delete removes a pending shift (no-op if it is gone).
	Delete(ctx context.Context, shiftID string) error
}

// WorkedTimes reads timesheets (core/timesheet's Service is one).
type WorkedTimes interface {
	Get(ctx context.Context, orgID, shiftID string) (timesheet.WorkedTime, error)
}

// Invoices reads a shift's invoice (core/invoice's Worker is one).
type Invoices interface {
	GetByShift(ctx context.Context, orgID, shiftID string) (invoice.Invoice, error)
}

// Clients reads a client, for its billing email (core/client's Service).
type Clients interface {
	Get(ctx context.Context, orgID, id string) (client.Client, error)
}

// EmailRecords says whether an invoice's email was sent (the sent-record,
// adapters/mongodb's EmailRepo).
type EmailRecords interface {
	Sent(ctx context.Context, orgID, invoiceID string) (bool, error)
}

// Gate lets at most one reconciliation start per interval across every
// process (adapters/redislimit's Every).
type Gate interface {
	Allow(ctx context.Context) (bool, error)
}

// Jobs adds jobs and looks at one job's state (the job queues are one).
// A re-added job must not be swallowed by the job-id de-duplication window
// when its earlier run completed without the effect (an email whose
// sent-record was deleted after a refusal): such a finished job is
// removed first, which also ends its de-duplication window.
type Jobs interface {
	job.Adder
	GetJob(ctx context.Context, queue, id string) (*job.Job, error)
	Remove(ctx context.Context, queue, id string) error
}

// Deps are the Reconciler's dependencies.
type Deps struct {
	Store       Store
	WorkedTimes WorkedTimes
	Invoices    Invoices
	Clients     Clients
	Emails      EmailRecords
	Publisher   event.Publisher
	Jobs        Jobs
	Gate        Gate // nil: every MaybeRun runs
	// After is how long a completed shift may lack its work before it is
	// re-emitted (RECONCILE_AFTER); Interval how often reconciliation
	// runs inside the drains (RECONCILE_INTERVAL).
	After, Interval time.Duration
	Now             func() time.Time // nil: time.Now
	Log             *slog.Logger     // nil: slog.Default()
}

// Reconciler re-emits the missing work of completed shifts. It is also the
// relay's shift.CompletionTracker.
type Reconciler struct {
	d Deps
	// Batch bounds how many pending shifts one run looks at.
	Batch int
}

var _ shift.CompletionTracker = (*Reconciler)(nil)

// New returns the reconciler.
func New(d Deps) *Reconciler {
	if d.After <= 0 {
		d.After = DefaultAfter
	}
	if d.Interval <= 0 {
		d.Interval = DefaultInterval
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Reconciler{d: d, Batch: 500}
}

// Interval is how often reconciliation runs inside the drains.
func (r *Reconciler) Interval() time.Duration { return r.d.Interval }

// Track records a published shift.completed event as pending, due After
// from now (the relay calls it before dropping the outbox entry). Calling
// it again for the same shift replaces the document.
func (r *Reconciler) Track(ctx context.Context, e event.Event) error {
	if e.Type != event.ShiftCompleted {
		return nil
	}
	sh, err := shift.FromEvent(e)
	if err != nil {
		return err
	}
	p := Pending{ShiftID: sh.ID, OrganizationID: sh.OrganizationID, Event: e, DueAt: r.d.Now().UTC().Add(r.d.After)}
	if err := r.d.Store.Put(ctx, p); err != nil {
		return fmt.Errorf("reconcile: track shift %s: %w", sh.ID, err)
	}
	return nil
}

// Item is one piece of re-emitted work.
type Item struct {
	ShiftID        string `json:"shiftId"`
	OrganizationID string `json:"organizationId"`
	// ID is the re-published event's id or the re-added job's id.
	ID string `json:"id"`
}

// Report says what one run did.
type Report struct {
	// Skipped: another process ran within the interval (MaybeRun only).
	Skipped bool `json:"skipped,omitempty"`
	// Checked counts the due pending shifts looked at.
	Checked int `json:"checked"`
	// Settled counts shifts found complete and no longer tracked.
	Settled int `json:"settled"`
	// Events are re-published shift.completed events (timesheet missing).
	Events []Item `json:"events"`
	// InvoiceJobs are re-added invoice-generation jobs (invoice missing).
	InvoiceJobs []Item `json:"invoiceJobs"`
	// EmailJobs are re-added email-notifications jobs (email not sent).
	EmailJobs []Item `json:"emailJobs"`
	// Errors of single shifts; they stay pending and are tried next run.
	Errors []string `json:"errors,omitempty"`
}

// Reemitted counts the re-emitted work.
func (rep Report) Reemitted() int { return len(rep.Events) + len(rep.InvoiceJobs) + len(rep.EmailJobs) }

// MaybeRun runs unless another run started, in any process, within the
// interval (the drains call it). A gate error is returned and nothing runs.
func (r *Reconciler) MaybeRun(ctx context.Context) (Report, error) {
	if r.d.Gate != nil {
		ok, err := r.d.Gate.Allow(ctx)
		if err != nil {
			return Report{}, fmt.Errorf("reconcile: gate: %w", err)
		}
		if !ok {
			return Report{Skipped: true}, nil
		}
	}
	return r.Run(ctx)
}

// Run looks at up to Batch pending shifts that are due and re-emits what
// each lacks. Errors of single shifts are in the report and joined into
// the error; the other shifts are still handled.
func (r *Reconciler) Run(ctx context.Context) (Report, error) {
	rep := Report{Events: []Item{}, InvoiceJobs: []Item{}, EmailJobs: []Item{}}
	due, err := r.d.Store.Due(ctx, r.d.Now().UTC(), r.Batch)
	if err != nil {
		return rep, fmt.Errorf("reconcile: list due shifts: %w", err)
	}
	var errs []error
	for _, p := range due {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		rep.Checked++
		if err := r.one(ctx, p, &rep); err != nil {
			err = fmt.Errorf("reconcile shift %s: %w", p.ShiftID, err)
			rep.Errors = append(rep.Errors, err.Error())
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// one handles one pending shift: the first missing step is re-emitted and
// the shift postponed by After, giving the consumers time; a shift with
// all its work done is settled.
func (r *Reconciler) one(ctx context.Context, p Pending, rep *Report) error {
	item, kind, err := r.reemit(ctx, p)
	if err != nil {
		return err
	}
	switch kind {
	case settled:
		if err := r.d.Store.Delete(ctx, p.ShiftID); err != nil {
			return fmt.Errorf("settle: %w", err)
		}
		rep.Settled++
		return nil
	case reEvent:
		rep.Events = append(rep.Events, item)
	case reInvoice:
		rep.InvoiceJobs = append(rep.InvoiceJobs, item)
	case reEmail:
		rep.EmailJobs = append(rep.EmailJobs, item)
	}
	r.d.Log.InfoContext(ctx, "reconcile: re-emitted missing work", "shiftId", p.ShiftID, "what", kind, "id", item.ID)
	if err := r.d.Store.Postpone(ctx, p.ShiftID, r.d.Now().UTC().Add(r.d.After)); err != nil {
		return fmt.Errorf("postpone: %w", err)
	}
	return nil
}

type outcome string

const (
	settled   outcome = "settled"
	reEvent   outcome = "event"
	reInvoice outcome = "invoice-job"
	reEmail   outcome = "email-job"
)

// reemit decides what the shift lacks, in the order the flow produces it,
// and re-emits the first missing piece with its original id.
func (r *Reconciler) reemit(ctx context.Context, p Pending) (Item, outcome, error) {
	org, id := p.OrganizationID, p.ShiftID
	item := Item{ShiftID: id, OrganizationID: org}
	if _, err := r.d.WorkedTimes.Get(ctx, org, id); core.ErrorCode(err) == core.ENotFound {
		// The same event id: consumers that saw it treat it as a repeat.
		if err := r.d.Publisher.Publish(ctx, p.Event); err != nil {
			return item, "", fmt.Errorf("re-publish %s: %w", p.Event.ID, err)
		}
		item.ID = p.Event.ID
		return item, reEvent, nil
	} else if err != nil {
		return item, "", fmt.Errorf("read timesheet: %w", err)
	}
	sh, err := shift.FromEvent(p.Event)
	if err != nil {
		return item, "", err
	}
	c, err := r.d.Clients.Get(ctx, org, sh.ClientID)
	if err != nil {
		return item, "", fmt.Errorf("read client %s: %w", sh.ClientID, err)
	}
	inv, err := r.d.Invoices.GetByShift(ctx, org, id)
	if core.ErrorCode(err) == core.ENotFound {
		if err := r.clearFinished(ctx, job.InvoiceGeneration, id); err != nil {
			return item, "", err
		}
		d := timesheet.InvoiceJob{ShiftID: id, ClientEmail: c.BillingEmail, OrganizationID: org}
		if err := timesheet.QueueInvoice(ctx, r.d.Jobs, d, p.Event.CorrelationID); err != nil {
			return item, "", err
		}
		item.ID = id
		return item, reInvoice, nil
	} else if err != nil {
		return item, "", fmt.Errorf("read invoice: %w", err)
	}
	if strings.TrimSpace(c.BillingEmail) == "" {
		return item, settled, nil // nothing to mail (the invoice worker logs it)
	}
	sent, err := r.d.Emails.Sent(ctx, org, inv.ID)
	if err != nil {
		return item, "", fmt.Errorf("read email record of invoice %s: %w", inv.ID, err)
	}
	if sent {
		return item, settled, nil
	}
	if err := r.clearFinished(ctx, job.EmailNotifications, invoice.MessageKey(inv.ID)); err != nil {
		return item, "", err
	}
	d := invoice.EmailJob{InvoiceID: inv.ID, OrganizationID: org, To: c.BillingEmail}
	if err := invoice.QueueEmail(ctx, r.d.Jobs, d, p.Event.CorrelationID); err != nil {
		return item, "", err
	}
	item.ID = invoice.MessageKey(inv.ID)
	return item, reEmail, nil
}

// clearFinished removes the job id's finished run so the re-add that
// follows is a new job: a completed job (its effect is missing all the
// same), or an id whose job is gone but whose de-duplication window is not.
// A waiting, delayed or active job is left to finish; a failed one stays
// failed for an operator to see (the re-add is then a no-op).
func (r *Reconciler) clearFinished(ctx context.Context, queue, id string) error {
	j, err := r.d.Jobs.GetJob(ctx, queue, id)
	switch {
	case core.ErrorCode(err) == core.ENotFound:
	case err != nil:
		return fmt.Errorf("read job %s of %s: %w", id, queue, err)
	case j.State != job.StateCompleted:
		return nil
	}
	if err := r.d.Jobs.Remove(ctx, queue, id); err != nil && core.ErrorCode(err) != core.ENotFound {
		return fmt.Errorf("remove finished job %s of %s: %w", id, queue, err)
	}
	return nil
}

// With wraps a drainer so that every drain first runs MaybeRun, and Run
// also calls it periodically (docs/design.md, "Reconciler"). Errors are
// logged and never stop the drain.
func With(d event.Drainer, r *Reconciler) event.Drainer {
	// Run tries every quarter interval: the gate lets one try per interval
	// through across all processes, so the pause between runs stays close
	// to the interval even when the gate's expiry and a tick nearly
	// coincide.
	return event.Before(d, max(r.d.Interval/4, 10*time.Millisecond), r.maybeInDrain)
}

// maybeInDrain runs a gated reconciliation within a share of ctx's
// remaining time, so a serverless drain keeps most of its deadline for its
// work.
func (r *Reconciler) maybeInDrain(ctx context.Context) {
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/4))
		defer cancel()
	}
	rep, err := r.MaybeRun(ctx)
	if err != nil {
		r.d.Log.WarnContext(ctx, "reconcile: run failed", "err", err, "reemitted", rep.Reemitted())
		return
	}
	if !rep.Skipped && (rep.Reemitted() > 0 || rep.Settled > 0) {
		r.d.Log.InfoContext(ctx, "reconcile: run", "checked", rep.Checked, "settled", rep.Settled,
			"events", len(rep.Events), "invoiceJobs", len(rep.InvoiceJobs), "emailJobs", len(rep.EmailJobs))
	}
}
