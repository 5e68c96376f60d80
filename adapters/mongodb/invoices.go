package mongodb

import (
	"context"
	"fmt"
	"time"

	"github.com/shiftflow/shiftflow/core/invoice"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// InvoiceRepo stores invoices, unique by shift id and by (organisation,
// sequence).
type InvoiceRepo struct{ c *mongo.Collection }

var _ invoice.Store = (*InvoiceRepo)(nil)

// NewInvoiceRepo returns the repository on db.
func NewInvoiceRepo(db *mongo.Database) *InvoiceRepo {
	return &InvoiceRepo{c: db.Collection(CollInvoices)}
}

// EnsureIndexes creates the repository's indexes.
func (r *InvoiceRepo) EnsureIndexes(ctx context.Context) error {
	return ensureIndexes(ctx, r.c,
		index("shift_unique", true, bson.D{{Key: "shiftId", Value: 1}}),
		index("org_sequence_unique", true, bson.D{{Key: "organizationId", Value: 1}, {Key: "sequence", Value: 1}}),
		index("org_issued", false, bson.D{{Key: "organizationId", Value: 1}, {Key: "issuedAt", Value: 1}}),
	)
}

// Create inserts the invoice; if the shift already has one (unique index,
// code 11000) it returns that one instead.
func (r *InvoiceRepo) Create(ctx context.Context, inv invoice.Invoice) (invoice.Invoice, error) {
	_, err := r.c.InsertOne(ctx, inv)
	if err == nil {
		return inv, nil
	}
	if !IsDuplicateKey(err) {
		return invoice.Invoice{}, fmt.Errorf("insert invoice: %w", err)
	}
	existing, gerr := r.GetByShift(ctx, inv.OrganizationID, inv.ShiftID)
	if gerr != nil {
		return invoice.Invoice{}, fmt.Errorf("insert invoice: duplicate key, but no invoice for shift %s: %w (%v)", inv.ShiftID, gerr, err)
	}
	return existing, nil
}

// Get returns the organisation's invoice. Errors: core.ENotFound.
func (r *InvoiceRepo) Get(ctx context.Context, orgID, id string) (invoice.Invoice, error) {
	var inv invoice.Invoice
	err := r.c.FindOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "organizationId", Value: orgID}}).Decode(&inv)
	if err != nil {
		return invoice.Invoice{}, notFound(err, "invoice %s not found", id)
	}
	return inv, nil
}

// GetByShift returns the shift's invoice. Errors: core.ENotFound.
func (r *InvoiceRepo) GetByShift(ctx context.Context, orgID, shiftID string) (invoice.Invoice, error) {
	var inv invoice.Invoice
	err := r.c.FindOne(ctx, bson.D{{Key: "shiftId", Value: shiftID}, {Key: "organizationId", Value: orgID}}).Decode(&inv)
	if err != nil {
		return invoice.Invoice{}, notFound(err, "no invoice for shift %s yet", shiftID)
	}
	return inv, nil
}

// List returns invoices issued in [from, to), by number.
func (r *InvoiceRepo) List(ctx context.Context, orgID string, from, to time.Time, limit int) ([]invoice.Invoice, error) {
	filter := timeRange(bson.D{{Key: "organizationId", Value: orgID}}, "issuedAt", from, to)
	cur, err := r.c.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "sequence", Value: 1}}).SetLimit(clampLimit(limit)))
	if err != nil {
		return nil, fmt.Errorf("list invoices: %w", err)
	}
	out := []invoice.Invoice{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list invoices: %w", err)
	}
	return out, nil
}
