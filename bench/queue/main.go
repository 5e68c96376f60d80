// Command queue benchmarks shiftflow's Redis Streams job queue against
// hibiken/asynq v0.26.0 on one Redis, in one run.
//
//	cd bench && go run ./queue                                  # 20,000 jobs x 3 rounds, concurrency 10
//	cd bench && go run ./queue -jobs 2000 -latency-jobs 300     # quick check
//	cd bench && go run ./queue -redis-server /usr/bin/redis-server  # private server
//
// For each system it measures, in separate phases:
//
//   - enqueue: N no-op jobs added by P producers while no worker runs;
//   - process: workers (concurrency C) started on the N waiting jobs, timed
//     until the last job's handler ran;
//   - latency: workers running and idle, then M jobs added one at a time
//     2 ms apart; latency is from just before Add is called to the start of
//     the job's handler.
//
// Enqueue+process run as rounds alternating between the systems, so that a
// change in the machine's background load hits both alike; rates are the
// median round's. Per phase it also counts Redis round trips per job, on the
// client side with a go-redis hook on every client each system uses (a
// pipeline or MULTI counts as one) and on the server side with INFO stats /
// commandstats deltas (the same method for both systems; other clients of a
// shared server add to these, and the run warns when they did), and CPU per
// job of this process (getrusage) and of redis-server (INFO cpu).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

type config struct {
	redisURL    string
	serverBin   string
	jobs        int
	latencyJobs int
	concurrency int
	producers   int
	interval    time.Duration
	settle      time.Duration
	timeout     time.Duration
	systems     []string
	cpuprofile  string
	rounds      int
}

// system is one queue implementation under test.
type system interface {
	Name() string
	// Notes say how it is set up and which defaults are in force.
	Notes() []string
	// Enqueue adds one no-op job carrying seq.
	Enqueue(ctx context.Context, seq int) error
	// StartWorkers starts consuming with the given concurrency; handle is
	// called with the job's seq at the start of its handler.
	StartWorkers(ctx context.Context, concurrency int, handle func(seq int)) error
	// StopWorkers shuts workers down gracefully (in-flight jobs finish).
	StopWorkers(ctx context.Context) error
	// Cleanup deletes the benchmark's own keys and closes clients.
	Cleanup(ctx context.Context) error
}

type result struct {
	name                         string
	notes                        []string
	enqueueRounds, processRounds []phaseStats
	// enqueue and process sum the rounds (for per-job figures); the rates
	// are the median round's.
	enqueue, process         phaseStats
	enqueueRate, processRate float64
	latencyRun               phaseStats
	p50, p99, max            time.Duration
	err                      error
}

func (r *result) summarize() {
	r.enqueue, r.enqueueRate = sumPhases(r.enqueueRounds)
	r.process, r.processRate = sumPhases(r.processRounds)
}

