package main

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// tripCounter is a go-redis hook that counts network round trips: one per
// command sent on its own, one per pipeline or MULTI/EXEC however many
// commands it carries. Every client a system under test uses gets one, so
// both systems are counted the same way, on the client side.
type tripCounter struct {
	trips atomic.Int64
	cmds  atomic.Int64
}

func (h *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.trips.Add(1)
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (h *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Add(1)
		h.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

type tripSnapshot struct{ trips, cmds int64 }

func (h *tripCounter) snapshot() tripSnapshot {
	return tripSnapshot{h.trips.Load(), h.cmds.Load()}
}

// serverStats is what the server says it did, from one INFO call. It counts
// every client of the server, which is why the harness measures the idle
// background rate before it starts.
type serverStats struct {
	// reads is total_reads_processed: socket reads that carried requests,
	// about one per client round trip (a pipeline usually arrives in one).
	reads int64
	// commands is total_commands_processed: includes commands run inside
	// Lua scripts and MULTI/EXEC.
	commands int64
	// calls per command from INFO commandstats (also counting script-internal calls).
	calls map[string]int64
	// usec per command: time Redis spent in it (a script's includes the
	// commands it ran, which also count on their own).
	usec map[string]int64
	// cpu is used_cpu_user + used_cpu_sys of the server, in seconds.
	cpu float64
}

// snapshotServer reads INFO stats and commandstats in one call.
func snapshotServer(ctx context.Context, admin *redis.Client) (serverStats, error) {
	txt, err := admin.Info(ctx, "stats", "commandstats", "cpu").Result()
	if err != nil {
		return serverStats{}, fmt.Errorf("INFO stats commandstats cpu: %w", err)
	}
	s := serverStats{calls: map[string]int64{}, usec: map[string]int64{}}
	sc := bufio.NewScanner(strings.NewReader(txt))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch {
		case k == "total_reads_processed":
			s.reads, _ = strconv.ParseInt(v, 10, 64)
		case k == "total_commands_processed":
			s.commands, _ = strconv.ParseInt(v, 10, 64)
		case k == "used_cpu_user" || k == "used_cpu_sys":
			f, _ := strconv.ParseFloat(v, 64)
			s.cpu += f
		case strings.HasPrefix(k, "cmdstat_"):
			// cmdstat_evalsha:calls=3,usec=120,usec_per_call=40.00,...
			name := strings.TrimPrefix(k, "cmdstat_")
			for _, f := range strings.Split(v, ",") {
				fk, fv, _ := strings.Cut(f, "=")
				n, _ := strconv.ParseInt(fv, 10, 64)
				switch fk {
				case "calls":
					s.calls[name] = n
				case "usec":
					s.usec[name] = n
				}
			}
		}
	}
	return s, sc.Err()
}

// serverDelta is the difference between two snapshots, minus the INFO call
// the harness itself made between them.
type serverDelta struct {
	reads, commands int64
	calls, usec     map[string]int64
	cpu             time.Duration
}

func diffServer(before, after serverStats) serverDelta {
	d := serverDelta{
		reads:    after.reads - before.reads - 1, // the "after" INFO itself
		commands: after.commands - before.commands - 1,
		calls:    map[string]int64{},
		usec:     map[string]int64{},
		cpu:      time.Duration((after.cpu - before.cpu) * float64(time.Second)),
	}
	for k, v := range after.calls {
		if k == "info" {
			continue
		}
		if n := v - before.calls[k]; n > 0 {
			d.calls[k] = n
			d.usec[k] = after.usec[k] - before.usec[k]
		}
	}
	return d
}

// breakdown renders the per-command calls of a delta, biggest first, per job.
func (d serverDelta) breakdown(jobs int) string {
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range d.calls {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].v != all[j].v {
			return all[i].v > all[j].v
		}
		return all[i].k < all[j].k
	})
	var b strings.Builder
	for i, e := range all {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%.3f", e.k, float64(e.v)/float64(jobs))
		if us := float64(d.usec[e.k]) / float64(jobs); us >= 0.05 {
			fmt.Fprintf(&b, "(%.1fµs)", us)
		}
	}
	if b.Len() == 0 {
		return "(none)"
	}
	return b.String()
}

