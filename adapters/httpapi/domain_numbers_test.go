package httpapi_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/redisstream"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/shift"
)

// TestConcurrentInvoiceWorkersNumberGaplessly completes many shifts and
// lets two invoice workers (separate consumers, 8 handlers each) race on
// the real queue: every shift gets one invoice and the numbers are exactly
// 1..n. It logs how long the pipeline took.
func TestConcurrentInvoiceWorkersNumberGaplessly(t *testing.T) {
	const n = 24
	a := domNewApp(t)
	ctx := domCtx(t)
	rb := domNewRealBus(t)
	a.useBusAndJobs(rb.bus, rb.queues)
	c := a.seed(domAdmin)
	onCompleted, err := rb.bus.Subscribe([]string{event.ShiftCompleted}, "onShiftCompleted", a.sheets.OnShiftCompleted, event.Durable)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		day := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC).AddDate(0, 0, i)
		s, err := a.shifts.Schedule(ctx, "org-a", shift.Input{ClientID: c.ID, WorkerID: fmt.Sprint("w", i), Role: "nurse",
			Start: day, End: day.Add(8 * time.Hour), BreakMinutes: 30})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.shifts.Complete(ctx, "org-a", s.ID, shift.Completion{}); err != nil {
			t.Fatal(err)
		}
	}
	scheduled := time.Since(start)
	opts := domConsumer
	opts.Concurrency = 8
	sub := domDrain(t, onCompleted)
	if sub.Succeeded != n {
		t.Fatalf("subscriber %+v", sub)
	}
	done := make(chan event.DrainSummary, 2)
	for w := 0; w < 2; w++ {
		o := opts
		o.Consumer = fmt.Sprint("invoice-worker-", w)
		worker, err := rb.queues.Worker(job.InvoiceGeneration, a.invoices.Generate, redisstream.WorkerOptions(o))
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- domDrain(t, worker) }()
	}
	total := (<-done).Succeeded + (<-done).Succeeded
	elapsed := time.Since(start)
	if total != n {
		t.Fatalf("workers succeeded %d jobs, want %d", total, n)
	}
	list, err := a.invoices.List(ctx, "org-a", time.Time{}, time.Time{})
	if err != nil || len(list) != n {
		t.Fatalf("%d invoices, %v", len(list), err)
	}
	var numbers []string
	shifts := map[string]bool{}
	weekend := 0
	for _, inv := range list {
		numbers = append(numbers, inv.Number)
		shifts[inv.ShiftID] = true
		switch inv.Total {
		case 27000: // weekday: 450 min x 30.00/h = 225.00 + 20 %
		case 33750: // weekend: x 125 %
			weekend++
		default:
			t.Fatalf("invoice %s total %d", inv.Number, inv.Total)
		}
	}
	if weekend != 6 { // 2 Nov 2026 is a Monday: 24 days hold 6 weekend days
		t.Fatalf("%d weekend invoices, want 6", weekend)
	}
	sort.Strings(numbers)
	for i, num := range numbers {
		if want := invoice.FormatNumber("INV-", int64(i+1)); num != want {
			t.Fatalf("numbers %v are not INV-000001..%d without gaps", numbers, n)
		}
	}
	if len(shifts) != n {
		t.Fatalf("%d distinct shifts invoiced", len(shifts))
	}
	t.Logf("%d shifts: schedule+complete %v (%.1f ms/shift), to all invoices stored %v (%.1f ms/invoice)",
		n, scheduled.Round(time.Millisecond), float64(scheduled.Milliseconds())/n, elapsed.Round(time.Millisecond),
		float64(elapsed.Milliseconds()-scheduled.Milliseconds())/n)
}
