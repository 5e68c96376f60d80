package httpapi_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/ulid"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Environment of the child process of the crash test.
const (
	domCrashChild = "SHIFTFLOW_TEST_CRASH_CHILD"
	domCrashURI   = "SHIFTFLOW_TEST_CRASH_MONGO_URI"
	domCrashDB    = "SHIFTFLOW_TEST_CRASH_DB"
	domCrashShift = "SHIFTFLOW_TEST_CRASH_SHIFT"
)

// domKillingPublisher is the child's publisher: the first publish kills the
// process with SIGKILL, i.e. the process dies after the MongoDB write of
// the completion and before the event reaches the bus.
type domKillingPublisher struct{}

func (domKillingPublisher) Publish(context.Context, event.Event) error {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // never returns: the signal is on its way
}

// domCrashChildMain completes the shift and dies at the publish.
func domCrashChildMain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mc, err := mongo.Connect(options.Client().ApplyURI(os.Getenv(domCrashURI)))
	if err != nil {
		t.Fatal(err)
	}
	db := mc.Database(os.Getenv(domCrashDB))
	clients := client.NewService(mongodb.NewClientRepo(db), ulid.New, nil)
	prices := pricing.NewService(mongodb.NewPricingRepo(db), nil, clients, nil)
	s := shift.NewScheduler(mongodb.NewShiftRepo(db), clients, prices, domKillingPublisher{}, nil)
	_, err = s.Complete(ctx, "org-a", os.Getenv(domCrashShift), shift.Completion{})
	t.Fatalf("Complete returned (%v) instead of the process being killed at the publish", err)
}

func TestCrashBetweenWriteAndPublishDelaysTheEventAndNeverLosesIt(t *testing.T) {
	if os.Getenv(domCrashChild) == "1" {
		domCrashChildMain(t)
		return
	}
	a := domNewApp(t)
	ctx := domCtx(t)
	rb := domNewRealBus(t) // the real Redis when configured
	a.useBusAndJobs(rb.bus, rb.queues)
	spy := domNewSpy(t, rb, event.ShiftCompleted)
	c := a.seed(domAdmin)
	var s shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &s)

	// Another process completes the shift and is killed between the
	// MongoDB write and the publish.
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashBetweenWriteAndPublishDelaysTheEventAndNeverLosesIt$", "-test.count=1")
	cmd.Env = append(os.Environ(), domCrashChild+"=1", domCrashURI+"="+testenv.MongoURI(t),
		domCrashDB+"="+a.db.Name(), domCrashShift+"="+s.ID)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child did not die: %v\n%s", err, out)
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL\n%s", err, out)
	}

	// The write happened; the event is in the outbox and nowhere else.
	got, err := a.shifts.Get(ctx, "org-a", s.ID)
	if err != nil || got.Status != shift.StatusCompleted {
		t.Fatalf("after the crash the shift is %+v, %v; want completed", got, err)
	}
	repo := mongodb.NewShiftRepo(a.db)
	pending, err := repo.Outbox(ctx, s.ID)
	if err != nil || len(pending) != 1 || pending[0].Type != event.ShiftCompleted {
		t.Fatalf("outbox after the crash = %+v, %v; want the shift.completed event", pending, err)
	}
	if got := spy.collect(t); len(got) != 0 {
		t.Fatalf("%d shift.completed on the stream before the relay ran", len(got))
	}

	// The next drain of the subscriber runs the relay first (WithRelay):
	// the event is published exactly as written, then removed, and the
	// subscriber turns it into the worked time.
	onCompleted, err := rb.bus.Subscribe([]string{event.ShiftCompleted}, "onShiftCompleted", a.sheets.OnShiftCompleted, event.Durable)
	if err != nil {
		t.Fatal(err)
	}
	if sum := domDrain(t, shift.WithRelay(onCompleted, shift.NewRelay(repo, rb.bus, nil))); sum.Succeeded != 1 {
		t.Fatalf("drain after the crash: %+v", sum)
	}
	published := spy.collect(t)
	if len(published) != 1 || !reflect.DeepEqual(published[0], pending[0]) {
		t.Fatalf("published %+v\nwant exactly %+v", published, pending[0])
	}
	if left, _ := repo.Outbox(ctx, s.ID); len(left) != 0 {
		t.Fatalf("outbox not emptied: %+v", left)
	}
	if n, _ := shift.NewRelay(repo, rb.bus, nil).Flush(ctx); n != 0 {
		t.Fatalf("second relay run published %d again", n)
	}
	if _, err := a.sheets.Get(ctx, "org-a", s.ID); err != nil {
		t.Fatalf("worked time: %v", err)
	}
}

func TestAFailedPublishLeavesTheEventForTheNextRelayRun(t *testing.T) {
	a := domNewApp(t)
	ctx := domCtx(t)
	c := a.seed(domAdmin)
	var s shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", domShiftBody(c, nil), &s)
	a.bus.mu.Lock()
	a.bus.fail = errors.New("redis down")
	a.bus.mu.Unlock()
	// The change is committed and answered 200 even though the bus is down.
	a.must(200, domScheduler, "POST", "/shifts/"+s.ID+"/cancel", nil, &s)
	if n := a.counts()["outbox"]; n != 1 {
		t.Fatalf("outbox holds %d events, want the cancelled one", n)
	}
	a.bus.mu.Lock()
	a.bus.fail = nil
	a.bus.mu.Unlock()
	if n, err := a.shifts.Relay().Flush(ctx); n != 1 || err != nil {
		t.Fatalf("flush: %d, %v", n, err)
	}
	if got := a.bus.ofType(event.ShiftCancelled); len(got) != 1 {
		t.Fatalf("cancelled events %d", len(got))
	}
}
