package httpapi

import (
	"net/http"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/org"
)

// SettingsInput is the body of PUT /settings; every field is required.
type SettingsInput struct {
	TimeZone         *string `json:"timeZone"`
	Currency         *string `json:"currency"`
	InvoiceTermsDays *int    `json:"invoiceTermsDays"`
	InvoicePrefix    *string `json:"invoicePrefix"`
}

func (x *DomainRoutes) getSettings(w http.ResponseWriter, r *http.Request) {
	s, err := x.d.Settings.Get(r.Context(), orgOf(r))
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, s)
}

func (x *DomainRoutes) putSettings(w http.ResponseWriter, r *http.Request) {
	var in SettingsInput
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, r, err)
		return
	}
	if in.TimeZone == nil || in.Currency == nil || in.InvoiceTermsDays == nil || in.InvoicePrefix == nil {
		WriteError(w, r, core.Invalid("timeZone, currency, invoiceTermsDays and invoicePrefix are all required"))
		return
	}
	s, err := x.d.Settings.Put(r.Context(), orgOf(r), org.Settings{
		TimeZone: *in.TimeZone, Currency: *in.Currency, InvoiceTermsDays: *in.InvoiceTermsDays, InvoicePrefix: *in.InvoicePrefix,
	})
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, s)
}
