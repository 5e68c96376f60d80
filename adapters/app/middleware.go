package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/adapters/logging"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/ulid"
)

// requestIDPattern bounds what a client may send as X-Request-Id: it ends
// up in every log line of the request, so no spaces, quotes or novels.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// requestLog gives every request a request id (the client's X-Request-Id
// when it is well formed, else a new ULID), returns it in the response,
// puts it in the context's log attributes, and logs one line per request
// with status and duration.
func requestLog(logger *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !requestIDPattern.MatchString(id) {
			id = ulid.New()
		}
		w.Header().Set("X-Request-Id", id)
		ctx := logging.With(r.Context(), "requestId", id)
		r = r.WithContext(ctx)
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		level := slog.LevelInfo
		if rec.status >= 500 {
			level = slog.LevelError
		}
		logging.FromContext(ctx, logger).Log(ctx, level, "request",
			"method", r.Method, "path", r.URL.Path, "status", rec.status,
			"ms", float64(time.Since(start).Microseconds())/1000, "bytes", rec.bytes)
	})
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}

// securityHeaders sets what every API answer should carry: no MIME
// sniffing, nothing cached (answers are per user and many carry tokens or
// invoices), and a content security policy that lets nothing load or frame
// if a browser ever renders an answer as a page.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Cache-Control", "no-store")
		hd.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// routerErrors serves mux and answers what the router itself would answer
// in plain text in the API's JSON error format instead: no route is a 404,
// a route that exists for other methods a 405 with its Allow header.
func routerErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" { // a route, or the router's redirect to the canonical path
			mux.ServeHTTP(w, r)
			return
		}
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			httpapi.WriteError(w, r, &core.Error{Code: core.EMethod,
				Message: fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, probe.header.Get("Allow"))})
			return
		}
		httpapi.WriteError(w, r, notFoundErr(r))
	})
}

// statusProbe records what the router's own 404/405 handler would write.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int)      { p.status = status }

func notFoundErr(r *http.Request) error {
	return core.NotFound("no route %s %s", r.Method, r.URL.Path)
}

// logEvents logs each event a subscriber handles with its id, type and
// correlation id, and puts them in the handler's context so that the
// handler's own log lines carry them too.
func logEvents(logger *slog.Logger, subscriber string, h event.Handler) event.Handler {
	return func(ctx context.Context, e event.Event) error {
		start := time.Now()
		ctx = logging.With(ctx, "subscriber", subscriber, "eventId", e.ID, "eventType", e.Type,
			"correlationId", e.CorrelationID, "organizationId", e.OrganizationID)
		err := h(ctx, e)
		l := logging.FromContext(ctx, logger)
		ms := float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			l.WarnContext(ctx, "event failed", "ms", ms, "err", err)
			return err
		}
		l.InfoContext(ctx, "event handled", "ms", ms)
		return nil
	}
}

// logJobs does for jobs what logEvents does for events.
func logJobs(logger *slog.Logger, h job.Handler) job.Handler {
	return func(ctx context.Context, j *job.Job) error {
		start := time.Now()
		ctx = logging.With(ctx, "queue", j.Queue, "jobId", j.ID, "jobName", j.Name,
			"attempt", j.Attempt, "correlationId", j.CorrelationID)
		err := h(ctx, j)
		l := logging.FromContext(ctx, logger)
		ms := float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			l.WarnContext(ctx, "job failed", "ms", ms, "err", err)
			return err
		}
		l.InfoContext(ctx, "job done", "ms", ms)
		return nil
	}
}

// Parallel runs several drainers as one: Drain and DrainLongPoll run them
// side by side under the same deadline and add up their summaries; Run
// runs every loop until the context ends.
func Parallel(ds ...event.Drainer) event.Drainer { return parallel(ds) }

type parallel []event.Drainer

// Drain repeats rounds while a round did work: one drainer's work can
// create another's (an invoice adds its email job), and the invoker
// expects "empty" to mean that nothing is left.
func (p parallel) Drain(ctx context.Context) (event.DrainSummary, error) {
	start := time.Now()
	var total event.DrainSummary
	for round := 0; ; round++ {
		s, err := p.each(ctx, event.Drainer.Drain)
		total = add(total, s)
		total.StoppedBy = s.StoppedBy
		total.Remaining = s.Remaining
		if err != nil || s.Processed == 0 || s.StoppedBy != "empty" || round == 9 || ctx.Err() != nil {
			total.Duration = time.Since(start)
			return total, err
		}
	}
}

func add(a, b event.DrainSummary) event.DrainSummary {
	a.Processed += b.Processed
	a.Succeeded += b.Succeeded
	a.Failed += b.Failed
	a.DeadLettered += b.DeadLettered
	a.Reclaimed += b.Reclaimed
	a.Promoted += b.Promoted
	a.Lost += b.Lost
	return a
}

func (p parallel) DrainLongPoll(ctx context.Context) (event.DrainSummary, error) {
	return p.each(ctx, event.Drainer.DrainLongPoll)
}

func (p parallel) each(ctx context.Context, f func(event.Drainer, context.Context) (event.DrainSummary, error)) (event.DrainSummary, error) {
	start := time.Now()
	sums := make([]event.DrainSummary, len(p))
	errs := make([]error, len(p))
	var wg sync.WaitGroup
	for i, d := range p {
		wg.Go(func() { sums[i], errs[i] = f(d, ctx) })
	}
	wg.Wait()
	var out event.DrainSummary
	for _, s := range sums {
		out = add(out, s)
		out.Remaining += s.Remaining
		// The least final reason wins: "deadline" or "context" tells the
		// caller there may be more to do, "empty" only if all were empty.
		if out.StoppedBy == "" || out.StoppedBy == "empty" {
			out.StoppedBy = s.StoppedBy
		}
	}
	out.Duration = time.Since(start)
	return out, errors.Join(errs...)
}

func (p parallel) Run(ctx context.Context) error {
	errs := make([]error, len(p))
	var wg sync.WaitGroup
	for i, d := range p {
		wg.Go(func() { errs[i] = d.Run(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