func main() {
	log.SetFlags(0)
	cfg := config{}
	def := os.Getenv("SHIFTFLOW_BENCH_REDIS_URL")
	if def == "" {
		def = "redis://127.0.0.1:6379"
	}
	var systems string
	flag.StringVar(&cfg.redisURL, "redis", def, "Redis URL (env SHIFTFLOW_BENCH_REDIS_URL); pick the database with /N")
	flag.StringVar(&cfg.serverBin, "redis-server", "", "path of redis-server: start a private server on a free loopback port instead of using -redis (keeps other clients out of the INFO figures)")
	flag.IntVar(&cfg.jobs, "jobs", 20000, "no-op jobs in the enqueue and process phases")
	flag.IntVar(&cfg.rounds, "rounds", 3, "enqueue+process rounds per system, alternating between systems; rates are the median round's")
	flag.IntVar(&cfg.latencyJobs, "latency-jobs", 0, "jobs in the latency phase (default: -jobs)")
	flag.IntVar(&cfg.concurrency, "concurrency", 10, "worker concurrency")
	flag.IntVar(&cfg.producers, "producers", 10, "concurrent producers in the enqueue phase")
	flag.DurationVar(&cfg.interval, "interval", 2*time.Millisecond, "gap between adds in the latency phase")
	flag.DurationVar(&cfg.settle, "settle", 2*time.Second, "idle time after workers start, before the latency phase adds its first job")
	flag.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "give up on a phase after this long")
	flag.StringVar(&systems, "systems", "shiftflow,asynq", "comma-separated systems to run, in order")
	flag.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of each processing phase to <path>.<system>.<round>.pprof")
	flag.Parse()
	if cfg.latencyJobs <= 0 {
		cfg.latencyJobs = cfg.jobs
	}
	if cfg.jobs <= 0 || cfg.rounds <= 0 || cfg.concurrency <= 0 || cfg.producers <= 0 || cfg.interval <= 0 {
		log.Fatal("-jobs, -rounds, -concurrency, -producers and -interval must be positive")
	}
	cfg.systems = strings.Split(systems, ",")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, cfg config) error {
	if cfg.serverBin != "" {
		url, stopServer, err := startPrivateRedis(cfg.serverBin)
		if err != nil {
			return err
		}
		defer stopServer()
		cfg.redisURL = url
	}
	ropt, err := redis.ParseURL(cfg.redisURL)
	if err != nil {
		return fmt.Errorf("-redis %q: %w", cfg.redisURL, err)
	}
	admin := redis.NewClient(ropt)
	defer admin.Close()
	if err := admin.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", ropt.Addr, err)
	}
	version := "?"
	if info, err := admin.Info(ctx, "server").Result(); err == nil {
		for _, l := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
				version = v
			}
		}
	}
	bg, err := backgroundRate(ctx, admin)
	if err != nil {
		return err
	}

	var entries []*entry
	defer func() {
		for _, e := range entries {
			if err := e.sys.Cleanup(context.WithoutCancel(ctx)); err != nil {
				fmt.Printf("cleanup %s: %v\n", e.sys.Name(), err)
			}
		}
	}()
	for _, name := range cfg.systems {
		counter := &tripCounter{}
		var sys system
		switch strings.TrimSpace(name) {
		case "asynq":
			sys = newAsynq(ropt, counter)
		case "shiftflow":
			sys, err = newShiftflow(ropt, counter)
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("-systems: unknown system %q (shiftflow, asynq)", name)
		}
		entries = append(entries, &entry{
			sys: sys, counter: counter, admin: admin, base: time.Now(),
			res: result{name: sys.Name(), notes: sys.Notes()},
		})
	}

	fmt.Printf("queue benchmark: %d no-op jobs x %d rounds, concurrency %d, %d producers; latency phase %d jobs %v apart\n",
		cfg.jobs, cfg.rounds, cfg.concurrency, cfg.producers, cfg.latencyJobs, cfg.interval)
	fmt.Printf("redis %s at %s db %d; Go %s, GOMAXPROCS %d\n", version, ropt.Addr, ropt.DB, runtime.Version(), runtime.GOMAXPROCS(0))
	fmt.Printf("server background before the run: %.0f commands/s, %.0f reads/s from other clients\n\n", bg.commands, bg.reads)

	// Enqueue+process rounds alternate between the systems, so that a
	// change in the machine's background load hits both alike; the rates
	// reported are each system's median round.
	for round := range cfg.rounds {
		for _, e := range entries {
			if e.res.err != nil || ctx.Err() != nil {
				continue
			}
			fmt.Printf("round %d/%d: %s enqueue + process\n", round+1, cfg.rounds, e.sys.Name())
			enq, proc, err := e.throughputRound(ctx, cfg, round)
			if err != nil {
				e.res.err = fmt.Errorf("round %d: %w", round+1, err)
				fmt.Printf("  %s: %v\n", e.sys.Name(), e.res.err)
				continue
			}
			e.res.enqueueRounds = append(e.res.enqueueRounds, enq)
			e.res.processRounds = append(e.res.processRounds, proc)
			runtime.GC()
		}
	}
	for _, e := range entries {
		if e.res.err != nil || ctx.Err() != nil {
			continue
		}
		fmt.Printf("%s latency\n", e.sys.Name())
		if err := e.latencyPhase(ctx, cfg); err != nil {
			e.res.err = fmt.Errorf("latency phase: %w", err)
			fmt.Printf("  %s: %v\n", e.sys.Name(), e.res.err)
		}
		runtime.GC()
	}
	var results []result
	for _, e := range entries {
		e.res.summarize()
		results = append(results, e.res)
	}
	fmt.Println()
	printResults(os.Stdout, cfg, results)
	return nil
}

