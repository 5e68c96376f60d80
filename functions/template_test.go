package functions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/intrinsics"
	samschema "github.com/awslabs/goformation/v7/schema"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/lambda/lambdatest"
)

func readTemplate(t *testing.T) (raw []byte, root string) {
	t.Helper()
	root, err := lambdatest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return raw, root
}

// templateJSON is template.yaml as JSON, short-form intrinsics (!Ref,
// !Sub) turned into their long form and left unresolved.
func templateJSON(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	js, err := intrinsics.ProcessYAML(raw, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatalf("template.yaml is not valid YAML: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// placeholders replaces each intrinsic function ({"Ref": ...},
// {"Fn::Sub": ...}) with a string: CloudFormation resolves them to strings
// at deploy time, and the schema types the resolved value.
func placeholders(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 1 {
			for k := range x {
				if k == "Ref" || strings.HasPrefix(k, "Fn::") {
					return "intrinsic:" + k
				}
			}
		}
		for k, e := range x {
			x[k] = placeholders(e)
		}
	case []any:
		for i, e := range x {
			x[i] = placeholders(e)
		}
	}
	return v
}

var (
	samOnce   sync.Once
	samSchema *jsonschema.Schema
	samErr    error
)

// validateSAM checks a template against the SAM JSON schema goformation
// ships (compiled once: it is large).
func validateSAM(t *testing.T, raw []byte) error {
	t.Helper()
	samOnce.Do(func() {
		var schemaDoc map[string]any
		if samErr = json.Unmarshal([]byte(samschema.SamSchema), &schemaDoc); samErr != nil {
			return
		}
		// The shipped schema's $id is the draft-04 meta-schema's own URL,
		// which would make it shadow the meta-schema: drop it.
		delete(schemaDoc, "$id")
		// A resource may be any of ~1,400 types; compiling them all takes
		// minutes under -race. Keep the types template.yaml uses: a
		// resource of any other type then fails validation, which is what
		// a template of five functions and one API should do anyway.
		restrictResourceTypes(t, schemaDoc)
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft4)
		if samErr = c.AddResource("sam.schema.json", schemaDoc); samErr != nil {
			return
		}
		samSchema, samErr = c.Compile("sam.schema.json")
	})
	if samErr != nil {
		t.Fatalf("compile the SAM schema: %v", samErr)
	}
	doc := placeholders(templateJSON(t, raw))
	b, _ := json.Marshal(doc)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return samSchema.Validate(inst)
}

func restrictResourceTypes(t *testing.T, schemaDoc map[string]any) {
	raw, _ := readTemplate(t)
	used := map[string]bool{}
	for _, r := range templateJSON(t, raw)["Resources"].(map[string]any) {
		used[fmt.Sprint(r.(map[string]any)["Type"])] = true
	}
	res := schemaDoc["properties"].(map[string]any)["Resources"].(map[string]any)
	pp := res["patternProperties"].(map[string]any)
	for k, v := range pp {
		entry := v.(map[string]any)
		var keep []any
		for _, ref := range entry["anyOf"].([]any) {
			name := strings.TrimPrefix(ref.(map[string]any)["$ref"].(string), "#/definitions/")
			if used[name] {
				keep = append(keep, ref)
			}
		}
		if len(keep) == 0 {
			t.Fatal("template.yaml uses no resource type the SAM schema knows")
		}
		entry["anyOf"] = keep
		pp[k] = entry
	}
}

func TestTemplateIsValidSAM(t *testing.T) {
	raw, _ := readTemplate(t)
	if _, err := goformation.ParseYAML(raw); err != nil {
		t.Fatalf("goformation cannot parse template.yaml: %v", err)
	}
	if err := validateSAM(t, raw); err != nil {
		t.Fatalf("template.yaml does not satisfy the SAM schema:\n%v", err)
	}
}

// TestSchemaCheckCatchesMistakes: the validation above would catch the
// mistakes goformation lets through (it drops unknown properties).
func TestSchemaCheckCatchesMistakes(t *testing.T) {
	raw, _ := readTemplate(t)
	tests := []struct{ name, from, to string }{
		{"misspelled function property", "      Timeout: 60\n", "      Timout: 60\n"},
		{"wrong type", "      Timeout: 60\n", "      Timeout: [60]\n"},
		{"unknown top-level section", "Outputs:\n", "Output:\n"},
		{"misspelled event property", "            Schedule: !Ref DrainSchedule\n", "            Schedul: !Ref DrainSchedule\n"},
		{"misspelled resource type", "    Type: AWS::Serverless::HttpApi\n", "    Type: AWS::Serverless::HttpAPI\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(raw, []byte(tt.from)) {
				t.Fatalf("template.yaml no longer contains %q", tt.from)
			}
			broken := bytes.Replace(raw, []byte(tt.from), []byte(tt.to), 1)
			if err := validateSAM(t, broken); err == nil {
				t.Fatal("the schema accepted a broken template")
			}
		})
	}
}

func logicalID(function string) string {
	return strings.ToUpper(function[:1]) + function[1:] + "Function"
}

