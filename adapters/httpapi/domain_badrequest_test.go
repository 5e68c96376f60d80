package httpapi_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/shift"
)

// domShiftBody is a valid POST /shifts body for client c, changed by edit.
func domShiftBody(c client.Client, edit func(map[string]any)) map[string]any {
	b := map[string]any{"clientId": c.ID, "workerId": "w-1", "role": "nurse",
		"start": "2026-11-25T08:00:00Z", "end": "2026-11-25T16:00:00Z", "breakMinutes": 30, "notes": ""}
	if edit != nil {
		edit(b)
	}
	return b
}

func TestBadRequestsAre4xxJSONErrorsAndWriteNothing(t *testing.T) {
	a := domNewApp(t)
	// The real bus and queues, so that an event or a job a bad request
	// wrongly emits shows in the stored state.
	rb := domNewRealBus(t)
	a.useBusAndJobs(rb.bus, rb.queues)
	c := a.seed(domAdmin)
	otherClient := a.seed(domOther)
	var scheduled, completed, cancelled shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &scheduled)
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &completed)
	a.must(200, domScheduler, "POST", "/shifts/"+completed.ID+"/complete", nil, &completed)
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &cancelled)
	a.must(200, domScheduler, "POST", "/shifts/"+cancelled.ID+"/cancel", nil, &cancelled)
	S, C, X := "/shifts/"+scheduled.ID, "/shifts/"+completed.ID, "/shifts/"+cancelled.ID
	// The completed shift's timesheet exists (the subscriber ran), so the
	// other organisation's 404 for it proves isolation, not absence.
	onCompleted, err := rb.bus.Subscribe([]string{event.ShiftCompleted}, "onShiftCompleted", a.sheets.OnShiftCompleted, event.Durable)
	if err != nil {
		t.Fatal(err)
	}
	domDrain(t, shift.WithRelay(onCompleted, a.shifts.Relay()))
	a.must(200, domViewer, "GET", C+"/timesheet", nil, nil)

	cases := []struct {
		name   string
		who    domAs
		method string
		path   string
		body   any
		status int
	}{
		{"client: unknown field", domScheduler, "POST", "/clients", `{"name":"x","billingEmail":"a@b.test","admin":true}`, 400},
		{"client: wrong type", domScheduler, "POST", "/clients", `{"name":5,"billingEmail":"a@b.test"}`, 400},
		{"client: MongoDB operator in a value", domScheduler, "POST", "/clients", `{"name":{"$gt":""},"billingEmail":"a@b.test"}`, 400},
		{"client: missing name", domScheduler, "POST", "/clients", `{"billingEmail":"a@b.test"}`, 400},
		{"client: bad email", domScheduler, "POST", "/clients", `{"name":"x","billingEmail":"not-an-email"}`, 400},
		{"client: malformed JSON", domScheduler, "POST", "/clients", `{"name":`, 400},
		{"client: two JSON values", domScheduler, "POST", "/clients", `{"name":"x","billingEmail":"a@b.test"}{}`, 400},
		{"client: body too large", domScheduler, "POST", "/clients", `{"name":"` + strings.Repeat("x", httpapi.MaxBodyBytes) + `","billingEmail":"a@b.test"}`, 413},
		{"client: empty body", domScheduler, "POST", "/clients", ``, 400},
		{"client: viewer may not create", domViewer, "POST", "/clients", `{"name":"x","billingEmail":"a@b.test"}`, 403},
		{"client: another organisation's id", domAdmin, "GET", "/clients/" + otherClient.ID, nil, 404},
		{"shift: end before start", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["end"] = "2026-11-25T07:00:00Z" }), 400},
		{"shift: longer than 24 hours", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["end"] = "2026-11-26T08:01:00Z" }), 400},
		{"shift: break as long as the shift", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["breakMinutes"] = 480 }), 400},
		{"shift: negative break", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["breakMinutes"] = -5 }), 400},
		{"shift: unknown role", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["role"] = "pilot" }), 400},
		{"shift: client of another organisation", domScheduler, "POST", "/shifts", domShiftBody(otherClient, nil), 400},
		{"shift: start not RFC 3339", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["start"] = "tomorrow 8am" }), 400},
		{"shift: seconds in start", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["start"] = "2026-11-25T08:00:30Z" }), 400},
		{"shift: missing workerId", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { delete(b, "workerId") }), 400},
		{"shift: notes too long", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["notes"] = strings.Repeat("n", shift.MaxNotes+1) }), 400},
		{"shift: status is not writable", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["status"] = "completed" }), 400},
		{"shift: breakMinutes as a string", domScheduler, "POST", "/shifts", domShiftBody(c, func(b map[string]any) { b["breakMinutes"] = "30" }), 400},
		{"shift: viewer may not schedule", domViewer, "POST", "/shifts", domShiftBody(c, nil), 403},
		{"shift: no token", domAs{}, "POST", "/shifts", domShiftBody(c, nil), 401},
		{"patch: unknown field status", domScheduler, "PATCH", S, `{"status":"completed"}`, 400},
		{"patch: end before start", domScheduler, "PATCH", S, `{"end":"2026-11-25T07:00:00Z"}`, 400},
		{"patch: completed shift", domScheduler, "PATCH", C, `{"notes":"late"}`, 409},
		{"patch: another organisation's shift", domOther, "PATCH", S, `{"notes":"x"}`, 404},
		{"complete: different data on a completed shift", domScheduler, "POST", C + "/complete", `{"breakMinutes":0}`, 409},
		{"complete: cancelled shift", domScheduler, "POST", X + "/complete", nil, 409},
		{"complete: actual end before start", domScheduler, "POST", S + "/complete", `{"actualEnd":"2026-11-25T07:00:00Z"}`, 400},
		{"complete: unknown field", domScheduler, "POST", S + "/complete", `{"actualStop":"2026-11-25T16:00:00Z"}`, 400},
		{"complete: another organisation's shift", domOther, "POST", S + "/complete", nil, 404},
		{"cancel: already cancelled", domScheduler, "POST", X + "/cancel", nil, 409},
		{"cancel: completed", domScheduler, "POST", C + "/cancel", nil, 409},
		{"cancel: reason too long", domScheduler, "POST", S + "/cancel", `{"reason":"` + strings.Repeat("r", shift.MaxCancelReason+1) + `"}`, 400},
		{"cancel: unknown field", domScheduler, "POST", S + "/cancel", `{"why":"x"}`, 400},
		{"get: id that cannot exist", domViewer, "GET", "/shifts/not-a-shift-id", nil, 404},
		{"get: another organisation's shift", domOther, "GET", S, nil, 404},
		{"get: another organisation's timesheet", domOther, "GET", C + "/timesheet", nil, 404},
		{"list: unknown status", domViewer, "GET", "/shifts?status=done", nil, 400},
		{"list: from not RFC 3339", domViewer, "GET", "/shifts?from=yesterday", nil, 400},
		{"list: misspelt parameter", domViewer, "GET", "/shifts?stauts=completed", nil, 400},
		{"list: to before from", domViewer, "GET", "/invoices?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z", nil, 400},
		{"pricing: tax above 100%", domAdmin, "PUT", "/pricing", strings.Replace(domIssueTable, "2000", "10001", 1), 400},
		{"pricing: no roles", domAdmin, "PUT", "/pricing", `{"currency":"EUR","taxRateBasisPoints":0,"roles":{}}`, 400},
		{"pricing: rate as float", domAdmin, "PUT", "/pricing", strings.Replace(domIssueTable, "3000", "30.5", 1), 400},
		{"pricing: scheduler may not change", domScheduler, "PUT", "/pricing", domIssueTable, 403},
		{"pricing: override for another organisation's client", domAdmin, "PUT", "/pricing?clientId=" + otherClient.ID, `{"roles":{"nurse":{"hourlyRate":1}}}`, 404},
		{"pricing: override with a bad multiplier", domAdmin, "PUT", "/pricing?clientId=" + c.ID, `{"weekend":{"multiplierPercent":50}}`, 400},
		{"settings: unknown time zone", domAdmin, "PUT", "/settings", `{"timeZone":"Mars/Olympus","currency":"EUR","invoiceTermsDays":14,"invoicePrefix":"INV-"}`, 400},
		{"settings: missing field", domAdmin, "PUT", "/settings", `{"timeZone":"UTC","currency":"EUR","invoicePrefix":"INV-"}`, 400},
		{"settings: viewer may not change", domViewer, "PUT", "/settings", `{"timeZone":"UTC","currency":"EUR","invoiceTermsDays":1,"invoicePrefix":"I"}`, 403},
		{"settings: prefix with a newline", domAdmin, "PUT", "/settings", `{"timeZone":"UTC","currency":"EUR","invoiceTermsDays":1,"invoicePrefix":"I\n"}`, 400},
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := a.state(&rb)
			code, raw := a.do(tc.who, tc.method, tc.path, tc.body)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, raw)
			}
			var body httpapi.ErrorBody
			if err := json.Unmarshal(raw, &body); err != nil || body.Error.Code == "" || body.Error.Message == "" {
				t.Fatalf("not a JSON error: %s", raw)
			}
			if d := before.diff(a.state(&rb)); d != "" {
				t.Fatalf("the request changed the stored state:\n%s", d)
			}
		})
	}
}

