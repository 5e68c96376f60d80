package drill

// The deployment the drills run: the local runner binary as one API
// process (DRAINS=off) and worker processes (`worker`), on the drill's own
// redis-server (append-only file, so it can be killed, flushed and
// restarted), a database of its own on the shared MongoDB wire server, and
// the counting SMTP server.

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/email"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/redisstream"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/local/localtest"
)

const (
	demoEmail    = "admin@example.com"
	demoPassword = "shiftflow-demo"
	billingEmail = "billing@sunrise.example" // the seeded client's (local/seed.go)
	keyPrefix    = "drill"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// runnerBinary builds the local runner once per test binary.
func runnerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			binErr = err
			return
		}
		dir, err := os.MkdirTemp("", "shiftflow-drill-")
		if err != nil {
			binErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		binPath, binErr = localtest.Build(ctx, filepath.Dir(strings.TrimSpace(string(out))), dir)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// deployment is one drill's processes and servers.
type deployment struct {
	t       *testing.T
	bin     string
	dir     string
	redis   *testenv.RedisServer
	rdb     *redis.Client
	db      *mongo.Database
	mail    *mailCounter
	api     *localtest.Runner
	env     []string
	workers []*proc
}

// newDeployment starts Redis, the SMTP counter and the API; workers are
// started by the test (startWorkers). extraEnv is added to every process.
func newDeployment(t *testing.T, extraEnv ...string) *deployment {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the whole system in processes; skipped with -short")
	}
	mongoURI := testenv.Need(t, testenv.VarMongoURI)
	rs := testenv.StartRedisServer(t, "--appendonly", "yes", "--appendfsync", "everysec")
	d := &deployment{t: t, bin: runnerBinary(t), dir: t.TempDir(), redis: rs}
	d.rdb = redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = d.rdb.Close() })

	dbName := strings.ReplaceAll(testenv.Unique("drill"), "-", "_")
	mc, err := mongo.Connect(options.Client().ApplyURI(mongoURI).SetTimeout(20 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	d.db = mc.Database(dbName)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = d.db.Drop(ctx)
		_ = mc.Disconnect(ctx)
	})

	mail, smtpAddr := startMailCounter(t)
	d.mail = mail
	d.env = append([]string{
		"REDIS_URL=redis://" + rs.Addr,
		"MONGODB_URI=" + mongoURI,
		"MONGODB_DATABASE=" + dbName,
		"REDIS_KEY_PREFIX=" + keyPrefix,
		"RATE_LIMIT_KEY_PREFIX=" + keyPrefix + ":rl:",
		"JWT_SECRET=drill-secret-drill-secret-drill-secret-0123456789",
		"SMTP_URL=smtp://" + smtpAddr,
		"HANDLER_TIMEOUT=5s",
		// Honoured once the runner reads it (issue 9); today the
		// consumers keep their 30 s default and the drill freezes past
		// -drill.visibility, which defaults to that.
		fmt.Sprintf("VISIBILITY_TIMEOUT=%s", *flagVisibility),
		"LOG_LEVEL=info",
	}, extraEnv...)

	api, err := localtest.Start(d.bin, d.dir, append([]string{"DRAINS=off", "SEED_DEMO=true",
		"SHIFTFLOW_DATA_DIR=" + filepath.Join(d.dir, "api")}, d.env...))
	if err != nil {
		t.Fatal(err)
	}
	d.api = api
	t.Cleanup(func() {
		api.Kill()
		if t.Failed() {
			t.Logf("API logs (last lines):\n%s", tail(api.Logs(), 40))
		}
	})
	return d
}

