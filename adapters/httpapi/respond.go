// Package httpapi is the HTTP port: JSON decoding and encoding, the one
// table from core error codes to HTTP status, and the routes.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/shiftflow/shiftflow/core"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 64 << 10

// statusOf is the one table from error code to HTTP status (docs/design.md#7).
var statusOf = map[string]int{
	core.EInvalid:      http.StatusBadRequest,
	core.ENotFound:     http.StatusNotFound,
	core.EConflict:     http.StatusConflict,
	core.EUnauthorized: http.StatusUnauthorized,
	core.EForbidden:    http.StatusForbidden,
	core.ERateLimited:  http.StatusTooManyRequests,
	core.ETooLarge:     http.StatusRequestEntityTooLarge,
	core.EMethod:       http.StatusMethodNotAllowed,
	core.EUnavailable:  http.StatusServiceUnavailable,
	core.EInternal:     http.StatusInternalServerError,
}

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// StatusOf returns the HTTP status for err.
func StatusOf(err error) int {
	if s, ok := statusOf[core.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// WriteError writes err as {"error":{"code","message"}}. Internal errors are
// logged here, once, and answered with a generic message.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	code := core.ErrorCode(err)
	status := StatusOf(err)
	var body ErrorBody
	body.Error.Code = code
	body.Error.Message = core.ErrorMessage(err)
	if status >= 500 {
		slog.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	var ce *core.Error
	if errors.As(err, &ce) && ce.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ce.RetryAfterSeconds))
	}
	WriteJSON(w, status, body)
}

// WriteJSON writes v as JSON with the status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// DecodeJSON decodes the request body into v strictly: a size limit,
// unknown fields rejected, one JSON value only, and no MongoDB operator
// (a key starting with '$') anywhere in the document. Errors are
// core.EInvalid (or core.ETooLarge) with a message naming the problem.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return core.Invalid("Content-Type must be application/json")
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return core.Invalid("read body: %v", err)
	}
	if len(raw) > MaxBodyBytes {
		return core.Errorf(core.ETooLarge, "request body larger than %d bytes", MaxBodyBytes)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return core.Invalid("request body is empty; a JSON object is required")
	}
	if key, ok := findOperatorKey(raw); ok {
		return core.Invalid("field name %q is not allowed: names starting with '$' are reserved", key)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return core.Invalid("%s", describeJSONError(err))
	}
	if dec.More() {
		return core.Invalid("request body must hold one JSON value")
	}
	return nil
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type.String(), typ.Value)
		}
		return fmt.Sprintf("body must be %s, not %s", typ.Type.String(), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return "invalid JSON: " + err.Error()
	}
}

// findOperatorKey reports the first object key starting with '$'.
func findOperatorKey(raw []byte) (string, bool) {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "", false // the strict decode reports the syntax error
	}
	var walk func(any) (string, bool)
	walk = func(x any) (string, bool) {
		switch t := x.(type) {
		case map[string]any:
			for k, e := range t {
				if strings.HasPrefix(k, "$") {
					return k, true
				}
				if k2, ok := walk(e); ok {
					return k2, true
				}
			}
		case []any:
			for _, e := range t {
				if k2, ok := walk(e); ok {
					return k2, true
				}
			}
		}
		return "", false
	}
	return walk(v)
}
