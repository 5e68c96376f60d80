package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/org"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/timesheet"
	"gopkg.in/yaml.v3"
)

type oaDoc struct {
	OpenAPI string                                `yaml:"openapi"`
	Paths   map[string]map[string]yaml.Node       `yaml:"paths"`
	Comps   struct{ Schemas map[string]oaSchema } `yaml:"components"`
}

type oaOperation struct {
	OperationID string            `yaml:"operationId"`
	Security    *[]map[string]any `yaml:"security"`
	Responses   map[string]any    `yaml:"responses"`
}

type oaSchema struct {
	Properties map[string]any `yaml:"properties"`
	Required   []string       `yaml:"required"`
}

func oaLoad(t *testing.T) oaDoc {
	t.Helper()
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d oaDoc
	if err := yaml.Unmarshal(raw, &d); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", d.OpenAPI)
	}
	return d
}

var oaMethods = map[string]bool{"get": true, "put": true, "post": true, "patch": true, "delete": true}

// oaRouterRoutes is what the router mounts: the domain routes and the auth
// routes, with whether each is public.
func oaRouterRoutes() map[string]bool {
	out := map[string]bool{}
	for _, r := range httpapi.NewDomainRoutes(httpapi.DomainDeps{}).Routes() {
		out[r.Method+" "+r.Path] = r.Permission == ""
	}
	for _, r := range httpapi.NewAuthRoutes(nil, nil, nil).Routes() {
		out[r.Method+" "+r.Path] = r.Permission == ""
	}
	return out
}

func TestOpenAPIDescribesExactlyTheRoutesTheRouterServes(t *testing.T) {
	d := oaLoad(t)
	described := map[string]bool{}
	for path, ops := range d.Paths {
		for method, node := range ops {
			if !oaMethods[method] {
				continue // "parameters"
			}
			var op oaOperation
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			key := strings.ToUpper(method) + " " + path
			public := op.Security != nil && len(*op.Security) == 0
			described[key] = public
			if op.OperationID == "" || len(op.Responses) == 0 {
				t.Errorf("%s: operationId and responses are required", key)
			}
		}
	}
	served := oaRouterRoutes()
	var missing, extra, security []string
	for k, public := range served {
		dp, ok := described[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case dp != public:
			security = append(security, k)
		}
	}
	for k := range described {
		if _, ok := served[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra)+len(security) > 0 {
		t.Fatalf("router and openapi.yaml disagree:\n served, not described: %v\n described, not served: %v\n public in one only: %v", missing, extra, security)
	}
}

func TestEveryDescribedRouteIsMountedAndRequiresAToken(t *testing.T) {
	// Mounted routes answer 401 without a token; an unmounted one would
	// answer 404 or 405 from the mux.
	mux := http.NewServeMux()
	httpapi.NewDomainRoutes(httpapi.DomainDeps{Auth: httpapi.NewAuthenticator(nil)}).Register(mux)
	for path, ops := range oaLoad(t).Paths {
		for method := range ops {
			if !oaMethods[method] || path == "/login" || strings.HasPrefix(path, "/users") {
				continue
			}
			url := strings.ReplaceAll(path, "{id}", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest(strings.ToUpper(method), url, nil))
			if w.Code != http.StatusUnauthorized {
				t.Errorf("%s %s without a token: %d, want 401", strings.ToUpper(method), path, w.Code)
			}
		}
	}
}

// oaJSONNames returns the JSON field names of a struct type.
func oaJSONNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func TestOpenAPISchemasUseTheFieldNamesOfTheCode(t *testing.T) {
	d := oaLoad(t)
	types := map[string]any{
		"Client": client.Client{}, "ClientInput": httpapi.ClientInput{},
		"Shift": shift.Shift{}, "ShiftInput": httpapi.ShiftInput{}, "ShiftPatch": httpapi.ShiftPatch{}, "CompleteInput": httpapi.CompleteInput{},
		"Timesheet": timesheet.WorkedTime{}, "Invoice": invoice.Invoice{}, "InvoiceLine": pricing.Line{},
		"Settings": org.Settings{}, "PricingTable": pricing.Table{}, "PricingOverride": pricing.Override{},
		"Role": pricing.Role{}, "Overtime": pricing.Overtime{}, "Weekend": pricing.Weekend{}, "Night": pricing.Night{},
		"User": auth.User{}, "UserInput": auth.NewUser{}, "Token": auth.Token{}, "Error": httpapi.ErrorBody{},
	}
	// The settings body is the settings type with pointers (all required).
	if got, want := oaJSONNames(reflect.TypeOf(httpapi.SettingsInput{})), oaJSONNames(reflect.TypeOf(org.Settings{})); !reflect.DeepEqual(got, want) {
		t.Errorf("SettingsInput %v and Settings %v differ", got, want)
	}
	for name, v := range types {
		s, ok := d.Comps.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		var props []string
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if want := oaJSONNames(reflect.TypeOf(v)); !reflect.DeepEqual(props, want) {
			t.Errorf("schema %s has %v, the code %v", name, props, want)
		}
		for _, r := range s.Required {
			if _, ok := s.Properties[r]; !ok {
				t.Errorf("schema %s requires unknown %s", name, r)
			}
		}
	}
	// The issue's field names, verbatim.
	issue := map[string][]string{
		"Client":        {"id", "name", "billingEmail"},
		"Shift":         {"id", "clientId", "workerId", "role", "start", "end", "breakMinutes", "notes", "status"},
		"CompleteInput": {"actualStart", "actualEnd", "breakMinutes"},
		"Timesheet":     {"shiftId", "workedMinutes", "breakMinutes", "regularMinutes", "overtimeMinutes"},
		"Invoice":       {"id", "number", "shiftId", "clientId", "currency", "lines", "subtotal", "tax", "total", "issuedAt", "dueAt"},
		"InvoiceLine":   {"description", "minutes", "hourlyRate", "multiplierPercent", "amount"},
		"Settings":      {"timeZone", "currency", "invoiceTermsDays", "invoicePrefix"},
		"PricingTable":  {"currency", "taxRateBasisPoints", "roles", "overtime", "weekend", "night", "minimumBillableMinutes"},
	}
	for name, fields := range issue {
		for _, f := range fields {
			if _, ok := d.Comps.Schemas[name].Properties[f]; !ok {
				t.Errorf("schema %s lacks the issue's field %s", name, f)
			}
		}
	}
}

func TestOpenAPIReferencesResolve(t *testing.T) {
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := yaml.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	resolve := func(ref string) bool {
		if !strings.HasPrefix(ref, "#/") {
			return false
		}
		var cur any = root
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := cur.(map[string]any)
			if !ok {
				return false
			}
			if cur, ok = m[part]; !ok {
				return false
			}
		}
		return true
	}
	var walk func(any)
	n := 0
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "$ref" {
					n++
					if s, _ := e.(string); !resolve(s) {
						t.Errorf("unresolved $ref %v", e)
					}
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(root)
	if n < 50 {
		t.Fatalf("only %d $refs found; the walk is broken", n)
	}
}