// startWorkers starts n worker processes.
func (d *deployment) startWorkers(n int) {
	d.t.Helper()
	for i := range n {
		p := &proc{name: fmt.Sprintf("worker%d", i), bin: d.bin, dir: d.dir,
			env: append([]string{"SHIFTFLOW_DATA_DIR=" + filepath.Join(d.dir, fmt.Sprintf("w%d", i))}, d.env...),
			log: filepath.Join(d.dir, fmt.Sprintf("worker%d.log", i))}
		if err := p.start(); err != nil {
			d.t.Fatal(err)
		}
		d.workers = append(d.workers, p)
		d.t.Cleanup(func() {
			p.cont()
			p.kill()
			if d.t.Failed() {
				b, _ := os.ReadFile(p.log)
				d.t.Logf("%s logs (last lines):\n%s", p.name, tail(string(b), 30))
			}
		})
	}
}

// stopWorkers asks every worker to stop (SIGTERM) and waits.
func (d *deployment) stopWorkers() {
	for _, p := range d.workers {
		p.cont()
		p.stop(30 * time.Second)
	}
}

// login returns a client logged in as the seeded admin, and the seeded
// client's id.
func (d *deployment) login(ctx context.Context) (*localtest.Client, string) {
	d.t.Helper()
	c := &localtest.Client{URL: d.api.URL, HTTP: &http.Client{Timeout: 15 * time.Second}}
	if err := c.Login(ctx, demoEmail, demoPassword); err != nil {
		d.t.Fatal(err)
	}
	id, err := c.FirstClient(ctx)
	if err != nil {
		d.t.Fatal(err)
	}
	return c, id
}

// proc is one worker process that the drill can kill, freeze and restart.
type proc struct {
	name, bin, dir, log string
	env                 []string

	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{}
	frozen    bool
	selfExits int // exits the drill did not cause
	starts    int
	exitErr   error
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(f, "==== drill: start #%d at %s\n", p.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, "worker")
	cmd.Dir = p.dir
	cmd.Env = append(cleanEnv(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.frozen = cmd, done, false
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// running reports whether the process is alive (frozen counts as alive).
func (p *proc) running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// reap notes an exit the drill did not cause and forgets the process.
func (p *proc) reap() (exited bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false, nil
	}
	select {
	case <-p.done:
		p.selfExits++
		p.cmd, p.done = nil, nil
		return true, p.exitErr
	default:
		return false, nil
	}
}

func (p *proc) signal(s syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(s)
	}
}

// kill SIGKILLs the process (a crash) and waits for it.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd, p.done, p.frozen = nil, nil, false
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// stop sends SIGTERM and waits, then kills after timeout.
func (p *proc) stop(timeout time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(timeout):
	}
	p.kill()
}

func (p *proc) freeze() {
	p.signal(syscall.SIGSTOP)
	p.mu.Lock()
	p.frozen = p.cmd != nil
	p.mu.Unlock()
}

func (p *proc) cont() {
	p.signal(syscall.SIGCONT)
	p.mu.Lock()
	p.frozen = false
	p.mu.Unlock()
}

func (p *proc) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

// cleanEnv is the test's environment without anything that would point
// the runner at other servers.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "REDIS_") || strings.HasPrefix(k, "MONGODB_") || strings.HasPrefix(k, "SMTP_") ||
			slices.Contains([]string{"JWT_SECRET", "OUTBOX_DIR", "PORT", "HOST", "DRAINS", "SEED_DEMO"}, k) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// countLines counts log lines of every worker that contain sub.
func (d *deployment) countLines(sub string) int {
	return d.countLinesFunc(func(l string) bool { return strings.Contains(l, sub) })
}

// countLinesFunc counts log lines of every worker for which match holds.
func (d *deployment) countLinesFunc(match func(string) bool) int {
	n := 0
	for _, p := range d.workers {
		f, err := os.Open(p.log)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if match(sc.Text()) {
				n++
			}
		}
		f.Close()
	}
	return n
}

// --- the shifts, over HTTP -------------------------------------------------

