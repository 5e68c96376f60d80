// Package config reads shiftflow's configuration from the environment once,
// at cold start, and validates it. Every bad value is an error that names
// its variable (docs/design.md#8). All variables live here and in the
// README's configuration table.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration.
type Config struct {
	Redis Redis
	Mongo Mongo
	Log   Log
	// Env is the raw lookup, for packages that read their own variables
	// (auth, rate limits, SMTP) through their own FromEnv functions.
	Env func(string) string
}

// Redis connection settings, resolved from REDIS_URL or the REDIS_* fallback.
type Redis struct {
	Addrs    []string // host:port, one or more
	Username string
	Password string
	DB       int
	TLS      bool
	// CAFile / CAPEM add a private CA to the trusted roots.
	CAFile string
	CAPEM  string
	// Insecure skips certificate verification (REDIS_TLS_INSECURE=true only).
	Insecure bool
	// ServerName is the host name the certificate must be valid for.
	ServerName string
	Cluster    bool
	// Source says which variables were used: "REDIS_URL", "REDIS_HOST"
	// (local fallback) or "default" (nothing set: 127.0.0.1:6379, or an
	// embedded server in the local runner).
	Source string
	// Query keeps REDIS_URL's query options (timeouts etc.) for the driver.
	Query url.Values
}

// Managed reports whether the configuration points at a managed Redis:
// given by REDIS_URL and not on this machine. REDIS_HOST settings, the
// defaults, and a REDIS_URL on a loopback address (the local runner's
// embedded server, a developer's redis-server) are local.
func (r Redis) Managed() bool {
	if r.Source != "REDIS_URL" {
		return false
	}
	for _, a := range r.Addrs {
		host, _, _ := net.SplitHostPort(a)
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return true
		}
	}
	return false
}

// Mode is the one-line description logged at start.
func (r Redis) Mode() string {
	m := "local"
	if r.Managed() {
		m = "managed"
	}
	if r.TLS {
		m += ", tls"
		if r.Insecure {
			m += " (verification DISABLED)"
		}
	} else {
		m += ", plaintext"
	}
	if r.Cluster {
		m += ", cluster"
	} else {
		m += ", single node"
	}
	return m
}

// Mongo connection settings.
type Mongo struct {
	URI      string
	Database string
	// Source is "MONGODB_URI" or "default" (unset: the local runner starts
	// an embedded server; functions refuse to start).
	Source string
}

// Log settings.
type Log struct {
	Format string // "json" or "text"
	Level  string // debug, info, warn, error
}

// Load reads the configuration through getenv (os.Getenv in production,
// a map in tests). It returns every problem at once, each naming its
// variable.
func Load(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Config{Env: getenv}
	var errs []error
	r, err := loadRedis(getenv)
	errs = append(errs, err)
	c.Redis = r
	m, err := loadMongo(getenv)
	errs = append(errs, err)
	c.Mongo = m
	l, err := loadLog(getenv)
	errs = append(errs, err)
	c.Log = l
	return c, errors.Join(errs...)
}

// VarError is a bad value of one variable.
type VarError struct {
	Var    string
	Reason string
}

func (e *VarError) Error() string { return e.Var + ": " + e.Reason }

func bad(name, format string, args ...any) error {
	return &VarError{Var: name, Reason: fmt.Sprintf(format, args...)}
}

// Bool parses a boolean variable: true/false, 1/0, yes/no; empty is def.
func Bool(getenv func(string) string, name string, def bool) (bool, error) {
	v := strings.TrimSpace(getenv(name))
	switch strings.ToLower(v) {
	case "":
		return def, nil
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return def, bad(name, "%q is not a boolean (use true or false)", v)
}

// Int parses an integer variable within [min, max]; empty is def.
func Int(getenv func(string) string, name string, def, min, max int) (int, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def, bad(name, "%q is not an integer", v)
	}
	if n < min || n > max {
		return def, bad(name, "%d is out of range [%d, %d]", n, min, max)
	}
	return n, nil
}

// Duration parses a Go duration variable (e.g. 15m) within [min, max].
func Duration(getenv func(string) string, name string, def, min, max time.Duration) (time.Duration, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return def, bad(name, "%q is not a duration (examples: 500ms, 30s, 15m)", v)
	}
	if d < min || d > max {
		return def, bad(name, "%s is out of range [%s, %s]", d, min, max)
	}
	return d, nil
}

