package email_test

// The invoice Mailer on real components: the SMTP sender against a
// counting server (smtptest) and the sent-records in the MongoDB wire
// server (testenv.MongoDB).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/email"
	"github.com/shiftflow/shiftflow/adapters/email/smtptest"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/ulid"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

const testFrom = "invoices@shiftflow.test"

type mailEnv struct {
	t       *testing.T
	ctx     context.Context
	srv     *smtptest.Server
	invs    *mongodb.InvoiceRepo
	records *mongodb.EmailRepo
	dbName  string
	seq     int64
}

func newMailEnv(t *testing.T, opts ...smtptest.Option) *mailEnv {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	db := testenv.MongoDB(t)
	e := &mailEnv{t: t, ctx: ctx, srv: smtptest.Start(t, opts...), invs: mongodb.NewInvoiceRepo(db), records: mongodb.NewEmailRepo(db), dbName: db.Name()}
	if err := e.records.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// invoiceJob stores a new invoice and returns its email job.
func (e *mailEnv) invoiceJob() (*job.Job, string) {
	e.t.Helper()
	e.seq++
	now := time.Now().UTC().Truncate(time.Millisecond)
	inv := invoice.Invoice{ID: ulid.New(), OrganizationID: "org-a", Number: invoice.FormatNumber("INV-", e.seq), Sequence: e.seq,
		ShiftID: ulid.New(), ClientID: "c1", Currency: "EUR",
		Lines:    []pricing.Line{{Description: "nurse regular", Minutes: 60, HourlyRate: 3000, MultiplierPercent: 100, Amount: 3000}},
		Subtotal: 3000, Tax: 600, Total: 3600, IssuedAt: now, DueAt: now.AddDate(0, 0, 14)}
	stored, err := e.invs.Create(e.ctx, inv)
	if err != nil {
		e.t.Fatal(err)
	}
	data, _ := json.Marshal(invoice.EmailJob{InvoiceID: stored.ID, OrganizationID: "org-a", To: "ap@client.test"})
	key := invoice.MessageKey(stored.ID)
	return &job.Job{ID: key, Queue: job.EmailNotifications, Data: data, Attempt: 1}, invoice.MessageID(key, testFrom)
}

// mailer returns a Mailer with its own SMTP sender (its own connections).
func (e *mailEnv) mailer(records invoice.SentRecords) *invoice.Mailer {
	e.t.Helper()
	s, err := email.NewSMTP(e.srv.URL(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	s.Timeout = 2 * time.Second
	if records == nil {
		records = e.records
	}
	return invoice.NewMailer(e.invs, records, s, testFrom)
}

func (e *mailEnv) record(j *job.Job) (invoice.SentRecord, bool) {
	e.t.Helper()
	rec, ok, err := e.records.Find(e.ctx, "org-a", j.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return rec, ok
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestMailerRerunDeliversNothingNew(t *testing.T) {
	e := newMailEnv(t)
	j, msgID := e.invoiceJob()
	m := e.mailer(nil)
	for run := 1; run <= 3; run++ {
		if err := m.Send(e.ctx, j); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}
	if n := e.srv.Count(msgID); n != 1 || len(e.srv.Deliveries()) != 1 {
		t.Fatalf("%d deliveries of %s (%d in all), want 1", n, msgID, len(e.srv.Deliveries()))
	}
	rec, ok := e.record(j)
	if !ok || rec.State != invoice.SentDelivered || rec.MessageID != msgID || rec.To != "ap@client.test" || rec.SentAt.IsZero() {
		t.Fatalf("record %+v %v", rec, ok)
	}
	var inv struct{ InvoiceID string }
	_ = json.Unmarshal(j.Data, &inv)
	if sent, err := e.records.Sent(e.ctx, "org-a", inv.InvoiceID); err != nil || !sent {
		t.Fatalf("Sent: %v %v", sent, err)
	}
}

// gate holds every Insert until n have arrived, so that n racing mailers
// have all prepared their message (body written, no terminator) before
// any takes the record.
type gate struct {
	invoice.SentRecords
	n       int
	mu      sync.Mutex
	arrived int
	open    chan struct{}
}

func newGate(r invoice.SentRecords, n int) *gate {
	return &gate{SentRecords: r, n: n, open: make(chan struct{})}
}

func (g *gate) Insert(ctx context.Context, rec invoice.SentRecord) (bool, error) {
	g.mu.Lock()
	g.arrived++
	if g.arrived == g.n {
		close(g.open)
	}
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	return g.SentRecords.Insert(ctx, rec)
}

func TestMailersRacingDeliverExactlyOne(t *testing.T) {
	e := newMailEnv(t)
	const rounds, racers = 25, 3
	for round := 0; round < rounds; round++ {
		j, msgID := e.invoiceJob()
		// Odd rounds race freely; even rounds line the racers up at the
		// insert, so every loser holds a prepared message it must abort.
		var records invoice.SentRecords = e.records
		gated := round%2 == 0
		if gated {
			records = newGate(e.records, racers)
		}
		droppedBefore := e.srv.Dropped()
		var wg sync.WaitGroup
		errs := make(chan error, racers)
		for r := 0; r < racers; r++ {
			m := e.mailer(records)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- m.Send(e.ctx, j)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if n := e.srv.Count(msgID); n != 1 {
			t.Fatalf("round %d: %d deliveries of %s, want 1", round, n, msgID)
		}
		if gated {
			// The losers' transactions reached DATA and were discarded.
			eventually(t, "the losers' dropped transactions", func() bool { return e.srv.Dropped() == droppedBefore+racers-1 })
		}
	}
	if got := len(e.srv.Deliveries()); got != rounds {
		t.Fatalf("%d deliveries in %d rounds", got, rounds)
	}
}

// committedMeanwhile is a store in which another run commits the email
// between this run's Prepare and its insert.
type committedMeanwhile struct{ invoice.SentRecords }

func (c committedMeanwhile) Insert(ctx context.Context, rec invoice.SentRecord) (bool, error) {
	other := rec
	other.Attempt = ulid.New()
	if won, err := c.SentRecords.Insert(ctx, other); err != nil || !won {
		return false, fmt.Errorf("the other run's insert: %v %v", won, err)
	}
	return c.SentRecords.Insert(ctx, rec)
}

func TestMailerAbortedBeforeTheTerminatorDeliversNothing(t *testing.T) {
	e := newMailEnv(t)
	j, msgID := e.invoiceJob()
	if err := e.mailer(committedMeanwhile{e.records}).Send(e.ctx, j); err != nil {
		t.Fatal(err) // the email is sent (by the other run): success
	}
	eventually(t, "the aborted transaction", func() bool { return e.srv.Dropped() == 1 })
	if n := e.srv.Count(msgID); n != 0 {
		t.Fatalf("the aborted message was delivered %d times", n)
	}
	if rec, ok := e.record(j); !ok || rec.State != invoice.SentCommitting {
		t.Fatalf("the other run's record: %+v %v", rec, ok)
	}
}

func TestMailerRefusalLeavesNoRecordAndTheRetryDeliversOnce(t *testing.T) {
	e := newMailEnv(t)
	j, msgID := e.invoiceJob()
	m := e.mailer(nil)
	e.srv.RejectNext(1)
	if err := m.Send(e.ctx, j); err == nil {
		t.Fatal("a refused message reported as sent")
	}
	if _, ok := e.record(j); ok || e.srv.Refused() != 1 || e.srv.Count(msgID) != 0 {
		t.Fatalf("after the refusal: record %v, refused %d, delivered %d", ok, e.srv.Refused(), e.srv.Count(msgID))
	}
	if err := m.Send(e.ctx, j); err != nil { // the job's retry
		t.Fatal(err)
	}
	if rec, ok := e.record(j); !ok || rec.State != invoice.SentDelivered || e.srv.Count(msgID) != 1 {
		t.Fatalf("after the retry: record %+v %v, delivered %d", rec, ok, e.srv.Count(msgID))
	}
}

func TestMailerWithoutReplyKeepsTheRecordAndDoesNotResend(t *testing.T) {
	e := newMailEnv(t)
	j, msgID := e.invoiceJob()
	m := e.mailer(nil) // Commit waits 2 s for the reply
	release := e.srv.Hang()
	if err := m.Send(e.ctx, j); err != nil {
		t.Fatal(err)
	}
	if rec, ok := e.record(j); !ok || rec.State != invoice.SentUnconfirmed {
		t.Fatalf("record %+v %v, want unconfirmed", rec, ok)
	}
	release() // the server had it all along
	eventually(t, "the held message", func() bool { return e.srv.Count(msgID) == 1 })
	if err := m.Send(e.ctx, j); err != nil {
		t.Fatal(err)
	}
	// No sleep: Send is synchronous and the server records a message
	// before it answers the DATA, so a resend would already be counted,
	// and none may still be in flight.
	if n, in := e.srv.Count(msgID), e.srv.InData(); n != 1 || in != 0 {
		t.Fatalf("%d deliveries and %d in flight, want 1 and none", n, in)
	}
	if n := e.srv.Count(msgID); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
}

// cancelAfterInsert cancels the job's context right after the record is
// taken (a lease lost at that moment).
type cancelAfterInsert struct {
	invoice.SentRecords
	cancel context.CancelFunc
}

func (c cancelAfterInsert) Insert(ctx context.Context, rec invoice.SentRecord) (bool, error) {
	won, err := c.SentRecords.Insert(ctx, rec)
	c.cancel()
	return won, err
}

func TestMailerFinishesADeliveryWhoseRecordIsTakenEvenIfCancelled(t *testing.T) {
	e := newMailEnv(t)
	j, msgID := e.invoiceJob()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	if err := e.mailer(cancelAfterInsert{e.records, cancel}).Send(ctx, j); err != nil {
		t.Fatal(err)
	}
	if rec, ok := e.record(j); !ok || rec.State != invoice.SentDelivered || e.srv.Count(msgID) != 1 {
		t.Fatalf("record %+v %v, delivered %d", rec, ok, e.srv.Count(msgID))
	}
}

// lostReply applies the insert but answers an error, like a connection
// that broke after the server wrote the document.
type lostReply struct{ invoice.SentRecords }

func (l lostReply) Insert(ctx context.Context, rec invoice.SentRecord) (bool, error) {
	if _, err := l.SentRecords.Insert(ctx, rec); err != nil {
		return false, err
	}
	return false, mongo.ErrClientDisconnected
}

func TestMailerSettlesAnInsertWithALostReplyByItsAttempt(t *testing.T) {
	e := newMailEnv(t)
	j, msgID := e.invoiceJob()
	if err := e.mailer(lostReply{e.records}).Send(e.ctx, j); err != nil {
		t.Fatal(err)
	}
	if rec, ok := e.record(j); !ok || rec.State != invoice.SentDelivered || e.srv.Count(msgID) != 1 {
		t.Fatalf("record %+v %v, delivered %d", rec, ok, e.srv.Count(msgID))
	}
}

func TestMailerOutboxRerunWritesNoSecondFile(t *testing.T) {
	e := newMailEnv(t)
	j, _ := e.invoiceJob()
	dir := filepath.Join(t.TempDir(), "outbox")
	m := invoice.NewMailer(e.invs, e.records, email.NewOutbox(dir), testFrom)
	for run := 0; run < 3; run++ {
		if err := m.Send(e.ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != j.ID+".eml" {
		t.Fatalf("outbox %v", entries)
	}
	if rec, ok := e.record(j); !ok || rec.State != invoice.SentDelivered {
		t.Fatalf("record %+v %v", rec, ok)
	}
}
