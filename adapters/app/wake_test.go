package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/shift"
)

// fakeWaker records wakes; with a set, it starts the woken drain in a
// goroutine, as the platform would start an instance.
type fakeWaker struct {
	a     atomic.Pointer[App]
	err   error
	mu    sync.Mutex
	calls map[string][]int
	wg    sync.WaitGroup
}

func (f *fakeWaker) Wake(_ context.Context, drain string, n int) error {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string][]int{}
	}
	f.calls[drain] = append(f.calls[drain], n)
	f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if a := f.a.Load(); a != nil {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = a.Drain(drain)(ctx)
		}()
	}
	return nil
}

func (f *fakeWaker) wakes(drain string) (calls, instances int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.calls[drain] {
		calls, instances = calls+1, instances+n
	}
	return calls, instances
}

func newWakeApp(t *testing.T, w *fakeWaker, extra map[string]string) *App {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := New(ctx, Options{Getenv: testGetenv(t, extra), Waker: w})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.wg.Wait()
		_ = a.DB.Drop(context.Background())
		a.Close(context.Background())
	})
	return a
}

// TestWakeOnPublishInvoicesWithoutASchedule: no schedule and no Run loop,
// only the drains the wakes start: a completed shift gets its invoice.
func TestWakeOnPublishInvoicesWithoutASchedule(t *testing.T) {
	w := &fakeWaker{}
	a := newWakeApp(t, w, nil)
	w.a.Store(a)
	c := recSeed(t, a, "billing@acme.test")
	for i := range 3 {
		began := time.Now()
		s := recComplete(t, a, c.ID, i)
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := a.Invoices.GetByShift(context.Background(), recOrg, s.ID); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("shift %d: no invoice 20 s after completing it; wakes %v", i, w.calls)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("shift %d: completed to invoice in %v", i, time.Since(began).Round(time.Millisecond))
		time.Sleep(150 * time.Millisecond) // past the coalescing interval
	}
	for _, d := range DrainFunctions() {
		if calls, _ := w.wakes(d); calls == 0 {
			t.Errorf("%s was never woken", d)
		}
	}
}

// TestFailedWakeNeverFailsTheRequest: a platform that refuses every wake
// does not fail the completion, and the work waits for the next drain.
func TestFailedWakeNeverFailsTheRequest(t *testing.T) {
	w := &fakeWaker{err: errors.New("invoke: 503 service unavailable")}
	a := newWakeApp(t, w, nil)
	c := recSeed(t, a, "billing@acme.test")
	ctx := context.Background()
	s, err := a.Scheduler.Schedule(ctx, recOrg, shiftInput(c.ID))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.IssueToken(auth.Principal{UserID: "u-1", OrganizationID: recOrg, Role: auth.RoleScheduler})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/shifts/"+s.ID+"/complete", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Value)
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("complete with a failing waker: %d %s", rec.Code, rec.Body)
	}
	if calls, _ := w.wakes(OnShiftCompleted); calls == 0 {
		t.Fatal("the completion did not try to wake onShiftCompleted")
	}
	// The schedule's safety net: the next drains do the work.
	recDrain(t, a, OnShiftCompleted)
	recDrain(t, a, InvoiceWorker)
	if _, err := a.Invoices.GetByShift(ctx, recOrg, s.ID); err != nil {
		t.Fatalf("invoice after the next drains: %v", err)
	}
}

