package app

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/logging"
)

// StartTimeout bounds building the application at cold start. Lambda's
// init phase has 10 s; a server that does not answer within this is
// reported by name instead of timing the function out silently.
const StartTimeout = 8 * time.Second

// MustStart builds the application for one function from the environment,
// or logs why it cannot (every bad variable by name, never a secret) and
// exits non-zero, which the platform reports as an init failure.
func MustStart(function string) *App { return MustStartWith(function, Options{}) }

// MustStartWith is MustStart with options an entry point decides (the
// platform's wake.Waker).
func MustStartWith(function string, o Options) *App {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	a, err := New(ctx, o)
	if err != nil {
		format := "text"
		if config.InCloud(os.Getenv) {
			format = "json"
		}
		logging.New(os.Stderr, format, "error").Error("cannot start", "function", function, "err", err)
		fmt.Fprintln(os.Stderr)
		os.Exit(1)
	}
	a.Logger = a.Logger.With("function", function)
	return a
}
