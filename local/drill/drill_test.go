// Package drill holds issue 9's whole-flow fault drills: the local runner
// as separate processes (one API, two workers) on a real redis-server
// with an append-only file and on the MongoDB wire server, mail going to
// a counting SMTP server inside the test.
//
//	source /tmp/sf-env
//	SHIFTFLOW_DRILL=1 go test -count=1 -v -run TestDrill ./local/drill
//	SHIFTFLOW_DRILL=1 go test -count=1 -v -timeout 30m -run TestDrillWholeFlow ./local/drill \
//	    -drill.shifts=2000 -drill.window=3m -drill.kill-every=2s -drill.wait=10m
package drill

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/local/localtest"
)

var (
	flagShifts     = flag.Int("drill.shifts", 300, "shifts completed in the whole-flow drill")
	flagWindow     = flag.Duration("drill.window", 40*time.Second, "how long faults are injected while shifts are completed (at least the freeze + 5s)")
	flagKillEvery  = flag.Duration("drill.kill-every", 3*time.Second, "a worker is SIGKILLed (and restarted) this often")
	flagRedisDown  = flag.Duration("drill.redis-down", 3*time.Second, "how long Redis stays down after its kill -9")
	flagVisibility = flag.Duration("drill.visibility", 5*time.Second,
		"visibility timeout of the workers (passed as VISIBILITY_TIMEOUT); the frozen worker stays stopped 5s longer")
	flagParallel   = flag.Int("drill.parallel", 4, "concurrent HTTP requests of the load")
	flagWait       = flag.Duration("drill.wait", 3*time.Minute, "how long the system may take to settle after the faults")
	flagLossShifts = flag.Int("drill.loss-shifts", 30, "shifts completed before the FLUSHALL in the Redis-loss drill")
)

// fixesMerged: the drills assert issue 9's promises, which today's code
// does not keep yet (duplicate emails, no reconciler). Until the fixes are
// merged they run only with SHIFTFLOW_DRILL=1, so CI is not red; flip this
// to true when they are, and the drills run wherever the servers are.
const fixesMerged = true

func gate(t *testing.T) {
	t.Helper()
	if !fixesMerged && os.Getenv("SHIFTFLOW_DRILL") != "1" {
		t.Skip("issue 9 drill: fails until the exactly-once fixes are merged; SHIFTFLOW_DRILL=1 runs it (see fixesMerged)")
	}
}

// faultLog counts what the drill did to the processes.
type faultLog struct {
	kills, redisKills, freezes, restarts int
	frozenFor                            time.Duration
}

