package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/shift"
)

// The decoder refuses what encoding/json alone lets through (issue 15
// items 3, 4 and 7): each answer is a 4xx JSON error that names the field
// in the API's words, and nothing is written.
func TestStrictJSONRefusesWhatEncodingJSONLetsThrough(t *testing.T) {
	a := domNewApp(t)
	c := a.seed(domAdmin)
	shiftBody := func(edit func(map[string]any)) string {
		raw, _ := json.Marshal(domShiftBody(c, edit))
		return string(raw)
	}
	client := `{"name":"x","billingEmail":"a@b.test"}`
	cases := []struct {
		name, path, ctype, body string
		status                  int
		code, mention           string
	}{
		{"trailing bracket", "/clients", "application/json", client + `]`, 400, "invalid", "nothing after it"},
		{"trailing braces", "/clients", "application/json", client + `}}}`, 400, "invalid", "nothing after it"},
		{"operator after the object", "/clients", "application/json", client + `]{"$gt":""}`, 400, "invalid", ""},
		{"duplicate key", "/clients", "application/json", `{"name":"x","name":"y","billingEmail":"a@b.test"}`, 400, "invalid", `"name" appears twice`},
		{"upper-case field", "/clients", "application/json", `{"NAME":"x","billingEmail":"a@b.test"}`, 400, "invalid", `"NAME"`},
		{"case variant of clientId", "/shifts", "application/json", strings.Replace(shiftBody(nil), `"clientId"`, `"CLIENTID"`, 1), 400, "invalid", `"CLIENTID"`},
		{"jsonp content type", "/clients", "application/jsonp", client, 415, "unsupported_media_type", "application/json"},
		{"text content type", "/clients", "text/plain", client, 415, "unsupported_media_type", "application/json"},
		{"latin-1 charset", "/clients", "application/json; charset=iso-8859-1", client, 415, "unsupported_media_type", "utf-8"},
		{"invalid UTF-8", "/clients", "application/json", "{\"name\":\"caf\xe9\",\"billingEmail\":\"a@b.test\"}", 400, "invalid", "UTF-8"},
		{"NUL in a name", "/clients", "application/json", `{"name":"x\u0000y","billingEmail":"a@b.test"}`, 400, "invalid", "name"},
		{"escape in notes", "/shifts", "application/json", shiftBody(func(b map[string]any) { b["notes"] = "a\x1b[31mred" }), 400, "invalid", "notes"},
		{"C1 control in workerId", "/shifts", "application/json", shiftBody(func(b map[string]any) { b["workerId"] = "w\u0085" }), 400, "invalid", "workerId"},
		{"start as a number", "/shifts", "application/json", shiftBody(func(b map[string]any) { b["start"] = 5 }), 400, "invalid", "start must be an RFC 3339 time such as"},
		{"start in another layout", "/shifts", "application/json", shiftBody(func(b map[string]any) { b["start"] = "25/11/2026 08:00" }), 400, "invalid", "start must be an RFC 3339 time such as"},
		{"body is an array", "/clients", "application/json", `[]`, 400, "invalid", "request body must be a JSON object"},
		{"pricing without taxRateBasisPoints", "/pricing", "application/json", `{"currency":"EUR","roles":{"nurse":{"hourlyRate":3000}},"overtime":{"afterMinutes":480,"multiplierPercent":150}}`, 400, "invalid", "taxRateBasisPoints is required"},
		{"pricing role without hourlyRate", "/pricing", "application/json", `{"currency":"EUR","taxRateBasisPoints":2000,"roles":{"nurse":{}},"overtime":{"afterMinutes":480,"multiplierPercent":150}}`, 400, "invalid", "roles.nurse.hourlyRate is required"},
		{"pricing without overtime", "/pricing", "application/json", `{"currency":"EUR","taxRateBasisPoints":2000,"roles":{"nurse":{"hourlyRate":3000}}}`, 400, "invalid", "overtime is required"},
		{"client with null name", "/clients", "application/json", `{"name":null,"billingEmail":"a@b.test"}`, 400, "invalid", "name is required"},
		{"shift without end", "/shifts", "application/json", shiftBody(func(b map[string]any) { delete(b, "end") }), 400, "invalid", "end is required"},
		{"breakMinutes beyond int64", "/shifts", "application/json", strings.Replace(shiftBody(nil), `"breakMinutes":30`, `"breakMinutes":1e30`, 1), 400, "invalid", "breakMinutes must be a whole number"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := a.counts()
			method, who := "POST", domScheduler
			if tc.path == "/pricing" {
				method, who = "PUT", domAdmin
			}
			req := httptest.NewRequest(method, tc.path, bytes.NewBufferString(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			tok, err := a.tokens.Issue(auth.Principal{UserID: "u-1", OrganizationID: who.org, Role: who.role})
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok.Value)
			w := httptest.NewRecorder()
			a.h.ServeHTTP(w, req)
			var body httpapi.ErrorBody
			if w.Code != tc.status || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error.Code != tc.code {
				t.Fatalf("status %d %s, want %d %s", w.Code, w.Body.String(), tc.status, tc.code)
			}
			if !strings.Contains(body.Error.Message, tc.mention) {
				t.Errorf("message %q does not say %q", body.Error.Message, tc.mention)
			}
			for _, leak := range []string{"httpapi.", "time.Time", "int64", "2006-01-02", "json:"} {
				if strings.Contains(body.Error.Message, leak) {
					t.Errorf("message %q shows Go internals (%s)", body.Error.Message, leak)
				}
			}
			if after := a.counts(); !reflect.DeepEqual(before, after) {
				t.Fatalf("the request wrote something:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
	// Notes keep their lines and tabs.
	var s shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["notes"] = "line one\nline two\tend" }), &s)
	if s.Notes != "line one\nline two\tend" {
		t.Fatalf("notes %q", s.Notes)
	}
}

// Numbers and times are bounded by their meaning (issue 15 items 1 and 2):
// a break that would overflow minutes × time.Minute, and times outside the
// years 2000 to 2100, are 400s that name the field, on create, patch and
// complete, and nothing is written.
func TestNumbersAndTimesAreBoundedByTheirMeaning(t *testing.T) {
	a := domNewApp(t)
	c := a.seed(domAdmin)
	var s shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &s)
	S := "/shifts/" + s.ID
	huge := func(n string) func(map[string]any) {
		return func(b map[string]any) { b["breakMinutes"] = json.Number(n) }
	}
	cases := []struct {
		name, method, path string
		body               any
		mention            string
	}{
		{"create: break 10^12", "POST", "/shifts", domShiftBody(c, huge("1000000000000")), "breakMinutes"},
		{"create: break 2^63-1", "POST", "/shifts", domShiftBody(c, huge("9223372036854775807")), "breakMinutes"},
		{"create: year 9999", "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["start"], b["end"] = "9999-11-25T08:00:00Z", "9999-11-25T16:00:00Z" }), "start"},
		{"create: year 0", "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["start"], b["end"] = "0000-11-25T08:00:00Z", "0000-11-25T16:00:00Z" }), "start"},
		{"create: year 1999", "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["start"], b["end"] = "1999-12-31T08:00:00Z", "1999-12-31T16:00:00Z" }), "start"},
		{"create: end in 2101", "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["start"], b["end"] = "2100-12-31T20:00:00Z", "2101-01-01T02:00:00Z" }), "end"},
		{"create: UTC year beyond 9999", "POST", "/shifts", domShiftBody(c, func(b map[string]any) {
			b["start"], b["end"] = "9999-12-31T23:00:00-05:00", "9999-12-31T23:30:00-05:00"
		}), "start"},
		{"create: workerId with a newline", "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["workerId"] = "w\n1" }), "workerId"},
		{"patch: break 10^12", "PATCH", S, `{"breakMinutes":1000000000000}`, "breakMinutes"},
		{"complete: break 2^63-1", "POST", S + "/complete", `{"breakMinutes":9223372036854775807}`, "breakMinutes"},
		{"complete: actual end in 9999", "POST", S + "/complete", `{"actualEnd":"9999-11-25T16:00:00Z"}`, "end"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := a.counts()
			code, raw := a.do(domScheduler, tc.method, tc.path, tc.body)
			var body httpapi.ErrorBody
			if code != 400 || json.Unmarshal(raw, &body) != nil || body.Error.Code != "invalid" {
				t.Fatalf("status %d %s, want 400 invalid", code, raw)
			}
			if !strings.Contains(body.Error.Message, tc.mention) {
				t.Errorf("message %q does not name %s", body.Error.Message, tc.mention)
			}
			if after := a.counts(); !reflect.DeepEqual(before, after) {
				t.Fatalf("the request wrote something:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// Every route refuses query parameters it does not take (issue 15 item 9):
// a smuggled ?organizationId= on a create is a 400 and writes nothing.
func TestEveryRouteRefusesUnknownQueryParameters(t *testing.T) {
	a := domNewApp(t)
	c := a.seed(domAdmin)
	var s shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &s)
	for _, rt := range (&httpapi.DomainRoutes{}).Routes() {
		t.Run(rt.Method+" "+rt.Path, func(t *testing.T) {
			path := strings.ReplaceAll(rt.Path, "{id}", s.ID)
			before := a.counts()
			var body any
			switch {
			case rt.Path == "/clients" && rt.Method == "POST":
				body = `{"name":"x","billingEmail":"a@b.test"}`
			case rt.Path == "/shifts" && rt.Method == "POST":
				body = domShiftBody(c, nil)
			case rt.Method == "PUT" && rt.Path == "/pricing":
				body = domIssueTable
			case rt.Method == "PUT" && rt.Path == "/settings":
				body = `{"timeZone":"UTC","currency":"EUR","invoiceTermsDays":1,"invoicePrefix":"I"}`
			}
			code, raw := a.do(domAdmin, rt.Method, path+"?organizationId=org-b", body)
			if code != 400 || !strings.Contains(string(raw), "organizationId") {
				t.Fatalf("status %d %s, want 400 naming the parameter", code, raw)
			}
			if after := a.counts(); !reflect.DeepEqual(before, after) {
				t.Fatalf("the request wrote something:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// Cancel takes an optional reason (issue 15 item 15): stored on the shift
// and carried in shift.cancelled; no body still cancels.
func TestCancelTakesAnOptionalReason(t *testing.T) {
	a := domNewApp(t)
	c := a.seed(domAdmin)
	var s, plain shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &s)
	a.must(200, domScheduler, "POST", "/shifts/"+s.ID+"/cancel", `{"reason":"client closed the ward"}`, &s)
	if s.Status != shift.StatusCancelled || s.CancelReason != "client closed the ward" {
		t.Fatalf("cancelled shift %+v", s)
	}
	var got shift.Shift
	a.must(200, domViewer, "GET", "/shifts/"+s.ID, nil, &got)
	if got.CancelReason != "client closed the ward" {
		t.Fatalf("stored reason %q", got.CancelReason)
	}
	evs := a.bus.ofType(event.ShiftCancelled)
	if len(evs) != 1 {
		t.Fatalf("%d shift.cancelled events", len(evs))
	}
	if p, err := shift.FromEvent(evs[0]); err != nil || p.CancelReason != "client closed the ward" {
		t.Fatalf("event payload %+v %v", p, err)
	}
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &plain)
	a.must(200, domScheduler, "POST", "/shifts/"+plain.ID+"/cancel", nil, &plain)
	if plain.Status != shift.StatusCancelled || plain.CancelReason != "" {
		t.Fatalf("cancelled without a body %+v", plain)
	}
}
