// Package core holds the domain of shiftflow: types, services and the ports
// they need. It imports no driver and no cloud SDK.
package core

import (
	"errors"
	"fmt"
)

// Error codes. Exactly one place (adapters/httpapi) maps them to HTTP status.
const (
	EInvalid      = "invalid"                // bad input: 400
	ENotFound     = "not_found"              // missing or another organisation's: 404
	EConflict     = "conflict"               // state does not allow it: 409
	EUnauthorized = "unauthorized"           // no or bad credentials: 401
	EForbidden    = "forbidden"              // authenticated, not allowed: 403
	ERateLimited  = "rate_limited"           // over a budget: 429
	ETooLarge     = "too_large"              // request body too large: 413
	EMethod       = "method_not_allowed"     // the route exists for other methods: 405
	EMediaType    = "unsupported_media_type" // the body is not application/json: 415
	EUnavailable  = "unavailable"            // a dependency is down: 503
	EInternal     = "internal"               // anything else: 500, details only logged
)

// Error is an application error with a code and a message that is safe to
// show to a client. Internal causes are kept in Err and never shown.
type Error struct {
	Code    string
	Message string
	// RetryAfterSeconds is set on ERateLimited errors.
	RetryAfterSeconds int
	// Err is the wrapped cause (logged, never sent).
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the code and a formatted client-safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid, NotFound, Conflict, ... are shorthands for Errorf.
func Invalid(format string, args ...any) *Error  { return Errorf(EInvalid, format, args...) }
func NotFound(format string, args ...any) *Error { return Errorf(ENotFound, format, args...) }
func Conflict(format string, args ...any) *Error { return Errorf(EConflict, format, args...) }
func Forbidden(format string, args ...any) *Error {
	return Errorf(EForbidden, format, args...)
}
func Unauthorized(format string, args ...any) *Error {
	return Errorf(EUnauthorized, format, args...)
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the client-safe message of err.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