// phaseStats is what one phase measured.
type phaseStats struct {
	jobs      int
	elapsed   time.Duration
	clientCPU time.Duration // CPU time of this process (producers, workers, go-redis)
	client    tripSnapshot  // deltas
	server    serverDelta
	dupes     int64 // deliveries beyond the first per job (at-least-once)
}

func (p phaseStats) rate() float64 {
	if p.elapsed <= 0 {
		return 0
	}
	return float64(p.jobs) / p.elapsed.Seconds()
}

func (p phaseStats) tripsPerJob() float64 { return float64(p.client.trips) / float64(p.jobs) }
func (p phaseStats) readsPerJob() float64 { return float64(p.server.reads) / float64(p.jobs) }
func (p phaseStats) cmdsPerJob() float64  { return float64(p.server.commands) / float64(p.jobs) }

// Microseconds of CPU per job, of this process and of the Redis server.
func (p phaseStats) clientCPUPerJob() float64 {
	return float64(p.clientCPU.Microseconds()) / float64(p.jobs)
}
func (p phaseStats) serverCPUPerJob() float64 {
	return float64(p.server.cpu.Microseconds()) / float64(p.jobs)
}

// processCPU is the user+system CPU time this process has used. Both
// queues run in this process one after the other, so a phase's delta is
// that queue's client-side cost (plus the harness's small share).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// meter wraps a phase: counters before, counters after.
type meter struct {
	admin   *redis.Client
	counter *tripCounter
	t0      time.Time
	c0      tripSnapshot
	s0      serverStats
	cpu0    time.Duration
}

func startMeter(ctx context.Context, admin *redis.Client, counter *tripCounter) (*meter, error) {
	m := &meter{admin: admin, counter: counter}
	var err error
	if m.s0, err = snapshotServer(ctx, admin); err != nil {
		return nil, err
	}
	m.c0 = counter.snapshot()
	m.cpu0 = processCPU()
	m.t0 = time.Now()
	return m, nil
}

// stop records the counters; elapsed is given by the caller because the
// phase's clock (first add to last handler) is not the meter's window.
func (m *meter) stop(ctx context.Context, jobs int, elapsed time.Duration) (phaseStats, error) {
	c1 := m.counter.snapshot()
	cpu1 := processCPU()
	s1, err := snapshotServer(ctx, m.admin)
	if err != nil {
		return phaseStats{}, err
	}
	return phaseStats{
		jobs:      jobs,
		elapsed:   elapsed,
		clientCPU: cpu1 - m.cpu0,
		client:    tripSnapshot{c1.trips - m.c0.trips, c1.cmds - m.c0.cmds},
		server:    diffServer(m.s0, s1),
	}, nil
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// sumPhases adds up rounds of one phase (jobs, time, counters) and returns
// the median round's rate (jobs/s) alongside.
func sumPhases(ps []phaseStats) (phaseStats, float64) {
	var sum phaseStats
	sum.server.calls, sum.server.usec = map[string]int64{}, map[string]int64{}
	rates := make([]float64, 0, len(ps))
	for _, p := range ps {
		sum.jobs += p.jobs
		sum.elapsed += p.elapsed
		sum.clientCPU += p.clientCPU
		sum.client.trips += p.client.trips
		sum.client.cmds += p.client.cmds
		sum.server.reads += p.server.reads
		sum.server.commands += p.server.commands
		sum.server.cpu += p.server.cpu
		for k, v := range p.server.calls {
			sum.server.calls[k] += v
		}
		for k, v := range p.server.usec {
			sum.server.usec[k] += v
		}
		sum.dupes += p.dupes
		rates = append(rates, p.rate())
	}
	return sum, median(rates)
}

// median of rates (the lower middle for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}