func loadRedis(getenv func(string) string) (Redis, error) {
	var errs []error
	r := Redis{}
	var err error
	if r.Cluster, err = Bool(getenv, "REDIS_CLUSTER", false); err != nil {
		errs = append(errs, err)
	}
	if r.Insecure, err = Bool(getenv, "REDIS_TLS_INSECURE", false); err != nil {
		errs = append(errs, err)
	}
	r.CAFile = strings.TrimSpace(getenv("REDIS_TLS_CA_FILE"))
	r.CAPEM = getenv("REDIS_TLS_CA")
	if r.CAFile != "" {
		if _, err := os.Stat(r.CAFile); err != nil {
			errs = append(errs, bad("REDIS_TLS_CA_FILE", "cannot read %q: %v", r.CAFile, unwrapPathErr(err)))
		}
	}
	if r.CAPEM != "" && !strings.Contains(r.CAPEM, "-----BEGIN CERTIFICATE-----") {
		errs = append(errs, bad("REDIS_TLS_CA", "is not PEM text (expected -----BEGIN CERTIFICATE-----)"))
	}
	if r.CAFile != "" && r.CAPEM != "" {
		errs = append(errs, bad("REDIS_TLS_CA", "set either REDIS_TLS_CA or REDIS_TLS_CA_FILE, not both"))
	}

	if raw := strings.TrimSpace(getenv("REDIS_URL")); raw != "" {
		r.Source = "REDIS_URL"
		if err := parseRedisURLs(raw, &r); err != nil {
			errs = append(errs, err)
		}
	} else {
		host := strings.TrimSpace(getenv("REDIS_HOST"))
		r.Source = "default"
		if host != "" || getenv("REDIS_PORT") != "" || getenv("REDIS_PASSWORD") != "" || getenv("REDIS_TLS") != "" || getenv("REDIS_DB") != "" {
			r.Source = "REDIS_HOST"
		}
		if host == "" {
			host = "127.0.0.1"
		}
		port, err := Int(getenv, "REDIS_PORT", 6379, 1, 65535)
		if err != nil {
			errs = append(errs, err)
		}
		if r.DB, err = Int(getenv, "REDIS_DB", 0, 0, 15); err != nil {
			errs = append(errs, err)
		}
		if r.TLS, err = Bool(getenv, "REDIS_TLS", false); err != nil {
			errs = append(errs, err)
		}
		r.Password = getenv("REDIS_PASSWORD")
		for _, h := range strings.Split(host, ",") {
			h = strings.TrimSpace(h)
			if h == "" {
				errs = append(errs, bad("REDIS_HOST", "has an empty entry"))
				continue
			}
			if _, _, err := net.SplitHostPort(h); err == nil {
				r.Addrs = append(r.Addrs, h)
			} else {
				r.Addrs = append(r.Addrs, net.JoinHostPort(h, strconv.Itoa(port)))
			}
		}
		if len(r.Addrs) > 0 {
			r.ServerName, _, _ = net.SplitHostPort(r.Addrs[0])
		}
	}
	if len(r.Addrs) > 1 {
		r.Cluster = true
	}
	if r.Cluster && r.DB != 0 {
		errs = append(errs, bad(dbVar(r), "Redis Cluster has only database 0, got %d", r.DB))
	}
	if !r.TLS && (r.Insecure || r.CAFile != "" || r.CAPEM != "") {
		name := "REDIS_TLS_INSECURE"
		if r.CAFile != "" {
			name = "REDIS_TLS_CA_FILE"
		} else if r.CAPEM != "" {
			name = "REDIS_TLS_CA"
		}
		errs = append(errs, bad(name, "is set but TLS is off: use a rediss:// REDIS_URL or REDIS_TLS=true"))
	}
	return r, errors.Join(errs...)
}

func dbVar(r Redis) string {
	if r.Source == "REDIS_URL" {
		return "REDIS_URL"
	}
	return "REDIS_DB"
}

