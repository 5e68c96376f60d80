package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/org"
	"github.com/shiftflow/shiftflow/core/pricing"
)

// Demo defaults, documented in docs/local.md; DEMO_EMAIL and DEMO_PASSWORD
// override the login.
const (
	demoOrg      = "demo-org"
	demoEmail    = "admin@example.com"
	demoPassword = "shiftflow-demo"
)

// demoPricing is the example table: EUR, 20 % tax, nurses at
// 30.00/h, overtime after 8 h at 150 %, weekend 125 %, nights 120 %.
const demoPricing = `{"currency":"EUR","taxRateBasisPoints":2000,"roles":{"nurse":{"hourlyRate":3000},"carer":{"hourlyRate":2200}},"overtime":{"afterMinutes":480,"multiplierPercent":150},"weekend":{"multiplierPercent":125},"night":{"from":"22:00","to":"06:00","multiplierPercent":120},"minimumBillableMinutes":0}`

type demoLogin struct {
	Email, Password, Org, ClientID string
	UserID                         string
}

// seed creates, once, the demo organisation's settings, pricing table, a
// client and an admin user. Each step checks before it writes, so a second
// start changes nothing (and never resets a changed password).
func seed(ctx context.Context, a *app.App) (demoLogin, error) {
	l := demoLogin{Email: envOr("DEMO_EMAIL", demoEmail), Password: envOr("DEMO_PASSWORD", demoPassword), Org: demoOrg}
	u, err := a.Auth.EnsureUser(ctx, l.Email, l.Password, l.Org, auth.RoleAdmin)
	if err != nil {
		return l, fmt.Errorf("demo user: %w", err)
	}
	l.UserID = u.ID
	clients, err := a.Clients.List(ctx, l.Org)
	if err != nil {
		return l, err
	}
	if len(clients) > 0 {
		l.ClientID = clients[0].ID
		return l, nil
	}
	if _, err := a.Settings.Put(ctx, l.Org, org.Settings{TimeZone: "Europe/Amsterdam", Currency: "EUR", InvoiceTermsDays: 14, InvoicePrefix: "DEMO-"}); err != nil {
		return l, fmt.Errorf("demo settings: %w", err)
	}
	if _, err := a.Pricing.Table(ctx, l.Org); core.ErrorCode(err) == core.ENotFound {
		var t pricing.Table
		if err := json.Unmarshal([]byte(demoPricing), &t); err != nil {
			return l, err
		}
		if _, err := a.Pricing.PutTable(ctx, l.Org, t); err != nil {
			return l, fmt.Errorf("demo pricing: %w", err)
		}
	} else if err != nil {
		return l, err
	}
	c, err := a.Clients.Create(ctx, l.Org, "Sunrise Care Home", "billing@sunrise.example")
	if err != nil {
		return l, fmt.Errorf("demo client: %w", err)
	}
	l.ClientID = c.ID
	a.Logger.Info("seeded the demo organisation", "organisation", l.Org, "client", c.ID, "email", l.Email)
	return l, nil
}
