package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestRedisConfigurationFromEnvironment(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want Redis
	}{
		{"nothing set: local default", nil,
			Redis{Addrs: []string{"127.0.0.1:6379"}, ServerName: "127.0.0.1", Source: "default"}},
		{"REDIS_URL plain with password and db", map[string]string{"REDIS_URL": "redis://:s3cret@cache.internal:6380/2"},
			Redis{Addrs: []string{"cache.internal:6380"}, Password: "s3cret", DB: 2, ServerName: "cache.internal", Source: "REDIS_URL"}},
		{"REDIS_URL user and password", map[string]string{"REDIS_URL": "redis://app:pw@h:1"},
			Redis{Addrs: []string{"h:1"}, Username: "app", Password: "pw", ServerName: "h", Source: "REDIS_URL"}},
		{"REDIS_URL lone user info is the password", map[string]string{"REDIS_URL": "redis://pw@h:1"},
			Redis{Addrs: []string{"h:1"}, Password: "pw", ServerName: "h", Source: "REDIS_URL"}},
		{"REDIS_URL default port", map[string]string{"REDIS_URL": "redis://h"},
			Redis{Addrs: []string{"h:6379"}, ServerName: "h", Source: "REDIS_URL"}},
		{"rediss is TLS", map[string]string{"REDIS_URL": "rediss://h.example:6380"},
			Redis{Addrs: []string{"h.example:6380"}, TLS: true, ServerName: "h.example", Source: "REDIS_URL"}},
		{"rediss with CA file", map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_CA_FILE": caFile},
			Redis{Addrs: []string{"h:1"}, TLS: true, CAFile: caFile, ServerName: "h", Source: "REDIS_URL"}},
		{"rediss with CA PEM", map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_CA": "-----BEGIN CERTIFICATE-----x"},
			Redis{Addrs: []string{"h:1"}, TLS: true, CAPEM: "-----BEGIN CERTIFICATE-----x", ServerName: "h", Source: "REDIS_URL"}},
		{"rediss insecure only when asked", map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_INSECURE": "true"},
			Redis{Addrs: []string{"h:1"}, TLS: true, Insecure: true, ServerName: "h", Source: "REDIS_URL"}},
		{"several URLs make a cluster", map[string]string{"REDIS_URL": "redis://:pw@a:7000,b:7001, redis://c:7002"},
			Redis{Addrs: []string{"a:7000", "b:7001", "c:7002"}, Password: "pw", Cluster: true, ServerName: "a", Source: "REDIS_URL"}},
		{"REDIS_CLUSTER with one address", map[string]string{"REDIS_URL": "rediss://cfg.example:6379", "REDIS_CLUSTER": "true"},
			Redis{Addrs: []string{"cfg.example:6379"}, TLS: true, Cluster: true, ServerName: "cfg.example", Source: "REDIS_URL"}},
		{"REDIS_URL wins over REDIS_HOST", map[string]string{"REDIS_URL": "redis://u:1", "REDIS_HOST": "ignored", "REDIS_PASSWORD": "ignored"},
			Redis{Addrs: []string{"u:1"}, ServerName: "u", Source: "REDIS_URL"}},
		{"REDIS_HOST fallback", map[string]string{"REDIS_HOST": "redis.local", "REDIS_PORT": "6390", "REDIS_PASSWORD": "pw", "REDIS_DB": "3"},
			Redis{Addrs: []string{"redis.local:6390"}, Password: "pw", DB: 3, ServerName: "redis.local", Source: "REDIS_HOST"}},
		{"REDIS_HOST with TLS", map[string]string{"REDIS_HOST": "h", "REDIS_TLS": "yes"},
			Redis{Addrs: []string{"h:6379"}, TLS: true, ServerName: "h", Source: "REDIS_HOST"}},
		{"REDIS_PORT alone is the local fallback", map[string]string{"REDIS_PORT": "7777"},
			Redis{Addrs: []string{"127.0.0.1:7777"}, ServerName: "127.0.0.1", Source: "REDIS_HOST"}},
		{"REDIS_HOST list makes a cluster", map[string]string{"REDIS_HOST": "a,b:7001"},
			Redis{Addrs: []string{"a:6379", "b:7001"}, Cluster: true, ServerName: "a", Source: "REDIS_HOST"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(env(tc.env))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			c.Redis.Query = nil
			if !reflect.DeepEqual(c.Redis, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", c.Redis, tc.want)
			}
		})
	}
}

