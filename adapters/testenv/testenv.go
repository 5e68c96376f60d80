// Package testenv gives tests their servers. Real servers come from the
// variables that infra/test.sh exports; fast tests use embedded servers.
// A test that needs a real server and does not find it skips, naming the
// variable to set.
//
// Variables (all set by infra/test.sh):
//
//	SHIFTFLOW_TEST_REDIS_URL          plain redis-server, e.g. redis://127.0.0.1:6379/0
//	SHIFTFLOW_TEST_REDIS_TLS_URL      TLS redis-server with a password, rediss://:pw@localhost:port
//	SHIFTFLOW_TEST_REDIS_TLS_CA_FILE  PEM of the CA that signed the TLS server's certificate
//	SHIFTFLOW_TEST_REDIS_CLUSTER_ADDRS comma-separated addresses of a 3-node cluster
//	SHIFTFLOW_TEST_MONGODB_URI        MongoDB wire-protocol server (FerretDB)
//	SHIFTFLOW_TEST_REDIS_SERVER       path of redis-server, for tests that start,
//	                                  kill and restart their own instance
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"

	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/embedded"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Names of the variables.
const (
	VarRedisURL      = "SHIFTFLOW_TEST_REDIS_URL"
	VarRedisTLSURL   = "SHIFTFLOW_TEST_REDIS_TLS_URL"
	VarRedisTLSCA    = "SHIFTFLOW_TEST_REDIS_TLS_CA_FILE"
	VarRedisCluster  = "SHIFTFLOW_TEST_REDIS_CLUSTER_ADDRS"
	VarMongoURI      = "SHIFTFLOW_TEST_MONGODB_URI"
	VarRedisServer   = "SHIFTFLOW_TEST_REDIS_SERVER"
	skipHintTemplate = "set %s (infra/test.sh starts the servers and sets it)"
)

// Need returns the value of a variable or skips the test naming it.
func Need(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Skipf(skipHintTemplate, name)
	}
	return v
}

// Unique returns a short random name with the prefix, for keys, queues and
// databases, so tests sharing one server never see each other's data.
func Unique(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// Target is one Redis a contract suite runs against.
type Target struct {
	Name   string
	Client redis.UniversalClient
}

// MiniRedis starts an embedded Redis for the test and returns a client.
func MiniRedis(t testing.TB) (redis.UniversalClient, *embedded.Redis) {
	t.Helper()
	r, err := embedded.StartRedis("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	c := redis.NewClient(&redis.Options{Addr: r.Server.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c, r
}

// RedisPlain returns a client of the real plain redis-server or skips.
func RedisPlain(t testing.TB) redis.UniversalClient {
	t.Helper()
	opt, err := redis.ParseURL(Need(t, VarRedisURL))
	if err != nil {
		t.Fatalf("%s: %v", VarRedisURL, err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	ping(t, c)
	return c
}

// RedisTLS returns a client of the real TLS redis-server (CA trusted) or skips.
func RedisTLS(t testing.TB) redis.UniversalClient {
	t.Helper()
	opt, err := redis.ParseURL(Need(t, VarRedisTLSURL))
	if err != nil {
		t.Fatalf("%s: %v", VarRedisTLSURL, err)
	}
	opt.TLSConfig.RootCAs = CAPool(t)
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	ping(t, c)
	return c
}

// CAPool loads the TLS test CA or skips.
func CAPool(t testing.TB) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(Need(t, VarRedisTLSCA))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate in PEM", VarRedisTLSCA)
	}
	return pool
}

// RedisCluster returns a cluster client of the real 3-node cluster or skips.
func RedisCluster(t testing.TB) redis.UniversalClient {
	t.Helper()
	addrs := strings.Split(Need(t, VarRedisCluster), ",")
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = c.Close() })
	ping(t, c)
	return c
}