// TestWakeStormStaysWithinTheCoalescingBound: 50 publishers × 200
// shift.completed events wake onShiftCompleted at most once per interval
// (plus a few), and never ask for more instances than the maximum.
func TestWakeStormStaysWithinTheCoalescingBound(t *testing.T) {
	w := &fakeWaker{} // records only: no drain runs
	a := newWakeApp(t, w, map[string]string{"DRAIN_MAX_CONCURRENCY": "4"})
	// The consumer group exists once any drain ran (its backlog is read
	// from it); then forget that drain's own wakes.
	recDrain(t, a, OnShiftCompleted)
	w.mu.Lock()
	w.calls = nil
	w.mu.Unlock()
	payload, _ := json.Marshal(map[string]string{"shiftId": "storm"})
	began := time.Now()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if err := a.Bus.Publish(context.Background(), event.Event{Type: "storm.test", Payload: payload}); err != nil {
					t.Error(err)
					return
				}
				if err := a.Bus.Publish(context.Background(), event.Event{Type: event.ShiftCompleted, OrganizationID: recOrg, Payload: payload}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	calls, instances := w.wakes(OnShiftCompleted)
	bound := int(took/(100*time.Millisecond)) + 3
	t.Logf("10,000 shift.completed publishes in %v: %d wakes asking for %d instances (bound %d wakes, max 4 instances)",
		took.Round(time.Millisecond), calls, instances, bound)
	if calls < 1 || calls > bound {
		t.Errorf("%d wakes, want 1..%d", calls, bound)
	}
	if instances > 4 {
		t.Errorf("asked for %d instances, more than DRAIN_MAX_CONCURRENCY=4", instances)
	}
	if c, _ := w.wakes(InvoiceWorker); c != 0 {
		t.Errorf("events woke invoiceWorker %d times", c)
	}
}

func shiftInput(clientID string) shift.Input {
	start := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	return shift.Input{ClientID: clientID, WorkerID: "w-1", Role: "nurse", Start: start, End: start.Add(8 * time.Hour)}
}

// TestLongPollDrainPollsUntilItsLastStartTime: a long-poll drain counts
// as a poller while it polls, and polls until its deadline − SafetyMargin
// (2 s) − HANDLER_TIMEOUT (1 s), not less; with nothing left it wakes no
// successor.
func TestLongPollDrainPollsUntilItsLastStartTime(t *testing.T) {
	w := &fakeWaker{} // records only
	a := newWakeApp(t, w, map[string]string{"DRAIN_MODE": "longpoll", "HANDLER_TIMEOUT": "1s"})
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second) // last start at 1 s
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _, _ = a.Drain(InvoiceWorker)(ctx) }()
	time.Sleep(300 * time.Millisecond)
	if n, err := a.wake.registry.Running(context.Background(), InvoiceWorker); err != nil || n != 1 {
		t.Fatalf("while polling: %d instances (%v), want 1", n, err)
	}
	<-done
	took := time.Since(began)
	t.Logf("long-poll drain with a 4 s deadline polled for %v", took.Round(time.Millisecond))
	if took < 900*time.Millisecond {
		t.Fatalf("stopped polling after %v, before its last start time (1 s)", took)
	}
	if n, _ := a.wake.registry.Running(context.Background(), InvoiceWorker); n != 0 {
		t.Fatalf("%d instances after the drain ended, want 0", n)
	}
	if calls, _ := w.wakes(InvoiceWorker); calls != 0 {
		t.Fatalf("nothing left, yet %d wakes", calls)
	}
}

// addingDrainer stands for a drain at whose end work remains: it adds a
// job behind the wake decorator's back (as a publish whose wake the gate
// swallowed would leave it).
type addingDrainer struct {
	event.Drainer
	a *App
}

func (d addingDrainer) DrainLongPoll(ctx context.Context) (event.DrainSummary, error) {
	_, err := d.a.Queues.Add(ctx, job.InvoiceGeneration, "generate", map[string]string{"shiftId": "x"}, job.Options{})
	return event.DrainSummary{StoppedBy: "deadline", Remaining: 1}, err
}

// TestDrainHandsOverWhenWorkRemains: an instance that ends with work left
// wakes its successor, past the coalescing gate.
func TestDrainHandsOverWhenWorkRemains(t *testing.T) {
	w := &fakeWaker{}
	a := newWakeApp(t, w, map[string]string{"DRAIN_MODE": "longpoll"})
	// Close the gate: the hand-over must not depend on it.
	if ok, err := a.wake.trigger.Gate.Allow(context.Background(), InvoiceWorker); !ok || err != nil {
		t.Fatal(ok, err)
	}
	d := a.drainers[InvoiceWorker].(*wakeDrain)
	inner := *d
	inner.Drainer = addingDrainer{Drainer: d.Drainer, a: a}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := inner.DrainLongPoll(ctx); err != nil {
		t.Fatal(err)
	}
	if calls, n := w.wakes(InvoiceWorker); calls != 1 || n != 1 {
		t.Fatalf("hand-over: %d wakes for %d instances, want 1 for 1", calls, n)
	}
}
