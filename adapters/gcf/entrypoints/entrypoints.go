// Package entrypoints registers shiftflow's functions with the Functions
// Framework, for Google Cloud Functions (and Cloud Run functions):
//
//	login, scheduleShift, completeShift    HTTP functions (the API routes of each)
//	onShiftCompleted, invoiceWorker        CloudEvent functions (Cloud Scheduler -> Pub/Sub)
//	onShiftCompletedHTTP, invoiceWorkerHTTP the same drains as HTTP functions (Cloud Scheduler -> URL)
//
// Cloud Functions builds the package at the root of the uploaded source;
// infra/gcp-deploy.sh stages one that imports this package. The
// application is built once per instance, at its first invocation.
package entrypoints

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/shiftflow/shiftflow/adapters/app"
	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/gcf"
)

// init is the registration Cloud Functions requires.
func init() {
	// DRAIN_BUDGET: how long one drain invocation may run when the
	// platform gives no deadline; keep it under the function's timeout.
	budget, err := config.Duration(os.Getenv, "DRAIN_BUDGET", gcf.DefaultBudget, time.Second, time.Hour)
	if err != nil {
		budget = gcf.DefaultBudget // the first invocation reports config errors
	}
	lazy := gcf.NewLazy(func(ctx context.Context) (gcf.Functions, error) {
		ctx, cancel := context.WithTimeout(ctx, app.StartTimeout)
		defer cancel()
		if err != nil {
			return gcf.Functions{}, err
		}
		a, err := app.New(ctx, app.Options{})
		if err != nil {
			return gcf.Functions{}, err
		}
		fns := gcf.Functions{HTTP: map[string]http.Handler{}, Drains: map[string]gcf.DrainFunc{}, Logger: a.Logger}
		origins := os.Getenv("CORS_ORIGIN")
		for _, n := range app.HTTPFunctions() {
			fns.HTTP[n] = a.FunctionHandler(n)
			if origins != "" {
				// Browsers call the function URLs directly: no gateway
				// answers their preflights for us.
				fns.HTTP[n] = app.CORS(origins, fns.HTTP[n])
			}
		}
		for _, n := range app.DrainFunctions() {
			fns.Drains[n] = a.Drain(n)
		}
		return fns, nil
	})
	gcf.Register(app.HTTPFunctions(), app.DrainFunctions(), lazy, gcf.DrainOptions{Budget: budget})
}
