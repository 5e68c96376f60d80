package invoice

import (
	"context"
	"errors"
	"strings"
	"time"
)

// States of a SentRecord.
const (
	// SentCommitting: the record won its insert and the sender is writing
	// the end of data. A record left in this state by a dead process means
	// the process died between the insert and the server's reply: the
	// message was delivered if the terminator left the process (see
	// docs/design.md "Emails: the sent-record and its window").
	SentCommitting = "committing"
	// SentDelivered: the server answered 250 to the end of data.
	SentDelivered = "sent"
	// SentUnconfirmed: the end of data was written but no reply came (the
	// connection broke or timed out). The server may hold the message; it
	// is not sent again (at most once past the terminator).
	SentUnconfirmed = "unconfirmed"
)

// SentRecord says an email was (or is being) handed to the receiving
// server. Its Key is the message key (Message.ID): one record per email,
// and the store's unique key lets exactly one sender commit.
type SentRecord struct {
	Key            string    `bson:"_id"`
	OrganizationID string    `bson:"organizationId"`
	InvoiceID      string    `bson:"invoiceId"`
	MessageID      string    `bson:"messageId"` // the Message-ID header, with angle brackets
	To             string    `bson:"to"`
	State          string    `bson:"state"`
	SentAt         time.Time `bson:"sentAt"`
	// Attempt identifies the delivery attempt that inserted the record, so
	// an insert whose reply was lost can tell whether it won, and only the
	// inserter removes the record after a refusal.
	Attempt string `bson:"attempt"`
}

// SentRecords stores sent-records (adapters/mongodb EmailRepo). Insert
// must be a compare-and-set on Key: a plain insert on a unique key, never
// a filtered update (docs/domain.md, FerretDB).
type SentRecords interface {
	// Find returns the organisation's record of the message key; ok is
	// false when there is none.
	Find(ctx context.Context, orgID, key string) (rec SentRecord, ok bool, err error)
	// Insert adds r unless a record with its key exists; won is false
	// then, with a nil error.
	Insert(ctx context.Context, r SentRecord) (won bool, err error)
	// SetState changes the state of the record r inserted.
	SetState(ctx context.Context, r SentRecord, state string) error
	// Delete removes the record r inserted, and no other attempt's.
	Delete(ctx context.Context, r SentRecord) error
}

// Pending is a message the receiving server holds in full but has not
// accepted: over SMTP, the whole DATA body is written and only the
// terminating "<CRLF>.<CRLF>" is missing. Exactly one of Commit and
// Abort is called.
type Pending interface {
	// Commit hands the message over (SMTP: writes the terminator and
	// waits for the reply). An error wrapping ErrUnconfirmed means the
	// end of data was written but no reply was read: the server may have
	// the message. Any other error means it does not.
	Commit(ctx context.Context) error
	// Abort makes the server discard the message (SMTP: closes the
	// connection inside DATA, which a server must treat as no message).
	Abort()
}

// ErrUnconfirmed: see Pending.Commit.
var ErrUnconfirmed = errors.New("delivery unconfirmed: end of data written, no reply")

// MessageKey is the key of an invoice's email: the sent-record's _id,
// Message.ID and the outbox file name.
func MessageKey(invoiceID string) string { return "invoice-" + invoiceID }

// MessageID is the Message-ID header of the email with this key: the key
// at the sender's domain (RFC 5322 msg-id, "<" id-left "@" id-right ">"),
// the same on every send of the email. A sender without a plain domain
// (an address literal, say) gets shiftflow.invalid.
func MessageID(key, from string) string {
	domain := "shiftflow.invalid"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && plainDomain(from[i+1:]) {
		domain = from[i+1:]
	}
	return "<" + key + "@" + domain + ">"
}

func plainDomain(d string) bool {
	if d == "" || d[0] == '.' || d[len(d)-1] == '.' {
		return false
	}
	for _, c := range d {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
