package redisconn

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/logging"
	"github.com/shiftflow/shiftflow/adapters/testenv"
)

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func load(t *testing.T, vars map[string]string) config.Redis {
	t.Helper()
	c, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c.Redis
}

func connect(t *testing.T, c config.Redis, logs *syncBuffer) (redis.UniversalClient, error) {
	t.Helper()
	lg := logging.New(logs, "json", "debug")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := Connect(ctx, c, lg)
	if client != nil {
		t.Cleanup(func() { _ = Close(client, lg) })
	}
	return client, err
}

// tlsParts splits the harness's TLS URL into password and port.
func tlsParts(t *testing.T) (password, port string) {
	u, err := url.Parse(testenv.Need(t, testenv.VarRedisTLSURL))
	if err != nil {
		t.Fatal(err)
	}
	password, _ = u.User.Password()
	return password, u.Port()
}

func TestTLSRedis(t *testing.T) {
	password, port := tlsParts(t)
	caFile := testenv.Need(t, testenv.VarRedisTLSCA)
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		vars    map[string]string
		edit    func(*config.Redis)
		wantErr error
		wantMsg string
	}{
		{name: "right CA file connects",
			vars: map[string]string{"REDIS_URL": "rediss://:" + password + "@localhost:" + port, "REDIS_TLS_CA_FILE": caFile}},
		{name: "right CA as PEM text connects",
			vars: map[string]string{"REDIS_URL": "rediss://:" + password + "@localhost:" + port, "REDIS_TLS_CA": string(caPEM)}},
		{name: "REDIS_HOST fallback with TLS connects",
			vars: map[string]string{"REDIS_HOST": "localhost", "REDIS_PORT": port, "REDIS_PASSWORD": password, "REDIS_TLS": "true", "REDIS_TLS_CA_FILE": caFile}},
		{name: "insecure skips verification when asked",
			vars: map[string]string{"REDIS_URL": "rediss://:" + password + "@localhost:" + port, "REDIS_TLS_INSECURE": "true"}},
		{name: "without the CA the certificate is not trusted",
			vars:    map[string]string{"REDIS_URL": "rediss://:" + password + "@localhost:" + port},
			wantErr: ErrUntrustedCert, wantMsg: "REDIS_TLS_CA_FILE"},
		{name: "wrong host name is refused",
			vars:    map[string]string{"REDIS_URL": "rediss://:" + password + "@localhost:" + port, "REDIS_TLS_CA_FILE": caFile},
			edit:    func(c *config.Redis) { c.ServerName = "db.example.internal" },
			wantErr: ErrUntrustedCert, wantMsg: "not valid for host"},
		{name: "wrong password is an authentication error",
			vars:    map[string]string{"REDIS_URL": "rediss://:wrong-password@localhost:" + port, "REDIS_TLS_CA_FILE": caFile},
			wantErr: ErrAuth, wantMsg: "wrong password"},
		{name: "missing password says one is required",
			vars:    map[string]string{"REDIS_URL": "rediss://localhost:" + port, "REDIS_TLS_CA_FILE": caFile},
			wantErr: ErrAuth, wantMsg: "requires a password"},
		{name: "plain redis:// at the TLS port explains TLS",
			vars:    map[string]string{"REDIS_URL": "redis://:" + password + "@localhost:" + port},
			wantErr: ErrTLSRequired, wantMsg: "rediss://"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := load(t, tc.vars)
			if tc.edit != nil {
				tc.edit(&c)
			}
			var logs syncBuffer
			client, err := connect(t, c, &logs)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				if err := client.Set(context.Background(), testenv.Unique("k"), "v", time.Minute).Err(); err != nil {
					t.Fatalf("SET over TLS: %v", err)
				}
				if !strings.Contains(logs.String(), "redis: ready") {
					t.Fatalf("no ready line in logs:\n%s", logs.String())
				}
			} else {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("got %v, want %v mentioning %q", err, tc.wantErr, tc.wantMsg)
				}
				if strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "TLS") {
					t.Fatalf("bare EOF is not understandable: %v", err)
				}
			}
			if strings.Contains(logs.String(), password) {
				t.Fatalf("password appears in logs:\n%s", logs.String())
			}
			if c.Insecure && !strings.Contains(logs.String(), "verification is disabled") {
				t.Fatalf("insecure mode not warned about:\n%s", logs.String())
			}
		})
	}
}

