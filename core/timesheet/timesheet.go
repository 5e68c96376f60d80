// Package timesheet turns completed shifts into WorkedTime records (one per
// shift) and queues their invoices. Its OnShiftCompleted is the durable
// subscriber of shift.completed.
package timesheet

import (
	"context"
	"fmt"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/shift"
)

// WorkedTime is the timesheet record of one completed shift. The shift id
// is its key, so there is at most one per shift.
type WorkedTime struct {
	ShiftID         string    `json:"shiftId" bson:"_id"`
	OrganizationID  string    `json:"-" bson:"organizationId"`
	ClientID        string    `json:"clientId" bson:"clientId"`
	WorkerID        string    `json:"workerId" bson:"workerId"`
	Role            string    `json:"role" bson:"role"`
	Start           time.Time `json:"start" bson:"start"`
	End             time.Time `json:"end" bson:"end"`
	WorkedMinutes   int       `json:"workedMinutes" bson:"workedMinutes"`
	BreakMinutes    int       `json:"breakMinutes" bson:"breakMinutes"`
	RegularMinutes  int       `json:"regularMinutes" bson:"regularMinutes"`
	OvertimeMinutes int       `json:"overtimeMinutes" bson:"overtimeMinutes"`
	CreatedAt       time.Time `json:"createdAt" bson:"createdAt"`
}

// Validate checks the minutes add up. Errors: core.EInvalid.
func (w WorkedTime) Validate() error {
	if w.ShiftID == "" || w.OrganizationID == "" {
		return core.Invalid("worked time needs shiftId and organizationId")
	}
	if w.WorkedMinutes <= 0 || w.BreakMinutes < 0 || w.RegularMinutes < 0 || w.OvertimeMinutes < 0 ||
		w.RegularMinutes+w.OvertimeMinutes != w.WorkedMinutes {
		return core.Invalid("worked time minutes do not add up: %+v", w)
	}
	if int(w.End.Sub(w.Start)/time.Minute) != w.WorkedMinutes+w.BreakMinutes {
		return core.Invalid("worked plus break minutes must equal end - start")
	}
	return nil
}

// InvoiceJob is the data of an invoice-generation job (job id = shift id).
type InvoiceJob struct {
	ShiftID        string `json:"shiftId"`
	ClientEmail    string `json:"clientEmail"`
	OrganizationID string `json:"organizationId"`
}

// Store persists worked times. Reads are scoped to an organisation.
type Store interface {
	// Upsert inserts w unless a worked time for its shift exists, and
	// returns the stored one either way (first writer wins).
	Upsert(ctx context.Context, w WorkedTime) (WorkedTime, error)
	// Get returns the shift's worked time. Errors: core.ENotFound.
	Get(ctx context.Context, orgID, shiftID string) (WorkedTime, error)
	// List returns worked times of shifts starting in [from, to).
	List(ctx context.Context, orgID string, from, to time.Time, limit int) ([]WorkedTime, error)
}

// Clients reads a client (core/client's Service is one).
type Clients interface {
	Get(ctx context.Context, orgID, id string) (client.Client, error)
}

// Pricing gives the table that decides the overtime split.
type Pricing interface {
	Effective(ctx context.Context, orgID, clientID string) (pricing.Table, error)
}

// Service records worked time.
type Service struct {
	store   Store
	clients Clients
	pricing Pricing
	jobs    job.Adder
	now     func() time.Time
}

// NewService returns the timesheet service.
func NewService(store Store, clients Clients, prices Pricing, jobs job.Adder, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, clients: clients, pricing: prices, jobs: jobs, now: now}
}

// Get returns a shift's worked time. Errors: core.ENotFound.
func (s *Service) Get(ctx context.Context, orgID, shiftID string) (WorkedTime, error) {
	return s.store.Get(ctx, orgID, shiftID)
}

// MaxList bounds list answers.
const MaxList = 1000

// List returns worked times of shifts starting in [from, to).
func (s *Service) List(ctx context.Context, orgID string, from, to time.Time) ([]WorkedTime, error) {
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return nil, core.Invalid("to must be after from")
	}
	return s.store.List(ctx, orgID, from, to, MaxList)
}

// OnShiftCompleted is the event.Handler of shift.completed: it upserts the
// worked time and adds the invoice-generation job with job id = shift id.
// Both steps are idempotent, so a redelivered event changes nothing; an
// error (store or queue down) asks the bus to redeliver.
func (s *Service) OnShiftCompleted(ctx context.Context, e event.Event) error {
	if e.Type != event.ShiftCompleted {
		return nil
	}
	sh, err := shift.FromEvent(e)
	if err != nil {
		return event.Permanent(err) // a bad payload never gets better
	}
	if sh.Status != shift.StatusCompleted {
		return event.Permanent(core.Invalid("event %s: shift %s is %s, not completed", e.ID, sh.ID, sh.Status))
	}
	c, err := s.clients.Get(ctx, sh.OrganizationID, sh.ClientID)
	if err != nil {
		return fmt.Errorf("worked time of %s: client %s: %w", sh.ID, sh.ClientID, err)
	}
	table, err := s.pricing.Effective(ctx, sh.OrganizationID, sh.ClientID)
	if err != nil {
		return fmt.Errorf("worked time of %s: pricing: %w", sh.ID, err)
	}
	split, err := table.SplitMinutes(sh.Start, sh.End, sh.BreakMinutes)
	if err != nil {
		err = fmt.Errorf("worked time of %s: %w", sh.ID, err)
		if core.ErrorCode(err) == core.EInvalid {
			// The shift's own data cannot be split: no retry can fix it,
			// so it goes to the dead letter at once, where it shows.
			return event.Permanent(err)
		}
		return err
	}
	w := WorkedTime{
		ShiftID: sh.ID, OrganizationID: sh.OrganizationID, ClientID: sh.ClientID, WorkerID: sh.WorkerID, Role: sh.Role,
		Start: sh.Start, End: sh.End, WorkedMinutes: split.WorkedMinutes, BreakMinutes: split.BreakMinutes,
		RegularMinutes: split.RegularMinutes, OvertimeMinutes: split.OvertimeMinutes,
		CreatedAt: s.now().UTC().Truncate(time.Millisecond),
	}
	if err := w.Validate(); err != nil {
		return event.Permanent(err)
	}
	if _, err := s.store.Upsert(ctx, w); err != nil {
		return fmt.Errorf("upsert worked time of %s: %w", sh.ID, err)
	}
	return QueueInvoice(ctx, s.jobs, InvoiceJob{ShiftID: sh.ID, ClientEmail: c.BillingEmail, OrganizationID: sh.OrganizationID}, e.CorrelationID)
}

// QueueInvoice adds the shift's invoice-generation job with job id = shift
// id. OnShiftCompleted and the reconciler (core/reconcile) both add it
// through here, so a re-added job is the same job.
func QueueInvoice(ctx context.Context, jobs job.Adder, d InvoiceJob, correlationID string) error {
	if _, err := jobs.Add(ctx, job.InvoiceGeneration, "generate-invoice", d, job.Options{JobID: d.ShiftID, CorrelationID: correlationID}); err != nil {
		return fmt.Errorf("add invoice job of %s: %w", d.ShiftID, err)
	}
	return nil
}
