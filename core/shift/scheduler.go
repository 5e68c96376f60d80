package shift

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/ulid"
)

// Scheduler is the shift service.
type Scheduler struct {
	store   Store
	clients ClientLookup
	pricing PricingLookup
	relay   *Relay
	now     func() time.Time
	newID   func() string
	log     *slog.Logger
}

// NewScheduler returns the scheduler. pub publishes the events (through the
// Relay, right after each write); now may be nil (time.Now).
func NewScheduler(store Store, clients ClientLookup, prices PricingLookup, pub event.Publisher, now func() time.Time) *Scheduler {
	if now == nil {
		now = time.Now
	}
	return &Scheduler{
		store: store, clients: clients, pricing: prices, relay: NewRelay(store, pub, nil),
		now: now, newID: ulid.New, log: slog.Default(),
	}
}

// Relay returns the scheduler's relay, for drains to flush.
func (s *Scheduler) Relay() *Relay { return s.relay }

// Input schedules a shift.
type Input struct {
	ClientID     string
	WorkerID     string
	Role         string
	Start, End   time.Time
	BreakMinutes int
	Notes        string
}

// Patch changes a scheduled shift; nil fields stay as they are.
type Patch struct {
	ClientID     *string
	WorkerID     *string
	Role         *string
	Start, End   *time.Time
	BreakMinutes *int
	Notes        *string
}

// Completion completes a shift; nil fields take the scheduled values.
type Completion struct {
	ActualStart  *time.Time
	ActualEnd    *time.Time
	BreakMinutes *int
}

// checkRefs verifies that the client is the organisation's and the role is
// priced for it. Both are input errors of the caller: core.EInvalid.
func (s *Scheduler) checkRefs(ctx context.Context, sh Shift) error {
	if err := s.clients.Exists(ctx, sh.OrganizationID, sh.ClientID); err != nil {
		if core.ErrorCode(err) == core.ENotFound {
			return core.Invalid("clientId %q is not a client of this organisation", sh.ClientID)
		}
		return fmt.Errorf("check client %s: %w", sh.ClientID, err)
	}
	t, err := s.pricing.Effective(ctx, sh.OrganizationID, sh.ClientID)
	if err != nil {
		if core.ErrorCode(err) == core.ENotFound {
			return core.Invalid("role %q cannot be priced: the organisation has no pricing table yet (PUT /pricing)", sh.Role)
		}
		return fmt.Errorf("check role %s: %w", sh.Role, err)
	}
	if !t.HasRole(sh.Role) {
		return core.Invalid("role %q is not in the pricing table; known roles: %v", sh.Role, t.RoleNames())
	}
	return nil
}

// Schedule validates and stores a new shift and emits shift.created.
// Errors: core.EInvalid.
func (s *Scheduler) Schedule(ctx context.Context, orgID string, in Input) (Shift, error) {
	now := s.now().UTC()
	sh := Shift{
		ID: s.newID(), OrganizationID: orgID, ClientID: in.ClientID, WorkerID: in.WorkerID, Role: in.Role,
		Start: in.Start.UTC(), End: in.End.UTC(), BreakMinutes: in.BreakMinutes, Notes: in.Notes,
		Status: StatusScheduled, Version: 1, CreatedAt: now.Truncate(time.Millisecond), UpdatedAt: now.Truncate(time.Millisecond),
	}
	if err := sh.Validate(); err != nil {
		return Shift{}, err
	}
	if err := s.checkRefs(ctx, sh); err != nil {
		return Shift{}, err
	}
	ev, err := newEvent(s.newID(), event.ShiftCreated, sh, now)
	if err != nil {
		return Shift{}, err
	}
	if err := s.store.Insert(ctx, sh, ev); err != nil {
		return Shift{}, fmt.Errorf("schedule shift: %w", err)
	}
	s.publishAfterWrite(ctx, sh.ID)
	return sh, nil
}

// Get returns a shift. Errors: core.ENotFound.
func (s *Scheduler) Get(ctx context.Context, orgID, id string) (Shift, error) {
	return s.store.Get(ctx, orgID, id)
}

// MaxList bounds list answers.
const MaxList = 1000

// List returns the organisation's shifts by start time.
func (s *Scheduler) List(ctx context.Context, orgID string, f Filter) ([]Shift, error) {
	if f.Status != "" && f.Status != StatusScheduled && f.Status != StatusCompleted && f.Status != StatusCancelled {
		return nil, core.Invalid("status must be scheduled, completed or cancelled")
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		return nil, core.Invalid("to must be after from")
	}
	if f.Limit <= 0 || f.Limit > MaxList {
		f.Limit = MaxList
	}
	return s.store.List(ctx, orgID, f)
}

