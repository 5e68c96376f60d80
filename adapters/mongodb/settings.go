package mongodb

import (
	"context"
	"fmt"

	"github.com/shiftflow/shiftflow/core/org"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// SettingsRepo stores organisation settings, one document per organisation
// keyed by its id.
type SettingsRepo struct{ c *mongo.Collection }

var _ org.Store = (*SettingsRepo)(nil)

// NewSettingsRepo returns the repository on db.
func NewSettingsRepo(db *mongo.Database) *SettingsRepo {
	return &SettingsRepo{c: db.Collection(CollSettings)}
}

// EnsureIndexes has nothing to create: the organisation id is the _id.
func (r *SettingsRepo) EnsureIndexes(ctx context.Context) error { return nil }

// GetSettings returns the settings. Errors: core.ENotFound.
func (r *SettingsRepo) GetSettings(ctx context.Context, orgID string) (org.Settings, error) {
	var s org.Settings
	if err := r.c.FindOne(ctx, bson.D{{Key: "_id", Value: orgID}}).Decode(&s); err != nil {
		return org.Settings{}, notFound(err, "no settings saved")
	}
	return s, nil
}

// PutSettings replaces the settings.
func (r *SettingsRepo) PutSettings(ctx context.Context, s org.Settings) error {
	_, err := r.c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: s.OrganizationID}}, s, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("put settings: %w", err)
	}
	return nil
}
