// Package shift schedules shifts and moves them through their states:
// scheduled -> completed | cancelled. Every change is written together with
// its event in one single-document update (the shift's outbox, docs/design.md
// decision 4) and a Relay publishes the outbox afterwards.
package shift

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/pricing"
)

// Statuses.
const (
	StatusScheduled = "scheduled"
	StatusCompleted = "completed"
	StatusCancelled = "cancelled"
)

// Limits on free text.
const (
	MaxNotes        = 2000
	MaxWorkerID     = 128
	MaxCancelReason = 500
)

// The times a shift may have: whole years 2000 to 2100 in UTC. Nothing a
// staffing agency bills lies outside, and the bounds keep every minute
// count and every time computation far from overflow.
var (
	EarliestTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	LatestTime   = time.Date(2101, 1, 1, 0, 0, 0, 0, time.UTC) // exclusive
)

// MaxShift is the longest shift.
const MaxShift = 24 * time.Hour

// Shift is one shift. JSON names are the API's and the events' payload.
type Shift struct {
	ID             string    `json:"id" bson:"_id"`
	OrganizationID string    `json:"organizationId" bson:"organizationId"`
	ClientID       string    `json:"clientId" bson:"clientId"`
	WorkerID       string    `json:"workerId" bson:"workerId"`
	Role           string    `json:"role" bson:"role"`
	Start          time.Time `json:"start" bson:"start"`
	End            time.Time `json:"end" bson:"end"`
	BreakMinutes   int       `json:"breakMinutes" bson:"breakMinutes"`
	Notes          string    `json:"notes" bson:"notes"`
	Status         string    `json:"status" bson:"status"`
	// CancelReason is what the canceller said (optional, cancelled shifts only).
	CancelReason string `json:"cancelReason,omitempty" bson:"cancelReason,omitempty"`
	// Version increases with every change; writes are conditioned on it.
	Version   int64     `json:"version" bson:"version"`
	CreatedAt time.Time `json:"createdAt" bson:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt" bson:"updatedAt"`
}

// Validate checks the shift's own fields (not that its client and role
// exist, which needs the stores). Errors: core.EInvalid.
func (s Shift) Validate() error {
	if s.ClientID == "" {
		return core.Invalid("clientId is required")
	}
	if s.WorkerID == "" || utf8.RuneCountInString(s.WorkerID) > MaxWorkerID {
		return core.Invalid("workerId is required, at most %d characters", MaxWorkerID)
	}
	if hasLineBreak(s.WorkerID) {
		return core.Invalid("workerId must be one line")
	}
	if s.Role == "" {
		return core.Invalid("role is required")
	}
	if s.Start.IsZero() || s.End.IsZero() {
		return core.Invalid("start and end are required, RFC 3339 times")
	}
	if s.Start.Second() != 0 || s.Start.Nanosecond() != 0 || s.End.Second() != 0 || s.End.Nanosecond() != 0 {
		return core.Invalid("start and end must be whole minutes (seconds 00)")
	}
	if err := inRange("start", s.Start); err != nil {
		return err
	}
	if err := inRange("end", s.End); err != nil {
		return err
	}
	if !s.End.After(s.Start) {
		return core.Invalid("end must be after start")
	}
	if s.End.Sub(s.Start) > MaxShift {
		return core.Invalid("a shift lasts at most 24 hours")
	}
	if s.BreakMinutes < 0 {
		return core.Invalid("breakMinutes must not be negative")
	}
	// Compared in minutes: breakMinutes × time.Minute overflows for huge
	// values and would wrap to something that passes.
	if int64(s.BreakMinutes) >= int64(s.End.Sub(s.Start)/time.Minute) {
		return core.Invalid("breakMinutes must be shorter than the shift")
	}
	if utf8.RuneCountInString(s.Notes) > MaxNotes {
		return core.Invalid("notes must be at most %d characters", MaxNotes)
	}
	if utf8.RuneCountInString(s.CancelReason) > MaxCancelReason {
		return core.Invalid("reason must be at most %d characters", MaxCancelReason)
	}
	switch s.Status {
	case StatusScheduled, StatusCompleted, StatusCancelled:
	default:
		return core.Invalid("status %q is not scheduled, completed or cancelled", s.Status)
	}
	return nil
}

func inRange(field string, t time.Time) error {
	if t.Before(EarliestTime) || !t.Before(LatestTime) {
		return core.Invalid("%s must lie in the years 2000 to 2100 (UTC)", field)
	}
	return nil
}

func hasLineBreak(s string) bool { return strings.ContainsAny(s, "\n\r\t") }

// Filter selects shifts of an organisation: those starting in [From, To)
// (zero means unbounded) with the status (empty means any).
type Filter struct {
	From, To time.Time
	Status   string
	Limit    int
}

// Store persists shifts with their outbox. Every read is scoped to an
// organisation; another organisation's shift is core.ENotFound.
type Store interface {
	// Insert stores a new shift with ev in its outbox.
	Insert(ctx context.Context, s Shift, ev event.Event) error
	// Update replaces the shift's fields and appends ev to its outbox in
	// one single-document update, only if the stored version is
	// prevVersion (s.Version is the new one). core.EConflict otherwise.
	Update(ctx context.Context, s Shift, prevVersion int64, ev event.Event) error
	Get(ctx context.Context, orgID, id string) (Shift, error)
	List(ctx context.Context, orgID string, f Filter) ([]Shift, error)
	OutboxStore
}

// OutboxStore is what the Relay needs.
type OutboxStore interface {
	// Outbox returns the pending events of one shift, oldest first.
	Outbox(ctx context.Context, shiftID string) ([]event.Event, error)
	// PendingShifts returns ids of shifts with pending events.
	PendingShifts(ctx context.Context, limit int) ([]string, error)
	// RemoveFromOutbox removes exactly the events with these ids, keeping
	// any appended since they were read.
	RemoveFromOutbox(ctx context.Context, shiftID string, eventIDs []string) error
}

// ClientLookup answers core.ENotFound for a client that is not the
// organisation's. core/client's Service is one.
type ClientLookup interface {
	Exists(ctx context.Context, orgID, clientID string) error
}

// PricingLookup returns the table that prices a client's shifts.
// core/pricing's Service is one.
type PricingLookup interface {
	Effective(ctx context.Context, orgID, clientID string) (pricing.Table, error)
}

// newEvent builds the event of a change; its payload is the shift as the
// API shows it. Time is cut to milliseconds, the precision MongoDB keeps,
// so that the relay publishes exactly what was written.
func newEvent(id, typ string, s Shift, now time.Time) (event.Event, error) {
	payload, err := json.Marshal(s)
	if err != nil {
		return event.Event{}, err
	}
	return event.Event{
		ID:             id,
		Type:           typ,
		OrganizationID: s.OrganizationID,
		Time:           now.UTC().Truncate(time.Millisecond),
		CorrelationID:  id,
		SchemaVersion:  event.SchemaVersion,
		Payload:        payload,
	}, nil
}

// FromEvent decodes the shift carried by a shift.* event.
func FromEvent(e event.Event) (Shift, error) {
	var s Shift
	if err := json.Unmarshal(e.Payload, &s); err != nil {
		return Shift{}, core.Invalid("event %s: payload is not a shift: %v", e.ID, err)
	}
	if s.ID == "" || s.OrganizationID == "" {
		return Shift{}, core.Invalid("event %s: shift payload without id or organizationId", e.ID)
	}
	if s.OrganizationID != e.OrganizationID {
		return Shift{}, core.Invalid("event %s: payload organisation differs from the envelope's", e.ID)
	}
	return s, nil
}
