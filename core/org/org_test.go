package org

import (
	"testing"

	"github.com/shiftflow/shiftflow/core"
)

func TestSettingsValidate(t *testing.T) {
	if err := Defaults("o").Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for name, s := range map[string]Settings{
		"empty zone":     {TimeZone: "", Currency: "EUR", InvoicePrefix: "I"},
		"unknown zone":   {TimeZone: "Mars/Base", Currency: "EUR"},
		"Local":          {TimeZone: "Local", Currency: "EUR"},
		"currency":       {TimeZone: "UTC", Currency: "euro"},
		"negative terms": {TimeZone: "UTC", Currency: "EUR", InvoiceTermsDays: -1},
		"long terms":     {TimeZone: "UTC", Currency: "EUR", InvoiceTermsDays: 366},
		"prefix":         {TimeZone: "UTC", Currency: "EUR", InvoicePrefix: "a b"},
		// Files under the zoneinfo directory that are no zone name.
		"double slash": {TimeZone: "Europe//London", Currency: "EUR"},
		"dot segment":  {TimeZone: "./UTC", Currency: "EUR"},
		"posixrules":   {TimeZone: "posixrules", Currency: "EUR"},
		"right/":       {TimeZone: "right/UTC", Currency: "EUR"},
		"posix/":       {TimeZone: "posix/Europe/London", Currency: "EUR"},
		"Factory":      {TimeZone: "Factory", Currency: "EUR"},
		"zone.tab":     {TimeZone: "zone.tab", Currency: "EUR"},
		"lower case":   {TimeZone: "europe/london", Currency: "EUR"},
		"no currency":  {TimeZone: "UTC", Currency: "ABC"},
		"withdrawn":    {TimeZone: "UTC", Currency: "DEM"},
	} {
		if err := s.Validate(); core.ErrorCode(err) != core.EInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, ok := range []Settings{
		{TimeZone: "Europe/London", Currency: "GBP"}, {TimeZone: "America/Argentina/Buenos_Aires", Currency: "ARS"},
		{TimeZone: "Etc/GMT+5", Currency: "USD"}, {TimeZone: "US/Eastern", Currency: "USD"}, {TimeZone: "Asia/Kuwait", Currency: "KWD"},
	} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%s / %s refused: %v", ok.TimeZone, ok.Currency, err)
		}
	}
	if (Settings{TimeZone: "Europe/Berlin"}).Location().String() != "Europe/Berlin" {
		t.Error("Location")
	}
}
