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
type InvoiceNumbers struct{ c *mongo.Collection }

var _ invoice.Numbers = (*InvoiceNumbers)(nil)

// NewInvoiceNumbers returns the number allocator on db.
func NewInvoiceNumbers(db *mongo.Database) *InvoiceNumbers {
	return &InvoiceNumbers{c: db.Collection(CollInvoiceNumbers)}
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
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var d numberDoc
		err := n.c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
		if err == nil {
			return d.Seq, nil
		}
		if !errors.Is(err, mongo.ErrNoDocuments) {
			return 0, fmt.Errorf("read invoice number of %s: %w", shiftID, err)
		}
		var last numberDoc
		err = n.c.FindOne(ctx, bson.D{{Key: "organizationId", Value: orgID}},
			options.FindOne().SetSort(bson.D{{Key: "seq", Value: -1}})).Decode(&last)
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return 0, fmt.Errorf("read last invoice number: %w", err)
		}
		next := last.Seq + 1
		_, err = n.c.InsertOne(ctx, numberDoc{ID: id, OrganizationID: orgID, ShiftID: shiftID, Seq: next})
		if err == nil {
			return next, nil
		}
		if !IsDuplicateKey(err) {
			return 0, fmt.Errorf("reserve invoice number of %s: %w", shiftID, err)
		}
		// Either this shift got its number concurrently (found on the next
		// round) or another shift took next: try again.
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("reserve invoice number of %s: gave up after %d attempts", shiftID, maxAttempts)
}
