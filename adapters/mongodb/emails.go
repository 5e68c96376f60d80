package mongodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/shiftflow/shiftflow/core/invoice"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// EmailRepo stores the sent-record of every email, collection emails,
// _id = the message key ("invoice-<invoiceId>"). The record is taken with
// a plain insert on the unique _id, the one compare-and-set that is atomic
// on FerretDB too (a filtered update is a read-modify-write there, see
// docs/domain.md), so exactly one sender of an email commits it
// (docs/design.md, "Emails: the sent-record and its window").
type EmailRepo struct{ c *mongo.Collection }

var _ invoice.SentRecords = (*EmailRepo)(nil)

// NewEmailRepo returns the repository on db.
func NewEmailRepo(db *mongo.Database) *EmailRepo { return &EmailRepo{c: db.Collection(CollEmails)} }

// EnsureIndexes creates the index an operator uses to find records a
// crash left unconfirmed ({state, sentAt}); lookups go by _id.
func (r *EmailRepo) EnsureIndexes(ctx context.Context) error {
	return ensureIndexes(ctx, r.c, index("state_sentAt", false, bson.D{{Key: "state", Value: 1}, {Key: "sentAt", Value: 1}}))
}

// Sent reports whether the invoice's email has a sent-record, in any state
// (a record is never sent again). The reconciler asks it.
func (r *EmailRepo) Sent(ctx context.Context, orgID, invoiceID string) (bool, error) {
	_, ok, err := r.Find(ctx, orgID, invoice.MessageKey(invoiceID))
	return ok, err
}

// Find returns the organisation's record of the message key.
func (r *EmailRepo) Find(ctx context.Context, orgID, key string) (invoice.SentRecord, bool, error) {
	var rec invoice.SentRecord
	err := findOwned(ctx, r.c, key, orgID, &rec)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return invoice.SentRecord{}, false, nil
	}
	if err != nil {
		return invoice.SentRecord{}, false, fmt.Errorf("read sent-record %s: %w", key, err)
	}
	return rec, true, nil
}

// Insert adds the record; won is false when one with its key exists.
func (r *EmailRepo) Insert(ctx context.Context, rec invoice.SentRecord) (bool, error) {
	if _, err := r.c.InsertOne(ctx, rec); err != nil {
		if IsDuplicateKey(err) {
			return false, nil
		}
		return false, fmt.Errorf("insert sent-record %s: %w", rec.Key, err)
	}
	return true, nil
}

// SetState sets the state of rec's record. Only rec's inserter writes it,
// so the update by _id (not atomic on FerretDB) has no competing writer.
func (r *EmailRepo) SetState(ctx context.Context, rec invoice.SentRecord, state string) error {
	_, err := r.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: rec.Key}}, bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: state}}}})
	if err != nil {
		return fmt.Errorf("set sent-record %s to %s: %w", rec.Key, state, err)
	}
	return nil
}

// Delete removes rec's record if rec's attempt inserted it. It reads the
// record by _id and checks the attempt in Go: FerretDB answers only
// {_id} filters without scanning the collection (docs/domain.md), and no
// other attempt can insert while this one's record exists.
func (r *EmailRepo) Delete(ctx context.Context, rec invoice.SentRecord) error {
	got, ok, err := r.Find(ctx, rec.OrganizationID, rec.Key)
	if err != nil || !ok || got.Attempt != rec.Attempt {
		return err
	}
	if _, err := r.c.DeleteOne(ctx, bson.D{{Key: "_id", Value: rec.Key}}); err != nil {
		return fmt.Errorf("delete sent-record %s: %w", rec.Key, err)
	}
	return nil
}