func TestCompletingTwiceWithTheSameDataReturnsTheShiftUnchanged(t *testing.T) {
	a := domNewApp(t)
	c := a.seed(domAdmin)
	var s, first, again shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &s)
	body := `{"actualStart":"2026-11-25T08:15:00Z","breakMinutes":45}`
	a.must(200, domScheduler, "POST", "/shifts/"+s.ID+"/complete", body, &first)
	a.must(200, domScheduler, "POST", "/shifts/"+s.ID+"/complete", body, &again)
	a.must(200, domScheduler, "POST", "/shifts/"+s.ID+"/complete", nil, &again) // no body: the stored times
	if !reflect.DeepEqual(first, again) || first.Version != 2 {
		t.Fatalf("second completion changed the shift:\n%+v\n%+v", first, again)
	}
	if n := len(a.bus.ofType(event.ShiftCompleted)); n != 1 {
		t.Fatalf("%d shift.completed events, want 1", n)
	}
}

func TestEachChangeEmitsItsEvent(t *testing.T) {
	a := domNewApp(t)
	c := a.seed(domAdmin)
	var s shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &s)
	a.must(200, domScheduler, "PATCH", "/shifts/"+s.ID, `{"notes":"bring badge","breakMinutes":15}`, &s)
	a.must(200, domScheduler, "PATCH", "/shifts/"+s.ID, `{"notes":"bring badge"}`, &s) // no change, no event
	a.must(200, domScheduler, "POST", "/shifts/"+s.ID+"/cancel", nil, &s)
	var types []string
	for _, e := range a.bus.events {
		types = append(types, e.Type)
		if e.OrganizationID != "org-a" || e.SchemaVersion != event.SchemaVersion || e.ID == "" {
			t.Errorf("envelope %+v", e)
		}
	}
	want := []string{event.ShiftCreated, event.ShiftUpdated, event.ShiftCancelled}
	if !reflect.DeepEqual(types, want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	got, err := shift.FromEvent(a.bus.events[1])
	if err != nil || got.Notes != "bring badge" || got.BreakMinutes != 15 || got.Version != 2 {
		t.Fatalf("shift.updated payload %+v, %v", got, err)
	}
	if s.Status != shift.StatusCancelled || s.Version != 3 {
		t.Fatalf("final shift %+v", s)
	}
	var list []shift.Shift
	a.must(200, domViewer, "GET", "/shifts?status=cancelled", nil, &list)
	if len(list) != 1 {
		t.Fatalf("list cancelled: %d", len(list))
	}
	a.must(200, domViewer, "GET", "/shifts?status=scheduled", nil, &list)
	if len(list) != 0 {
		t.Fatalf("list scheduled: %d", len(list))
	}
}

func TestOrganisationsSeeOnlyTheirOwnData(t *testing.T) {
	a := domNewApp(t)
	ca := a.seed(domAdmin)
	cb := a.seed(domOther)
	var sa shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(ca, nil), &sa)
	var clients []client.Client
	a.must(200, domOther, "GET", "/clients", nil, &clients)
	if len(clients) != 1 || clients[0].ID != cb.ID {
		t.Fatalf("org-b sees clients %+v", clients)
	}
	var shifts []shift.Shift
	a.must(200, domOther, "GET", "/shifts", nil, &shifts)
	if len(shifts) != 0 {
		t.Fatalf("org-b sees %d shifts", len(shifts))
	}
	for _, p := range []string{"/shifts/" + sa.ID, "/shifts/" + sa.ID + "/invoice", "/clients/" + ca.ID} {
		if code, _ := a.do(domOther, "GET", p, nil); code != 404 {
			t.Errorf("org-b GET %s = %d, want 404", p, code)
		}
	}
	a.must(404, domOther, "GET", fmt.Sprintf("/pricing?clientId=%s", ca.ID), nil, nil)
}