// scheduleShifts schedules n 8-hour weekday nurse shifts, each with its own
// worker, with parallelism par; it retries a request that fails.
func scheduleShifts(ctx context.Context, t *testing.T, c *localtest.Client, clientID string, n, par int) []string {
	t.Helper()
	ids := make([]string, n)
	errs := parallel(n, par, func(i int) error {
		// Weekdays only: Monday 2026-11-23 plus whole weeks and 0..4 days.
		start := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC).AddDate(0, 0, (i/5)*7+i%5)
		body := map[string]any{"clientId": clientID, "workerId": fmt.Sprintf("drill-worker-%d", i), "role": "nurse",
			"start": start.Format(time.RFC3339), "end": start.Add(8 * time.Hour).Format(time.RFC3339), "breakMinutes": 0}
		return retry(ctx, func() error {
			var s localtest.Shift
			status, err := c.Do(ctx, "POST", "/shifts", body, &s)
			if err == nil && status != http.StatusCreated {
				err = fmt.Errorf("schedule: status %d", status)
			}
			ids[i] = s.ID
			return err
		})
	})
	if errs != nil {
		t.Fatal(errs)
	}
	return ids
}

// completeShift completes a shift, retrying until the API answers 200 (or
// says it is already completed: a retried request whose first try went
// through, or the concurrent-complete 409 of issue 9 item 2). It returns
// how many tries it took.
func completeShift(ctx context.Context, c *localtest.Client, id string) (int, error) {
	tries := 0
	err := retry(ctx, func() error {
		tries++
		var s localtest.Shift
		status, err := c.Do(ctx, "POST", "/shifts/"+id+"/complete", map[string]any{}, &s)
		if err != nil {
			return err
		}
		if status == http.StatusOK && s.Status == "completed" {
			return nil
		}
		if status == http.StatusConflict {
			var cur localtest.Shift
			if st, err := c.Do(ctx, "GET", "/shifts/"+id, nil, &cur); err == nil && st == 200 && cur.Status == "completed" {
				return nil
			}
		}
		return fmt.Errorf("complete %s: status %d", id, status)
	})
	return tries, err
}