func TestTLSURLAgainstPlainPortSaysNotTLS(t *testing.T) {
	u, err := url.Parse(testenv.Need(t, testenv.VarRedisURL))
	if err != nil {
		t.Fatal(err)
	}
	c := load(t, map[string]string{"REDIS_URL": "rediss://" + u.Host, "REDIS_TLS_INSECURE": "true"})
	_, err = connect(t, c, &syncBuffer{})
	if !errors.Is(err, ErrNotTLS) {
		t.Fatalf("got %v, want ErrNotTLS", err)
	}
}

func TestUnreachableHostIsExplained(t *testing.T) {
	addr := testenv.FreeAddr(t) // nothing listens there now
	c := load(t, map[string]string{"REDIS_URL": "redis://" + addr})
	_, err := connect(t, c, &syncBuffer{})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("got %v", err)
	}
	// A black-hole address times out instead of being refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // accepts nothing: the handshake never answers
	c = load(t, map[string]string{"REDIS_URL": "redis://" + l.Addr().String()})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = Connect(ctx, c, logging.New(&syncBuffer{}, "text", "error"))
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v, want ErrUnreachable", err)
	}
}

func TestEmbeddedRedisWrongPassword(t *testing.T) {
	_, emb := testenv.MiniRedis(t)
	emb.Server.RequireAuth("right-password")
	var logs syncBuffer
	_, err := connect(t, load(t, map[string]string{"REDIS_URL": "redis://:wrong-password@" + emb.Server.Addr()}), &logs)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
	if strings.Contains(logs.String(), "wrong-password") {
		t.Fatalf("password in logs: %s", logs.String())
	}
	c, err := connect(t, load(t, map[string]string{"REDIS_HOST": "127.0.0.1", "REDIS_PORT": emb.Server.Port(), "REDIS_PASSWORD": "right-password"}), &logs)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "right-password") {
		t.Fatalf("password in logs: %s", logs.String())
	}
}

func TestModeIsLoggedOnce(t *testing.T) {
	_, emb := testenv.MiniRedis(t)
	var logs syncBuffer
	if _, err := connect(t, load(t, map[string]string{"REDIS_URL": emb.URL}), &logs); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if strings.Count(out, "redis: mode chosen") != 1 || !strings.Contains(out, `"mode":"local, plaintext, single node"`) || !strings.Contains(out, `"from":"REDIS_URL"`) {
		t.Fatalf("mode line missing or wrong:\n%s", out)
	}
}

