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
	} {
		if err := s.Validate(); core.ErrorCode(err) != core.EInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	if (Settings{TimeZone: "Europe/Berlin"}).Location().String() != "Europe/Berlin" {
		t.Error("Location")
	}
}
