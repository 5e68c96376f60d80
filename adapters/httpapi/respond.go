// Package httpapi is the HTTP port: JSON decoding and encoding, the one
// table from core error codes to HTTP status, and the routes.
package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

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
	core.EMediaType:    http.StatusUnsupportedMediaType,
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
