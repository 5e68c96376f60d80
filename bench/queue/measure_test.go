package main

import (
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{100, 100 * time.Millisecond},
		{0, 1 * time.Millisecond},
	} {
		if got := percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("p99 of one = %v, want 7", got)
	}
}

// The server delta must leave out the harness's own INFO call, or every
// figure would be off by one command and one read.
func TestDiffServerExcludesTheHarnessINFO(t *testing.T) {
	before := serverStats{reads: 100, commands: 200, calls: map[string]int64{"evalsha": 10, "info": 5},
		usec: map[string]int64{"evalsha": 100, "info": 50}}
	after := serverStats{reads: 111, commands: 231, calls: map[string]int64{"evalsha": 20, "info": 6, "xadd": 20},
		usec: map[string]int64{"evalsha": 400, "info": 60, "xadd": 40}}
	d := diffServer(before, after)
	if d.reads != 10 || d.commands != 30 {
		t.Errorf("reads %d commands %d, want 10 and 30", d.reads, d.commands)
	}
	if _, ok := d.calls["info"]; ok || d.calls["evalsha"] != 10 || d.calls["xadd"] != 20 {
		t.Errorf("calls %v, want evalsha=10 xadd=20 and no info", d.calls)
	}
	if got := d.breakdown(10); got != "xadd=2.000(4.0µs) evalsha=1.000(30.0µs)" {
		t.Errorf("breakdown = %q", got)
	}
}