func TestTemplateMatchesTheCode(t *testing.T) {
	raw, root := readTemplate(t)
	doc := templateJSON(t, raw)
	resources := doc["Resources"].(map[string]any)
	globals := doc["Globals"].(map[string]any)["Function"].(map[string]any)

	// Settings every function shares.
	if globals["Runtime"] != "provided.al2023" || globals["Handler"] != "bootstrap" ||
		fmt.Sprint(globals["Architectures"]) != "[arm64]" || globals["CodeUri"] != "." {
		t.Errorf("Globals.Function must be provided.al2023, arm64, bootstrap, CodeUri . ; got %v", globals)
	}
	vars := globals["Environment"].(map[string]any)["Variables"].(map[string]any)
	for _, v := range []string{"REDIS_URL", "MONGODB_URI", "JWT_SECRET"} {
		if _, ok := vars[v].(map[string]any)["Ref"]; !ok {
			t.Errorf("environment variable %s must come from a parameter", v)
		}
	}
	params := doc["Parameters"].(map[string]any)
	for _, p := range []string{"RedisUrl", "MongoDbUri", "JwtSecret", "SmtpUrl"} {
		if params[p].(map[string]any)["NoEcho"] != true {
			t.Errorf("parameter %s holds a secret and must be NoEcho", p)
		}
	}
	if _, ok := params["CorsOrigin"]; !ok {
		t.Error("no CorsOrigin parameter")
	}
	cors := resources["HttpApi"].(map[string]any)["Properties"].(map[string]any)["CorsConfiguration"].(map[string]any)
	if fmt.Sprint(cors["AllowOrigins"]) != "[map[Ref:CorsOrigin]]" {
		t.Errorf("CORS origins must be the CorsOrigin parameter, got %v", cors["AllowOrigins"])
	}
	if _, ok := doc["Outputs"].(map[string]any)["ApiUrl"]; !ok {
		t.Error("no ApiUrl output")
	}

	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}

	// Every function has a resource, and every function resource is a function.
	var fnResources []string
	for id, r := range resources {
		if r.(map[string]any)["Type"] == "AWS::Serverless::Function" {
			fnResources = append(fnResources, id)
		}
	}
	var want []string
	for _, f := range allFunctions() {
		want = append(want, logicalID(f))
	}
	slices.Sort(fnResources)
	slices.Sort(want)
	if !slices.Equal(fnResources, want) {
		t.Fatalf("template functions %v, code functions %v", fnResources, want)
	}

	// Routes: build the real router and compare both ways.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newEnv(t)
	a, err := app.New(ctx, app.Options{Getenv: e.getenv})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	served := map[string]string{} // "METHOD path" -> function
	for _, rt := range a.Routes() {
		served[rt.Method+" "+rt.Path] = rt.Function
	}
	declared := map[string]string{}
	for _, f := range allFunctions() {
		id := logicalID(f)
		r := resources[id].(map[string]any)
		if md, _ := r["Metadata"].(map[string]any); md["BuildMethod"] != "makefile" {
			t.Errorf("%s: Metadata.BuildMethod must be makefile (the Makefile passes -tags lambda.norpc)", id)
		}
		if !bytes.Contains(makefile, []byte("build-"+id+":\n\t$(BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/"+f+"\n")) {
			t.Errorf("Makefile has no build-%s target building ./functions/%s", id, f)
		}
		props := r["Properties"].(map[string]any)
		events, _ := props["Events"].(map[string]any)
		if len(events) == 0 {
			t.Errorf("%s has no events", id)
		}
		isDrain := slices.Contains(app.DrainFunctions(), f)
		for name, ev := range events {
			ev := ev.(map[string]any)
			p := ev["Properties"].(map[string]any)
			switch ev["Type"] {
			case "HttpApi":
				if isDrain {
					t.Errorf("%s.%s: a drain has no HTTP route", id, name)
				}
				if fmt.Sprint(p["ApiId"]) != "map[Ref:HttpApi]" {
					t.Errorf("%s.%s: ApiId must be !Ref HttpApi", id, name)
				}
				key := fmt.Sprint(p["Method"]) + " " + fmt.Sprint(p["Path"])
				if prev, dup := declared[key]; dup {
					t.Errorf("route %s is declared twice (%s and %s)", key, prev, id)
				}
				declared[key] = f
				if served[key] == "" {
					t.Errorf("%s.%s: %s points nowhere: the router has no such route", id, name, key)
				} else if served[key] != f {
					t.Errorf("%s.%s: %s belongs to %s, not %s", id, name, key, served[key], f)
				}
			case "Schedule":
				if !isDrain {
					t.Errorf("%s.%s: only drains are scheduled", id, name)
				}
			default:
				t.Errorf("%s.%s: unexpected event type %v", id, name, ev["Type"])
			}
		}
		if isDrain {
			if props["Timeout"] == nil || props["Timeout"].(float64) < 20 {
				t.Errorf("%s: a drain needs a timeout above HANDLER_TIMEOUT (10s) plus the safety margin", id)
			}
			if props["ReservedConcurrentExecutions"] == nil {
				t.Errorf("%s: drains reserve their concurrency", id)
			}
		}
	}
	for key, f := range served {
		if declared[key] == "" {
			t.Errorf("route %s (function %s) has no HttpApi event in template.yaml", key, f)
		}
	}
}