// Cluster: a multi-key Lua script over keys sharing a hash tag runs on the
// real cluster through the universal client built from configuration.
func TestClusterMultiKeyScriptWithHashTag(t *testing.T) {
	addrs := testenv.Need(t, testenv.VarRedisCluster)
	var logs syncBuffer
	c, err := connect(t, load(t, map[string]string{"REDIS_URL": "redis://" + strings.ReplaceAll(addrs, ",", ",")}), &logs)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*redis.ClusterClient); !ok {
		t.Fatalf("several addresses must give a cluster client, got %T", c)
	}
	tag := "{" + testenv.Unique("q") + "}"
	move := redis.NewScript(`
		local v = redis.call('LPOP', KEYS[1])
		if v then redis.call('RPUSH', KEYS[2], v); redis.call('HINCRBY', KEYS[3], 'moved', 1) end
		return v`)
	ctx := context.Background()
	src, dst, stats := tag+":src", tag+":dst", tag+":stats"
	if err := c.RPush(ctx, src, "a", "b").Err(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := move.Run(ctx, c, []string{src, dst, stats}).Err(); err != nil {
			t.Fatalf("script on tagged keys: %v", err)
		}
	}
	got, _ := c.LRange(ctx, dst, 0, -1).Result()
	moved, _ := c.HGet(ctx, stats, "moved").Int()
	if strings.Join(got, "") != "ab" || moved != 2 {
		t.Fatalf("dst=%v moved=%d", got, moved)
	}
	// Without a shared tag the same script is refused: the tag is what makes it work.
	err = move.Run(ctx, c, []string{testenv.Unique("x"), testenv.Unique("y"), testenv.Unique("z")}).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("untagged keys: want CROSSSLOT, got %v", err)
	}
	c1 := load(t, map[string]string{"REDIS_URL": "redis://" + strings.Split(addrs, ",")[0], "REDIS_CLUSTER": "true"})
	one, err := connect(t, c1, &logs)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := one.(*redis.ClusterClient); !ok {
		t.Fatalf("REDIS_CLUSTER=true with one address must give a cluster client, got %T", one)
	}
}

func TestConnectWaitRetriesUntilTheContextEnds(t *testing.T) {
	cfg := config.Redis{Addrs: []string{testenv.FreeAddr(t)}, Source: "REDIS_URL"}
	// The pool may still dial (and log) in the background after return.
	var logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := ConnectWait(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err == nil || !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "gave up waiting") {
		t.Fatalf("err %v", err)
	}
	if n := strings.Count(logs.String(), "not reachable yet; retrying"); n < 2 {
		t.Fatalf("%d attempts logged, want several:\n%s", n, logs.String())
	}
}

// Issue 9, item 14: a server that may evict keys (any maxmemory-policy but
// noeviction) silently loses jobs and events; the start-up says so.
func TestEvictionPolicyWarning(t *testing.T) {
	const msg = "redis: maxmemory-policy is not noeviction"
	t.Run("evicting server is warned about, naming its policy", func(t *testing.T) {
		srv := testenv.StartRedisServer(t, "--maxmemory-policy", "allkeys-lru")
		var logs syncBuffer
		if _, err := connect(t, load(t, map[string]string{"REDIS_URL": "redis://" + srv.Addr}), &logs); err != nil {
			t.Fatal(err)
		}
		out := logs.String()
		if !strings.Contains(out, msg) || !strings.Contains(out, `"maxmemoryPolicy":"allkeys-lru"`) || !strings.Contains(out, `"level":"WARN"`) {
			t.Fatalf("no eviction warning naming allkeys-lru:\n%s", out)
		}
	})
	t.Run("noeviction server is not", func(t *testing.T) {
		srv := testenv.StartRedisServer(t, "--maxmemory-policy", "noeviction")
		var logs syncBuffer
		if _, err := connect(t, load(t, map[string]string{"REDIS_URL": "redis://" + srv.Addr}), &logs); err != nil {
			t.Fatal(err)
		}
		if out := logs.String(); strings.Contains(out, msg) {
			t.Fatalf("warned about noeviction:\n%s", out)
		}
	})
	t.Run("cluster: each master is checked", func(t *testing.T) {
		addrs := strings.Split(testenv.Need(t, testenv.VarRedisCluster), ",")
		var logs syncBuffer
		c, err := connect(t, load(t, map[string]string{"REDIS_URL": "redis://" + addrs[0], "REDIS_CLUSTER": "true"}), &logs)
		if err != nil {
			t.Fatal(err)
		}
		// The shared cluster's policy is not ours to set: compare with
		// what its masters say.
		evicting := 0
		err = c.(*redis.ClusterClient).ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
			info, err := m.Info(ctx, "memory").Result()
			if p, _ := infoField(info, "maxmemory_policy"); p != "noeviction" {
				evicting++
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(logs.String(), msg); got != evicting {
			t.Fatalf("%d warnings, want %d (one per evicting master):\n%s", got, evicting, logs.String())
		}
	})
}
