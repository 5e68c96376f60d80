// Command bench measures what a user of the functions waits for: each
// Lambda bootstrap's stripped size (arm64 as deployed, and this machine's
// architecture as measured); its cold start under the Lambda Runtime
// Interface Emulator, from starting the emulator to the first complete
// response (GET /health for HTTP functions, an idle scheduled drain for
// drains); and the local runner's end-to-end latency from POST
// /shifts/{id}/complete to the invoice being readable, with the drains
// running continuously (p50 and p99 over -shifts shifts).
//
//	go run ./infra/bench                      # embedded servers
//	go run ./infra/bench -shifts 200 -cold 5
//
// With REDIS_URL and MONGODB_URI set, both the bootstraps and the runner
// use those servers instead of embedded ones.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/embedded"
	"github.com/shiftflow/shiftflow/adapters/lambda/lambdatest"
	"github.com/shiftflow/shiftflow/local/localtest"
)

// pollEvery is the -poll flag.
var pollEvery time.Duration

// Targets from the issue.
const (
	maxBootstrapBytes = 15 << 20
	maxColdStart      = 150 * time.Millisecond
	maxE2EP50         = 50 * time.Millisecond
)

func main() {
	shifts := flag.Int("shifts", 200, "shifts completed for the end-to-end latency")
	cold := flag.Int("cold", 5, "cold starts measured per function (0 skips the Lambda part)")
	flag.DurationVar(&pollEvery, "poll", 5*time.Millisecond, "how often the invoice is polled; each poll is a request the server must answer")
	flag.Parse()
	if err := run(*shifts, *cold); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(shifts, cold int) error {
	ctx := context.Background()
	root, err := lambdatest.ModuleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "shiftflow-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	names := append(app.HTTPFunctions(), app.DrainFunctions()...)
	ok := true

	if cold > 0 {
		if err := lambdaPart(ctx, root, work, names, cold, &ok); err != nil {
			return err
		}
	}

	fmt.Printf("\n== local end-to-end: complete -> invoice readable (%d shifts, drains running, polled every %s) ==\n", shifts, pollEvery)
	res, err := e2e(ctx, root, work, shifts)
	if err != nil {
		return err
	}
	fmt.Printf("p50 %s  p99 %s  target p50 < %s  %s\n", ms(res.total[0]), ms(res.total[1]), maxE2EP50, verdict(res.total[0] < maxE2EP50, &ok))
	fmt.Printf("  of which the complete request:         p50 %s  p99 %s\n", ms(res.request[0]), ms(res.request[1]))
	fmt.Printf("  and the background work after it:     p50 %s  p99 %s\n", ms(res.background[0]), ms(res.background[1]))
	if !ok {
		return fmt.Errorf("a target was missed")
	}
	return nil
}

// lambdaPart prints bootstrap sizes and cold starts.
func lambdaPart(ctx context.Context, root, work string, names []string, cold int, ok *bool) error {
	fmt.Println("== bootstrap size (stripped, -tags lambda.norpc) ==")
	arm, err := buildArch(ctx, root, filepath.Join(work, "arm64"), names, "arm64")
	if err != nil {
		return err
	}
	rie, err := lambdatest.BuildRIE(ctx, root, work)
	if err != nil {
		return err
	}
	native, err := lambdatest.BuildBootstraps(ctx, root, filepath.Join(work, "native"), names)
	if err != nil {
		return err
	}
	fmt.Printf("%-18s %12s %12s  target <= %s\n", "function", "arm64", runtime.GOARCH, mb(maxBootstrapBytes))
	for _, n := range names {
		a, b := size(arm[n]), size(native[n])
		fmt.Printf("%-18s %12s %12s  %s\n", n, mb(a), mb(b), verdict(a <= maxBootstrapBytes && b <= maxBootstrapBytes, ok))
	}

	// Servers for the bootstraps.
	env, stop, err := servers(work)
	if err != nil {
		return err
	}
	defer stop()

	fmt.Printf("\n== cold start to first response under the emulator (%d runs each) ==\n", cold)
	fmt.Printf("%-18s %10s %10s  target <= %s\n", "function", "median", "max", maxColdStart)
	for _, n := range names {
		var ds []time.Duration
		for range cold {
			d, err := coldStart(ctx, rie, native[n], env, slices.Contains(app.DrainFunctions(), n))
			if err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			ds = append(ds, d)
		}
		slices.Sort(ds)
		med := ds[len(ds)/2]
		fmt.Printf("%-18s %10s %10s  %s\n", n, ms(med), ms(ds[len(ds)-1]), verdict(med <= maxColdStart, ok))
	}

	return nil
}

func buildArch(ctx context.Context, root, out string, names []string, arch string) (map[string]string, error) {
	paths := map[string]string{}
	for _, n := range names {
		p := filepath.Join(out, n, "bootstrap")
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w", "-o", p, "./functions/"+n)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s for %s: %v\n%s", n, arch, err, b)
		}
		paths[n] = p
	}
	return paths, nil
}

