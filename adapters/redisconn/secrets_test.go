package redisconn

import (
	"context"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/logging"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
)

// TestNoSecretInConnectionLogs drives every path of the connection code
// that logs (success, wrong password, unreachable, TLS failures, close) for
// Redis and MongoDB with secrets in the configuration, and fails if any of
// them appears in any log line or returned error.
func TestNoSecretInConnectionLogs(t *testing.T) {
	const redisPw = "redis-pw-7f3a9c"
	const mongoPw = "mongo-pw-2b8e1d"
	const token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.dG9rZW4tc2lnbmF0dXJl"
	var logs syncBuffer
	lg := logging.New(&logs, "json", "debug")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error

	_, emb := testenv.MiniRedis(t)
	emb.Server.RequireAuth(redisPw)
	good, err := Connect(ctx, load(t, map[string]string{"REDIS_URL": "redis://:" + redisPw + "@" + emb.Server.Addr()}), lg)
	if err != nil {
		t.Fatal(err)
	}
	_ = Close(good, lg)
	for _, u := range []string{
		"redis://:" + redisPw + "-wrong@" + emb.Server.Addr(),
		"redis://:" + redisPw + "@" + testenv.FreeAddr(t),
		"rediss://:" + redisPw + "@" + emb.Server.Addr() + "?token=" + token,
	} {
		c, cerr := config.Load(func(k string) string { return map[string]string{"REDIS_URL": u}[k] })
		if cerr != nil {
			errs = append(errs, cerr)
			continue
		}
		_, err := Connect(ctx, c.Redis, lg)
		errs = append(errs, err)
	}
	secrets := []string{redisPw, mongoPw, token}
	if tlsURL := testenvValue(testenv.VarRedisTLSURL); tlsURL != "" {
		pu, _ := url.Parse(tlsURL)
		pw, _ := pu.User.Password()
		_, err := Connect(ctx, load(t, map[string]string{"REDIS_URL": tlsURL}), lg) // no CA: untrusted
		if err == nil {
			t.Fatal("a TLS server whose CA is not trusted must be refused")
		}
		errs = append(errs, err)
		// Checked in the logs and in the returned errors, like the others.
		secrets = append(secrets, pw)
	}
	// go-redis's own log lines (pool dial failures and the like) are free
	// text the driver formats; redisconn redacts them itself, whatever
	// handler the logger has. A line naming the URL, through a handler
	// that redacts nothing, must still lose its secrets.
	var raw syncBuffer
	setDriverLogger(slog.New(slog.NewJSONHandler(&raw, nil)))
	driverLogger{}.Printf(ctx, "redis: dial %s: connection refused", "redis://:"+redisPw+"@10.0.0.1:6379/0?token="+token)
	setDriverLogger(lg)
	if !strings.Contains(raw.String(), "connection refused") {
		t.Fatalf("the driver line was not logged: %s", raw.String())
	}

	mongoURI := testenv.MongoURI(t)
	mu, _ := url.Parse(mongoURI)
	withPw := "mongodb://app:" + mongoPw + "@" + mu.Host + "/?authMechanism=PLAIN&serverSelectionTimeoutMS=2000"
	client, _, err := mongodb.Connect(ctx, config.Mongo{URI: withPw, Database: "secrets_test"}, lg)
	errs = append(errs, err)
	if client != nil {
		_ = mongodb.Disconnect(ctx, client, lg)
	}
	_, _, err = mongodb.Connect(ctx, config.Mongo{URI: "mongodb://app:" + mongoPw + "@" + testenv.FreeAddr(t) + "/?serverSelectionTimeoutMS=300", Database: "x"}, lg)
	errs = append(errs, err)

	out := logs.String() + raw.String()
	for _, e := range errs {
		if e != nil {
			out += "\n" + e.Error()
		}
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("secret %q appears in logs or errors:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "redis: error") || !strings.Contains(out, "mongodb: connecting") {
		t.Fatalf("the failure paths were not exercised:\n%s", out)
	}
}

func testenvValue(name string) string {
	return strings.TrimSpace(getenv(name))
}

var getenv = os.Getenv
