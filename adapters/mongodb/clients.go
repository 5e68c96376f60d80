package mongodb

import (
	"context"
	"fmt"

	"github.com/shiftflow/shiftflow/core/client"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ClientRepo stores clients.
type ClientRepo struct{ c *mongo.Collection }

var _ client.Store = (*ClientRepo)(nil)

// NewClientRepo returns the repository on db.
func NewClientRepo(db *mongo.Database) *ClientRepo { return &ClientRepo{c: db.Collection(CollClients)} }

// EnsureIndexes creates the repository's indexes.
func (r *ClientRepo) EnsureIndexes(ctx context.Context) error {
	return ensureIndexes(ctx, r.c, index("org_name", false, bson.D{{Key: "organizationId", Value: 1}, {Key: "name", Value: 1}}))
}

// CreateClient inserts a client.
func (r *ClientRepo) CreateClient(ctx context.Context, c client.Client) error {
	if _, err := r.c.InsertOne(ctx, c); err != nil {
		return fmt.Errorf("insert client: %w", err)
	}
	return nil
}

// GetClient returns the organisation's client. Errors: core.ENotFound.
func (r *ClientRepo) GetClient(ctx context.Context, orgID, id string) (client.Client, error) {
	var c client.Client
	err := findOwned(ctx, r.c, id, orgID, &c)
	if err != nil {
		return client.Client{}, notFound(err, "client %s not found", id)
	}
	return c, nil
}

// ListClients returns the organisation's clients by name.
func (r *ClientRepo) ListClients(ctx context.Context, orgID string, limit int) ([]client.Client, error) {
	cur, err := r.c.Find(ctx, bson.D{{Key: "organizationId", Value: orgID}},
		options.Find().SetSort(bson.D{{Key: "name", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(clampLimit(limit)))
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	out := []client.Client{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	return out, nil
}
