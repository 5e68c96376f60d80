package httpapi

// The domain routes: clients, shifts, timesheets, invoices, pricing and
// settings. Every route requires a token (Authenticator.Require) and acts on
// the principal's organisation only; ids of another organisation answer
// 404 exactly like missing ones. Handlers are thin: decode strictly, call
// the service, map the error, encode. openapi.yaml describes the same
// routes, and a test keeps the two in step.

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/org"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/timesheet"
	"github.com/shiftflow/shiftflow/core/ulid"
)

// DomainDeps are the services behind the domain routes.
type DomainDeps struct {
	Auth       *Authenticator
	Clients    *client.Service
	Shifts     *shift.Scheduler
	Timesheets *timesheet.Service
	Invoices   *invoice.Worker
	Pricing    *pricing.Service
	Settings   *org.Service
}

// DomainRoutes serves the domain API.
type DomainRoutes struct{ d DomainDeps }

// NewDomainRoutes returns the routes; Register mounts them.
func NewDomainRoutes(d DomainDeps) *DomainRoutes { return &DomainRoutes{d: d} }

// DomainRoute is one method and path pattern with the permission it requires.
type DomainRoute struct {
	Method     string
	Path       string
	Permission auth.Permission
	Handler    http.HandlerFunc
}

// Routes lists every domain route (Register mounts exactly these).
func (x *DomainRoutes) Routes() []DomainRoute {
	return []DomainRoute{
		{"POST", "/clients", auth.PermWriteClients, x.createClient},
		{"GET", "/clients", auth.PermRead, x.listClients},
		{"GET", "/clients/{id}", auth.PermRead, x.getClient},
		{"POST", "/shifts", auth.PermWriteShifts, x.scheduleShift},
		{"GET", "/shifts", auth.PermRead, x.listShifts},
		{"GET", "/shifts/{id}", auth.PermRead, x.getShift},
		{"PATCH", "/shifts/{id}", auth.PermWriteShifts, x.updateShift},
		{"POST", "/shifts/{id}/complete", auth.PermWriteShifts, x.completeShift},
		{"POST", "/shifts/{id}/cancel", auth.PermWriteShifts, x.cancelShift},
		{"GET", "/shifts/{id}/timesheet", auth.PermRead, x.shiftTimesheet},
		{"GET", "/shifts/{id}/invoice", auth.PermRead, x.shiftInvoice},
		{"GET", "/timesheets", auth.PermRead, x.listTimesheets},
		{"GET", "/invoices", auth.PermRead, x.listInvoices},
		{"GET", "/pricing", auth.PermRead, x.getPricing},
		{"PUT", "/pricing", auth.PermWritePricing, x.putPricing},
		{"GET", "/settings", auth.PermRead, x.getSettings},
		{"PUT", "/settings", auth.PermWriteSettings, x.putSettings},
	}
}

// Register mounts the routes on mux, each behind the authenticator.
func (x *DomainRoutes) Register(mux *http.ServeMux) {
	for _, rt := range x.Routes() {
		mux.Handle(rt.Method+" "+rt.Path, x.d.Auth.Require(rt.Permission, rt.Handler))
	}
}

// orgOf is the organisation every handler acts on. Require guarantees a
// principal; an empty organisation (impossible there) matches nothing.
func orgOf(r *http.Request) string { return PrincipalOf(r).OrganizationID }

// pathID returns the {id} of the path. An id that cannot exist answers
// 404 without a database round trip.
func pathID(r *http.Request, what string) (string, error) {
	id := r.PathValue("id")
	if !ulid.Valid(id) {
		return "", core.NotFound("%s %q not found", what, id)
	}
	return id, nil
}

// onlyQuery rejects query parameters the route does not know, so a typo
// (?stauts=) is a 400 rather than a silently unfiltered answer.
func onlyQuery(r *http.Request, allowed ...string) error {
	for k, v := range r.URL.Query() {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			if len(allowed) == 0 {
				return core.Invalid("this route takes no query parameters (got %q)", k)
			}
			return core.Invalid("unknown query parameter %q; allowed: %s", k, strings.Join(allowed, ", "))
		}
		if len(v) > 1 {
			return core.Invalid("query parameter %q given more than once", k)
		}
	}
	return nil
}

// timeQuery parses an optional RFC 3339 query parameter.
func timeQuery(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, core.Invalid("%s must be an RFC 3339 time such as 2026-11-01T00:00:00Z", name)
	}
	return t, nil
}

func queryRange(r *http.Request) (time.Time, time.Time, error) {
	from, err := timeQuery(r, "from")
	if err != nil {
		return from, from, err
	}
	to, err := timeQuery(r, "to")
	return from, to, err
}

// decodeOptional is DecodeJSON for bodies that may be empty.
func decodeOptional(r *http.Request, v any) error {
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return core.Invalid("read body: %v", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	return DecodeJSON(r, v)
}

// noBody rejects a body on routes that take none.
func noBody(r *http.Request) error {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1024))
	if err != nil {
		return core.Invalid("read body: %v", err)
	}
	if len(bytes.TrimSpace(raw)) != 0 {
		return core.Invalid("this route takes no request body")
	}
	return nil
}

// --- clients ---------------------------------------------------------------

// ClientInput is the body of POST /clients.
type ClientInput struct {
	Name         string `json:"name"`
	BillingEmail string `json:"billingEmail"`
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
	if err := onlyQuery(r); err != nil {
		WriteError(w, r, err)
		return
	}
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

// --- shifts ----------------------------------------------------------------

// ShiftInput is the body of POST /shifts.
type ShiftInput struct {
	ClientID     string    `json:"clientId"`
	WorkerID     string    `json:"workerId"`
	Role         string    `json:"role"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
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
	if err := onlyQuery(r, "from", "to", "status"); err != nil {
		WriteError(w, r, err)
		return
	}
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
	if err := noBody(r); err != nil {
		WriteError(w, r, err)
		return
	}
	s, err := x.d.Shifts.Cancel(r.Context(), orgOf(r), id)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, s)
}

// --- timesheets and invoices ---------------------------------------------

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

// --- pricing and settings ------------------------------------------------

// clientQuery returns ?clientId=, which selects a client's override.
func clientQuery(r *http.Request) (string, error) {
	if err := onlyQuery(r, "clientId"); err != nil {
		return "", err
	}
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

// SettingsInput is the body of PUT /settings; every field is required.
type SettingsInput struct {
	TimeZone         *string `json:"timeZone"`
	Currency         *string `json:"currency"`
	InvoiceTermsDays *int    `json:"invoiceTermsDays"`
	InvoicePrefix    *string `json:"invoicePrefix"`
}

func (x *DomainRoutes) getSettings(w http.ResponseWriter, r *http.Request) {
	if err := onlyQuery(r); err != nil {
		WriteError(w, r, err)
		return
	}
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
