package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/shiftflow/shiftflow/core"
)

// Timesheets and invoices are read the same way: one per shift (404 until
// written), or listed in a [from, to) range.

func (x *DomainRoutes) shiftTimesheet(w http.ResponseWriter, r *http.Request) {
	serveShiftRecord(x, w, r, x.d.Timesheets.Get)
}

func (x *DomainRoutes) listTimesheets(w http.ResponseWriter, r *http.Request) {
	serveRange(w, r, x.d.Timesheets.List)
}

func (x *DomainRoutes) shiftInvoice(w http.ResponseWriter, r *http.Request) {
	serveShiftRecord(x, w, r, x.d.Invoices.GetByShift)
}

func (x *DomainRoutes) listInvoices(w http.ResponseWriter, r *http.Request) {
	serveRange(w, r, x.d.Invoices.List)
}

// serveShiftRecord answers the record of the shift in the path. The
// record lookup is scoped to the organisation, so a hit needs no other
// read; on a miss the shift is looked up so that another organisation's or
// a missing shift answers 404 "shift not found", and an existing shift
// without its record yet answers the record's own 404.
func serveShiftRecord[T any](x *DomainRoutes, w http.ResponseWriter, r *http.Request, get func(ctx context.Context, org, shiftID string) (T, error)) {
	id, err := pathID(r, "shift")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	rec, err := get(r.Context(), orgOf(r), id)
	if err == nil {
		WriteJSON(w, http.StatusOK, rec)
		return
	}
	if core.ErrorCode(err) == core.ENotFound {
		if _, serr := x.d.Shifts.Get(r.Context(), orgOf(r), id); serr != nil {
			err = serr
		}
	}
	WriteError(w, r, err)
}

// serveRange answers a list filtered by the from/to query parameters only.
func serveRange[T any](w http.ResponseWriter, r *http.Request, list func(ctx context.Context, org string, from, to time.Time) (T, error)) {
	from, to, err := queryRange(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	items, err := list(r.Context(), orgOf(r), from, to)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, items)
}
