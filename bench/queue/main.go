// Command queue benchmarks shiftflow's Redis Streams job queue against
// hibiken/asynq v0.26.0 on one Redis, in one run.
//
//	cd bench && go run ./queue                       # 20,000 jobs, concurrency 10
//	cd bench && go run ./queue -jobs 2000 -latency-jobs 500   # quick check
//
// For each system it measures, in separate phases:
//
//   - enqueue: N no-op jobs added by P producers while no worker runs;
//   - process: workers (concurrency C) started on the N waiting jobs, timed
//     until the last job's handler ran;
//   - latency: workers running and idle, then M jobs added one at a time
//     2 ms apart; latency is from just before Add is called to the start of
//     the job's handler;
//
// and the Redis round trips per job: on the client side with a go-redis hook
// on every client each system uses (a pipeline or MULTI counts as one), and
// on the server side with INFO stats / commandstats deltas (the same method
// for both systems; a shared server's other clients add to these, which is
// why the idle background rate is printed first).
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
	enqueue, process, latencyRun phaseStats
	p50, p99, max                time.Duration
	latencyN                     int
	err                          error
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
	flag.IntVar(&cfg.latencyJobs, "latency-jobs", 0, "jobs in the latency phase (default: -jobs)")
	flag.IntVar(&cfg.concurrency, "concurrency", 10, "worker concurrency")
	flag.IntVar(&cfg.producers, "producers", 10, "concurrent producers in the enqueue phase")
	flag.DurationVar(&cfg.interval, "interval", 2*time.Millisecond, "gap between adds in the latency phase")
	flag.DurationVar(&cfg.settle, "settle", 2*time.Second, "idle time after workers start, before the latency phase adds its first job")
	flag.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "give up on a phase after this long")
	flag.StringVar(&systems, "systems", "shiftflow,asynq", "comma-separated systems to run, in order")
	flag.Parse()
	if cfg.latencyJobs <= 0 {
		cfg.latencyJobs = cfg.jobs
	}
	if cfg.jobs <= 0 || cfg.concurrency <= 0 || cfg.producers <= 0 || cfg.interval <= 0 {
		log.Fatal("-jobs, -concurrency, -producers and -interval must be positive")
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

	fmt.Printf("queue benchmark: %d no-op jobs, concurrency %d, %d producers; latency phase %d jobs %v apart\n",
		cfg.jobs, cfg.concurrency, cfg.producers, cfg.latencyJobs, cfg.interval)
	fmt.Printf("redis %s at %s db %d; Go %s, GOMAXPROCS %d\n", version, ropt.Addr, ropt.DB, runtime.Version(), runtime.GOMAXPROCS(0))
	fmt.Printf("server background before the run: %.0f commands/s, %.0f reads/s from other clients\n\n", bg.commands, bg.reads)

	var results []result
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
		fmt.Printf("running %s ...\n", sys.Name())
		r := runSystem(ctx, cfg, sys, admin, counter)
		if err := sys.Cleanup(context.WithoutCancel(ctx)); err != nil {
			fmt.Printf("  cleanup %s: %v\n", sys.Name(), err)
		}
		if r.err != nil {
			fmt.Printf("  %s: %v\n", sys.Name(), r.err)
		}
		results = append(results, r)
		runtime.GC()
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Println()
	printResults(os.Stdout, cfg, results)
	return nil
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

func (t *tracker) handle(seq int) {
	now := int64(time.Since(t.base))
	i := seq - t.offset
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

func runSystem(ctx context.Context, cfg config, sys system, admin *redis.Client, counter *tripCounter) (r result) {
	r = result{name: sys.Name(), notes: sys.Notes(), latencyN: cfg.latencyJobs}
	base := time.Now()
	thr := newTracker(base, 0, cfg.jobs)
	lat := newTracker(base, cfg.jobs, cfg.latencyJobs)
	handle := func(seq int) {
		if seq < cfg.jobs {
			thr.handle(seq)
		} else if seq < cfg.jobs+cfg.latencyJobs {
			lat.handle(seq)
		}
	}
	fail := func(phase string, err error) result {
		r.err = fmt.Errorf("%s phase: %w", phase, err)
		_ = sys.StopWorkers(context.WithoutCancel(ctx))
		return r
	}

	// Enqueue phase: no worker runs, so this is the producers' cost alone.
	m, err := startMeter(ctx, admin, counter)
	if err != nil {
		return fail("enqueue", err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	t0 := time.Now()
	for range cfg.producers {
		wg.Go(func() {
			for {
				seq := int(next.Add(1) - 1)
				if seq >= cfg.jobs {
					return
				}
				if err := sys.Enqueue(ctx, seq); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		return fail("enqueue", firstErr)
	}
	if r.enqueue, err = m.stop(ctx, cfg.jobs, elapsed); err != nil {
		return fail("enqueue", err)
	}

	// Process phase: workers start on a full queue; the clock stops when the
	// last job's handler starts. The meter runs until graceful shutdown so
	// the last acknowledgements are counted.
	runtime.GC()
	if m, err = startMeter(ctx, admin, counter); err != nil {
		return fail("process", err)
	}
	start := int64(time.Since(base))
	if err := sys.StartWorkers(ctx, cfg.concurrency, handle); err != nil {
		return fail("process", err)
	}
	if err := thr.wait(ctx, cfg.timeout); err != nil {
		r.process.timedOut = true
		return fail("process", err)
	}
	elapsed = time.Duration(thr.lastAt.Load() - start)
	if err := sys.StopWorkers(ctx); err != nil {
		return fail("process", err)
	}
	if r.process, err = m.stop(ctx, cfg.jobs, elapsed); err != nil {
		return fail("process", err)
	}
	r.process.dupes = thr.dupes.Load()

	// Latency phase: workers idle first (as they are in production between
	// bursts), then one producer adds a job every interval on a fixed
	// schedule; latency is handler start minus the moment before Add.
	runtime.GC()
	if err := sys.StartWorkers(ctx, cfg.concurrency, handle); err != nil {
		return fail("latency", err)
	}
	select {
	case <-time.After(cfg.settle):
	case <-ctx.Done():
		return fail("latency", ctx.Err())
	}
	if m, err = startMeter(ctx, admin, counter); err != nil {
		return fail("latency", err)
	}
	t0 = time.Now()
	for i := range cfg.latencyJobs {
		if d := time.Until(t0.Add(time.Duration(i) * cfg.interval)); d > 0 {
			time.Sleep(d)
		}
		lat.addedAt[i].Store(int64(time.Since(base)))
		if err := sys.Enqueue(ctx, cfg.jobs+i); err != nil {
			return fail("latency", err)
		}
	}
	if err := lat.wait(ctx, cfg.timeout); err != nil {
		r.latencyRun.timedOut = true
		return fail("latency", err)
	}
	elapsed = time.Since(t0)
	if err := sys.StopWorkers(ctx); err != nil {
		return fail("latency", err)
	}
	if r.latencyRun, err = m.stop(ctx, cfg.latencyJobs, elapsed); err != nil {
		return fail("latency", err)
	}
	r.latencyRun.dupes = lat.dupes.Load()
	ds := make([]time.Duration, cfg.latencyJobs)
	for i := range ds {
		ds[i] = time.Duration(lat.latency[i].Load())
	}
	sortDurations(ds)
	r.p50, r.p99, r.max = percentile(ds, 50), percentile(ds, 99), ds[len(ds)-1]
	return r
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