// entry is one system under test and what it measured so far.
type entry struct {
	sys     system
	counter *tripCounter
	admin   *redis.Client
	base    time.Time
	res     result
}

// tracker records, per job, when it was added and when its handler started.
type tracker struct {
	base     time.Time
	offset   int
	addedAt  []atomic.Int64 // ns since base, latency phase only
	latency  []atomic.Int64
	seen     []atomic.Int32
	distinct atomic.Int64
	dupes    atomic.Int64
	lastAt   atomic.Int64 // ns since base when the last new job was seen
	done     chan struct{}
}

func newTracker(base time.Time, offset, n int) *tracker {
	return &tracker{
		base: base, offset: offset,
		addedAt: make([]atomic.Int64, n), latency: make([]atomic.Int64, n),
		seen: make([]atomic.Int32, n), done: make(chan struct{}),
	}
}

// handleInRange records a job of this tracker's range; a late duplicate of
// an earlier round's job is not this phase's business.
func (t *tracker) handleInRange(seq int) {
	now := int64(time.Since(t.base))
	i := seq - t.offset
	if i < 0 || i >= len(t.seen) {
		return
	}
	if t.seen[i].Add(1) != 1 {
		t.dupes.Add(1)
		return
	}
	t.latency[i].Store(now - t.addedAt[i].Load())
	if t.distinct.Add(1) == int64(len(t.seen)) {
		t.lastAt.Store(now)
		close(t.done)
	}
}

func (t *tracker) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-t.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("timed out after %v: %d of %d jobs handled", timeout, t.distinct.Load(), len(t.seen))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// throughputRound adds cfg.jobs jobs with no worker running (enqueue), then
// starts the workers on them and times until the last job's handler
// started (process). The process meter runs until graceful shutdown, so
// the last acknowledgements are counted. Round r uses job numbers
// [r*jobs, (r+1)*jobs).
func (e *entry) throughputRound(ctx context.Context, cfg config, round int) (enq, proc phaseStats, err error) {
	sys := e.sys
	offset := round * cfg.jobs
	thr := newTracker(e.base, offset, cfg.jobs)

	m, err := startMeter(ctx, e.admin, e.counter)
	if err != nil {
		return enq, proc, err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	t0 := time.Now()
	for range cfg.producers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.jobs {
					return
				}
				if err := sys.Enqueue(ctx, offset+i); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		return enq, proc, fmt.Errorf("enqueue: %w", firstErr)
	}
	if enq, err = m.stop(ctx, cfg.jobs, elapsed); err != nil {
		return enq, proc, err
	}

	runtime.GC()
	if m, err = startMeter(ctx, e.admin, e.counter); err != nil {
		return enq, proc, err
	}
	stopProfile, err := startProfile(cfg.cpuprofile, fmt.Sprintf("%s.%d", sys.Name(), round+1))
	if err != nil {
		return enq, proc, err
	}
	start := int64(time.Since(e.base))
	if err := sys.StartWorkers(ctx, cfg.concurrency, thr.handleInRange); err != nil {
		stopProfile()
		return enq, proc, fmt.Errorf("start workers: %w", err)
	}
	err = thr.wait(ctx, cfg.timeout)
	stopProfile()
	if err != nil {
		_ = sys.StopWorkers(context.WithoutCancel(ctx))
		return enq, proc, fmt.Errorf("process: %w", err)
	}
	elapsed = time.Duration(thr.lastAt.Load() - start)
	if err := sys.StopWorkers(ctx); err != nil {
		return enq, proc, fmt.Errorf("stop workers: %w", err)
	}
	if proc, err = m.stop(ctx, cfg.jobs, elapsed); err != nil {
		return enq, proc, err
	}
	proc.dupes = thr.dupes.Load()
	return enq, proc, nil
}

