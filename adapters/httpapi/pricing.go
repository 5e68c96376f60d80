package httpapi

import (
	"net/http"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/ulid"
)

// clientQuery returns ?clientId=, which selects a client's override.
func clientQuery(r *http.Request) (string, error) {
	id := r.URL.Query().Get("clientId")
	if id != "" && !ulid.Valid(id) {
		return "", core.NotFound("client %q not found", id)
	}
	return id, nil
}

func (x *DomainRoutes) getPricing(w http.ResponseWriter, r *http.Request) {
	clientID, err := clientQuery(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	if clientID == "" {
		t, err := x.d.Pricing.Table(r.Context(), orgOf(r))
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, t)
		return
	}
	if err := x.d.Clients.Exists(r.Context(), orgOf(r), clientID); err != nil {
		WriteError(w, r, err)
		return
	}
	o, err := x.d.Pricing.Override(r.Context(), orgOf(r), clientID)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, o)
}

func (x *DomainRoutes) putPricing(w http.ResponseWriter, r *http.Request) {
	clientID, err := clientQuery(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	if clientID == "" {
		var t pricing.Table
		if err := DecodeJSON(r, &t); err != nil {
			WriteError(w, r, err)
			return
		}
		saved, err := x.d.Pricing.PutTable(r.Context(), orgOf(r), t)
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, saved)
		return
	}
	var o pricing.Override
	if err := DecodeJSON(r, &o); err != nil {
		WriteError(w, r, err)
		return
	}
	saved, err := x.d.Pricing.PutOverride(r.Context(), orgOf(r), clientID, o)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, saved)
}
