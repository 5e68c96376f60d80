package httpapi_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/redisstream"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/shift"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// domRedis returns the real Redis when SHIFTFLOW_TEST_REDIS_URL is set and
// otherwise the embedded one, logging which.
func domRedis(t *testing.T) redis.UniversalClient {
	if os.Getenv(testenv.VarRedisURL) != "" {
		t.Log("bus and queues on the real Redis")
		return testenv.RedisPlain(t)
	}
	t.Logf("bus and queues on the embedded Redis (set %s for the real one)", testenv.VarRedisURL)
	c, _ := testenv.MiniRedis(t)
	return c
}

var domConsumer = redisstream.ConsumerOptions{Concurrency: 2, BlockInterval: 50 * time.Millisecond,
	SafetyMargin: 100 * time.Millisecond, HandlerTimeout: 5 * time.Second}

// domRealBus is the redisstream bus and queues under a unique prefix.
type domRealBus struct {
	bus    *redisstream.Bus
	queues *redisstream.Queues
	rc     redis.UniversalClient
	prefix string // every key of the bus and the queues starts with it
}

func domNewRealBus(t *testing.T) domRealBus { return domNewRealBusOn(domRedis(t)) }

// domNewRealBusOn is domNewRealBus on the Redis rc.
func domNewRealBusOn(rc redis.UniversalClient) domRealBus {
	prefix := testenv.Unique("sft")
	return domRealBus{
		bus: redisstream.NewBus(rc, redisstream.BusOptions{Prefix: prefix,
			Subscription: redisstream.SubscribeOptions{ConsumerOptions: domConsumer, Attempts: 3,
				Backoff: job.Backoff{Type: job.BackoffExponential, Base: 50 * time.Millisecond, Cap: time.Second}}}),
		queues: redisstream.NewQueues(rc, redisstream.QueueOptions{Prefix: prefix}),
		rc:     rc, prefix: prefix,
	}
}

// domSpy is a durable subscription that records what reached the stream.
type domSpy struct {
	mu     sync.Mutex
	events []event.Event
	d      event.Drainer
}

func domNewSpy(t *testing.T, b domRealBus, types ...string) *domSpy {
	s := &domSpy{}
	d, err := b.bus.Subscribe(types, testenv.Unique("spy"), func(_ context.Context, e event.Event) error {
		s.mu.Lock()
		s.events = append(s.events, e)
		s.mu.Unlock()
		return nil
	}, event.Durable)
	if err != nil {
		t.Fatal(err)
	}
	s.d = d
	return s
}

// drain runs a drainer until it is empty and returns its summary.
func domDrain(t *testing.T, d event.Drainer) event.DrainSummary {
	t.Helper()
	// Long enough for slow machines (-race, embedded FerretDB): a drain
	// only starts an entry if HandlerTimeout fits before the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sum, err := d.Drain(ctx)
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	return sum
}

func (s *domSpy) collect(t *testing.T) []event.Event {
	domDrain(t, s.d)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event.Event(nil), s.events...)
}

// TestFlowOnTheRealBusQueuesAndMongoDB is the full flow, exactly
// once, on the real queue (redisstream bus and queues, on the embedded
// Redis and every configured real one) and the MongoDB server: schedule
// and complete over HTTP; the durable onShiftCompleted subscription gets
// the event three times and the invoice job runs three times; the result
// is one WorkedTime, one invoice with exact amounts and one number, and one
// email in the outbox. The queue's own job-id de-duplication is under test
// here (one waiting job after three adds), not an in-memory stand-in.
func TestFlowOnTheRealBusQueuesAndMongoDB(t *testing.T) {
	for _, target := range testenv.RedisTargets(t) {
		t.Run(target.Name, func(t *testing.T) { domFlowOnRealBus(t, domNewRealBusOn(target.Client)) })
	}
}

