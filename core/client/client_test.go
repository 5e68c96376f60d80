package client

import (
	"strings"
	"testing"
)

func TestClientValidate(t *testing.T) {
	if err := (Client{Name: "Acme", BillingEmail: "ap@acme.test"}).Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Client{
		"no name":        {BillingEmail: "a@b.test"},
		"blank name":     {Name: "  ", BillingEmail: "a@b.test"},
		"long name":      {Name: strings.Repeat("x", 201), BillingEmail: "a@b.test"},
		"no email":       {Name: "x"},
		"display name":   {Name: "x", BillingEmail: "Acme <a@b.test>"},
		"no domain dot":  {Name: "x", BillingEmail: "a@localhost"},
		"header newline": {Name: "x", BillingEmail: "a@b.test\r\nBcc: c@d.test"},
	} {
		if c.Validate() == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
