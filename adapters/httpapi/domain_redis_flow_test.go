package httpapi_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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
		t.Log("jobs on the real Redis")
		return testenv.RedisPlain(t)
	}
	t.Logf("jobs on the embedded Redis (set %s for the real one)", testenv.VarRedisURL)
	c, _ := testenv.MiniRedis(t)
	return c
}

// TestFlowOnRedisQueuesAndMongoDB runs the background half of the flow on
// the real job queue (adapters/redisstream) and the MongoDB server: the
// subscriber adds the invoice job three times (one job), the worker drains
// it, the same job is run twice more by hand, and the email worker writes
// the .eml. One WorkedTime, one invoice, one number.
func TestFlowOnRedisQueuesAndMongoDB(t *testing.T) {
	a := domNewApp(t)
	ctx := domCtx(t)
	rc := domRedis(t)
	queues := redisstream.NewQueues(rc, redisstream.QueueOptions{Prefix: testenv.Unique("sftest")})
	// Rebuild the services that add jobs on the real queue.
	a.useJobs(queues)

	c := a.seed(domAdmin)
	var s shift.Shift
	a.must(201, domScheduler, "POST", "/shifts", map[string]any{
		"clientId": c.ID, "workerId": "worker-7", "role": "nurse",
		"start": "2026-11-27T19:00:00Z", "end": "2026-11-28T07:00:00Z", "breakMinutes": 30,
	}, &s)
	a.must(200, domScheduler, "POST", "/shifts/"+s.ID+"/complete", `{"actualEnd":"2026-11-28T07:30:00Z"}`, &s)
	completed := a.bus.ofType(event.ShiftCompleted)
	if len(completed) != 1 {
		t.Fatalf("%d shift.completed", len(completed))
	}
	for i := 0; i < 3; i++ { // the same event delivered three times
		if err := a.sheets.OnShiftCompleted(ctx, completed[0]); err != nil {
			t.Fatal(err)
		}
	}
	counts, err := queues.Counts(ctx, job.InvoiceGeneration)
	if err != nil || counts.Waiting != 1 {
		t.Fatalf("invoice-generation counts %+v, %v; want one waiting job", counts, err)
	}

	opts := redisstream.WorkerOptions{Concurrency: 2, BlockInterval: 50 * time.Millisecond, SafetyMargin: 100 * time.Millisecond, HandlerTimeout: 10 * time.Second}
	drain := func(queue string, h job.Handler) {
		t.Helper()
		w, err := queues.Worker(queue, h, opts)
		if err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		sum, err := w.Drain(dctx)
		if err != nil || sum.Succeeded != 1 || sum.Failed != 0 {
			t.Fatalf("drain %s: %+v, %v", queue, sum, err)
		}
	}
	drain(job.InvoiceGeneration, a.invoices.Generate)
	j, err := queues.GetJob(ctx, job.InvoiceGeneration, s.ID)
	if err != nil || j.State != job.StateCompleted {
		t.Fatalf("job %s: %+v, %v", s.ID, j, err)
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
	var inv invoice.Invoice
	a.must(200, domViewer, "GET", "/shifts/"+s.ID+"/invoice", nil, &inv)
	if inv.Number != "INV-000001" || inv.Subtotal != 46200 || inv.Tax != 9240 || inv.Total != 55440 {
		t.Fatalf("invoice %s %d/%d/%d", inv.Number, inv.Subtotal, inv.Tax, inv.Total)
	}
	if mc, _ := queues.Counts(ctx, job.EmailNotifications); mc.Waiting != 1 {
		t.Fatalf("email jobs %+v, want one (three runs, one job id)", mc)
	}
	drain(job.EmailNotifications, a.mailer.Send)
	files, _ := filepath.Glob(filepath.Join(a.outbox, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("outbox %v", files)
	}
	raw, _ := os.ReadFile(files[0])
	if !strings.Contains(string(raw), "EUR 554.40") {
		t.Fatalf("email:\n%s", raw)
	}
}
