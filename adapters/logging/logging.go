// Package logging builds the process logger: JSON inside a cloud function,
// text locally, with every attribute passed through a redactor so that a
// password, token or secret never reaches a log line.
package logging

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// New returns a logger writing to w in format "json" or "text" at level.
func New(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: replaceAttr}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h)
}

const redacted = "REDACTED"

// sensitiveKey matches attribute keys and query/header names whose values
// are secrets.
var sensitiveKey = regexp.MustCompile(`(?i)(pass(word)?|pwd|secret|token|authorization|auth|api[-_]?key|cookie|credential|signature|private[-_]?key)`)

// userInfo matches the user info of a URL: scheme://user:password@.
var userInfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@\s]*)@`)

// queryPair matches key=value pairs whose key looks sensitive.
var queryPair = regexp.MustCompile(`(?i)((?:pass(?:word)?|pwd|secret|token|access_token|auth|api[-_]?key|signature|sig|x-amz-security-token|x-amz-signature)=)([^&\s"]+)`)

// bearer matches Authorization header values written in free text.
var bearer = regexp.MustCompile(`(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+`)

// jwtLike matches three base64url segments, the shape of a JWT.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}`)

// Redact removes secrets from free text: URL user info, sensitive query
// parameters, bearer tokens and anything shaped like a JWT.
func Redact(s string) string {
	s = userInfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := userInfo.FindStringSubmatch(m)
		return sub[1] + redacted + "@"
	})
	s = queryPair.ReplaceAllString(s, "${1}"+redacted)
	s = bearer.ReplaceAllString(s, "${1} "+redacted)
	s = jwtLike.ReplaceAllString(s, redacted)
	return s
}

// RedactURL returns u with its password and sensitive query values hidden.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Redact(raw)
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	q := u.Query()
	for k := range q {
		if sensitiveKey.MatchString(k) {
			q.Set(k, redacted)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// RedactHeaders returns a copy of h with sensitive header values hidden.
func RedactHeaders(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		if sensitiveKey.MatchString(k) {
			out[k] = []string{redacted}
			continue
		}
		out[k] = append([]string(nil), v...)
	}
	return out
}

func replaceAttr(_ []string, a slog.Attr) slog.Attr {
	if sensitiveKey.MatchString(a.Key) && a.Value.Kind() != slog.KindGroup {
		return slog.String(a.Key, redacted)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Redact(a.Value.String()))
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			return slog.String(a.Key, Redact(v.Error()))
		case http.Header:
			return slog.Any(a.Key, RedactHeaders(v))
		case *url.URL:
			return slog.String(a.Key, RedactURL(v.String()))
		case interface{ String() string }:
			return slog.String(a.Key, Redact(v.String()))
		}
	}
	return a
}

type ctxKey struct{}

// With returns ctx carrying attributes (request, event, job and
// correlation ids) that FromContext adds to its logger.
func With(ctx context.Context, args ...any) context.Context {
	prev, _ := ctx.Value(ctxKey{}).([]any)
	return context.WithValue(ctx, ctxKey{}, append(append([]any(nil), prev...), args...))
}

// FromContext returns base with the attributes stored by With.
func FromContext(ctx context.Context, base *slog.Logger) *slog.Logger {
	if base == nil {
		base = slog.Default()
	}
	if args, ok := ctx.Value(ctxKey{}).([]any); ok && len(args) > 0 {
		return base.With(args...)
	}
	return base
}

// IsSensitiveKey reports whether a field or header name holds a secret.
func IsSensitiveKey(k string) bool { return sensitiveKey.MatchString(strings.TrimSpace(k)) }
