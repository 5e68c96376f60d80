package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

type fuzzTarget struct {
	Name  string            `json:"name"`
	Start time.Time         `json:"start"`
	N     *int              `json:"n"`
	Tags  []string          `json:"tags"`
	Roles map[string]int64  `json:"roles"`
	Inner *struct{ A bool } `json:"inner"`
}

// FuzzDecodeJSON: whatever the body, DecodeJSON does not panic, and what
// it accepts is one valid UTF-8 JSON object without a '$' key, a repeated
// key or a control character other than tab and line breaks.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"name":"x"}`, `{"name":"x"}]`, `{"name":"x","name":"y"}`, `{"NAME":"x"}`, `{"name":{"$gt":""}}`,
		`{"start":"2026-11-23T08:00:00Z","n":5,"tags":["a"],"roles":{"nurse":1},"inner":{"A":true}}`,
		`{"n":1e30}`, `{"name":"a\u0000b"}`, "{\"name\":\"\xff\"}", `[]`, `null`, `{"roles":{"$x":1}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var v fuzzTarget
		if err := DecodeJSON(req, &v); err != nil {
			return
		}
		if !utf8.ValidString(body) || !json.Valid([]byte(body)) {
			t.Fatalf("accepted invalid JSON or UTF-8: %q", body)
		}
		doc, err := parseStrict([]byte(body))
		if err != nil {
			t.Fatalf("accepted, but the strict parse refuses it: %v", err)
		}
		if _, ok := doc.(jsonObject); !ok && !bytes.Equal(bytes.TrimSpace([]byte(body)), []byte("null")) {
			t.Fatalf("accepted a non-object: %q", body)
		}
		if strings.Contains(body, `"$`) {
			// Only acceptable inside a string value, never as a key.
			var walk func(any)
			walk = func(x any) {
				switch m := x.(type) {
				case jsonObject:
					for k, e := range m {
						if strings.HasPrefix(k, "$") {
							t.Fatalf("accepted operator key %q in %q", k, body)
						}
						walk(e)
					}
				case []any:
					for _, e := range m {
						walk(e)
					}
				}
			}
			walk(doc)
		}
	})
}
