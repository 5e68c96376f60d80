package mongodb

import (
	"context"
	"fmt"
	"time"

	"github.com/shiftflow/shiftflow/core/timesheet"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// WorkedTimeRepo stores worked times keyed by shift id (_id), which makes
// them unique per shift on any server.
type WorkedTimeRepo struct{ c *mongo.Collection }

var _ timesheet.Store = (*WorkedTimeRepo)(nil)

// NewWorkedTimeRepo returns the repository on db.
func NewWorkedTimeRepo(db *mongo.Database) *WorkedTimeRepo {
	return &WorkedTimeRepo{c: db.Collection(CollWorkedTimes)}
}

// EnsureIndexes creates the repository's indexes.
func (r *WorkedTimeRepo) EnsureIndexes(ctx context.Context) error {
	return ensureIndexes(ctx, r.c, index("org_start", false, bson.D{{Key: "organizationId", Value: 1}, {Key: "start", Value: 1}}))
}

// Upsert inserts w unless the shift has a worked time ($setOnInsert), and
// returns the stored one. Two concurrent first inserts race on the _id;
// the loser's duplicate-key error just means the other one won.
func (r *WorkedTimeRepo) Upsert(ctx context.Context, w timesheet.WorkedTime) (timesheet.WorkedTime, error) {
	_, err := r.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: w.ShiftID}}, bson.D{{Key: "$setOnInsert", Value: w}},
		options.UpdateOne().SetUpsert(true))
	if err != nil && !IsDuplicateKey(err) {
		return timesheet.WorkedTime{}, fmt.Errorf("upsert worked time: %w", err)
	}
	return r.Get(ctx, w.OrganizationID, w.ShiftID)
}

// Get returns a shift's worked time. Errors: core.ENotFound.
func (r *WorkedTimeRepo) Get(ctx context.Context, orgID, shiftID string) (timesheet.WorkedTime, error) {
	var w timesheet.WorkedTime
	err := findOwned(ctx, r.c, shiftID, orgID, &w)
	if err != nil {
		return timesheet.WorkedTime{}, notFound(err, "no timesheet for shift %s yet", shiftID)
	}
	return w, nil
}

// List returns worked times of shifts starting in [from, to).
func (r *WorkedTimeRepo) List(ctx context.Context, orgID string, from, to time.Time, limit int) ([]timesheet.WorkedTime, error) {
	filter := timeRange(bson.D{{Key: "organizationId", Value: orgID}}, "start", from, to)
	cur, err := r.c.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "start", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(clampLimit(limit)))
	if err != nil {
		return nil, fmt.Errorf("list worked times: %w", err)
	}
	out := []timesheet.WorkedTime{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list worked times: %w", err)
	}
	return out, nil
}