// servers returns the function environment: REDIS_URL / MONGODB_URI from
// the environment, or embedded servers.
func servers(work string) ([]string, func(), error) {
	prefix := fmt.Sprintf("bench%d", time.Now().UnixNano())
	env := []string{"JWT_SECRET=" + strings.Repeat("bench-secret-", 4), "REDIS_KEY_PREFIX=" + prefix,
		"RATE_LIMIT_KEY_PREFIX=" + prefix + ":rl:", "MONGODB_DATABASE=" + prefix, "OUTBOX_DIR=" + filepath.Join(work, "outbox"), "LOG_LEVEL=warn"}
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if u := os.Getenv("REDIS_URL"); u != "" {
		env = append(env, "REDIS_URL="+u)
	} else {
		r, err := embedded.StartRedis("127.0.0.1:0")
		if err != nil {
			return nil, stop, err
		}
		stops = append(stops, r.Close)
		env = append(env, "REDIS_URL="+r.URL)
	}
	if u := os.Getenv("MONGODB_URI"); u != "" {
		env = append(env, "MONGODB_URI="+u)
	} else {
		quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		m, err := embedded.StartMongo(filepath.Join(work, "mongo"), "127.0.0.1:0", quiet)
		if err != nil {
			stop()
			return nil, stop, err
		}
		stops = append(stops, m.Close)
		env = append(env, "MONGODB_URI="+m.URI)
	}
	return env, stop, nil
}

// coldStart starts a fresh emulator and function and times the first
// complete response, checking it is a success.
func coldStart(ctx context.Context, rie, bootstrap string, env []string, drain bool) (time.Duration, error) {
	payload := []byte(`{"version":"0","id":"bench","detail-type":"Scheduled Event","source":"aws.events","detail":{}}`)
	if !drain {
		ev := events.APIGatewayV2HTTPRequest{Version: "2.0", RawPath: "/health"}
		ev.RequestContext.HTTP.Method = "GET"
		ev.RequestContext.HTTP.Path = "/health"
		ev.RequestContext.Stage = "$default"
		payload, _ = json.Marshal(ev)
	}
	r, err := lambdatest.StartRIE(rie, bootstrap, env, 60*time.Second)
	if err != nil {
		return 0, err
	}
	defer r.Stop()
	out, err := r.Invoke(ctx, payload)
	d := time.Since(r.Started)
	if err != nil {
		return 0, err
	}
	if drain {
		var s struct {
			StoppedBy string `json:"stoppedBy"`
		}
		if json.Unmarshal(out, &s) != nil || s.StoppedBy == "" {
			return 0, fmt.Errorf("not a summary: %s\n%s", out, r.Logs())
		}
	} else {
		var resp events.APIGatewayV2HTTPResponse
		if json.Unmarshal(out, &resp) != nil || resp.StatusCode != 200 {
			return 0, fmt.Errorf("health answered %s\n%s", out, r.Logs())
		}
	}
	return d, nil
}

// latencies are p50 and p99 of complete -> invoice readable, split into
// the complete request and what follows it.
type latencies struct{ total, request, background [2]time.Duration }

func percentiles(ds []time.Duration) [2]time.Duration {
	slices.Sort(ds)
	return [2]time.Duration{ds[len(ds)/2], ds[(len(ds)*99)/100]}
}

// e2e runs the local runner and times complete -> invoice readable.
func e2e(ctx context.Context, root, work string, n int) (latencies, error) {
	var none latencies
	bin, err := localtest.Build(ctx, root, work)
	if err != nil {
		return none, err
	}
	env := []string{"SHIFTFLOW_DATA_DIR=" + filepath.Join(work, "local"), "LOG_LEVEL=warn"}
	if u := os.Getenv("REDIS_URL"); u != "" {
		p := fmt.Sprintf("benche2e%d", time.Now().UnixNano())
		env = append(env, "REDIS_URL="+u, "REDIS_KEY_PREFIX="+p, "RATE_LIMIT_KEY_PREFIX="+p+":rl:")
	}
	if u := os.Getenv("MONGODB_URI"); u != "" {
		env = append(env, "MONGODB_URI="+u, fmt.Sprintf("MONGODB_DATABASE=benche2e%d", time.Now().UnixNano()), "SEED_DEMO=true")
	}
	r, err := localtest.Start(bin, work, env)
	if err != nil {
		return none, err
	}
	defer func() { _ = r.Stop(30 * time.Second) }()
	c := localtest.Client{URL: r.URL}
	if err := c.Login(ctx, "admin@example.com", "shiftflow-demo"); err != nil {
		return none, err
	}
	clientID, err := c.FirstClient(ctx)
	if err != nil {
		return none, err
	}
	var lat, reqs, bg []time.Duration
	base := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	for i := range n {
		s, err := c.Schedule(ctx, clientID, base.Add(time.Duration(i)*24*time.Hour), 8, 30)
		if err != nil {
			return none, err
		}
		start := time.Now()
		if _, err := c.Complete(ctx, s.ID); err != nil {
			return none, err
		}
		done := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = c.WaitInvoice(wctx, s.ID, pollEvery)
		cancel()
		if err != nil {
			return none, err
		}
		lat = append(lat, time.Since(start))
		reqs = append(reqs, done.Sub(start))
		bg = append(bg, time.Since(done))
	}
	return latencies{percentiles(lat), percentiles(reqs), percentiles(bg)}, nil
}

func size(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return st.Size()
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func verdict(pass bool, ok *bool) string {
	if pass {
		return "ok"
	}
	*ok = false
	return "MISSED"
}
