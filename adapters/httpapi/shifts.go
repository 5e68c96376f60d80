package httpapi

import (
	"net/http"
	"time"

	"github.com/shiftflow/shiftflow/core/shift"
)

// ShiftInput is the body of POST /shifts.
type ShiftInput struct {
	ClientID     string    `json:"clientId" required:"true"`
	WorkerID     string    `json:"workerId" required:"true"`
	Role         string    `json:"role" required:"true"`
	Start        time.Time `json:"start" required:"true"`
	End          time.Time `json:"end" required:"true"`
	BreakMinutes int       `json:"breakMinutes"`
	Notes        string    `json:"notes"`
}

// ShiftPatch is the body of PATCH /shifts/{id}: fields present change.
type ShiftPatch struct {
	ClientID     *string    `json:"clientId"`
	WorkerID     *string    `json:"workerId"`
	Role         *string    `json:"role"`
	Start        *time.Time `json:"start"`
	End          *time.Time `json:"end"`
	BreakMinutes *int       `json:"breakMinutes"`
	Notes        *string    `json:"notes"`
}

// CompleteInput is the body of POST /shifts/{id}/complete, all optional.
type CompleteInput struct {
	ActualStart  *time.Time `json:"actualStart"`
	ActualEnd    *time.Time `json:"actualEnd"`
	BreakMinutes *int       `json:"breakMinutes"`
}

// CancelInput is the optional body of POST /shifts/{id}/cancel.
type CancelInput struct {
	Reason string `json:"reason"`
}

func (x *DomainRoutes) scheduleShift(w http.ResponseWriter, r *http.Request) {
	var in ShiftInput
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, r, err)
		return
	}
	s, err := x.d.Shifts.Schedule(r.Context(), orgOf(r), shift.Input(in))
	if err != nil {
		WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", "/shifts/"+s.ID)
	WriteJSON(w, http.StatusCreated, s)
}

func (x *DomainRoutes) listShifts(w http.ResponseWriter, r *http.Request) {
	from, to, err := queryRange(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	ss, err := x.d.Shifts.List(r.Context(), orgOf(r), shift.Filter{From: from, To: to, Status: r.URL.Query().Get("status")})
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, ss)
}

func (x *DomainRoutes) getShift(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "shift")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	s, err := x.d.Shifts.Get(r.Context(), orgOf(r), id)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, s)
}

func (x *DomainRoutes) updateShift(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "shift")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	var p ShiftPatch
	if err := DecodeJSON(r, &p); err != nil {
		WriteError(w, r, err)
		return
	}
	s, err := x.d.Shifts.Update(r.Context(), orgOf(r), id, shift.Patch(p))
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, s)
}

func (x *DomainRoutes) completeShift(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "shift")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	var in CompleteInput
	if err := decodeOptional(r, &in); err != nil {
		WriteError(w, r, err)
		return
	}
	s, err := x.d.Shifts.Complete(r.Context(), orgOf(r), id, shift.Completion(in))
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, s)
}

func (x *DomainRoutes) cancelShift(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "shift")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	var in CancelInput
	if err := decodeOptional(r, &in); err != nil {
		WriteError(w, r, err)
		return
	}
	s, err := x.d.Shifts.Cancel(r.Context(), orgOf(r), id, in.Reason)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, s)
}
