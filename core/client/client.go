// Package client holds the organisation's clients: who shifts are worked
// for and who receives the invoices.
package client

import (
	"context"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shiftflow/shiftflow/core"
)

// Client of an organisation. JSON names are the API's.
type Client struct {
	ID             string    `json:"id" bson:"_id"`
	OrganizationID string    `json:"-" bson:"organizationId"`
	Name           string    `json:"name" bson:"name"`
	BillingEmail   string    `json:"billingEmail" bson:"billingEmail"`
	CreatedAt      time.Time `json:"-" bson:"createdAt"`
}

// Validate returns core.EInvalid naming the bad field.
func (c Client) Validate() error {
	name := strings.TrimSpace(c.Name)
	if name == "" {
		return core.Invalid("name is required")
	}
	if utf8.RuneCountInString(name) > 200 {
		return core.Invalid("name must be at most 200 characters")
	}
	if err := ValidEmail(c.BillingEmail); err != nil {
		return err
	}
	return nil
}

// ValidEmail accepts a bare address (no display name) of at most 254 bytes.
func ValidEmail(s string) error {
	if s == "" {
		return core.Invalid("billingEmail is required")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || len(s) > 254 || !strings.Contains(s[strings.LastIndex(s, "@"):], ".") {
		return core.Invalid("billingEmail %q is not an email address", s)
	}
	return nil
}

// Store persists clients. Every call is scoped to an organisation; a client
// of another organisation is core.ENotFound.
type Store interface {
	CreateClient(ctx context.Context, c Client) error
	GetClient(ctx context.Context, orgID, id string) (Client, error)
	ListClients(ctx context.Context, orgID string, limit int) ([]Client, error)
}

// Service manages clients.
type Service struct {
	store Store
	newID func() string
	now   func() time.Time
}

// NewService returns the client service.
func NewService(store Store, newID func() string, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, newID: newID, now: now}
}

// Create validates and stores a new client. Errors: core.EInvalid.
func (s *Service) Create(ctx context.Context, orgID, name, billingEmail string) (Client, error) {
	c := Client{ID: s.newID(), OrganizationID: orgID, Name: strings.TrimSpace(name), BillingEmail: billingEmail, CreatedAt: s.now().UTC()}
	if err := c.Validate(); err != nil {
		return Client{}, err
	}
	if err := s.store.CreateClient(ctx, c); err != nil {
		return Client{}, fmt.Errorf("create client: %w", err)
	}
	return c, nil
}

// Get returns one client. Errors: core.ENotFound.
func (s *Service) Get(ctx context.Context, orgID, id string) (Client, error) {
	return s.store.GetClient(ctx, orgID, id)
}

// MaxList bounds list answers.
const MaxList = 1000

// List returns the organisation's clients by name.
func (s *Service) List(ctx context.Context, orgID string) ([]Client, error) {
	return s.store.ListClients(ctx, orgID, MaxList)
}

// Exists returns nil when the client is the organisation's, and
// core.ENotFound otherwise.
func (s *Service) Exists(ctx context.Context, orgID, id string) error {
	_, err := s.store.GetClient(ctx, orgID, id)
	return err
}
