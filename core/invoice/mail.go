package invoice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/ulid"
)

// Message is one email. ID is its key, stable for the same email (the
// sent-record's _id and the outbox file name); MessageID is its
// Message-ID header, the same on every send.
type Message struct {
	ID        string
	MessageID string
	From      string
	To        string
	Subject   string
	Text      string
}

// Sender delivers messages in two phases, so that the sent-record is
// written between the receiving server holding the message and accepting
// it (docs/design.md, "Emails: the sent-record and its window").
// Implementations: adapters/email (SMTP, or an outbox directory of .eml
// files).
type Sender interface {
	// Prepare brings m to the point where only Commit is missing (SMTP:
	// connected, MAIL, RCPT, DATA and the whole body written, no
	// terminator). On error nothing was handed over.
	Prepare(ctx context.Context, m Message) (Pending, error)
}

// recordTimeout bounds each sent-record operation of a delivery, which
// runs even after the job's context is cancelled: once a message is
// prepared, abandoning it halfway would lose the email or its record.
const recordTimeout = 10 * time.Second

// Mailer sends invoice emails, each exactly once at the receiving server
// as far as SMTP allows: a sent-record per email decides who sends, and a
// re-run finds it and sends nothing.
type Mailer struct {
	store      Store
	records    SentRecords
	sender     Sender
	from       string
	now        func() time.Time
	newAttempt func() string
	log        *slog.Logger
}

// NewMailer returns the email worker. records keeps the sent-records;
// from is the sender address.
func NewMailer(store Store, records SentRecords, sender Sender, from string) *Mailer {
	return &Mailer{store: store, records: records, sender: sender, from: from,
		now: time.Now, newAttempt: ulid.New, log: slog.Default()}
}

// WithLogger sets the logger (default slog.Default()).
func (m *Mailer) WithLogger(l *slog.Logger) *Mailer {
	if l != nil {
		m.log = l
	}
	return m
}

// Send is the job.Handler of email-notifications. An email with a
// sent-record is not sent again, whatever its state.
func (m *Mailer) Send(ctx context.Context, j *job.Job) error {
	var d EmailJob
	if err := json.Unmarshal(j.Data, &d); err != nil {
		return job.Permanent(core.Invalid("job %s: data is not an email job: %v", j.ID, err))
	}
	if d.InvoiceID == "" || d.OrganizationID == "" || d.To == "" {
		return job.Permanent(core.Invalid("job %s: invoiceId, organizationId and to are required", j.ID))
	}
	key := MessageKey(d.InvoiceID)
	rec, sent, err := m.records.Find(ctx, d.OrganizationID, key)
	if err != nil {
		return fmt.Errorf("email invoice %s: %w", d.InvoiceID, err)
	}
	if sent {
		m.log.InfoContext(ctx, "email: already sent, not sent again", "invoiceId", d.InvoiceID,
			"messageId", rec.MessageID, "state", rec.State, "sentAt", rec.SentAt)
		return nil
	}
	inv, err := m.store.Get(ctx, d.OrganizationID, d.InvoiceID)
	if err != nil {
		return fmt.Errorf("email invoice %s: %w", d.InvoiceID, err)
	}
	msg := Render(inv, m.from, d.To)
	if err := m.deliver(ctx, inv, msg); err != nil {
		return fmt.Errorf("email invoice %s to %s: %w", inv.Number, d.To, err)
	}
	return nil
}

// deliver prepares msg, takes its sent-record, and commits only if the
// record was ours to take.
func (m *Mailer) deliver(ctx context.Context, inv Invoice, msg Message) error {
	p, err := m.sender.Prepare(ctx, msg)
	if err != nil {
		return err
	}
	rec := SentRecord{Key: msg.ID, OrganizationID: inv.OrganizationID, InvoiceID: inv.ID, MessageID: msg.MessageID,
		To: msg.To, State: SentCommitting, SentAt: m.now().UTC().Truncate(time.Millisecond), Attempt: m.newAttempt()}
	bg := context.WithoutCancel(ctx)
	won, err := m.claim(ctx, rec)
	if err != nil {
		p.Abort()
		// The insert may have been applied: remove it if it is ours.
		return errors.Join(err, m.release(bg, rec))
	}
	if !won {
		p.Abort()
		m.log.InfoContext(ctx, "email: sent by another run meanwhile, this copy discarded",
			"invoiceId", inv.ID, "messageId", msg.MessageID)
		return nil
	}
	// The record is ours: from here on the job's cancellation must not
	// stop the delivery (the record already says sent), and the
	// terminator is the next write (docs/design.md, the window).
	err = p.Commit(bg)
	switch {
	case err == nil:
		m.setState(bg, rec, SentDelivered)
		return nil
	case errors.Is(err, ErrUnconfirmed):
		// The server may have it: not sent again (at most once past the
		// terminator). Logged for an operator to check by Message-ID.
		m.setState(bg, rec, SentUnconfirmed)
		m.log.ErrorContext(ctx, "email: delivery unconfirmed, not retried; check the mail server's log for the Message-ID",
			"invoiceId", inv.ID, "messageId", msg.MessageID, "to", msg.To, "error", err)
		return nil
	default:
		// Refused, or the terminator never left: the server does not have
		// the message. Give the record back so the retry sends.
		return errors.Join(err, m.release(bg, rec))
	}
}

