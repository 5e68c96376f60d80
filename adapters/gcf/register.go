package gcf

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/core"
)

// HTTPSuffix names a drain's HTTP entry point: onShiftCompleted is the
// CloudEvent function and onShiftCompletedHTTP the HTTP one.
const HTTPSuffix = "HTTP"

// Functions is what the composition root hands over: the handler of each
// HTTP function and the drain of each consumer function, by name.
type Functions struct {
	HTTP   map[string]http.Handler
	Drains map[string]DrainFunc
	Logger *slog.Logger
}

// Lazy builds Functions once, on the first invocation of any function of
// the instance, and reuses them after (clients once per cold start,
// docs/design.md#9). Building at first use rather than in init keeps a
// bad configuration from crashing the instance at import time: requests
// answer 503 and the error, which names the variable, is logged.
type Lazy struct {
	build func(context.Context) (Functions, error)
	once  sync.Once
	fns   Functions
	err   error
}

// NewLazy returns a Lazy around build.
func NewLazy(build func(context.Context) (Functions, error)) *Lazy {
	return &Lazy{build: build}
}

func (l *Lazy) get(ctx context.Context) (Functions, error) {
	l.once.Do(func() {
		// The first request's context must not cancel clients that later
		// requests reuse; the build gets its own lifetime.
		l.fns, l.err = l.build(context.WithoutCancel(ctx))
		if l.err != nil {
			slog.Error("build functions", "err", l.err)
		}
	})
	return l.fns, l.err
}

// Register registers every named function with functions-framework: each
// HTTP function under its name, each drain as a CloudEvent function under
// its name and as an HTTP function under name+"HTTP". This is the
// registration Cloud Functions requires from an init function.
func Register(httpNames, drainNames []string, lazy *Lazy, o DrainOptions) {
	for _, name := range httpNames {
		functions.HTTP(name, LazyHTTP(name, lazy))
	}
	for _, name := range drainNames {
		functions.CloudEvent(name, LazyDrainCloudEvent(name, lazy, o))
		functions.HTTP(name+HTTPSuffix, LazyDrainHTTP(name, lazy, o))
	}
}

// LazyHTTP is HTTP over the handler that lazy builds for name.
func LazyHTTP(name string, lazy *Lazy) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		fns, err := lazy.get(r.Context())
		h := fns.HTTP[name]
		if err != nil || h == nil {
			unavailable(w, r)
			return
		}
		HTTP(h)(w, r)
	}
}

// LazyDrainHTTP is DrainHTTP over the drain that lazy builds for name.
func LazyDrainHTTP(name string, lazy *Lazy, o DrainOptions) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		fns, err := lazy.get(r.Context())
		d := fns.Drains[name]
		if err != nil || d == nil {
			unavailable(w, r)
			return
		}
		o := o // a copy per call: invocations run concurrently
		if o.Logger == nil {
			o.Logger = fns.Logger
		}
		DrainHTTP(name, d, o)(w, r)
	}
}

// LazyDrainCloudEvent is DrainCloudEvent over the drain lazy builds for name.
func LazyDrainCloudEvent(name string, lazy *Lazy, o DrainOptions) func(context.Context, cloudevents.Event) error {
	return func(ctx context.Context, e cloudevents.Event) error {
		fns, err := lazy.get(ctx)
		if err != nil {
			return err
		}
		d := fns.Drains[name]
		if d == nil {
			return core.Errorf(core.EInternal, "no drain named %q", name)
		}
		o := o // a copy per call: invocations run concurrently
		if o.Logger == nil {
			o.Logger = fns.Logger
		}
		return DrainCloudEvent(name, d, o)(ctx, e)
	}
}

func unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "30")
	httpapi.WriteError(w, r, core.Errorf(core.EUnavailable, "the function is not configured correctly; see its logs"))
}
