package mongodb

import (
	"context"
	"fmt"
	"time"

	"github.com/shiftflow/shiftflow/core/reconcile"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// CollReconcile holds one document per completed shift whose work is not
// yet known to be done (docs/design.md, "Reconciler").
const CollReconcile = "reconcile"

// ReconcileRepo is the reconciler's pending collection: {_id: shiftId,
// organizationId, event, dueAt}. It stays small (shifts completed within
// about RECONCILE_AFTER, plus any whose work is stuck), which matters on
// FerretDB: Due's {dueAt: {$lte}} filter is not pushed down and reads the
// whole collection, which is why the reconciler never queries shifts.
// Every write filters on _id alone.
type ReconcileRepo struct{ c *mongo.Collection }

var _ reconcile.Store = (*ReconcileRepo)(nil)

// NewReconcileRepo returns the repository on db.
func NewReconcileRepo(db *mongo.Database) *ReconcileRepo {
	return &ReconcileRepo{c: db.Collection(CollReconcile)}
}

// EnsureIndexes creates the repository's indexes.
func (r *ReconcileRepo) EnsureIndexes(ctx context.Context) error {
	return ensureIndexes(ctx, r.c, index("due", false, bson.D{{Key: "dueAt", Value: 1}}))
}

type pendingDoc struct {
	ID             string `bson:"_id"`
	OrganizationID string `bson:"organizationId"`
	// Event is stored like an outbox entry: the payload as a JSON string,
	// so the re-published event is byte for byte the one relayed.
	Event outboxDoc `bson:"event"`
	DueAt time.Time `bson:"dueAt"`
}

// Put inserts or replaces the shift's pending document.
func (r *ReconcileRepo) Put(ctx context.Context, p reconcile.Pending) error {
	doc := pendingDoc{ID: p.ShiftID, OrganizationID: p.OrganizationID, Event: toOutbox(p.Event), DueAt: p.DueAt.UTC()}
	if _, err := r.c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: p.ShiftID}}, doc, options.Replace().SetUpsert(true)); err != nil {
		if IsDuplicateKey(err) { // two concurrent first upserts: the other one wrote the same
			return nil
		}
		return fmt.Errorf("put pending shift %s: %w", p.ShiftID, err)
	}
	return nil
}

// Due returns up to limit pending shifts due at now, earliest first.
func (r *ReconcileRepo) Due(ctx context.Context, now time.Time, limit int) ([]reconcile.Pending, error) {
	cur, err := r.c.Find(ctx, bson.D{{Key: "dueAt", Value: bson.D{{Key: "$lte", Value: now.UTC()}}}},
		options.Find().SetSort(bson.D{{Key: "dueAt", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(clampLimit(limit)))
	if err != nil {
		return nil, fmt.Errorf("due pending shifts: %w", err)
	}
	var docs []pendingDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("due pending shifts: %w", err)
	}
	out := make([]reconcile.Pending, len(docs))
	for i, d := range docs {
		out[i] = reconcile.Pending{ShiftID: d.ID, OrganizationID: d.OrganizationID, Event: d.Event.event(), DueAt: d.DueAt.UTC()}
	}
	return out, nil
}

// Postpone sets the pending shift's dueAt; a shift no longer pending stays gone.
func (r *ReconcileRepo) Postpone(ctx context.Context, shiftID string, dueAt time.Time) error {
	if _, err := r.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: shiftID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "dueAt", Value: dueAt.UTC()}}}}); err != nil {
		return fmt.Errorf("postpone pending shift %s: %w", shiftID, err)
	}
	return nil
}

// Delete removes the pending shift.
func (r *ReconcileRepo) Delete(ctx context.Context, shiftID string) error {
	if _, err := r.c.DeleteOne(ctx, bson.D{{Key: "_id", Value: shiftID}}); err != nil {
		return fmt.Errorf("delete pending shift %s: %w", shiftID, err)
	}
	return nil
}
