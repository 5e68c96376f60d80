package httpapi

import (
	"net/http"
)

// ClientInput is the body of POST /clients.
type ClientInput struct {
	Name         string `json:"name" required:"true"`
	BillingEmail string `json:"billingEmail" required:"true"`
}

func (x *DomainRoutes) createClient(w http.ResponseWriter, r *http.Request) {
	var in ClientInput
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, r, err)
		return
	}
	c, err := x.d.Clients.Create(r.Context(), orgOf(r), in.Name, in.BillingEmail)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", "/clients/"+c.ID)
	WriteJSON(w, http.StatusCreated, c)
}

func (x *DomainRoutes) listClients(w http.ResponseWriter, r *http.Request) {
	cs, err := x.d.Clients.List(r.Context(), orgOf(r))
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, cs)
}

func (x *DomainRoutes) getClient(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "client")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	c, err := x.d.Clients.Get(r.Context(), orgOf(r), id)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, c)
}
