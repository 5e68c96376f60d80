package mongodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shiftflow/shiftflow/core/invoice"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// InvoiceRepo stores invoices, unique by shift id and by (organisation,
// sequence).
//
// Finding a shift's invoice: FerretDB v1 pushes down to SQL only a filter
// that is exactly {_id}; {shiftId, organizationId} reads and decodes every
// invoice, and it runs on every poll of GET /shifts/{id}/invoice and at the
// start of every invoice job. So each invoice also has a pointer document
// in invoiceShifts, {_id: org/shift, organizationId, invoiceId}, making
// GetByShift two lookups by _id. The pointer is inserted before the
// invoice and decides the invoice's id: a unique-_id insert, atomic on
// FerretDB too, so racing creators of one shift all end up inserting the
// same invoice id and the unique _id lets exactly one invoice in. A
// creator that crashed between the two inserts leaves a pointer to no
// invoice, which reads as "no invoice yet" until the job's retry inserts
// it under the pointer's id.
type InvoiceRepo struct{ c, shifts *mongo.Collection }

var _ invoice.Store = (*InvoiceRepo)(nil)

// NewInvoiceRepo returns the repository on db.
func NewInvoiceRepo(db *mongo.Database) *InvoiceRepo {
	return &InvoiceRepo{c: db.Collection(CollInvoices), shifts: db.Collection(CollInvoiceShifts)}
}

// EnsureIndexes creates the repository's indexes, and pointers for
// invoices stored before pointers existed (once: a marker records it).
func (r *InvoiceRepo) EnsureIndexes(ctx context.Context) error {
	if err := ensureIndexes(ctx, r.c,
		index("shift_unique", true, bson.D{{Key: "shiftId", Value: 1}}),
		index("org_sequence_unique", true, bson.D{{Key: "organizationId", Value: 1}, {Key: "sequence", Value: 1}}),
		index("org_issued", false, bson.D{{Key: "organizationId", Value: 1}, {Key: "issuedAt", Value: 1}}),
	); err != nil {
		return err
	}
	return r.backfillPointers(ctx)
}

type shiftPointer struct {
	ID             string `bson:"_id"`
	OrganizationID string `bson:"organizationId"`
	InvoiceID      string `bson:"invoiceId"`
}

// pointersDone marks invoiceShifts as complete; no organisation/shift id
// can equal it (both parts are non-empty).
const pointersDone = "/"

func pointerID(orgID, shiftID string) string { return orgID + "/" + shiftID }

// backfillPointers inserts a pointer for every invoice once, then the
// marker. Cheap at every later cold start: one lookup by _id. Idempotent
// if interrupted (a pointer that exists is left as it is).
func (r *InvoiceRepo) backfillPointers(ctx context.Context) error {
	err := r.shifts.FindOne(ctx, bson.D{{Key: "_id", Value: pointersDone}}).Err()
	if err == nil {
		return nil
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("mongodb: invoice pointers: %w", err)
	}
	cur, err := r.c.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "organizationId", Value: 1}, {Key: "shiftId", Value: 1}}))
	if err != nil {
		return fmt.Errorf("mongodb: invoice pointers: %w", err)
	}
	var invs []struct {
		ID             string `bson:"_id"`
		OrganizationID string `bson:"organizationId"`
		ShiftID        string `bson:"shiftId"`
	}
	if err := cur.All(ctx, &invs); err != nil {
		return fmt.Errorf("mongodb: invoice pointers: %w", err)
	}
	for _, inv := range invs {
		p := shiftPointer{ID: pointerID(inv.OrganizationID, inv.ShiftID), OrganizationID: inv.OrganizationID, InvoiceID: inv.ID}
		if _, err := r.shifts.InsertOne(ctx, p); err != nil && !IsDuplicateKey(err) {
			return fmt.Errorf("mongodb: invoice pointers: %w", err)
		}
	}
	if _, err := r.shifts.InsertOne(ctx, bson.D{{Key: "_id", Value: pointersDone}}); err != nil && !IsDuplicateKey(err) {
		return fmt.Errorf("mongodb: invoice pointers: %w", err)
	}
	return nil
}

// Create inserts the invoice; if the shift already has one it returns
// that one instead.
func (r *InvoiceRepo) Create(ctx context.Context, inv invoice.Invoice) (invoice.Invoice, error) {
	p := shiftPointer{ID: pointerID(inv.OrganizationID, inv.ShiftID), OrganizationID: inv.OrganizationID, InvoiceID: inv.ID}
	if _, err := r.shifts.InsertOne(ctx, p); err != nil {
		if !IsDuplicateKey(err) {
			return invoice.Invoice{}, fmt.Errorf("insert invoice pointer: %w", err)
		}
		// Another creator claimed the shift first: its invoice, or ours
		// under its id if it never got to insert one.
		if err := r.shifts.FindOne(ctx, bson.D{{Key: "_id", Value: p.ID}}).Decode(&p); err != nil {
			return invoice.Invoice{}, fmt.Errorf("read invoice pointer: %w", err)
		}
		inv.ID = p.InvoiceID
	}
	_, err := r.c.InsertOne(ctx, inv)
	if err == nil {
		return inv, nil
	}
	if !IsDuplicateKey(err) {
		return invoice.Invoice{}, fmt.Errorf("insert invoice: %w", err)
	}
	// Usually the same id inserted by a racing creator. Otherwise a unique
	// index on shift or sequence: find the shift's invoice the slow way.
	if existing, gerr := r.Get(ctx, inv.OrganizationID, inv.ID); gerr == nil {
		return existing, nil
	}
	var existing invoice.Invoice
	gerr := r.c.FindOne(ctx, bson.D{{Key: "shiftId", Value: inv.ShiftID}, {Key: "organizationId", Value: inv.OrganizationID}}).Decode(&existing)
	if gerr != nil {
		return invoice.Invoice{}, fmt.Errorf("insert invoice: duplicate key, but no invoice for shift %s: %w (%v)", inv.ShiftID, notFound(gerr, "no invoice for shift %s", inv.ShiftID), err)
	}
	// Point at it (an invoice stored without a pointer). No race worth
	// guarding: every writer here writes the same value.
	_, _ = r.shifts.ReplaceOne(ctx, bson.D{{Key: "_id", Value: p.ID}},
		shiftPointer{ID: p.ID, OrganizationID: existing.OrganizationID, InvoiceID: existing.ID}, options.Replace().SetUpsert(true))
	return existing, nil
}

// Get returns the organisation's invoice. Errors: core.ENotFound.
func (r *InvoiceRepo) Get(ctx context.Context, orgID, id string) (invoice.Invoice, error) {
	var inv invoice.Invoice
	err := findOwned(ctx, r.c, id, orgID, &inv)
	if err != nil {
		return invoice.Invoice{}, notFound(err, "invoice %s not found", id)
	}
	return inv, nil
}

// GetByShift returns the shift's invoice. Errors: core.ENotFound.
func (r *InvoiceRepo) GetByShift(ctx context.Context, orgID, shiftID string) (invoice.Invoice, error) {
	var p shiftPointer
	err := findOwned(ctx, r.shifts, pointerID(orgID, shiftID), orgID, &p)
	var inv invoice.Invoice
	if err == nil {
		err = findOwned(ctx, r.c, p.InvoiceID, orgID, &inv)
	}
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
