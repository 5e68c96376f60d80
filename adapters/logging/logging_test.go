package logging

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXZhbHVl"
	tests := []struct{ in, secret string }{
		{"dial redis://:hunter2@cache:6379/0 failed", "hunter2"},
		{"rediss://app:hunter2@cache:6379", "hunter2"},
		{"mongodb://root:hunter2@db:27017/?authSource=admin", "hunter2"},
		{"GET /x?token=abc123secret&page=2", "abc123secret"},
		{"callback?access_token=abc123secret", "abc123secret"},
		{"password=hunter2 user=bob", "hunter2"},
		{"Authorization: Bearer " + jwt, jwt},
		{"token " + jwt + " rejected", jwt},
		{"X-Amz-Signature=deadbeefcafe", "deadbeefcafe"},
	}
	for _, tc := range tests {
		got := Redact(tc.in)
		if strings.Contains(got, tc.secret) {
			t.Errorf("Redact(%q) = %q still holds the secret", tc.in, got)
		}
	}
	if got := Redact("plain message about shift 42"); got != "plain message about shift 42" {
		t.Errorf("harmless text changed: %q", got)
	}
}

func TestLoggerNeverWritesSecrets(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		lg := New(&buf, format, "debug")
		u, _ := url.Parse("redis://:url-secret@h:1")
		h := http.Header{"Authorization": {"Bearer header-secret"}, "Cookie": {"sid=cookie-secret"}, "Accept": {"application/json"}}
		lg.Info("connecting", "uri", "mongodb://u:uri-secret@h/db", "password", "attr-secret", "jwtSecret", "jwt-secret-value",
			"err", errors.New("dial rediss://:err-secret@h:1: refused"), "url", u, "headers", h,
			"token", "tok-secret")
		lg.With("apiKey", "with-secret").Warn("x")
		out := buf.String()
		for _, s := range []string{"url-secret", "header-secret", "cookie-secret", "uri-secret", "attr-secret", "jwt-secret-value", "err-secret", "tok-secret", "with-secret"} {
			if strings.Contains(out, s) {
				t.Errorf("%s output contains %q:\n%s", format, s, out)
			}
		}
		if !strings.Contains(out, "application/json") {
			t.Errorf("harmless header dropped:\n%s", out)
		}
	}
}

func TestFormat(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, "json", "info").Info("hello", "k", 1)
	if !strings.HasPrefix(buf.String(), "{") {
		t.Fatalf("json format wrote %q", buf.String())
	}
	buf.Reset()
	New(&buf, "text", "warn").Info("hidden")
	if buf.Len() != 0 {
		t.Fatalf("level not applied: %q", buf.String())
	}
}
