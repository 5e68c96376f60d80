package wake

import (
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	l := Limits{Throughput: 200, Budget: 5 * time.Second, MaxConcurrency: 10} // 1,000 per instance
	cases := []struct {
		name    string
		backlog int64
		running int
		l       Limits
		want    int
	}{
		{"no backlog, none running", 0, 0, l, 0},
		{"no backlog, some running", 0, 3, l, 0},
		{"one entry, none running", 1, 0, l, 1},
		{"one entry, one running", 1, 1, l, 0},
		{"exactly one instance's worth", 1000, 0, l, 1},
		{"just over one instance", 1001, 0, l, 2},
		{"burst of 5,000", 5000, 0, l, 5},
		{"burst of 5,000, two running", 5000, 2, l, 3},
		{"shrinking backlog, more running than needed", 1500, 4, l, 0},
		{"huge burst capped at max", 1_000_000, 0, l, 10},
		{"huge burst, some running: up to max", 1_000_000, 7, l, 3},
		{"at max", 1_000_000, 10, l, 0},
		{"over max (stale registry)", 1_000_000, 12, l, 0},
		{"negative running counts as none", 5, -1, l, 1},
		{"max 1 allows one", 5000, 0, Limits{Throughput: 200, Budget: time.Second, MaxConcurrency: 1}, 1},
		{"zero throughput starts max", 5, 0, Limits{Budget: time.Second, MaxConcurrency: 4}, 4},
	}
	for _, c := range cases {
		if got := Plan(c.backlog, c.running, c.l); got != c.want {
			t.Errorf("%s: Plan(%d, %d) = %d, want %d", c.name, c.backlog, c.running, got, c.want)
		}
	}
}
