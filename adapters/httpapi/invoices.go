package httpapi

import (
	"net/http"
)

func (x *DomainRoutes) shiftInvoice(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "shift")
	if err == nil {
		_, err = x.d.Shifts.Get(r.Context(), orgOf(r), id)
	}
	if err != nil {
		WriteError(w, r, err)
		return
	}
	inv, err := x.d.Invoices.GetByShift(r.Context(), orgOf(r), id)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, inv)
}

func (x *DomainRoutes) listInvoices(w http.ResponseWriter, r *http.Request) {
	if err := onlyQuery(r, "from", "to"); err != nil {
		WriteError(w, r, err)
		return
	}
	from, to, err := queryRange(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	is, err := x.d.Invoices.List(r.Context(), orgOf(r), from, to)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, is)
}
