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
	// Query lists the query parameters the route takes; any other is a
	// 400 (a typo such as ?stauts= or a smuggled ?organizationId= is
	// never silently ignored).
	Query []string
}

// Routes lists every domain route (Register mounts exactly these).
func (x *DomainRoutes) Routes() []DomainRoute {
	return []DomainRoute{
		{"POST", "/clients", auth.PermWriteClients, x.createClient, nil},
		{"GET", "/clients", auth.PermRead, x.listClients, nil},
		{"GET", "/clients/{id}", auth.PermRead, x.getClient, nil},
		{"POST", "/shifts", auth.PermWriteShifts, x.scheduleShift, nil},
		{"GET", "/shifts", auth.PermRead, x.listShifts, []string{"from", "to", "status"}},
		{"GET", "/shifts/{id}", auth.PermRead, x.getShift, nil},
		{"PATCH", "/shifts/{id}", auth.PermWriteShifts, x.updateShift, nil},
		{"POST", "/shifts/{id}/complete", auth.PermWriteShifts, x.completeShift, nil},
		{"POST", "/shifts/{id}/cancel", auth.PermWriteShifts, x.cancelShift, nil},
		{"GET", "/shifts/{id}/timesheet", auth.PermRead, x.shiftTimesheet, nil},
		{"GET", "/shifts/{id}/invoice", auth.PermRead, x.shiftInvoice, nil},
		{"GET", "/timesheets", auth.PermRead, x.listTimesheets, []string{"from", "to"}},
		{"GET", "/invoices", auth.PermRead, x.listInvoices, []string{"from", "to"}},
		{"GET", "/pricing", auth.PermRead, x.getPricing, []string{"clientId"}},
		{"PUT", "/pricing", auth.PermWritePricing, x.putPricing, []string{"clientId"}},
		{"GET", "/settings", auth.PermRead, x.getSettings, nil},
		{"PUT", "/settings", auth.PermWriteSettings, x.putSettings, nil},
	}
}

// Register mounts the routes on mux, each behind the authenticator.
func (x *DomainRoutes) Register(mux *http.ServeMux) {
	for _, rt := range x.Routes() {
		mux.Handle(rt.Method+" "+rt.Path, x.d.Auth.Require(rt.Permission, withQuery(rt.Query, rt.Handler)))
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

// withQuery answers 400 before h runs when the request carries a query
// parameter outside allowed (none when allowed is empty).
func withQuery(allowed []string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := onlyQuery(r, allowed...); err != nil {
			WriteError(w, r, err)
			return
		}
		h(w, r)
	}
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