// claim inserts the record. An insert whose outcome is unknown (timeout,
// connection lost) is settled by reading the record back: it is ours if it
// carries our attempt id.
func (m *Mailer) claim(ctx context.Context, rec SentRecord) (bool, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	won, err := m.records.Insert(rctx, rec)
	if err == nil {
		return won, nil
	}
	got, ok, ferr := m.records.Find(rctx, rec.OrganizationID, rec.Key)
	if ferr != nil || !ok {
		return false, err
	}
	return got.Attempt == rec.Attempt, nil
}

func (m *Mailer) setState(ctx context.Context, rec SentRecord, state string) {
	rctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	if err := m.records.SetState(rctx, rec, state); err != nil {
		// Only the state's detail is lost: the record exists either way.
		m.log.WarnContext(ctx, "email: sent-record state not updated", "invoiceId", rec.InvoiceID, "state", state, "error", err)
	}
}

// release removes rec's record (only if rec's attempt inserted it),
// retrying for up to releaseBudget: a record left behind by a delivery
// that did not happen would stop every retry from sending.
func (m *Mailer) release(ctx context.Context, rec SentRecord) error {
	rctx, cancel := context.WithTimeout(ctx, releaseBudget)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		err := m.records.Delete(rctx, rec)
		if err == nil {
			return nil
		}
		select {
		case <-rctx.Done():
			return fmt.Errorf("not delivered, and its sent-record (if the insert was applied) could not be removed; while it exists the email is not sent: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// releaseBudget bounds release's retries.
const releaseBudget = 30 * time.Second

// zeroDecimal lists currencies without minor units (ISO 4217 exponent 0).
var zeroDecimal = map[string]bool{"JPY": true, "KRW": true, "ISK": true, "CLP": true, "VND": true, "XAF": true, "XOF": true, "UGX": true, "PYG": true}

// FormatMoney shows minor units with the currency's decimals.
func FormatMoney(currency string, minor int64) string {
	if zeroDecimal[currency] {
		return fmt.Sprintf("%s %d", currency, minor)
	}
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s %s%d.%02d", currency, sign, minor/100, minor%100)
}

// Render builds the plain-text email of an invoice.
func Render(inv Invoice, from, to string) Message {
	var b strings.Builder
	fmt.Fprintf(&b, "Invoice %s\n", inv.Number)
	fmt.Fprintf(&b, "Issued: %s\nDue: %s\nShift: %s\n\n", inv.IssuedAt.Format("2006-01-02"), inv.DueAt.Format("2006-01-02"), inv.ShiftID)
	for _, l := range inv.Lines {
		fmt.Fprintf(&b, "%-32s %5d min x %s/h x %d%% = %s\n", l.Description, l.Minutes,
			FormatMoney(inv.Currency, l.HourlyRate), l.MultiplierPercent, FormatMoney(inv.Currency, l.Amount))
	}
	fmt.Fprintf(&b, "\nSubtotal: %s\nTax: %s\nTotal: %s\n", FormatMoney(inv.Currency, inv.Subtotal),
		FormatMoney(inv.Currency, inv.Tax), FormatMoney(inv.Currency, inv.Total))
	key := MessageKey(inv.ID)
	return Message{
		ID:        key,
		MessageID: MessageID(key, from),
		From:      from,
		To:        to,
		Subject:   fmt.Sprintf("Invoice %s: %s", inv.Number, FormatMoney(inv.Currency, inv.Total)),
		Text:      b.String(),
	}
}