// TestDrillWholeFlowUnderFaults: at least 300 shifts completed over HTTP
// while workers are SIGKILLed every few seconds, Redis is killed -9 once
// and restarted on its append-only file, and a worker is SIGSTOPped past
// its visibility timeout. Afterwards every completed shift has one
// timesheet, one invoice, one gapless number and exactly one delivered
// email, and nothing is pending, failed or dead-lettered.
func TestDrillWholeFlowUnderFaults(t *testing.T) {
	gate(t)
	began := time.Now()
	d := newDeployment(t)
	d.startWorkers(2)

	ctx, cancel := context.WithTimeout(context.Background(), *flagWindow+*flagWait+5*time.Minute)
	defer cancel()
	c, clientID := d.login(ctx)
	t.Logf("deployment up in %s", time.Since(began).Round(time.Millisecond))
	t0 := time.Now()
	ids := scheduleShifts(ctx, t, c, clientID, *flagShifts, *flagParallel)
	t.Logf("scheduled %d shifts in %s", len(ids), time.Since(t0).Round(time.Millisecond))

	freezeFor := *flagVisibility + 5*time.Second
	window := max(*flagWindow, freezeFor+5*time.Second)
	load := startLoad(ctx, c, ids, window-5*time.Second, *flagParallel)
	faultStart := time.Now()
	fl := d.injectFaults(window, freezeFor, load.done)
	if err := load.wait(); err != nil {
		t.Fatalf("completing the shifts: %v", err)
	}
	t.Logf("faults for %s: %d worker kills, %d Redis kill(s), worker frozen %s, %d worker restarts; %d completes took %d tries",
		time.Since(faultStart).Round(time.Millisecond), fl.kills, fl.redisKills, fl.frozenFor.Round(time.Millisecond), fl.restarts,
		len(ids), load.tries.Load())

	settleStart := time.Now()
	st, ok := d.waitSettled(ids, *flagWait)
	settledIn := time.Since(settleStart)
	// A last look after a pause, so a late duplicate is counted too.
	time.Sleep(2 * time.Second)
	d.stopWorkers()
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	st = d.read(rctx, ids)
	problems, dupEmails, _ := st.problems(ids)
	if len(st.sequences) > 0 && st.sequences[0] != 1 {
		// Every invoice of the organisation is one of these shifts'.
		problems = append(problems, fmt.Sprintf("the first invoice number is %d, not 1", st.sequences[0]))
	}
	failed := d.failedJobs(rctx)

	t.Logf("DRILL SUMMARY shifts=%d worker-kills=%d redis-kills=%d frozen=%s restarts=%d invoices=%d emails=%d duplicate-emails=%d problems=%d settled=%v (in %s) total=%s",
		len(ids), fl.kills, fl.redisKills, fl.frozenFor.Round(time.Second), fl.restarts, len(st.invoiceIDs), st.mail.Total, dupEmails,
		len(problems), ok, settledIn.Round(time.Second), time.Since(began).Round(time.Second))
	for _, f := range failed {
		t.Logf("failed job: %s", f)
	}
	reruns := d.countLinesFunc(func(l string) bool {
		return strings.Contains(l, `msg="job done"`) && !strings.Contains(l, " attempt=1 ")
	})
	t.Logf("worker log lines: %d jobs done on a second or later attempt, %d 'lease lost', %d 'stalled', %d 'redis: error'",
		reruns, d.countLines("lease lost"), d.countLines("stalled"), d.countLines("redis: error"))
	if !ok {
		t.Errorf("not settled within %s after the faults", *flagWait)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// load completes the shifts over HTTP, spread evenly over span.
type load struct {
	done  chan struct{}
	err   error
	tries atomic.Int64
}

func startLoad(ctx context.Context, c *localtest.Client, ids []string, span time.Duration, par int) *load {
	l := &load{done: make(chan struct{})}
	gap := span / time.Duration(len(ids))
	go func() {
		defer close(l.done)
		next := make(chan string)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for range par {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range next {
					n, err := completeShift(ctx, c, id)
					l.tries.Add(int64(n))
					if err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
			}()
		}
		t0 := time.Now()
		for i, id := range ids {
			time.Sleep(time.Until(t0.Add(time.Duration(i) * gap)))
			next <- id
		}
		close(next)
		wg.Wait()
		if len(errs) > 0 {
			l.err = fmt.Errorf("%d shifts not completed, first: %w", len(errs), errs[0])
		}
	}()
	return l
}

func (l *load) wait() error { <-l.done; return l.err }

// injectFaults runs on the test goroutine (it restarts Redis, which may
// t.Fatal) until the window has passed and the load is done: it restarts
// worker processes that are down (as a container platform would), kills
// one every kill-every, freezes worker 0 for freezeFor from the first
// second, and kills Redis once, a third into the window.
func (d *deployment) injectFaults(window, freezeFor time.Duration, loadDone <-chan struct{}) faultLog {
	var fl faultLog
	start := time.Now()
	nextKill := *flagKillEvery
	redisAt := window / 3
	var frozenAt time.Duration
	lastStart := map[*proc]time.Time{}
	victim := 0
	for {
		now := time.Since(start)
		d.superviseWorkers(lastStart, &fl)
		frozen := d.workers[0].isFrozen()
		switch {
		case fl.freezes == 0 && now >= time.Second:
			d.workers[0].freeze()
			fl.freezes++
			frozenAt = now
		case frozen && now >= frozenAt+freezeFor:
			d.workers[0].cont()
			fl.frozenFor = now - frozenAt
		}
		if fl.redisKills == 0 && now >= redisAt {
			d.redis.Kill()
			fl.redisKills++
			time.Sleep(*flagRedisDown)
			d.redis.Start()
		}
		if now >= nextKill {
			nextKill += *flagKillEvery
			for range d.workers {
				victim = (victim + 1) % len(d.workers)
				if p := d.workers[victim]; !p.isFrozen() && p.running() {
					p.kill()
					fl.kills++
					break
				}
			}
		}
		select {
		case <-loadDone:
			if now >= window && !d.workers[0].isFrozen() {
				d.superviseWorkers(map[*proc]time.Time{}, &fl)
				return fl
			}
		default:
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// superviseWorkers restarts every worker process that is not running,
// each at most twice a second (a worker started while Redis is down
// exits at once today: issue 9 item 13).
func (d *deployment) superviseWorkers(lastStart map[*proc]time.Time, fl *faultLog) {
	for _, p := range d.workers {
		if p.running() || time.Since(lastStart[p]) < 500*time.Millisecond {
			continue
		}
		if exited, err := p.reap(); exited {
			d.t.Logf("%s exited by itself: %v", p.name, err)
		}
		if err := p.start(); err != nil {
			d.t.Fatal(err)
		}
		lastStart[p] = time.Now()
		fl.restarts++
	}
}

// TestDrillRedisLossConverges: shifts are completed while no worker runs,
// then Redis loses everything (FLUSHALL on the drill's own server), then
// the workers start: every shift still gets its timesheet, invoice and one
// email within RECONCILE_INTERVAL + RECONCILE_AFTER (plus a start-up and
// load allowance), because MongoDB is the source of truth (issue 9 item
// 3). Then warm workers survive a second FLUSHALL mid-run: shifts
// completed just before it and after it are processed too (items 3, 4).
func TestDrillRedisLossConverges(t *testing.T) {
	gate(t)
	const interval, after, slack = time.Second, 2 * time.Second, 30 * time.Second
	d := newDeployment(t, "RECONCILE_INTERVAL="+interval.String(), "RECONCILE_AFTER="+after.String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, clientID := d.login(ctx)
	ids := scheduleShifts(ctx, t, c, clientID, *flagLossShifts, *flagParallel)
	if err := parallel(len(ids), *flagParallel, func(i int) error { _, err := completeShift(ctx, c, ids[i]); return err }); err != nil {
		t.Fatal(err)
	}
	// The API relayed the events out of the shifts' outboxes: what is lost
	// next exists nowhere but in MongoDB's shifts.
	if n, err := d.rdb.XLen(ctx, keyPrefix+":ev:{events}:stream").Result(); err != nil || n < int64(len(ids)) {
		t.Fatalf("events stream holds %d entries (%v), want the %d completions", n, err, len(ids))
	}
	if err := d.rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	bound := interval + after + slack
	d.startWorkers(2)
	t0 := time.Now()
	st, ok := d.waitSettled(ids, bound)
	t.Logf("after FLUSHALL with no worker running: settled=%v in %s (bound %s): %d/%d timesheets, %d invoices, %d emails",
		ok, time.Since(t0).Round(time.Millisecond), bound, st.timesheets, len(ids), len(st.invoiceIDs), st.mail.Total)
	if !ok {
		problems, _, _ := st.problems(ids)
		t.Errorf("completed shifts did not converge after Redis lost its data: %v", problems)
	}

	// A FLUSHALL mid-run: consumer groups vanish under busy workers. The
	// work of shifts completed shortly before it is in flight when it
	// comes (without a reconciler some of it is lost: item 3); shifts
	// completed after it are processed only by workers that recreate
	// their groups (item 4).
	more := scheduleShifts(ctx, t, c, clientID, 40, *flagParallel)
	var (
		doneMu     sync.Mutex
		completed  int
		flushedAt  time.Time
		afterFlush []string
	)
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			doneMu.Lock()
			n := completed
			doneMu.Unlock()
			if n >= 10 || ctx.Err() != nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := d.rdb.FlushAll(ctx).Err(); err != nil {
			t.Errorf("FLUSHALL: %v", err)
		}
		doneMu.Lock()
		flushedAt = time.Now()
		doneMu.Unlock()
	}()
	if err := parallel(len(more), *flagParallel, func(i int) error {
		start := time.Now()
		_, err := completeShift(ctx, c, more[i])
		doneMu.Lock()
		completed++
		if !flushedAt.IsZero() && start.After(flushedAt) {
			afterFlush = append(afterFlush, more[i])
		}
		doneMu.Unlock()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	<-flushed
	t1 := time.Now()
	st2, ok2 := d.waitSettled(more, bound)
	stAfter := d.read(ctx, afterFlush)
	t.Logf("FLUSHALL under busy workers: settled=%v in %s: %d/%d invoices (of the shifts completed after the FLUSHALL: %d/%d)",
		ok2, time.Since(t1).Round(time.Millisecond), len(st2.invoiceIDs), len(more), len(stAfter.invoiceIDs), len(afterFlush))
	if !ok2 {
		problems, _, _ := st2.problems(more)
		t.Errorf("shifts completed around a FLUSHALL under running workers did not converge: %v", problems)
	}

	d.stopWorkers()
	all := append(append([]string(nil), ids...), more...)
	final := d.read(ctx, all)
	problems, dup, _ := final.problems(all)
	t.Logf("DRILL SUMMARY redis-loss shifts=%d invoices=%d emails=%d duplicate-emails=%d problems=%d", len(all), len(final.invoiceIDs), final.mail.Total, dup, len(problems))
	for _, p := range problems {
		t.Error(p)
	}
}
