package pricing

import (
	"context"
	"fmt"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/cache"
)

// Store persists pricing tables and client overrides. Gets return
// core.ENotFound when nothing was saved.
type Store interface {
	GetTable(ctx context.Context, orgID string) (Table, error)
	PutTable(ctx context.Context, orgID string, t Table, at time.Time) error
	GetOverride(ctx context.Context, orgID, clientID string) (Override, error)
	PutOverride(ctx context.Context, orgID, clientID string, o Override, at time.Time) error
}

// ClientChecker answers core.ENotFound for a client that is not the
// organisation's (core/client's Service is one).
type ClientChecker interface {
	Exists(ctx context.Context, orgID, clientID string) error
}

// Service reads pricing through the cache and invalidates it on write.
type Service struct {
	store   Store
	cache   *cache.Cache
	clients ClientChecker
	now     func() time.Time
}

// NewService returns the pricing service. cache may be nil (no caching);
// clients may be nil (overrides are then not checked against clients).
func NewService(store Store, c *cache.Cache, clients ClientChecker, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, cache: c, clients: clients, now: now}
}

// cachedOverride lets the cache remember that a client has no override,
// which is the common case and must not cost a database read per job.
type cachedOverride struct {
	Found    bool     `json:"found"`
	Override Override `json:"override"`
}

// Table returns the organisation's table. Errors: core.ENotFound when no
// table was saved yet.
func (s *Service) Table(ctx context.Context, orgID string) (Table, error) {
	load := func(ctx context.Context) (Table, error) { return s.store.GetTable(ctx, orgID) }
	if s.cache == nil {
		return load(ctx)
	}
	return cache.GetOrLoad(ctx, s.cache, cache.KindPricing, orgID, load)
}

// Override returns a client's override. Errors: core.ENotFound.
func (s *Service) Override(ctx context.Context, orgID, clientID string) (Override, error) {
	load := func(ctx context.Context) (cachedOverride, error) {
		o, err := s.store.GetOverride(ctx, orgID, clientID)
		if core.ErrorCode(err) == core.ENotFound {
			return cachedOverride{}, nil
		}
		return cachedOverride{Found: err == nil, Override: o}, err
	}
	var c cachedOverride
	var err error
	if s.cache == nil {
		c, err = load(ctx)
	} else {
		c, err = cache.GetOrLoad(ctx, s.cache, cache.KindPricing, orgID+"/"+clientID, load)
	}
	if err != nil {
		return Override{}, err
	}
	if !c.Found {
		return Override{}, core.NotFound("client %s has no pricing override", clientID)
	}
	return c.Override, nil
}

// Effective returns the table that prices a client's shifts: the
// organisation's with the client's override applied. Errors: core.ENotFound
// when the organisation has no table (the message says to PUT /pricing).
func (s *Service) Effective(ctx context.Context, orgID, clientID string) (Table, error) {
	t, err := s.Table(ctx, orgID)
	if core.ErrorCode(err) == core.ENotFound {
		return Table{}, &core.Error{Code: core.ENotFound, Message: "the organisation has no pricing table yet; an admin must PUT /pricing first", Err: err}
	}
	if err != nil {
		return Table{}, fmt.Errorf("pricing of %s: %w", orgID, err)
	}
	o, err := s.Override(ctx, orgID, clientID)
	switch core.ErrorCode(err) {
	case "":
		return t.Apply(&o), nil
	case core.ENotFound:
		return t.Apply(nil), nil
	default:
		return Table{}, fmt.Errorf("pricing override of %s/%s: %w", orgID, clientID, err)
	}
}

// PutTable validates and saves the organisation's table. Errors: core.EInvalid.
func (s *Service) PutTable(ctx context.Context, orgID string, t Table) (Table, error) {
	if err := t.Validate(); err != nil {
		return Table{}, err
	}
	if err := s.store.PutTable(ctx, orgID, t, s.now().UTC()); err != nil {
		return Table{}, fmt.Errorf("put pricing of %s: %w", orgID, err)
	}
	if s.cache != nil {
		if err := s.cache.Invalidate(ctx, cache.KindPricing, orgID); err != nil {
			return Table{}, err
		}
	}
	return t, nil
}

// PutOverride validates and saves a client's override; the client must be
// the organisation's. Errors: core.EInvalid, core.ENotFound.
func (s *Service) PutOverride(ctx context.Context, orgID, clientID string, o Override) (Override, error) {
	if err := o.Validate(); err != nil {
		return Override{}, err
	}
	if s.clients != nil {
		if err := s.clients.Exists(ctx, orgID, clientID); err != nil {
			return Override{}, err
		}
	}
	if err := s.store.PutOverride(ctx, orgID, clientID, o, s.now().UTC()); err != nil {
		return Override{}, fmt.Errorf("put pricing override of %s/%s: %w", orgID, clientID, err)
	}
	if s.cache != nil {
		if err := s.cache.Invalidate(ctx, cache.KindPricing, orgID+"/"+clientID); err != nil {
			return Override{}, err
		}
	}
	return o, nil
}
