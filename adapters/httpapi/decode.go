package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shiftflow/shiftflow/core"
)

// DecodeJSON decodes the request body into v strictly, in the API's words
// when it refuses. In order:
//
//   - the Content-Type, when sent, is application/json (optionally with
//     charset=utf-8); anything else is 415;
//   - the body is at most MaxBodyBytes (413), not empty, valid UTF-8;
//   - it is exactly one JSON value, with nothing after it;
//   - no object repeats a key, no key starts with '$' (a MongoDB
//     operator), no string holds a control character other than tab,
//     line feed and carriage return;
//   - every key is a field of v spelled exactly (Go's decoder would take
//     "NAME" for "name"), every value has the field's kind, and times are
//     RFC 3339.
//
// Errors are core.EInvalid, core.ETooLarge or core.EMediaType with a
// message that names the field.
func DecodeJSON(r *http.Request, v any) error {
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	raw, err := readBody(r.Body)
	if err != nil {
		return err
	}
	doc, err := parseStrict(raw)
	if err != nil {
		return err
	}
	if err := matchShape(doc, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return core.Invalid("%s", describeJSONError(err))
	}
	return nil
}

func checkContentType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return core.Errorf(core.EMediaType, "Content-Type must be application/json, not %q", ct)
	}
	for k, val := range params {
		if k != "charset" || !strings.EqualFold(val, "utf-8") {
			return core.Errorf(core.EMediaType, "Content-Type must be application/json (charset utf-8 only), not %q", ct)
		}
	}
	return nil
}

func readBody(body io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(body, MaxBodyBytes+1))
	if err != nil {
		return nil, core.Invalid("the request body could not be read")
	}
	if len(raw) > MaxBodyBytes {
		return nil, core.Errorf(core.ETooLarge, "request body larger than %d bytes", MaxBodyBytes)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, core.Invalid("request body is empty; a JSON object is required")
	}
	if !utf8.Valid(raw) {
		return nil, core.Invalid("request body is not valid UTF-8")
	}
	return raw, nil
}

// jsonObject is a parsed object whose keys keep their exact spelling.
type jsonObject map[string]any

// parseStrict parses raw token by token into jsonObject / []any /
// scalars, refusing what encoding/json lets through: trailing data,
// duplicate keys, '$' keys and control characters.
func parseStrict(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := parseValue(dec, "")
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, core.Invalid("request body must hold one JSON value and nothing after it")
	}
	return v, nil
}

func parseValue(dec *json.Decoder, path string) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, core.Invalid("%s", describeJSONError(err))
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			return parseObject(dec, path)
		}
		if t == '[' {
			return parseArray(dec, path)
		}
		return nil, core.Invalid("malformed JSON at byte %d", dec.InputOffset())
	case string:
		if err := checkText(t, path); err != nil {
			return nil, err
		}
		return t, nil
	default:
		return t, nil
	}
}

func parseObject(dec *json.Decoder, path string) (any, error) {
	obj := jsonObject{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, core.Invalid("%s", describeJSONError(err))
		}
		key, _ := tok.(string)
		kpath := joinPath(path, key)
		if strings.HasPrefix(key, "$") {
			return nil, core.Invalid("field name %q is not allowed: names starting with '$' are reserved", key)
		}
		if err := checkText(key, kpath); err != nil {
			return nil, err
		}
		if _, dup := obj[key]; dup {
			return nil, core.Invalid("field %q appears twice", kpath)
		}
		if obj[key], err = parseValue(dec, kpath); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, core.Invalid("%s", describeJSONError(err))
	}
	return obj, nil
}

func parseArray(dec *json.Decoder, path string) (any, error) {
	var arr []any
	for dec.More() {
		v, err := parseValue(dec, fmt.Sprintf("%s[%d]", path, len(arr)))
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, core.Invalid("%s", describeJSONError(err))
	}
	return arr, nil
}

