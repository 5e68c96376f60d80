package auth

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Rate is a budget: at most Limit attempts in any sliding Window.
type Rate struct {
	Limit  int
	Window time.Duration
}

func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.Limit, formatWindow(r.Window)) }

// ParseRate parses "<count>/<window>", the window a Go duration ("15m",
// "1h", "90s"); a bare unit means one of it ("10/m" is "10/1m").
func ParseRate(s string) (Rate, error) {
	n, w, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("%q is not <count>/<window>, e.g. 10/15m", s)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || limit < 1 || limit > 10000 {
		return Rate{}, fmt.Errorf("%q: count must be an integer in [1, 10000]", s)
	}
	w = strings.TrimSpace(w)
	if w != "" && (w[0] < '0' || w[0] > '9') {
		w = "1" + w
	}
	d, err := time.ParseDuration(w)
	if err != nil || d < time.Second || d > 24*time.Hour {
		return Rate{}, fmt.Errorf("%q: window must be a duration in [1s, 24h], e.g. 15m", s)
	}
	return Rate{Limit: limit, Window: d}, nil
}

func formatWindow(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return d.String()
}

// Decision is the outcome of one limiter check.
type Decision struct {
	Allowed   bool
	Limit     int
	Remaining int           // attempts left in the window after this one
	Reset     time.Duration // until the oldest counted attempt leaves the window
	// RetryAfter is how long to wait before an attempt can succeed (0 when
	// Allowed).
	RetryAfter time.Duration
	Window     time.Duration
}

// Limiter spends one attempt of a budget atomically, shared by every
// instance. Implementations: adapters/redislimit.Limiter.
type Limiter interface {
	// Allow records one attempt under key when the budget has room and
	// reports the decision. A denied attempt is not recorded, so a client
	// that keeps hammering is not locked out longer than the window.
	Allow(ctx context.Context, key string, r Rate) (Decision, error)
}

// ipBucket is the per-IP limiter key of addr: an IPv4 address as is, an IPv6
// address by its /64, since one subscriber usually owns a whole /64 and could
// otherwise rotate through 2^64 addresses.
func ipBucket(addr netip.Addr) string {
	if !addr.IsValid() {
		return "unknown"
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return addr.String()
	}
	p, _ := addr.Prefix(64)
	return p.String()
}