func TestBadValuesNameTheirVariable(t *testing.T) {
	tests := []struct {
		env     map[string]string
		varName string
		reason  string
	}{
		{map[string]string{"REDIS_URL": "http://h:1"}, "REDIS_URL", "scheme"},
		{map[string]string{"REDIS_URL": "redis://h:99999"}, "REDIS_URL", "port"},
		{map[string]string{"REDIS_URL": "redis://h:1/x"}, "REDIS_URL", "database"},
		{map[string]string{"REDIS_URL": "redis://h:1/16"}, "REDIS_URL", "database"},
		{map[string]string{"REDIS_URL": "redis://h:1,,b:2"}, "REDIS_URL", "empty"},
		{map[string]string{"REDIS_URL": "redis://a:1,rediss://b:2"}, "REDIS_URL", "mix"},
		{map[string]string{"REDIS_URL": "redis://a:1,nonsense"}, "REDIS_URL", "host:port"},
		{map[string]string{"REDIS_URL": "redis://a:1/1,b:2"}, "REDIS_URL", "database 0"},
		{map[string]string{"REDIS_URL": "redis://"}, "REDIS_URL", "no host"},
		{map[string]string{"REDIS_PORT": "abc"}, "REDIS_PORT", "integer"},
		{map[string]string{"REDIS_PORT": "0"}, "REDIS_PORT", "range"},
		{map[string]string{"REDIS_DB": "-1"}, "REDIS_DB", "range"},
		{map[string]string{"REDIS_TLS": "maybe"}, "REDIS_TLS", "boolean"},
		{map[string]string{"REDIS_CLUSTER": "2"}, "REDIS_CLUSTER", "boolean"},
		{map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_INSECURE": "sure"}, "REDIS_TLS_INSECURE", "boolean"},
		{map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_CA_FILE": "/nonexistent/ca.pem"}, "REDIS_TLS_CA_FILE", "cannot read"},
		{map[string]string{"REDIS_URL": "rediss://h:1", "REDIS_TLS_CA": "not pem"}, "REDIS_TLS_CA", "PEM"},
		{map[string]string{"REDIS_URL": "redis://h:1", "REDIS_TLS_INSECURE": "true"}, "REDIS_TLS_INSECURE", "TLS is off"},
		{map[string]string{"REDIS_URL": "redis://h:1", "REDIS_TLS_CA": "-----BEGIN CERTIFICATE-----"}, "REDIS_TLS_CA", "TLS is off"},
		{map[string]string{"MONGODB_URI": "postgres://h"}, "MONGODB_URI", "scheme"},
		{map[string]string{"MONGODB_URI": "mongodb://"}, "MONGODB_URI", "no host"},
		{map[string]string{"MONGODB_URI": "mongodb://h", "MONGODB_DATABASE": "a.b"}, "MONGODB_DATABASE", "valid database"},
		{map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT", "json or text"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL", "debug"},
	}
	for _, tc := range tests {
		t.Run(tc.varName+"/"+tc.reason, func(t *testing.T) {
			_, err := Load(env(tc.env))
			if err == nil {
				t.Fatal("want an error")
			}
			var ve *VarError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is not a *VarError", err)
			}
			if !strings.Contains(err.Error(), tc.varName+":") || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q does not name %s with %q", err, tc.varName, tc.reason)
			}
		})
	}
}

func TestAllErrorsReportedAtOnce(t *testing.T) {
	_, err := Load(env(map[string]string{"REDIS_PORT": "x", "LOG_LEVEL": "loud", "MONGODB_URI": "ftp://h"}))
	for _, v := range []string{"REDIS_PORT", "LOG_LEVEL", "MONGODB_URI"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("error %v does not mention %s", err, v)
		}
	}
}

func TestURLErrorsDoNotEchoThePassword(t *testing.T) {
	_, err := Load(env(map[string]string{"REDIS_URL": "redis://:hunter2-secret@h:1\x7f"}))
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
	_, err = Load(env(map[string]string{"MONGODB_URI": "mongodb://u:hunter2-secret@h:1\x7f"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("want an error without the password, got %v", err)
	}
}

func TestMongoAndLogDefaults(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		db   string
		src  string
		fmt  string
	}{
		{"unset", nil, "shiftflow", "default", "text"},
		{"database from URI path", map[string]string{"MONGODB_URI": "mongodb://h/prod"}, "prod", "MONGODB_URI", "text"},
		{"MONGODB_DATABASE wins", map[string]string{"MONGODB_URI": "mongodb://h/prod", "MONGODB_DATABASE": "other"}, "other", "MONGODB_URI", "text"},
		{"srv URI", map[string]string{"MONGODB_URI": "mongodb+srv://c.example.net/"}, "shiftflow", "MONGODB_URI", "text"},
		{"JSON inside Lambda", map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "login"}, "shiftflow", "default", "json"},
		{"JSON inside Cloud Functions", map[string]string{"K_SERVICE": "login"}, "shiftflow", "default", "json"},
		{"LOG_FORMAT overrides", map[string]string{"K_SERVICE": "login", "LOG_FORMAT": "text"}, "shiftflow", "default", "text"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.Mongo.Database != tc.db || c.Mongo.Source != tc.src || c.Log.Format != tc.fmt {
				t.Fatalf("got db=%q source=%q format=%q", c.Mongo.Database, c.Mongo.Source, c.Log.Format)
			}
		})
	}
}

func TestModeLine(t *testing.T) {
	c, _ := Load(env(map[string]string{"REDIS_URL": "rediss://a:1,b:2"}))
	if got := c.Redis.Mode(); got != "managed, tls, cluster" {
		t.Fatalf("mode %q", got)
	}
	c, _ = Load(env(nil))
	if got := c.Redis.Mode(); got != "local, plaintext, single node" {
		t.Fatalf("mode %q", got)
	}
	c, _ = Load(env(map[string]string{"REDIS_URL": "redis://127.0.0.1:41234"}))
	if got := c.Redis.Mode(); got != "local, plaintext, single node" {
		t.Fatalf("a loopback REDIS_URL is local, got mode %q", got)
	}
}
