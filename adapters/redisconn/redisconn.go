// Package redisconn turns the Redis configuration into a connected
// go-redis universal client (single node or cluster, plain or TLS), logs
// its lifecycle without secrets, and turns the driver's terse failures
// (a bare EOF, WRONGPASS) into errors a person understands.
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/logging"
)

// Retry policy: go-redis retries a failed command up to MaxRetries times,
// sleeping an exponential backoff with jitter between MinRetryBackoff and
// MaxRetryBackoff; broken pool connections are redialled on next use.
const (
	maxRetries      = 3
	minRetryBackoff = 8 * time.Millisecond
	maxRetryBackoff = 512 * time.Millisecond
	dialTimeout     = 5 * time.Second
	dialRetries     = 3
	pingTimeout     = 5 * time.Second
)

// dialBackoff is the wait before dial retry attempt n (0-based):
// exponential from 50 ms, capped at 2 s, with full jitter so that many
// function instances reconnecting after a Redis restart do not stampede.
func dialBackoff(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(attempt, 6)
	if d > 2*time.Second {
		d = 2 * time.Second
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

// Options builds the driver options from the configuration; Cluster picks
// a cluster client, otherwise a single-node client (both satisfy
// redis.UniversalClient, so the same code paths serve both).
func Options(c config.Redis) (*redis.UniversalOptions, error) {
	o := &redis.UniversalOptions{
		Addrs:           c.Addrs,
		Username:        c.Username,
		Password:        c.Password,
		DB:              c.DB,
		IsClusterMode:   c.Cluster,
		MaxRetries:      maxRetries,
		MinRetryBackoff: minRetryBackoff,
		MaxRetryBackoff: maxRetryBackoff,
		DialTimeout:     dialTimeout,
		DialerRetries:   dialRetries,
		ClientName:      "shiftflow",
		// Function instances are short-lived and many: keep pools modest.
		PoolSize: 20,
		// Honour each invocation's context deadline on every command.
		ContextTimeoutEnabled: true,
	}
	if c.TLS {
		tc, err := TLSConfig(c)
		if err != nil {
			return nil, err
		}
		o.TLSConfig = tc
	}
	return o, nil
}

func newClient(o *redis.UniversalOptions) redis.UniversalClient {
	if o.IsClusterMode || len(o.Addrs) > 1 {
		co := o.Cluster()
		co.DialerRetryBackoff = dialBackoff
		return redis.NewClusterClient(co)
	}
	so := o.Simple()
	so.DialerRetryBackoff = dialBackoff
	return redis.NewClient(so)
}

// TLSConfig returns the client TLS configuration: system roots plus the
// private CA when given, server name checked, verification skipped only
// when REDIS_TLS_INSECURE=true.
func TLSConfig(c config.Redis) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.Insecure {
		tc.InsecureSkipVerify = true //nolint:gosec // explicit opt-in, warned about at connect
	}
	pemText := []byte(c.CAPEM)
	name := "REDIS_TLS_CA"
	if c.CAFile != "" {
		b, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("REDIS_TLS_CA_FILE: %w", err)
		}
		pemText, name = b, "REDIS_TLS_CA_FILE"
	}
	if len(pemText) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pemText) {
			return nil, fmt.Errorf("%s: no PEM certificate could be parsed", name)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// New creates the client without contacting the server. Connection
// errors are logged with their explanation, and Close is logged.
func New(c config.Redis, logger *slog.Logger) (redis.UniversalClient, error) {
	if logger == nil {
		logger = slog.Default()
	}
	o, err := Options(c)
	if err != nil {
		return nil, err
	}
	setDriverLogger(logger)
	client := newClient(o)
	client.AddHook(&dialLogHook{cfg: c, log: logger})
	return client, nil
}

// Connect creates the client, logs the chosen mode, and checks it with a
// PING within the timeout. The returned error explains the failure.
func Connect(ctx context.Context, c config.Redis, logger *slog.Logger) (redis.UniversalClient, error) {
	client, logger, err := newLogged(c, logger)
	if err != nil {
		return nil, err
	}
	logger.Info("redis: connecting", "addrs", strings.Join(c.Addrs, ","))
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	start := time.Now()
	if err := client.Ping(pctx).Err(); err != nil {
		_ = client.Close()
		err = Explain(c, err)
		logger.Error("redis: error", "err", err)
		return nil, err
	}
	logger.Info("redis: ready", "addrs", strings.Join(c.Addrs, ","), "ms", time.Since(start).Milliseconds())
	warnEviction(ctx, client, logger)
	return client, nil
}

// newLogged is the common first step of Connect and ConnectWait: log the
// chosen mode and build the client (no I/O yet).
func newLogged(c config.Redis, logger *slog.Logger) (redis.UniversalClient, *slog.Logger, error) {
	if logger == nil {
		logger = slog.Default()
	}
	logMode(c, logger)
	client, err := New(c, logger)
	if err != nil {
		logger.Error("redis: error", "err", err)
		return nil, logger, err
	}
	return client, logger, nil
}

func logMode(c config.Redis, logger *slog.Logger) {
	logger.Info("redis: mode chosen", "mode", c.Mode(), "from", sourceVars(c), "addrs", strings.Join(c.Addrs, ","))
	if c.Insecure {
		logger.Warn("redis: TLS certificate verification is disabled by REDIS_TLS_INSECURE=true; never use this in production")
	}
}

// MaxWaitBackoff caps the pause between ConnectWait's attempts.
const MaxWaitBackoff = 5 * time.Second

// ConnectWait is Connect for long-running processes (the container
// worker): while the server is unreachable it logs the attempt and tries
// again after an exponential backoff (200 ms doubling, capped at
// MaxWaitBackoff, with jitter), until the server answers or ctx ends.
// Failures a retry cannot fix (wrong password, TLS mismatch, untrusted
// certificate, a bad CA) are returned at once.
func ConnectWait(ctx context.Context, c config.Redis, logger *slog.Logger) (redis.UniversalClient, error) {
	client, logger, err := newLogged(c, logger)
	if err != nil {
		return nil, err
	}
	logger.Info("redis: connecting; waiting until it answers", "addrs", strings.Join(c.Addrs, ","))
	start := time.Now()
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := client.Ping(pctx).Err()
		cancel()
		if err == nil {
			logger.Info("redis: ready", "addrs", strings.Join(c.Addrs, ","), "attempts", attempt, "ms", time.Since(start).Milliseconds())
			warnEviction(ctx, client, logger)
			return client, nil
		}
		err = Explain(c, err)
		if !retryable(err) || ctx.Err() != nil {
			_ = client.Close()
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (gave up waiting: %w)", err, context.Cause(ctx))
			}
			logger.Error("redis: error", "err", err)
			return nil, err
		}
		wait := waitBackoff(attempt)
		logger.Warn("redis: not reachable yet; retrying", "attempt", attempt, "retryIn", wait.String(), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// retryable: the server is not there (yet), as opposed to being there and
// refusing us.
func retryable(err error) bool {
	// ErrTLSRequired stays retryable: it is read from a bare EOF, which is
	// also what a container port proxy answers while the server is not up.
	for _, fatal := range []error{ErrAuth, ErrUntrustedCert, ErrNotTLS} {
		if errors.Is(err, fatal) {
			return false
		}
	}
	return !strings.Contains(err.Error(), "REDIS_TLS_CA")
}

// waitBackoff is the pause after failed attempt n (1-based): 200 ms
// doubling up to MaxWaitBackoff, minus up to 20 % jitter so that many
// workers waiting for one server do not retry in lockstep.
func waitBackoff(attempt int) time.Duration {
	d := min(200*time.Millisecond<<min(attempt-1, 10), MaxWaitBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// evictionCheckTimeout bounds the start-up check of the eviction policy.
const evictionCheckTimeout = 3 * time.Second

// warnEviction logs a warning for every server (each master of a cluster)
// whose maxmemory-policy is not noeviction. Under any other policy Redis
// deletes keys when memory is full — a pending job, a stream entry, a
// de-duplication key — and the system silently loses work (docs/queue.md,
// "Redis durability"). The policy is read from INFO memory, which managed
// services allow where they refuse CONFIG GET. The check never fails a
// connection: if the server does not say, that is logged at debug level.
func warnEviction(ctx context.Context, client redis.UniversalClient, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, evictionCheckTimeout)
	defer cancel()
	check := func(ctx context.Context, c *redis.Client) error {
		addr := c.Options().Addr
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			logger.Debug("redis: could not read the eviction policy", "addr", addr, "err", err)
			return nil
		}
		policy, ok := infoField(info, "maxmemory_policy")
		if !ok {
			logger.Debug("redis: the server does not report its eviction policy", "addr", addr)
			return nil
		}
		if policy != "noeviction" {
			logger.Warn("redis: maxmemory-policy is not noeviction; when memory is full the server deletes keys and jobs, events and de-duplication keys are lost. Set maxmemory-policy noeviction (see docs/queue.md, Redis durability)",
				"addr", addr, "maxmemoryPolicy", policy)
		}
		return nil
	}
	switch cc := client.(type) {
	case *redis.ClusterClient:
		if err := cc.ForEachMaster(ctx, check); err != nil {
			logger.Debug("redis: could not check the eviction policy of every master", "err", err)
		}
	case *redis.Client:
		_ = check(ctx, cc)
	}
}

// infoField returns field name of an INFO reply ("name:value" lines).
func infoField(info, name string) (string, bool) {
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && k == name {
			return v, true
		}
	}
	return "", false
}

func sourceVars(c config.Redis) string {
	var vars []string
	switch c.Source {
	case "REDIS_URL":
		vars = append(vars, "REDIS_URL")
	case "REDIS_HOST":
		vars = append(vars, "REDIS_HOST/REDIS_PORT/REDIS_PASSWORD/REDIS_DB/REDIS_TLS")
	default:
		vars = append(vars, "defaults (no REDIS_URL or REDIS_HOST)")
	}
	if c.CAFile != "" {
		vars = append(vars, "REDIS_TLS_CA_FILE")
	}
	if c.CAPEM != "" {
		vars = append(vars, "REDIS_TLS_CA")
	}
	if c.Cluster {
		if len(c.Addrs) > 1 {
			vars = append(vars, "cluster: several addresses")
		} else {
			vars = append(vars, "cluster: REDIS_CLUSTER")
		}
	}
	return strings.Join(vars, ", ")
}

// ErrTLSRequired and friends classify connection failures for callers.
var (
	ErrTLSRequired   = errors.New("the server closed the connection during the handshake; it probably requires TLS")
	ErrNotTLS        = errors.New("the server does not speak TLS")
	ErrAuth          = errors.New("authentication failed")
	ErrUnreachable   = errors.New("server unreachable")
	ErrUntrustedCert = errors.New("server certificate not trusted")
)

// Explain wraps a driver error with what it most likely means and what to
// change. Secrets are never part of the message.
func Explain(c config.Redis, err error) error {
	if err == nil {
		return nil
	}
	addr := strings.Join(c.Addrs, ",")
	msg := err.Error()
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	var netErr net.Error
	switch {
	case strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "invalid password") || strings.Contains(msg, "invalid username-password"):
		return fmt.Errorf("redis at %s: %w: wrong password or user name (check the credentials in REDIS_URL or REDIS_PASSWORD)", addr, ErrAuth)
	case strings.Contains(msg, "NOAUTH"):
		return fmt.Errorf("redis at %s: %w: the server requires a password and none was given (add it to REDIS_URL as redis://:PASSWORD@host or set REDIS_PASSWORD)", addr, ErrAuth)
	case errors.As(err, &unknownAuth) || strings.Contains(msg, "certificate signed by unknown authority"):
		return fmt.Errorf("redis at %s: %w: it is signed by an unknown authority (set REDIS_TLS_CA_FILE or REDIS_TLS_CA to the CA's PEM; REDIS_TLS_INSECURE=true skips verification for development only)", addr, ErrUntrustedCert)
	case errors.As(err, &hostErr) || strings.Contains(msg, "certificate is valid for") || strings.Contains(msg, "certificate is not valid for any names"):
		return fmt.Errorf("redis at %s: %w: it is not valid for host %q (connect with the host name the certificate names): %v", addr, ErrUntrustedCert, c.ServerName, err)
	case errors.As(err, &certInvalid):
		return fmt.Errorf("redis at %s: %w: %v", addr, ErrUntrustedCert, err)
	case errors.As(err, &recordErr) || strings.Contains(msg, "first record does not look like a TLS handshake"):
		return fmt.Errorf("redis at %s: %w: it answered in plaintext (use redis:// instead of rediss://, or REDIS_TLS=false)", addr, ErrNotTLS)
	case !c.TLS && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || strings.Contains(msg, "connection reset") || msg == "EOF"):
		return fmt.Errorf("redis at %s: %w (use rediss:// in REDIS_URL, or REDIS_TLS=true)", addr, ErrTLSRequired)
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(msg, "connection refused"):
		return fmt.Errorf("redis at %s: %w: connection refused (is the server running and is the port right?)", addr, ErrUnreachable)
	case strings.Contains(msg, "no such host"):
		return fmt.Errorf("redis at %s: %w: the host name does not resolve", addr, ErrUnreachable)
	case c.TLS && (errors.As(err, &netErr) && netErr.Timeout() || errors.Is(err, context.DeadlineExceeded)):
		return fmt.Errorf("redis at %s: %w: no TLS handshake answer within the timeout; %w: the server may not speak TLS (use redis://) or may be overloaded", addr, ErrUnreachable, ErrNotTLS)
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("redis at %s: %w: no answer within the timeout (firewall, wrong host, or server overloaded)", addr, ErrUnreachable)
	}
	return fmt.Errorf("redis at %s: %w", addr, err)
}

