// Command local is the offline runner (docs/design.md#10).
//
//	go run ./local                          HTTP API on PORT (default 8080) + every drain in a loop
//	go run ./local worker                   every drain in a loop, no HTTP (container worker mode)
//	go run ./local invoke FUNCTION EVENT    deliver a sample event to a function as its cloud would
//	go run ./local reconcile                re-emit the missing work of completed shifts now, print it as JSON
//
// With REDIS_URL / MONGODB_URI unset it starts embedded servers whose data
// is kept under SHIFTFLOW_DATA_DIR (default .shiftflow); with them set it
// uses the real servers. The first start seeds a demo organisation and
// prints the login.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/logging"
	"github.com/shiftflow/shiftflow/core/event"
)

const usage = `usage:
  go run ./local                         HTTP API and drains (PORT, default 8080)
  go run ./local worker                  drains only, in a loop
  go run ./local invoke FUNCTION EVENT   e.g. invoke completeShift functions/completeShift/event.json
  go run ./local reconcile               re-emit the missing work of completed shifts now (JSON report)
functions: login scheduleShift completeShift onShiftCompleted invoiceWorker
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := logging.New(os.Stderr, envOr("LOG_FORMAT", "text"), envOr("LOG_LEVEL", "info"))
	slog.SetDefault(logger)

	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	var err error
	switch cmd {
	case "serve":
		err = run(ctx, logger, true)
	case "worker":
		err = run(ctx, logger, false)
	case "invoke":
		if len(args) != 3 {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		err = invoke(ctx, logger, args[1], args[2], os.Stdout)
	case "reconcile":
		err = reconcileNow(ctx, logger, os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		logger.Error("local runner failed", "err", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// build starts the servers the environment lacks and builds the app.
// publish marks the long-running modes (serve, worker): they publish
// their embedded servers and wait for a Redis that is not up yet, as a
// container worker must, until it answers or the process is signalled;
// the one-shot commands give up after 30 s.
func build(ctx context.Context, logger *slog.Logger, publish bool) (*app.App, *servers, error) {
	srv, err := startServers(logger, publish)
	if err != nil {
		return nil, nil, err
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if publish {
		bctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	a, err := app.New(bctx, app.Options{Getenv: srv.getenv, Logger: logger, WaitForRedis: publish})
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return a, srv, nil
}

// run serves the HTTP API (withHTTP) and runs every drain until Ctrl-C.
func run(ctx context.Context, logger *slog.Logger, withHTTP bool) error {
	a, srv, err := build(ctx, logger, true)
	if err != nil {
		if ctx.Err() != nil {
			logger.Info("stopped before the servers answered", "err", err)
			return nil
		}
		return err
	}
	defer srv.Close()
	defer a.Close(context.Background())

	var login *demoLogin
	if seedWanted(withHTTP) {
		l, err := seed(ctx, a)
		if err != nil {
			return fmt.Errorf("seed demo data: %w", err)
		}
		login = &l
	} else {
		logger.Info("no demo data seeded (MONGODB_URI is set or worker mode; SEED_DEMO=true seeds it)")
	}

	// The drains get their own context: on Ctrl-C the HTTP server stops
	// first, then the loops finish or hand back their in-flight work.
	drainCtx, stopDrains := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDrains()
	drainsDone := make(chan error, 1)
	drainsOn := !withHTTP || !strings.EqualFold(os.Getenv("DRAINS"), "off")
	if !drainsOn {
		// API only: separate worker processes (`local worker`) drain.
		logger.Info("drains are off (DRAINS=off): run `go run ./local worker` to process events and jobs")
		go func() { <-drainCtx.Done(); drainsDone <- nil }()
	} else {
		go func() { drainsDone <- a.RunDrains(drainCtx) }()
	}

	var hs *http.Server
	httpDone := make(chan error, 1)
	if withHTTP {
		addr := net.JoinHostPort(envOr("HOST", "127.0.0.1"), envOr("PORT", "8080"))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			stopDrains()
			<-drainsDone
			return fmt.Errorf("listen on %s (set PORT or HOST): %w", addr, err)
		}
		hs = newServer(app.CORS(envOr("CORS_ORIGIN", "*"), a.Handler()), defaultBounds)
		go func() { httpDone <- hs.Serve(l) }()
		printWelcome(l.Addr().String(), login)
	} else {
		logger.Info("worker running every drain; Ctrl-C to stop", "drains", strings.Join(app.DrainFunctions(), ","))
	}

	select {
	case <-ctx.Done():
		logger.Info("shutting down: finishing requests and in-flight jobs")
	case err := <-httpDone:
		stopDrains()
		<-drainsDone
		return fmt.Errorf("http server: %w", err)
	case err := <-drainsDone:
		if hs != nil {
			_ = hs.Close()
		}
		return fmt.Errorf("drains stopped: %w", err)
	}
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
	}
	stopDrains()
	if err := <-drainsDone; err != nil {
		logger.Error("drain loop ended with an error", "err", err)
	}
	if drainsOn {
		finalDrain(a, logger)
	}
	logger.Info("stopped")
	return nil
}

// reconcileNow runs the reconciler once, without waiting for
// RECONCILE_INTERVAL (docs/design.md, "Reconciler"), and prints its report:
// the events and jobs it re-emitted, with their ids. Errors of single
// shifts are in the report and make the command fail.
func reconcileNow(ctx context.Context, logger *slog.Logger, out io.Writer) error {
	a, srv, err := build(ctx, logger, false)
	if err != nil {
		return err
	}
	defer srv.Close()
	defer a.Close(context.Background())
	rep, err := a.Reconcile(ctx)
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if eerr := enc.Encode(rep); eerr != nil && err == nil {
		err = eerr
	}
	return err
}

// finalDrain processes what is still queued before the process exits: the
// in-memory embedded Redis keeps nothing across runs, so work queued in it
// is done now rather than lost. With a persistent Redis it is simply
// finished sooner. Bounded, so Ctrl-C always ends the process.
func finalDrain(a *app.App, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 5 {
		var total event.DrainSummary
		for _, name := range app.DrainFunctions() {
			s, err := a.Drainer(name).Drain(ctx)
			if err != nil {
				logger.Warn("final drain", "function", name, "err", err)
			}
			total.Processed += s.Processed
			total.Remaining += s.Remaining
		}
		if total.Processed == 0 && total.Remaining == 0 {
			return
		}
		logger.Info("final drain", "processed", total.Processed)
	}
}

// seedWanted: the demo organisation, with its well-known password, is
// seeded on the embedded servers, and on real ones only when asked for
// (SEED_DEMO=true), so that pointing the runner at a shared database or
// running it as a container never adds a demo admin by surprise.
func seedWanted(serving bool) bool {
	switch strings.ToLower(os.Getenv("SEED_DEMO")) {
	case "true", "1", "yes":
		return true
	case "false", "0", "no":
		return false
	}
	return serving && os.Getenv("MONGODB_URI") == ""
}

func printWelcome(addr string, l *demoLogin) {
	base := "http://" + addr
	if l == nil {
		fmt.Fprintf(os.Stderr, "\nshiftflow is running at %s (no demo data)   stop: Ctrl-C\n\n", base)
		return
	}
	fmt.Fprintf(os.Stderr, `
shiftflow is running at %s
  demo login: %s / %s   (organisation %s)
  log in:     curl -s %s/login -H 'Content-Type: application/json' -d '{"email":"%s","password":"%s"}'
  walkthrough: docs/local.md   stop: Ctrl-C

`, base, l.Email, l.Password, l.Org, base, l.Email, l.Password)
}

var errUnknownFunction = errors.New("unknown function")
