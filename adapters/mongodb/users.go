package mongodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/auth"
)

// CollUsers holds the accounts.
const CollUsers = "users"

// UserRepo is auth.UserStore on MongoDB.
//
// Emails are unique case-insensitively through a separate field,
// emailNormalized (auth.NormalizeEmail), with a unique index: FerretDB has no
// collations, and a normalized field works the same everywhere.
type UserRepo struct {
	c *mongo.Collection
}

var _ auth.UserStore = (*UserRepo)(nil)

// NewUserRepo returns the repository on db's "users" collection.
func NewUserRepo(db *mongo.Database) *UserRepo { return &UserRepo{c: db.Collection(CollUsers)} }

type userDoc struct {
	ID              string    `bson:"_id"`
	Email           string    `bson:"email"`
	EmailNormalized string    `bson:"emailNormalized"`
	OrganizationID  string    `bson:"organizationId"`
	Role            string    `bson:"role"`
	PasswordHash    string    `bson:"passwordHash"`
	CreatedAt       time.Time `bson:"createdAt"`
}

func (d userDoc) user() auth.User {
	return auth.User{ID: d.ID, Email: d.Email, OrganizationID: d.OrganizationID, Role: d.Role,
		PasswordHash: d.PasswordHash, CreatedAt: d.CreatedAt.UTC()}
}

// EnsureIndexes creates the unique email index and the organisation index,
// idempotently (one CreateOne per index: FerretDB v1.24 can drop the
// connection on a multi-index createIndexes of existing indexes).
func (r *UserRepo) EnsureIndexes(ctx context.Context) error {
	for _, m := range []mongo.IndexModel{
		{Keys: bson.D{{Key: "emailNormalized", Value: 1}}, Options: options.Index().SetName("emailNormalized_unique").SetUnique(true)},
		{Keys: bson.D{{Key: "organizationId", Value: 1}, {Key: "emailNormalized", Value: 1}}, Options: options.Index().SetName("org_email")},
	} {
		if _, err := r.c.Indexes().CreateOne(ctx, m); err != nil {
			return fmt.Errorf("mongodb: create index on %s: %w", CollUsers, err)
		}
	}
	return nil
}

// Create stores u. EConflict when the normalized email exists.
func (r *UserRepo) Create(ctx context.Context, u auth.User) error {
	d := userDoc{ID: u.ID, Email: u.Email, EmailNormalized: auth.NormalizeEmail(u.Email),
		OrganizationID: u.OrganizationID, Role: u.Role, PasswordHash: u.PasswordHash, CreatedAt: u.CreatedAt.UTC()}
	if d.ID == "" || d.EmailNormalized == "" || d.OrganizationID == "" {
		return fmt.Errorf("mongodb: create user: id, email and organisation are required")
	}
	if _, err := r.c.InsertOne(ctx, d); err != nil {
		if IsDuplicateKey(err) {
			return core.Conflict("a user with email %s already exists", d.EmailNormalized)
		}
		return fmt.Errorf("mongodb: insert user: %w", err)
	}
	return nil
}

// ByEmail finds a user by normalized email, in any organisation (login).
func (r *UserRepo) ByEmail(ctx context.Context, normalizedEmail string) (auth.User, error) {
	return r.findOne(ctx, bson.D{{Key: "emailNormalized", Value: normalizedEmail}})
}

// ByID finds a user of the organisation; another organisation's user is
// ENotFound like a missing one.
func (r *UserRepo) ByID(ctx context.Context, organizationID, id string) (auth.User, error) {
	if organizationID == "" {
		return auth.User{}, core.NotFound("user not found")
	}
	return r.findOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "organizationId", Value: organizationID}})
}

func (r *UserRepo) findOne(ctx context.Context, filter bson.D) (auth.User, error) {
	var d userDoc
	err := r.c.FindOne(ctx, filter).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return auth.User{}, core.NotFound("user not found")
	}
	if err != nil {
		return auth.User{}, fmt.Errorf("mongodb: find user: %w", err)
	}
	return d.user(), nil
}

// List returns the organisation's users ordered by email (at most 1000).
func (r *UserRepo) List(ctx context.Context, organizationID string) ([]auth.User, error) {
	if organizationID == "" {
		return []auth.User{}, nil
	}
	cur, err := r.c.Find(ctx, bson.D{{Key: "organizationId", Value: organizationID}},
		options.Find().SetSort(bson.D{{Key: "emailNormalized", Value: 1}}).SetLimit(1000))
	if err != nil {
		return nil, fmt.Errorf("mongodb: list users: %w", err)
	}
	var docs []userDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: list users: %w", err)
	}
	out := make([]auth.User, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.user())
	}
	return out, nil
}

// SetPasswordHash replaces the hash of user id when it is still old.
func (r *UserRepo) SetPasswordHash(ctx context.Context, id, old, hash string) error {
	res, err := r.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "passwordHash", Value: old}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "passwordHash", Value: hash}}}})
	if err != nil {
		return fmt.Errorf("mongodb: set password hash: %w", err)
	}
	if res.MatchedCount == 0 {
		return core.NotFound("user not found")
	}
	return nil
}
