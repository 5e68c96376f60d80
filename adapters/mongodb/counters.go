package mongodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/shiftflow/shiftflow/core/invoice"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// InvoiceNumbers hands out gapless per-organisation invoice numbers, each
// exactly once per shift, using nothing but inserts into a unique index.
//
// Why not a counter document with a conditioned $inc: FerretDB runs an
// update as read, modify in Go, write back the whole document, with no
// lock between the read and the write; measured, 20 concurrent
// updateOne({seq: 0}, {$inc: {seq: 1}}) all "matched" 8 times and left
// seq at 1. Inserts into a unique index are atomic on both servers.
//
// Each number is a document {_id: org/shift, organizationId, shiftId, seq}
// with a unique index on (organizationId, seq). Reserve inserts max+1; the
// _id makes a second number for the same shift impossible (a re-run finds
// it), the (organizationId, seq) index makes two shifts sharing a number
// impossible (the loser retries with the next), and since a number exists
// only once its insert succeeded, no number is ever skipped.
//
// Where to start: a per-organisation hint document {_id: org, seq} holds a
// number known to be taken. It is only a starting point, never trusted for
// correctness: the insert walks up from hint+1, moving on only past
// numbers whose insert failed because they are taken, so every number it
// takes has all smaller ones taken (gapless). The hint is written after a
// successful insert, without any atomicity (FerretDB has none for
// updates): a stale or lagging hint only means a few more failed inserts,
// and it can never be ahead of a taken number since only taken numbers are
// written to it and numbers are never deleted. Reading the maximum instead
// (find by organisation, sort by seq) is a full scan on FerretDB, which
// pushes down nothing but {_id}; that is kept only for an organisation
// without a hint (data from before the hint existed), once.
type InvoiceNumbers struct{ c, hints *mongo.Collection }

var _ invoice.Numbers = (*InvoiceNumbers)(nil)

// NewInvoiceNumbers returns the number allocator on db.
func NewInvoiceNumbers(db *mongo.Database) *InvoiceNumbers {
	return &InvoiceNumbers{c: db.Collection(CollInvoiceNumbers), hints: db.Collection(CollInvoiceHints)}
}

// EnsureIndexes creates the allocator's unique index.
func (n *InvoiceNumbers) EnsureIndexes(ctx context.Context) error {
	return ensureIndexes(ctx, n.c, index("org_seq_unique", true, bson.D{{Key: "organizationId", Value: 1}, {Key: "seq", Value: 1}}))
}

type numberDoc struct {
	ID             string `bson:"_id"`
	OrganizationID string `bson:"organizationId"`
	ShiftID        string `bson:"shiftId"`
	Seq            int64  `bson:"seq"`
}

// maxAttempts bounds the retries under contention: each failed attempt
// means another shift got a number, so progress is always made.
const maxAttempts = 1000

// Reserve returns the shift's invoice number, taking the next free one the
// first time only.
func (n *InvoiceNumbers) Reserve(ctx context.Context, orgID, shiftID string) (int64, error) {
	id := orgID + "/" + shiftID
	if seq, ok, err := n.existing(ctx, id); err != nil || ok {
		return seq, err
	}
	next, err := n.start(ctx, orgID)
	if err != nil {
		return 0, err
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		_, err = n.c.InsertOne(ctx, numberDoc{ID: id, OrganizationID: orgID, ShiftID: shiftID, Seq: next})
		if err == nil {
			n.advanceHint(ctx, orgID, next)
			return next, nil
		}
		if !IsDuplicateKey(err) {
			return 0, fmt.Errorf("reserve invoice number of %s: %w", shiftID, err)
		}
		// Either this shift got its number concurrently (the _id is taken)
		// or next is taken by another shift: then try the one after it.
		if seq, ok, err := n.existing(ctx, id); err != nil || ok {
			return seq, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		next++
	}
	return 0, fmt.Errorf("reserve invoice number of %s: gave up after %d attempts", shiftID, maxAttempts)
}

// existing returns the number already held by the org/shift id.
func (n *InvoiceNumbers) existing(ctx context.Context, id string) (int64, bool, error) {
	var d numberDoc
	err := n.c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read invoice number of %s: %w", id, err)
	}
	return d.Seq, true, nil
}

type hintDoc struct {
	ID  string `bson:"_id"`
	Seq int64  `bson:"seq"`
}

// start returns the first number worth trying: one past the hint, or past
// the highest number when the organisation has no hint yet.
func (n *InvoiceNumbers) start(ctx context.Context, orgID string) (int64, error) {
	var h hintDoc
	err := n.hints.FindOne(ctx, bson.D{{Key: "_id", Value: orgID}}).Decode(&h)
	if err == nil {
		return h.Seq + 1, nil
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return 0, fmt.Errorf("read invoice number hint: %w", err)
	}
	var last numberDoc
	err = n.c.FindOne(ctx, bson.D{{Key: "organizationId", Value: orgID}},
		options.FindOne().SetSort(bson.D{{Key: "seq", Value: -1}})).Decode(&last)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return 0, fmt.Errorf("read last invoice number: %w", err)
	}
	return last.Seq + 1, nil
}

// advanceHint records seq, which is taken, as the organisation's hint.
// Best effort: $max keeps the hint from moving back on MongoDB, and on
// FerretDB a racing write may move it back a little, which costs a failed
// insert or two later and nothing else. A failed write is ignored for the
// same reason: the number is already reserved.
func (n *InvoiceNumbers) advanceHint(ctx context.Context, orgID string, seq int64) {
	_, _ = n.hints.UpdateOne(ctx, bson.D{{Key: "_id", Value: orgID}},
		bson.D{{Key: "$max", Value: bson.D{{Key: "seq", Value: seq}}}}, options.UpdateOne().SetUpsert(true))
}