// latencyPhase starts the workers and leaves them idle (as they are in
// production between bursts), then one producer adds a job every
// interval on a fixed schedule; latency is the start of the job's handler
// minus the moment just before its Add.
func (e *entry) latencyPhase(ctx context.Context, cfg config) error {
	sys := e.sys
	offset := cfg.rounds * cfg.jobs
	lat := newTracker(e.base, offset, cfg.latencyJobs)
	if err := sys.StartWorkers(ctx, cfg.concurrency, lat.handleInRange); err != nil {
		return fmt.Errorf("start workers: %w", err)
	}
	defer func() { _ = sys.StopWorkers(context.WithoutCancel(ctx)) }()
	select {
	case <-time.After(cfg.settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	m, err := startMeter(ctx, e.admin, e.counter)
	if err != nil {
		return err
	}
	t0 := time.Now()
	for i := range cfg.latencyJobs {
		if d := time.Until(t0.Add(time.Duration(i) * cfg.interval)); d > 0 {
			time.Sleep(d)
		}
		lat.addedAt[i].Store(int64(time.Since(e.base)))
		if err := sys.Enqueue(ctx, offset+i); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	if err := lat.wait(ctx, cfg.timeout); err != nil {
		return err
	}
	elapsed := time.Since(t0)
	if err := sys.StopWorkers(ctx); err != nil {
		return fmt.Errorf("stop workers: %w", err)
	}
	r := &e.res
	if r.latencyRun, err = m.stop(ctx, cfg.latencyJobs, elapsed); err != nil {
		return err
	}
	r.latencyRun.dupes = lat.dupes.Load()
	ds := make([]time.Duration, cfg.latencyJobs)
	for i := range ds {
		ds[i] = time.Duration(lat.latency[i].Load())
	}
	sortDurations(ds)
	r.p50, r.p99, r.max = percentile(ds, 50), percentile(ds, 99), ds[len(ds)-1]
	return nil
}

type bgRate struct{ commands, reads float64 }

// backgroundRate measures what other clients do to the server over one
// second, so a noisy shared server is visible in the output.
func backgroundRate(ctx context.Context, admin *redis.Client) (bgRate, error) {
	s0, err := snapshotServer(ctx, admin)
	if err != nil {
		return bgRate{}, err
	}
	t0 := time.Now()
	time.Sleep(time.Second)
	s1, err := snapshotServer(ctx, admin)
	if err != nil {
		return bgRate{}, err
	}
	d := diffServer(s0, s1)
	sec := time.Since(t0).Seconds()
	return bgRate{float64(d.commands) / sec, float64(d.reads) / sec}, nil
}

// startPrivateRedis runs redis-server on a free loopback port with no
// persistence, for figures no other client disturbs.
func startPrivateRedis(bin string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "shiftflow-bench-redis-")
	if err != nil {
		return "", nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--dir", dir,
		"--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", bin, err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c.Ping(context.Background()).Err() == nil {
			return url, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("private redis-server on port %d did not answer PING", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func uniqueName(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// startProfile starts a CPU profile to <path>.<name>.pprof when path is
// set; the returned function stops it.
func startProfile(path, name string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path + "." + name + ".pprof")
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
