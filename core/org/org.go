// Package org holds an organisation's settings: time zone, currency,
// invoice terms and invoice number prefix.
package org

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/cache"
	"github.com/shiftflow/shiftflow/core/pricing"
)

// Settings of one organisation. JSON names are the API's.
type Settings struct {
	OrganizationID   string    `json:"-" bson:"_id"`
	TimeZone         string    `json:"timeZone" bson:"timeZone"`
	Currency         string    `json:"currency" bson:"currency"`
	InvoiceTermsDays int       `json:"invoiceTermsDays" bson:"invoiceTermsDays"`
	InvoicePrefix    string    `json:"invoicePrefix" bson:"invoicePrefix"`
	UpdatedAt        time.Time `json:"-" bson:"updatedAt"`
}

// Defaults apply until an admin saves settings.
func Defaults(orgID string) Settings {
	return Settings{OrganizationID: orgID, TimeZone: "UTC", Currency: "EUR", InvoiceTermsDays: 30, InvoicePrefix: "INV-"}
}

var prefixRe = regexp.MustCompile(`^[A-Za-z0-9/_.-]{0,16}$`)

// ValidTimeZone reports whether name is an IANA time zone name (a zone or
// a link, from the list in zones.go) that this process can load. Loading
// alone is not enough: time.LoadLocation opens any file under the zoneinfo
// directory, so "posixrules", "right/UTC", "./UTC" or "Europe//London"
// would pass.
//
//go:generate go run gen_zones.go
func ValidTimeZone(name string) bool {
	if !ianaZones[name] {
		return false
	}
	_, err := time.LoadLocation(name)
	return err == nil
}

// Validate returns core.EInvalid naming the bad field.
func (s Settings) Validate() error {
	if s.TimeZone == "" {
		return core.Invalid("timeZone is required, an IANA name such as Europe/Berlin")
	}
	if !ValidTimeZone(s.TimeZone) {
		return core.Invalid("timeZone %q is not an IANA time zone name such as Europe/Berlin or UTC", s.TimeZone)
	}
	if !pricing.ValidCurrency(s.Currency) {
		return core.Invalid("currency must be an ISO 4217 code such as EUR, not %q", s.Currency)
	}
	if s.InvoiceTermsDays < 0 || s.InvoiceTermsDays > 365 {
		return core.Invalid("invoiceTermsDays must be between 0 and 365")
	}
	if !prefixRe.MatchString(s.InvoicePrefix) {
		return core.Invalid("invoicePrefix must be at most 16 letters, digits, '/', '_', '.' or '-'")
	}
	return nil
}

// Location returns the settings' time zone.
func (s Settings) Location() *time.Location {
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Store persists settings. Get returns core.ENotFound when none were saved.
type Store interface {
	GetSettings(ctx context.Context, orgID string) (Settings, error)
	PutSettings(ctx context.Context, s Settings) error
}

// Service reads settings through the cache and invalidates it on write.
type Service struct {
	store Store
	cache *cache.Cache
	now   func() time.Time
}

// NewService returns the settings service. cache may be nil (no caching).
func NewService(store Store, c *cache.Cache, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, cache: c, now: now}
}

// Get returns the organisation's settings, or the defaults when none were
// saved.
func (s *Service) Get(ctx context.Context, orgID string) (Settings, error) {
	load := func(ctx context.Context) (Settings, error) {
		v, err := s.store.GetSettings(ctx, orgID)
		if core.ErrorCode(err) == core.ENotFound {
			return Defaults(orgID), nil
		}
		if err != nil {
			return Settings{}, fmt.Errorf("get settings of %s: %w", orgID, err)
		}
		return v, nil
	}
	if s.cache == nil {
		return load(ctx)
	}
	v, err := cache.GetOrLoad(ctx, s.cache, cache.KindSettings, orgID, load)
	v.OrganizationID = orgID // not serialised into the cache
	return v, err
}

// Put validates and saves the settings, then invalidates the cache.
// Errors: core.EInvalid.
func (s *Service) Put(ctx context.Context, orgID string, v Settings) (Settings, error) {
	v.OrganizationID = orgID
	if err := v.Validate(); err != nil {
		return Settings{}, err
	}
	v.UpdatedAt = s.now().UTC()
	if err := s.store.PutSettings(ctx, v); err != nil {
		return Settings{}, fmt.Errorf("put settings of %s: %w", orgID, err)
	}
	if s.cache != nil {
		if err := s.cache.Invalidate(ctx, cache.KindSettings, orgID); err != nil {
			return Settings{}, err
		}
	}
	return v, nil
}
