package httpapi_test

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/shift"
)

// TestConcurrentIdenticalCompletesAllAnswer200 (issue 9, item 2): completing
// a shift again with the same data is documented as 200 with the stored
// shift, so 20 parallel identical completes must all answer 200, and the
// shift gets exactly one shift.completed event. Half of the requests go
// through a second application (its own ShiftRepo: another process, on
// FerretDB the cross-process lease).
func TestConcurrentIdenticalCompletesAllAnswer200(t *testing.T) {
	a := domNewApp(t)
	rb := domNewRealBus(t)
	a.useBusAndJobs(rb.bus, rb.queues)
	spy := domNewSpy(t, rb, event.ShiftCompleted)
	b := domNewAppOn(t, a.db)
	b.useBusAndJobs(rb.bus, rb.queues)

	c := a.seed(domAdmin)
	var s shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", map[string]any{
		"clientId": c.ID, "workerId": "worker-7", "role": "nurse",
		"start": "2026-11-24T08:00:00Z", "end": "2026-11-24T16:00:00Z", "breakMinutes": 30,
	}, &s)

	const n = 20
	type answer struct {
		code int
		body []byte
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			app := a
			if i%2 == 1 {
				app = b
			}
			code, body := app.do(domScheduler, "POST", "/shifts/"+s.ID+"/complete", `{"actualEnd":"2026-11-24T16:30:00Z"}`)
			answers[i] = answer{code, body}
		}()
	}
	close(start)
	wg.Wait()
	for i, ans := range answers {
		if ans.code != 200 {
			t.Errorf("request %d: %d %s, want 200 (same data)", i, ans.code, ans.body)
			continue
		}
		var got shift.Shift
		if err := json.Unmarshal(ans.body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Status != shift.StatusCompleted || got.Version != s.Version+1 {
			t.Errorf("request %d: answered %+v, want the one stored completion (version %d)", i, got, s.Version+1)
		}
	}
	if evs := spy.collect(t); len(evs) != 1 {
		t.Fatalf("%d shift.completed events on the stream, want 1", len(evs))
	}
	if left, _ := a.shifts.Relay().Flush(domCtx(t)); left != 0 {
		t.Fatalf("%d events were still in the outbox", left)
	}
	// Different data after that is still a conflict.
	code, body := a.do(domScheduler, "POST", "/shifts/"+s.ID+"/complete", `{"actualEnd":"2026-11-24T17:00:00Z"}`)
	if code != 409 {
		t.Fatalf("different data: %d %s, want 409", code, body)
	}
}