func domFlowOnRealBus(t *testing.T, rb domRealBus) {
	a := domNewApp(t)
	ctx := domCtx(t)
	a.useBusAndJobs(rb.bus, rb.queues)
	spy := domNewSpy(t, rb, event.ShiftCompleted)
	var deliveries int
	var mu sync.Mutex
	onCompleted, err := rb.bus.Subscribe([]string{event.ShiftCompleted}, "onShiftCompleted", func(ctx context.Context, e event.Event) error {
		mu.Lock()
		deliveries++
		mu.Unlock()
		return a.sheets.OnShiftCompleted(ctx, e)
	}, event.Durable)
	if err != nil {
		t.Fatal(err)
	}
	onCompleted = shift.WithRelay(onCompleted, a.shifts.Relay())

	c := a.seed(domAdmin)
	var s shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", map[string]any{
		"clientId": c.ID, "workerId": "worker-7", "role": "nurse",
		"start": "2026-11-27T19:00:00Z", "end": "2026-11-28T07:00:00Z", "breakMinutes": 30,
	}, &s)
	a.must(200, domScheduler, "POST", "/shifts/"+s.ID+"/complete", `{"actualEnd":"2026-11-28T07:30:00Z"}`, &s)

	// The event is on the stream; deliver it, then the same event twice
	// more (at-least-once delivery).
	completed := spy.collect(t)
	if len(completed) != 1 || completed[0].Type != event.ShiftCompleted {
		t.Fatalf("stream holds %+v", completed)
	}
	domDrain(t, onCompleted)
	for i := 0; i < 2; i++ {
		if err := rb.bus.Publish(ctx, completed[0]); err != nil {
			t.Fatal(err)
		}
	}
	domDrain(t, onCompleted)
	if deliveries != 3 {
		t.Fatalf("onShiftCompleted ran %d times, want 3", deliveries)
	}
	counts, err := rb.queues.Counts(ctx, job.InvoiceGeneration)
	if err != nil || counts.Waiting != 1 {
		t.Fatalf("invoice-generation %+v, %v; want one job (job id = shift id)", counts, err)
	}

	inv, err := rb.queues.Worker(job.InvoiceGeneration, a.invoices.Generate, domConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if sum := domDrain(t, inv); sum.Succeeded != 1 {
		t.Fatalf("invoice worker %+v", sum)
	}
	j, err := rb.queues.GetJob(ctx, job.InvoiceGeneration, s.ID)
	if err != nil || j.State != job.StateCompleted {
		t.Fatalf("job %+v, %v", j, err)
	}
	for i := 0; i < 2; i++ { // the same job run twice more
		if err := a.invoices.Generate(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	for coll, want := range map[string]int64{mongodb.CollWorkedTimes: 1, mongodb.CollInvoices: 1, mongodb.CollInvoiceNumbers: 1} {
		if n, _ := a.db.Collection(coll).CountDocuments(ctx, bson.D{}); n != want {
			t.Fatalf("%s: %d, want %d", coll, n, want)
		}
	}
	var got invoice.Invoice
	a.must(200, domViewer, "GET", "/shifts/"+s.ID+"/invoice", nil, &got)
	if got.Number != "INV-000001" || !reflect.DeepEqual(got.Lines, domFlowLines) ||
		got.Subtotal != 46200 || got.Tax != 9240 || got.Total != 55440 {
		t.Fatalf("invoice %+v", got)
	}
	if mc, _ := rb.queues.Counts(ctx, job.EmailNotifications); mc.Waiting != 1 {
		t.Fatalf("email jobs %+v, want one (three runs, one job id)", mc)
	}
	mail, err := rb.queues.Worker(job.EmailNotifications, a.mailer.Send, domConsumer)
	if err != nil {
		t.Fatal(err)
	}
	domDrain(t, mail)
	files, _ := filepath.Glob(filepath.Join(a.outbox, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("outbox %v", files)
	}
	raw, _ := os.ReadFile(files[0])
	if !strings.Contains(string(raw), "EUR 554.40") || !strings.Contains(string(raw), "INV-000001") {
		t.Fatalf("email:\n%s", raw)
	}
}