// Update changes a scheduled shift and emits shift.updated. A patch that
// changes nothing returns the shift without an event.
// Errors: core.ENotFound, core.EInvalid, core.EConflict (not scheduled, or
// changed concurrently).
func (s *Scheduler) Update(ctx context.Context, orgID, id string, p Patch) (Shift, error) {
	cur, err := s.store.Get(ctx, orgID, id)
	if err != nil {
		return Shift{}, err
	}
	if cur.Status != StatusScheduled {
		return Shift{}, core.Conflict("shift %s is %s; only a scheduled shift can be updated", id, cur.Status)
	}
	next := cur
	if p.ClientID != nil {
		next.ClientID = *p.ClientID
	}
	if p.WorkerID != nil {
		next.WorkerID = *p.WorkerID
	}
	if p.Role != nil {
		next.Role = *p.Role
	}
	if p.Start != nil {
		next.Start = p.Start.UTC()
	}
	if p.End != nil {
		next.End = p.End.UTC()
	}
	if p.BreakMinutes != nil {
		next.BreakMinutes = *p.BreakMinutes
	}
	if p.Notes != nil {
		next.Notes = *p.Notes
	}
	if err := next.Validate(); err != nil {
		return Shift{}, err
	}
	if sameSchedule(cur, next) {
		return cur, nil
	}
	if next.ClientID != cur.ClientID || next.Role != cur.Role {
		if err := s.checkRefs(ctx, next); err != nil {
			return Shift{}, err
		}
	}
	return s.write(ctx, cur, next, event.ShiftUpdated)
}

// Complete completes a scheduled shift with its actual times (defaults: the
// scheduled ones) and emits shift.completed. Completing a completed shift
// with the same data returns it unchanged, without a second event; that
// holds for concurrent identical completes too: the ones that lose the
// version race re-read the shift and answer the stored completion.
// Errors: core.ENotFound, core.EInvalid, core.EConflict.
func (s *Scheduler) Complete(ctx context.Context, orgID, id string, c Completion) (Shift, error) {
	for attempt := 1; ; attempt++ {
		cur, err := s.store.Get(ctx, orgID, id)
		if err != nil {
			return Shift{}, err
		}
		next, done, err := completion(cur, c)
		if err != nil || done {
			return next, err
		}
		out, err := s.write(ctx, cur, next, event.ShiftCompleted)
		// A version conflict means another request changed the shift
		// since it was read: decide again on what is stored now (the
		// same completion answers 200, other data 409, a still scheduled
		// shift is written again).
		if core.ErrorCode(err) == core.EConflict && attempt < maxCompleteAttempts {
			continue
		}
		return out, err
	}
}

// maxCompleteAttempts bounds Complete's re-reads after version conflicts;
// each conflict means another writer succeeded, so the bound is only hit
// under a storm of different changes to one shift.
const maxCompleteAttempts = 5

// completion applies c to cur. done reports that nothing is to be written:
// the shift is already completed with the same data (returned as stored).
func completion(cur Shift, c Completion) (next Shift, done bool, err error) {
	next = cur
	if c.ActualStart != nil {
		next.Start = c.ActualStart.UTC()
	}
	if c.ActualEnd != nil {
		next.End = c.ActualEnd.UTC()
	}
	if c.BreakMinutes != nil {
		next.BreakMinutes = *c.BreakMinutes
	}
	next.Status = StatusCompleted
	if err := next.Validate(); err != nil {
		return Shift{}, false, err
	}
	switch cur.Status {
	case StatusScheduled:
		return next, false, nil
	case StatusCompleted:
		if sameSchedule(cur, next) {
			return cur, true, nil
		}
		return Shift{}, false, core.Conflict("shift %s is already completed with other times", cur.ID)
	default:
		return Shift{}, false, core.Conflict("shift %s is %s; only a scheduled shift can be completed", cur.ID, cur.Status)
	}
}

// Cancel cancels a scheduled shift and emits shift.cancelled.
// Errors: core.ENotFound, core.EConflict.
func (s *Scheduler) Cancel(ctx context.Context, orgID, id, reason string) (Shift, error) {
	if utf8.RuneCountInString(reason) > MaxCancelReason {
		return Shift{}, core.Invalid("reason must be at most %d characters", MaxCancelReason)
	}
	cur, err := s.store.Get(ctx, orgID, id)
	if err != nil {
		return Shift{}, err
	}
	if cur.Status != StatusScheduled {
		return Shift{}, core.Conflict("shift %s is %s; only a scheduled shift can be cancelled", id, cur.Status)
	}
	next := cur
	next.Status = StatusCancelled
	next.CancelReason = reason
	if err := next.Validate(); err != nil {
		return Shift{}, err
	}
	return s.write(ctx, cur, next, event.ShiftCancelled)
}

func (s *Scheduler) write(ctx context.Context, cur, next Shift, typ string) (Shift, error) {
	now := s.now().UTC()
	next.Version = cur.Version + 1
	next.UpdatedAt = now.Truncate(time.Millisecond)
	ev, err := newEvent(s.newID(), typ, next, now)
	if err != nil {
		return Shift{}, err
	}
	if err := s.store.Update(ctx, next, cur.Version, ev); err != nil {
		return Shift{}, fmt.Errorf("%s %s: %w", typ, cur.ID, err)
	}
	s.publishAfterWrite(ctx, next.ID)
	return next, nil
}

// publishAfterWrite runs the relay for the shift just written. A failure
// is logged and not returned: the change is committed and its event waits
// in the outbox for the next relay run (every drain runs one).
func (s *Scheduler) publishAfterWrite(ctx context.Context, shiftID string) {
	if _, err := s.relay.FlushShift(ctx, shiftID); err != nil {
		s.log.WarnContext(ctx, "shift: event left in outbox for the next relay run", "shiftId", shiftID, "err", err)
	}
}

func sameSchedule(a, b Shift) bool {
	return a.ClientID == b.ClientID && a.WorkerID == b.WorkerID && a.Role == b.Role &&
		a.Start.Equal(b.Start) && a.End.Equal(b.End) && a.BreakMinutes == b.BreakMinutes &&
		a.Notes == b.Notes && a.Status == b.Status
}