// RedisTargets returns the embedded Redis and every real one that is
// configured, for contract suites. Real ones that are not configured are
// reported with t.Log (not skipped) so the embedded run still happens.
func RedisTargets(t *testing.T) []Target {
	t.Helper()
	mini, _ := MiniRedis(t)
	out := []Target{{Name: "embedded", Client: mini}}
	if os.Getenv(VarRedisURL) != "" {
		out = append(out, Target{"redis", RedisPlain(t)})
	} else {
		t.Logf("real plain Redis not tested: "+skipHintTemplate, VarRedisURL)
	}
	if os.Getenv(VarRedisTLSURL) != "" && os.Getenv(VarRedisTLSCA) != "" {
		out = append(out, Target{"redis-tls", RedisTLS(t)})
	} else {
		t.Logf("real TLS Redis not tested: "+skipHintTemplate, VarRedisTLSURL)
	}
	if os.Getenv(VarRedisCluster) != "" {
		out = append(out, Target{"redis-cluster", RedisCluster(t)})
	} else {
		t.Logf("real Redis Cluster not tested: "+skipHintTemplate, VarRedisCluster)
	}
	return out
}

func ping(t testing.TB, c redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis ping: %v", err)
	}
}

var (
	embeddedMongoOnce sync.Once
	embeddedMongo     *embedded.Mongo
	embeddedMongoErr  error
)

// MongoURI returns the real MongoDB server's URI when configured, and
// otherwise that of an embedded FerretDB shared by the test binary.
func MongoURI(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(VarMongoURI); u != "" {
		return u
	}
	embeddedMongoOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shiftflow-ferretdb-")
		if err != nil {
			embeddedMongoErr = err
			return
		}
		embeddedMongo, embeddedMongoErr = embedded.StartMongo(dir, "127.0.0.1:0", nil)
	})
	if embeddedMongoErr != nil {
		t.Fatalf("embedded mongo: %v", embeddedMongoErr)
	}
	return embeddedMongo.URI
}

// MongoRealURI returns the real MongoDB server's URI or skips.
func MongoRealURI(t testing.TB) string {
	t.Helper()
	return Need(t, VarMongoURI)
}

// MongoDB connects to MongoURI and returns a fresh database with a unique
// name, dropped when the test ends.
func MongoDB(t testing.TB) *mongo.Database {
	t.Helper()
	return MongoDBAt(t, MongoURI(t))
}

// MongoDBAt is MongoDB for a given URI.
func MongoDBAt(t testing.TB, uri string) *mongo.Database {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	db := c.Database(strings.ReplaceAll(Unique("t"), "-", "_"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
		_ = c.Disconnect(ctx)
	})
	return db
}

// RedisServer is a redis-server process a test owns: it can be killed and
// restarted on the same port and data directory.
type RedisServer struct {
	Addr string
	Dir  string
	args []string
	bin  string
	cmd  *exec.Cmd
	t    testing.TB
}

// StartRedisServer starts a redis-server on a free loopback port with a
// temporary data directory and extra args (for example "--appendonly",
// "yes", "--appendfsync", "everysec"). It skips unless
// SHIFTFLOW_TEST_REDIS_SERVER names the binary. The process is stopped by
// PID when the test ends.
func StartRedisServer(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	bin := Need(t, VarRedisServer)
	s := &RedisServer{Addr: FreeAddr(t), Dir: t.TempDir(), args: args, bin: bin, t: t}
	s.Start()
	t.Cleanup(func() { s.Kill() })
	return s
}

// Start (re)starts the process and waits until it answers PING.
func (s *RedisServer) Start() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{"--bind", "127.0.0.1", "--port", port, "--dir", s.Dir,
		"--save", "", "--logfile", filepath.Join(s.Dir, "redis.log")}, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			s.t.Fatalf("redis-server on %s not ready: %v\n%s", s.Addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the process with SIGKILL (no shutdown save) and waits for it.
func (s *RedisServer) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart kills and starts the server again on the same port and directory.
func (s *RedisServer) Restart() {
	s.Kill()
	s.Start()
}

// Client returns a client for the server, closed when the test ends.
func (s *RedisServer) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// FreeAddr returns a loopback address with a port that was free just now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TLSConfig returns a client TLS config trusting the test CA, for the host.
func TLSConfig(t testing.TB, serverName string) *tls.Config {
	return &tls.Config{RootCAs: CAPool(t), ServerName: serverName, MinVersion: tls.VersionTLS12}
}
