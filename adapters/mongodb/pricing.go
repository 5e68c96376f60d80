package mongodb

import (
	"context"
	"fmt"
	"time"

	"github.com/shiftflow/shiftflow/core/pricing"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// PricingRepo stores pricing tables (one per organisation, keyed by its id)
// and client overrides (keyed by organisation/client).
type PricingRepo struct{ tables, overrides *mongo.Collection }

var _ pricing.Store = (*PricingRepo)(nil)

// NewPricingRepo returns the repository on db.
func NewPricingRepo(db *mongo.Database) *PricingRepo {
	return &PricingRepo{tables: db.Collection(CollPricing), overrides: db.Collection(CollPricingClient)}
}

type tableDoc struct {
	ID        string        `bson:"_id"`
	Table     pricing.Table `bson:"table"`
	UpdatedAt time.Time     `bson:"updatedAt"`
}

type overrideDoc struct {
	ID             string           `bson:"_id"`
	OrganizationID string           `bson:"organizationId"`
	ClientID       string           `bson:"clientId"`
	Override       pricing.Override `bson:"override"`
	UpdatedAt      time.Time        `bson:"updatedAt"`
}

// EnsureIndexes creates the repository's indexes.
func (r *PricingRepo) EnsureIndexes(ctx context.Context) error {
	return ensureIndexes(ctx, r.overrides, index("org_client", true, bson.D{{Key: "organizationId", Value: 1}, {Key: "clientId", Value: 1}}))
}

// GetTable returns the organisation's table. Errors: core.ENotFound.
func (r *PricingRepo) GetTable(ctx context.Context, orgID string) (pricing.Table, error) {
	var d tableDoc
	if err := r.tables.FindOne(ctx, bson.D{{Key: "_id", Value: orgID}}).Decode(&d); err != nil {
		return pricing.Table{}, notFound(err, "no pricing table saved")
	}
	return d.Table, nil
}

// PutTable replaces the organisation's table.
func (r *PricingRepo) PutTable(ctx context.Context, orgID string, t pricing.Table, at time.Time) error {
	_, err := r.tables.ReplaceOne(ctx, bson.D{{Key: "_id", Value: orgID}}, tableDoc{ID: orgID, Table: t, UpdatedAt: at},
		options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("put pricing table: %w", err)
	}
	return nil
}

// GetOverride returns a client's override. Errors: core.ENotFound.
func (r *PricingRepo) GetOverride(ctx context.Context, orgID, clientID string) (pricing.Override, error) {
	var d overrideDoc
	err := findOwned(ctx, r.overrides, orgID+"/"+clientID, orgID, &d)
	if err != nil {
		return pricing.Override{}, notFound(err, "client %s has no pricing override", clientID)
	}
	return d.Override, nil
}

// PutOverride replaces a client's override.
func (r *PricingRepo) PutOverride(ctx context.Context, orgID, clientID string, o pricing.Override, at time.Time) error {
	id := orgID + "/" + clientID
	_, err := r.overrides.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}},
		overrideDoc{ID: id, OrganizationID: orgID, ClientID: clientID, Override: o, UpdatedAt: at}, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("put pricing override: %w", err)
	}
	return nil
}
