// Package gcf runs shiftflow's functions on Google Cloud Functions (and any
// functions-framework host): HTTP functions, and drains as CloudEvent
// functions (Cloud Scheduler through Pub/Sub, Eventarc) or as HTTP
// functions (Cloud Scheduler calling the function's URL). Like the Lambda
// adapter it is generic over an http.Handler and a drain function.
package gcf

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/adapters/logging"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
)

// DrainFunc is one consumer function's work: it processes until there is
// nothing left or the context's deadline minus a margin.
type DrainFunc func(ctx context.Context) (event.DrainSummary, error)

// DefaultBudget bounds a drain when the platform gives the request no
// deadline. Cloud Functions' default timeout is 60 s; the drain must
// return its summary before the platform cuts the instance off.
const DefaultBudget = 50 * time.Second

// DrainOptions tune a drain entry point.
type DrainOptions struct {
	// Budget is how long one invocation may drain when the request carries
	// no earlier deadline; set it a little under the function's timeout.
	Budget time.Duration
	Logger *slog.Logger
}

func (o DrainOptions) withDefaults() DrainOptions {
	if o.Budget <= 0 {
		o.Budget = DefaultBudget
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// HTTP returns an HTTP function serving h. Every response gets a status
// and a panic becomes a JSON 500, as on Lambda.
func HTTP(h http.Handler) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		// Cloud Functions' load balancer sets the trace header; it is the
		// one id that ties this request to the platform's own logs.
		if tr := r.Header.Get("X-Cloud-Trace-Context"); tr != "" {
			r = r.WithContext(logging.With(r.Context(), "trace", tr))
		}
		serve(h, w, r)
	}
}

// DrainHTTP returns an HTTP function that runs the drain once per request
// (Cloud Scheduler's HTTP target, or a manual curl) and answers its summary
// as JSON: 200 when it ran, 500 with the summary and a generic error when
// it failed, so the scheduler records a failure and retries.
func DrainHTTP(name string, fn DrainFunc, o DrainOptions) func(http.ResponseWriter, *http.Request) {
	o = o.withDefaults()
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET, POST")
			httpapi.WriteError(w, r, core.Errorf(core.EInvalid, "method %s not allowed: use POST", r.Method))
			return
		}
		ctx := logging.With(r.Context(), "function", name, "trigger", "http")
		s, err := runDrain(ctx, name, fn, o)
		if err != nil {
			httpapi.WriteJSON(w, http.StatusInternalServerError, drainFailure{Summary: s, Error: errBody("internal", "drain failed; see the function's logs")})
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, s)
	}
}

type drainFailure struct {
	Summary event.DrainSummary `json:"summary"`
	Error   map[string]string  `json:"error"`
}

func errBody(code, msg string) map[string]string {
	return map[string]string{"code": code, "message": msg}
}

// DrainCloudEvent returns a CloudEvent function that runs the drain once
// per event. The event's content does not matter (a Pub/Sub message from
// Cloud Scheduler is only a tick); its id and type are logged. A returned
// error makes the platform retry when the trigger has retries enabled,
// which is safe because work is at-least-once with idempotent handlers.
func DrainCloudEvent(name string, fn DrainFunc, o DrainOptions) func(context.Context, cloudevents.Event) error {
	o = o.withDefaults()
	return func(ctx context.Context, e cloudevents.Event) error {
		ctx = logging.With(ctx, "function", name, "trigger", e.Type(), "triggerId", e.ID(), "source", e.Source())
		_, err := runDrain(ctx, name, fn, o)
		return err
	}
}

func runDrain(ctx context.Context, name string, fn DrainFunc, o DrainOptions) (event.DrainSummary, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Budget)
		defer cancel()
	}
	log := logging.FromContext(ctx, o.Logger)
	s, err := fn(ctx)
	if err != nil {
		log.ErrorContext(ctx, "drain failed", "summary", s, "err", err)
		return s, fmt.Errorf("drain %s: %w", name, err)
	}
	log.InfoContext(ctx, "drain finished", "processed", s.Processed, "succeeded", s.Succeeded,
		"failed", s.Failed, "deadLettered", s.DeadLettered, "remaining", s.Remaining,
		"stoppedBy", s.StoppedBy, "duration", s.Duration)
	return s, nil
}

// statusWriter remembers whether the handler chose a status.
type statusWriter struct {
	http.ResponseWriter
	wrote bool
}

func (s *statusWriter) WriteHeader(code int) {
	s.wrote = true
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func serve(h http.Handler, w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p) // net/http's own signal to drop the connection
			}
			slog.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
			if !sw.wrote {
				httpapi.WriteError(sw, r, core.Errorf(core.EInternal, "internal error"))
			}
		}
	}()
	h.ServeHTTP(sw, r)
}