// dialLogHook logs dial failures with their explanation. Successful dials
// are logged at debug level: a pool dials often.
type dialLogHook struct {
	cfg config.Redis
	log *slog.Logger
}

func (h *dialLogHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			h.log.Warn("redis: error", "op", "dial", "addr", addr, "err", Explain(h.cfg, err))
			return nil, err
		}
		h.log.Debug("redis: connection opened", "addr", addr)
		return conn, nil
	}
}

func (h *dialLogHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *dialLogHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// driverLogger routes go-redis's own log lines (pool dial failures and
// the like) through slog, redacted, instead of the standard logger.
type driverLogger struct{}

var currentLogger atomic.Pointer[slog.Logger]

func (driverLogger) Printf(ctx context.Context, format string, v ...any) {
	if l := currentLogger.Load(); l != nil {
		l.WarnContext(ctx, "redis: driver", "detail", logging.Redact(fmt.Sprintf(format, v...)))
	}
}

var setLoggerOnce sync.Once

func setDriverLogger(l *slog.Logger) {
	currentLogger.Store(l)
	setLoggerOnce.Do(func() { redis.SetLogger(driverLogger{}) })
}

// Close closes the client and logs it.
func Close(c redis.UniversalClient, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	err := c.Close()
	if err != nil {
		logger.Warn("redis: error", "op", "close", "err", err)
	} else {
		logger.Info("redis: closed")
	}
	return err
}
