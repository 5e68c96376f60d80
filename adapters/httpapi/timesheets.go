package httpapi

import (
	"net/http"
)

func (x *DomainRoutes) shiftTimesheet(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "shift")
	if err == nil {
		_, err = x.d.Shifts.Get(r.Context(), orgOf(r), id) // another organisation's shift: 404
	}
	if err != nil {
		WriteError(w, r, err)
		return
	}
	wt, err := x.d.Timesheets.Get(r.Context(), orgOf(r), id)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, wt)
}

func (x *DomainRoutes) listTimesheets(w http.ResponseWriter, r *http.Request) {
	if err := onlyQuery(r, "from", "to"); err != nil {
		WriteError(w, r, err)
		return
	}
	from, to, err := queryRange(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	ws, err := x.d.Timesheets.List(r.Context(), orgOf(r), from, to)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, ws)
}
