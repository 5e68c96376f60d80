package invoice

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/job"
)

// Message is one email. ID is stable for the same content (it becomes the
// Message-ID and the outbox file name), so a re-sent job is recognisable.
type Message struct {
	ID      string
	From    string
	To      string
	Subject string
	Text    string
}

// Sender delivers messages. Implementations: adapters/email (SMTP or an
// outbox directory of .eml files).
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Mailer sends invoice emails.
type Mailer struct {
	store  Store
	sender Sender
	from   string
}

// NewMailer returns the email worker. from is the sender address.
func NewMailer(store Store, sender Sender, from string) *Mailer {
	return &Mailer{store: store, sender: sender, from: from}
}

// Send is the job.Handler of email-notifications.
func (m *Mailer) Send(ctx context.Context, j *job.Job) error {
	var d EmailJob
	if err := json.Unmarshal(j.Data, &d); err != nil {
		return job.Permanent(core.Invalid("job %s: data is not an email job: %v", j.ID, err))
	}
	if d.InvoiceID == "" || d.OrganizationID == "" || d.To == "" {
		return job.Permanent(core.Invalid("job %s: invoiceId, organizationId and to are required", j.ID))
	}
	inv, err := m.store.Get(ctx, d.OrganizationID, d.InvoiceID)
	if err != nil {
		return fmt.Errorf("email invoice %s: %w", d.InvoiceID, err)
	}
	msg := Render(inv, m.from, d.To)
	if err := m.sender.Send(ctx, msg); err != nil {
		return fmt.Errorf("email invoice %s to %s: %w", inv.Number, d.To, err)
	}
	return nil
}

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
	return Message{
		ID:      "invoice-" + inv.ID,
		From:    from,
		To:      to,
		Subject: fmt.Sprintf("Invoice %s: %s", inv.Number, FormatMoney(inv.Currency, inv.Total)),
		Text:    b.String(),
	}
}