// parseRedisURLs accepts one URL or a comma-separated list. Entries after
// the first may be bare host:port and inherit scheme, credentials and
// options from the first.
func parseRedisURLs(raw string, r *Redis) error {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return bad("REDIS_URL", "entry %d is empty", i+1)
		}
		if i > 0 && !strings.Contains(p, "://") {
			if _, _, err := net.SplitHostPort(p); err != nil {
				return bad("REDIS_URL", "entry %d %q is not host:port", i+1, p)
			}
			r.Addrs = append(r.Addrs, p)
			continue
		}
		u, err := url.Parse(p)
		if err != nil {
			return bad("REDIS_URL", "entry %d is not a URL (%s)", i+1, redactParseErr(err))
		}
		var tlsOn bool
		switch u.Scheme {
		case "redis":
		case "rediss":
			tlsOn = true
		default:
			return bad("REDIS_URL", "scheme %q is not supported (use redis:// or rediss://)", u.Scheme)
		}
		if u.Host == "" {
			return bad("REDIS_URL", "entry %d has no host", i+1)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			host, port = u.Host, "6379"
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad("REDIS_URL", "entry %d has an invalid port %q", i+1, port)
		}
		addr := net.JoinHostPort(host, port)
		if i == 0 {
			r.TLS = tlsOn
			r.ServerName = host
			if u.User != nil {
				r.Username = u.User.Username()
				r.Password, _ = u.User.Password()
				if _, hasPw := u.User.Password(); !hasPw {
					// redis://secret@host: a lone user info is the password,
					// as redis-cli and go-redis read it.
					r.Password, r.Username = r.Username, ""
				}
			}
			if db := strings.Trim(u.Path, "/"); db != "" {
				n, err := strconv.Atoi(db)
				if err != nil || n < 0 || n > 15 {
					return bad("REDIS_URL", "database %q in the path is not a number 0-15", db)
				}
				r.DB = n
			}
			r.Query = u.Query()
		} else if tlsOn != r.TLS {
			return bad("REDIS_URL", "entries mix redis:// and rediss://")
		}
		r.Addrs = append(r.Addrs, addr)
	}
	return nil
}

// redactParseErr drops the input from url.Parse errors, which would
// otherwise echo a password into the error message.
func redactParseErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "malformed"
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func loadMongo(getenv func(string) string) (Mongo, error) {
	m := Mongo{Database: strings.TrimSpace(getenv("MONGODB_DATABASE")), Source: "default"}
	var errs []error
	if uri := strings.TrimSpace(getenv("MONGODB_URI")); uri != "" {
		m.URI = uri
		m.Source = "MONGODB_URI"
		u, err := url.Parse(uri)
		switch {
		case err != nil:
			errs = append(errs, bad("MONGODB_URI", "is not a URI (%s)", redactParseErr(err)))
		case u.Scheme != "mongodb" && u.Scheme != "mongodb+srv":
			errs = append(errs, bad("MONGODB_URI", "scheme %q is not supported (use mongodb:// or mongodb+srv://)", u.Scheme))
		case u.Host == "":
			errs = append(errs, bad("MONGODB_URI", "has no host"))
		default:
			if m.Database == "" {
				m.Database = strings.Trim(u.Path, "/")
			}
		}
	}
	if m.Database == "" {
		m.Database = "shiftflow"
	}
	if strings.ContainsAny(m.Database, `/\. "$`) || len(m.Database) > 63 {
		errs = append(errs, bad("MONGODB_DATABASE", "%q is not a valid database name (no /\\. \"$ and at most 63 characters)", m.Database))
	}
	return m, errors.Join(errs...)
}

// InCloud reports whether the process runs inside a cloud function.
func InCloud(getenv func(string) string) bool {
	return getenv("AWS_LAMBDA_FUNCTION_NAME") != "" || getenv("K_SERVICE") != "" || getenv("FUNCTION_TARGET") != ""
}

func loadLog(getenv func(string) string) (Log, error) {
	l := Log{Format: strings.ToLower(strings.TrimSpace(getenv("LOG_FORMAT"))), Level: strings.ToLower(strings.TrimSpace(getenv("LOG_LEVEL")))}
	var errs []error
	switch l.Format {
	case "":
		l.Format = "text"
		if InCloud(getenv) {
			l.Format = "json"
		}
	case "json", "text":
	default:
		errs = append(errs, bad("LOG_FORMAT", "%q is not json or text", l.Format))
	}
	switch l.Level {
	case "":
		l.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, bad("LOG_LEVEL", "%q is not debug, info, warn or error", l.Level))
	}
	return l, errors.Join(errs...)
}