// retry calls f until it succeeds or ctx ends, 250 ms apart.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// parallel runs f(0..n-1) on par goroutines and returns the first error.
func parallel(n, par int, f func(int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// --- what the drill checks ------------------------------------------------

// state is what the servers hold for the drill's shifts.
type state struct {
	shifts      int
	timesheets  int            // workedTimes documents of the shifts
	invoices    map[string]int // shift id -> invoices
	invoiceIDs  map[string]string
	sequences   []int64
	numbers     map[string]int // invoice number -> invoices
	mail        mailCounts
	queues      map[string]job.Counts
	deadLetters int
	subPending  int64 // entries of onShiftCompleted delivered, not acknowledged
	subLag      int64 // entries not yet delivered to onShiftCompleted
	subRetries  int64 // events waiting for a retry (retry stream, delayed)
	lost        map[string]string
	readErr     error
}

func (d *deployment) read(ctx context.Context, ids []string) state {
	st := state{shifts: len(ids), invoices: map[string]int{}, invoiceIDs: map[string]string{},
		numbers: map[string]int{}, queues: map[string]job.Counts{}, mail: d.mail.snapshot()}
	var err error
	st.timesheets, err = d.countWorkedTimes(ctx, ids)
	if err != nil {
		st.readErr = err
		return st
	}
	if err := d.readInvoices(ctx, ids, &st); err != nil {
		st.readErr = err
		return st
	}
	if err := d.readRedis(ctx, &st); err != nil {
		st.readErr = err
	}
	return st
}

func (d *deployment) countWorkedTimes(ctx context.Context, ids []string) (int, error) {
	n, err := d.db.Collection(mongodb.CollWorkedTimes).CountDocuments(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	return int(n), err
}

func (d *deployment) readInvoices(ctx context.Context, ids []string, st *state) error {
	cur, err := d.db.Collection(mongodb.CollInvoices).Find(ctx, bson.D{},
		options.Find().SetProjection(bson.D{{Key: "shiftId", Value: 1}, {Key: "number", Value: 1}, {Key: "sequence", Value: 1}}))
	if err != nil {
		return fmt.Errorf("read invoices: %w", err)
	}
	var invs []struct {
		ID       string `bson:"_id"`
		ShiftID  string `bson:"shiftId"`
		Number   string `bson:"number"`
		Sequence int64  `bson:"sequence"`
	}
	if err := cur.All(ctx, &invs); err != nil {
		return fmt.Errorf("read invoices: %w", err)
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for _, inv := range invs {
		if !want[inv.ShiftID] {
			continue
		}
		st.invoices[inv.ShiftID]++
		st.invoiceIDs[inv.ShiftID] = inv.ID
		st.numbers[inv.Number]++
		st.sequences = append(st.sequences, inv.Sequence)
	}
	slices.Sort(st.sequences)
	return nil
}

func (d *deployment) readRedis(ctx context.Context, st *state) error {
	qs := redisstream.NewQueues(d.rdb, redisstream.QueueOptions{Prefix: keyPrefix})
	for _, q := range []string{job.InvoiceGeneration, job.EmailNotifications} {
		c, err := qs.Counts(ctx, q)
		if err != nil {
			return fmt.Errorf("counts of %s: %w", q, err)
		}
		st.queues[q] = c
	}
	bus := redisstream.NewBus(d.rdb, redisstream.BusOptions{Prefix: keyPrefix})
	dl, err := bus.DeadLetters(ctx, app.OnShiftCompleted, 1000)
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	st.deadLetters = len(dl)
	base := keyPrefix + ":ev:{events}:"
	groups, err := d.rdb.XInfoGroups(ctx, base+"stream").Result()
	if err != nil && !strings.Contains(err.Error(), "no such key") {
		return fmt.Errorf("groups: %w", err)
	}
	for _, g := range groups {
		if g.Name == app.OnShiftCompleted {
			st.subPending, st.subLag = g.Pending, g.Lag
		}
	}
	sub := base + "sub:" + app.OnShiftCompleted + ":"
	if rg, err := d.rdb.XInfoGroups(ctx, sub+"retry").Result(); err == nil {
		for _, g := range rg {
			st.subRetries += g.Pending + g.Lag
		}
	}
	n, _ := d.rdb.ZCard(ctx, sub+"delayed").Result()
	st.subRetries += n
	st.lost, _ = d.rdb.HGetAll(ctx, base+"lost").Result()
	return nil
}

// settled: every shift has its timesheet, invoice and an email, and no
// job or event is waiting, delayed, held or running anywhere, so nothing
// can run again.
func (st state) settled() bool {
	if st.readErr != nil || st.timesheets != st.shifts || len(st.invoices) != st.shifts {
		return false
	}
	for _, id := range st.invoiceIDs {
		if st.mail.ByID[messageID(id)] == 0 {
			return false
		}
	}
	return st.idle()
}

// idle: nothing is queued, delayed or running.
func (st state) idle() bool {
	for _, c := range st.queues {
		if c.Waiting+c.Delayed+c.Active > 0 {
			return false
		}
	}
	return st.subPending == 0 && st.subLag == 0 && st.subRetries == 0
}

// messageID is the Message-ID the mailer gives an invoice's email (the
// workers run with the default EMAIL_FROM).
func messageID(invoiceID string) string {
	return invoice.MessageID(invoice.MessageKey(invoiceID), email.DefaultFrom)
}

// problems lists every way st breaks the promise: one timesheet, one
// invoice, one number (gapless from 1), exactly one email per completed
// shift, nothing pending, failed or dead-lettered.
func (st state) problems(ids []string) (list []string, dupEmails, dupInvoices int) {
	add := func(f string, a ...any) { list = append(list, fmt.Sprintf(f, a...)) }
	if st.readErr != nil {
		add("reading the servers: %v", st.readErr)
	}
	if st.timesheets != st.shifts {
		add("timesheets: %d of %d shifts", st.timesheets, st.shifts)
	}
	missingInv, missingMail := 0, 0
	var noInvoice []string
	for _, id := range ids {
		switch n := st.invoices[id]; {
		case n == 0:
			missingInv++
			if len(noInvoice) < 5 {
				noInvoice = append(noInvoice, id)
			}
		case n > 1:
			dupInvoices += n - 1
		}
		if inv, ok := st.invoiceIDs[id]; ok {
			switch n := st.mail.ByID[messageID(inv)]; {
			case n == 0:
				missingMail++
			case n > 1:
				dupEmails += n - 1
			}
		}
	}
	if missingInv > 0 {
		add("%d of %d shifts have no invoice (for example %s)", missingInv, st.shifts, strings.Join(noInvoice, ", "))
	}
	if dupInvoices > 0 {
		add("%d invoices beyond one per shift", dupInvoices)
	}
	// Gapless: the shifts' numbers are consecutive (a subset of shifts
	// completed after others starts after theirs; all of an
	// organisation's shifts start at 1, which the whole-set reads check).
	for i, s := range st.sequences {
		if first := st.sequences[0]; first < 1 || s != first+int64(i) {
			add("invoice sequences are not %d..%d without gaps or repeats (position %d holds %d)",
				first, first+int64(len(st.sequences))-1, i+1, s)
			break
		}
	}
	for num, n := range st.numbers {
		if n > 1 {
			add("invoice number %s used %d times", num, n)
		}
	}
	if missingMail > 0 {
		add("%d invoices were never emailed", missingMail)
	}
	if dupEmails > 0 {
		_, ids := st.mail.duplicates()
		add("%d duplicate email deliveries (%d invoices mailed more than once; %d deliveries for %d invoices)",
			dupEmails, ids, st.mail.Total, len(st.invoiceIDs))
	}
	for k, n := range st.mail.BySubject {
		if n > 1 && dupEmails == 0 {
			add("recipient+subject %q delivered %d times", strings.ReplaceAll(k, "\x00", " / "), n)
		}
	}
	if st.mail.Bad > 0 {
		add("%d deliveries without a Message-ID or unparsable", st.mail.Bad)
	}
	for q, c := range st.queues {
		if c.Failed > 0 {
			add("queue %s: %d failed jobs", q, c.Failed)
		}
		if c.Waiting+c.Delayed+c.Active > 0 {
			add("queue %s: still %d waiting, %d delayed, %d active", q, c.Waiting, c.Delayed, c.Active)
		}
	}
	if st.deadLetters > 0 {
		add("subscription %s: %d dead letters", app.OnShiftCompleted, st.deadLetters)
	}
	if st.subPending+st.subLag+st.subRetries > 0 {
		add("subscription %s: %d pending, %d undelivered, %d waiting for a retry", app.OnShiftCompleted, st.subPending, st.subLag, st.subRetries)
	}
	if len(st.lost) > 0 {
		add("events trimmed before they were processed: %v", st.lost)
	}
	return list, dupEmails, dupInvoices
}

// failedJobs describes the failed jobs of the queues (for the report).
func (d *deployment) failedJobs(ctx context.Context) []string {
	qs := redisstream.NewQueues(d.rdb, redisstream.QueueOptions{Prefix: keyPrefix})
	var out []string
	for _, q := range []string{job.InvoiceGeneration, job.EmailNotifications} {
		jobs, err := qs.ListFailed(ctx, q, 0, 20)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", q, err))
			continue
		}
		for _, j := range jobs {
			out = append(out, fmt.Sprintf("%s %s attempt %d/%d: %s", q, j.ID, j.Attempt, j.MaxAttempts, j.LastError))
		}
	}
	return out
}

// waitSettled polls until st.settled() or the timeout, and returns the
// last state read.
func (d *deployment) waitSettled(ids []string, timeout time.Duration) (state, bool) {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st := d.read(ctx, ids)
		cancel()
		if st.settled() {
			return st, true
		}
		if time.Now().After(deadline) {
			return st, false
		}
		time.Sleep(time.Second)
	}
}