// checkText refuses control characters (NUL, escape, C1 ...) in any key
// or string; tab, line feed and carriage return may appear (notes keep
// their lines; single-line fields check their own rules).
func checkText(s, path string) error {
	for _, r := range s {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || (r >= 0x7f && r <= 0x9f) || r == utf8.RuneError {
			name := path
			if name == "" {
				name = "request body"
			}
			return core.Invalid("%s must not contain control characters (found U+%04X)", name, r)
		}
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var timeType = reflect.TypeOf(time.Time{})

// matchShape checks the parsed document against the target type: keys
// spelled exactly as the fields' JSON names, and each value of the kind
// its field needs, so that errors name the field in the API's words.
func matchShape(doc any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if doc == nil {
		return nil // null: the zero value (required fields are checked by the domain)
	}
	if t == timeType {
		s, ok := doc.(string)
		if _, err := time.Parse(time.RFC3339Nano, s); !ok || err != nil {
			return core.Invalid("%s must be an RFC 3339 time such as 2026-11-23T08:00:00Z", fieldName(path))
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := doc.(jsonObject)
		if !ok {
			return core.Invalid("%s must be a JSON object", fieldName(path))
		}
		return matchObject(obj, t, path)
	case reflect.Map:
		obj, ok := doc.(jsonObject)
		if !ok {
			return core.Invalid("%s must be a JSON object", fieldName(path))
		}
		for k, v := range obj {
			if err := matchShape(v, t.Elem(), joinPath(path, k)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			return nil // []byte / json.RawMessage: any JSON
		}
		arr, ok := doc.([]any)
		if !ok {
			return core.Invalid("%s must be a JSON array", fieldName(path))
		}
		for i, v := range arr {
			if err := matchShape(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.String:
		if _, ok := doc.(string); !ok {
			return core.Invalid("%s must be a string", fieldName(path))
		}
	case reflect.Bool:
		if _, ok := doc.(bool); !ok {
			return core.Invalid("%s must be true or false", fieldName(path))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := doc.(json.Number)
		if !ok {
			return core.Invalid("%s must be a whole number", fieldName(path))
		}
		if _, err := n.Int64(); err != nil {
			return core.Invalid("%s must be a whole number within ±9223372036854775807, not %s", fieldName(path), n)
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := doc.(json.Number); !ok {
			return core.Invalid("%s must be a number", fieldName(path))
		}
	}
	return nil
}

func matchObject(obj jsonObject, t reflect.Type, path string) error {
	fields := jsonFields(t)
	for key, v := range obj {
		ft, ok := fields[key]
		if !ok {
			for name := range fields {
				if strings.EqualFold(name, key) {
					return core.Invalid("unknown field %q (field names are case-sensitive: did you mean %q?)", joinPath(path, key), joinPath(path, name))
				}
			}
			return core.Invalid("unknown field %q", joinPath(path, key))
		}
		if err := matchShape(v, ft, joinPath(path, key)); err != nil {
			return err
		}
	}
	for _, name := range requiredFields(t) {
		if v, ok := obj[name]; !ok || v == nil {
			return core.Invalid("%s is required", joinPath(path, name))
		}
	}
	return nil
}

// jsonFields maps the JSON names of t's exported fields (embedded structs
// flattened, as encoding/json does) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for k, v := range jsonFields(et) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// requiredFields are the JSON names of t's fields tagged required:"true":
// a body that leaves one out is refused instead of taking the zero value
// (a pricing table without taxRateBasisPoints is not a table at 0 % tax).
func requiredFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("required") != "true" {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

func fieldName(path string) string {
	if path == "" {
		return "request body"
	}
	return path
}

// describeJSONError turns the decoder's errors into the API's words
// (matchShape catches most type errors first, with the field's name).
func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q has the wrong type (%s)", typ.Field, typ.Value)
		}
		return fmt.Sprintf("request body has the wrong type (%s)", typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "malformed JSON: unexpected end"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return "invalid JSON"
	}
}
