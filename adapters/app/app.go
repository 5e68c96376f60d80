// Package app is the composition root (docs/design.md, "one composition root"):
// it reads the configuration, creates every client once per cold start,
// wires repositories, the event bus, the job queues, the services, the
// router and the drains, and hands them to whichever entry point runs:
// a Lambda bootstrap, a Cloud Functions instance, the local runner or the
// long-running worker. Nothing here knows which platform it is on.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/email"
	"github.com/shiftflow/shiftflow/adapters/health"
	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/adapters/logging"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/rediscache"
	"github.com/shiftflow/shiftflow/adapters/redisconn"
	"github.com/shiftflow/shiftflow/adapters/redislimit"
	"github.com/shiftflow/shiftflow/adapters/redisstream"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/cache"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/org"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/reconcile"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/timesheet"
	"github.com/shiftflow/shiftflow/core/ulid"
	"github.com/shiftflow/shiftflow/core/wake"
)

// Function names: the directories under functions/, the SAM resources'
// logical ids (capitalised), the Cloud Functions entry points.
const (
	Login            = "login"
	ScheduleShift    = "scheduleShift"
	CompleteShift    = "completeShift"
	OnShiftCompleted = "onShiftCompleted"
	InvoiceWorker    = "invoiceWorker"
)

// HTTPFunctions are the functions behind the HTTP API.
func HTTPFunctions() []string { return []string{Login, ScheduleShift, CompleteShift} }

// DrainFunctions are the consumer functions (docs/design.md#2).
func DrainFunctions() []string { return []string{OnShiftCompleted, InvoiceWorker} }

// Options are what an entry point may decide; zero values read everything
// from the environment.
type Options struct {
	// Getenv looks variables up (default os.Getenv).
	Getenv func(string) string
	// Logger overrides the logger built from LOG_FORMAT / LOG_LEVEL.
	Logger *slog.Logger
	// Consumer names this process in the consumer groups; empty takes
	// redisstream's default (host-pid-random), unique per process.
	Consumer string
	// Waker starts drain functions on the platform when work is
	// published. The Lambda and Cloud Functions bootstraps pass theirs.
	// Nil (the local runner, containers) installs no wake at all: their
	// Run loops block on XREADGROUP, which returns as soon as an entry
	// is appended, so the append itself is the signal.
	Waker wake.Waker
	// WaitForRedis: a long-running process (the container worker) waits
	// for an unreachable Redis, retrying with backoff until it answers or
	// ctx ends, instead of failing (redisconn.ConnectWait).
	WaitForRedis bool
}

// App is the wired application.
type App struct {
	Config config.Config
	Logger *slog.Logger
	Redis  redis.UniversalClient
	Mongo  *mongo.Client
	DB     *mongo.Database

	Auth      *auth.Service
	Clients   *client.Service
	Pricing   *pricing.Service
	Settings  *org.Service
	Scheduler *shift.Scheduler
	Sheets    *timesheet.Service
	Invoices  *invoice.Worker
	Mailer    *invoice.Mailer
	Queues    *redisstream.Queues
	Bus       Bus
	Cache     *cache.Cache

	// Reconciler re-emits the missing work of completed shifts
	// (docs/design.md, "Reconciler"); it runs inside every drain.
	Reconciler *reconcile.Reconciler

	tokens   *auth.Tokens
	authn    *httpapi.Authenticator
	routes   []Route
	mux      *http.ServeMux
	drainers map[string]event.Drainer
	longPoll bool
	prefix   string
	consumer redisstream.ConsumerOptions
	recon    reconcileConfig
	waker    wake.Waker
	wakeCfg  wakeConfig
	wake     *wiring // nil without a Waker
}

// New builds the application. Configuration problems come back together,
// each naming its variable; connection problems name the server.
func New(ctx context.Context, o Options) (*App, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg, err := config.Load(getenv)
	authCfg, aerr := auth.FromEnv(getenv)
	limCfg, lerr := redislimit.FromEnv(getenv)
	ttls, terr := rediscache.TTLsFromEnv(getenv)
	sender, from, eerr := email.FromEnv(getenv)
	longPoll, derr := drainMode(getenv)
	// Handlers here take milliseconds; the bound decides how close to its
	// deadline a drain may still start one (HANDLER_TIMEOUT + the safety
	// margin must fit in the function's timeout, see template.yaml).
	handlerTimeout, herr := config.Duration(getenv, "HANDLER_TIMEOUT", 10*time.Second, time.Second, 5*time.Minute)
	// How long an entry stays with a consumer that stopped heartbeating
	// (a killed or frozen instance) before another takes it back.
	visibility, verr := config.Duration(getenv, "VISIBILITY_TIMEOUT", 30*time.Second, time.Second, 15*time.Minute)
	prefix, perr := keyPrefix(getenv)
	recon, rerr := loadReconcileConfig(getenv)
	wakeCfg, werr := loadWakeConfig(getenv)
	if err := errors.Join(err, aerr, lerr, terr, eerr, derr, herr, verr, perr, rerr, werr); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if cfg.Mongo.URI == "" {
		return nil, fmt.Errorf("configuration: MONGODB_URI: is required (the local runner starts an embedded server when it is unset; functions need a real one)")
	}
	logger := o.Logger
	if logger == nil {
		logger = logging.New(os.Stderr, cfg.Log.Format, cfg.Log.Level)
	}
	a := &App{Config: cfg, Logger: logger, longPoll: longPoll, prefix: prefix, recon: recon, waker: o.Waker, wakeCfg: wakeCfg,
		consumer: redisstream.ConsumerOptions{Consumer: o.Consumer, HandlerTimeout: handlerTimeout,
			VisibilityTimeout: visibility, Logger: logger}}

	connect := redisconn.Connect
	if o.WaitForRedis {
		connect = redisconn.ConnectWait
	}
	if a.Redis, err = connect(ctx, cfg.Redis, logger); err != nil {
		return nil, err
	}
	if a.Mongo, a.DB, err = mongodb.Connect(ctx, cfg.Mongo, logger); err != nil {
		_ = redisconn.Close(a.Redis, logger)
		return nil, err
	}
	if err := a.wire(ctx, authCfg, limCfg, ttls, sender, from); err != nil {
		a.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return a, nil
}

func (a *App) wire(ctx context.Context, authCfg auth.Config, limCfg redislimit.Config, ttls map[string]time.Duration,
	sender invoice.Sender, from string) error {
	db, logger := a.DB, a.Logger
	users := mongodb.NewUserRepo(db)
	clientRepo, shiftRepo := mongodb.NewClientRepo(db), mongodb.NewShiftRepo(db)
	wtRepo, invRepo, numbers := mongodb.NewWorkedTimeRepo(db), mongodb.NewInvoiceRepo(db), mongodb.NewInvoiceNumbers(db)
	priceRepo, settingsRepo, emailRepo := mongodb.NewPricingRepo(db), mongodb.NewSettingsRepo(db), mongodb.NewEmailRepo(db)
	reconRepo := mongodb.NewReconcileRepo(db)
	// Idempotent; on a warm server this is one round trip per collection,
	// paid once per cold start.
	for _, r := range []interface{ EnsureIndexes(context.Context) error }{users, clientRepo, shiftRepo, wtRepo, invRepo, numbers, priceRepo, settingsRepo, emailRepo, reconRepo} {
		if err := r.EnsureIndexes(ctx); err != nil {
			return fmt.Errorf("create indexes: %w", err)
		}
	}

	tokens, err := authCfg.Tokens()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	a.tokens = tokens
	a.Auth = auth.NewService(users, auth.NewHasher(auth.DefaultArgon2Params), tokens, redislimit.New(a.Redis, limCfg), authCfg.Limits)

	a.Queues = redisstream.NewQueues(a.Redis, redisstream.QueueOptions{Prefix: a.prefix, Logger: logger})
	if a.Bus, err = newBus(a.Redis, a.prefix, a.consumer); err != nil {
		return err
	}
	// Every publisher and every Add goes through the wake decorators
	// (docs/design.md, "Wake on publish and scale-out").
	var jobs reconcile.Jobs = a.Queues
	if a.waker != nil {
		a.wake = a.newWiring(a.waker, a.wakeCfg)
		a.Bus = wakeBus{Bus: a.Bus, t: a.wake.trigger}
		jobs = wakeJobs{Queues: a.Queues, t: a.wake.trigger}
	}
	a.Cache = cache.New(rediscache.New(a.Redis), ttls, a.prefix+":cache:", logger)
	a.Clients = client.NewService(clientRepo, ulid.New, nil)
	a.Pricing = pricing.NewService(priceRepo, a.Cache, a.Clients, nil)
	a.Settings = org.NewService(settingsRepo, a.Cache, nil)
	a.Scheduler = shift.NewScheduler(shiftRepo, a.Clients, a.Pricing, a.Bus, nil)
	a.Sheets = timesheet.NewService(wtRepo, a.Clients, a.Pricing, jobs, nil)
	a.Invoices = invoice.NewWorker(invoice.Deps{Store: invRepo, Numbers: numbers, Shifts: a.Scheduler, WorkedTimes: a.Sheets,
		Pricing: a.Pricing, Settings: a.Settings, Publisher: a.Bus, Jobs: jobs})
	a.Mailer = invoice.NewMailer(invRepo, emailRepo, sender, from).WithLogger(logger)
	a.Reconciler = reconcile.New(reconcile.Deps{Store: reconRepo, WorkedTimes: a.Sheets, Invoices: a.Invoices,
		Clients: a.Clients, Emails: emailRepo, Publisher: a.Bus, Jobs: jobs,
		Gate:  redislimit.NewEvery(a.Redis, a.prefix+":reconcile:gate", a.recon.Interval),
		After: a.recon.After, Interval: a.recon.Interval, Log: logger})
	// Every completion the relay publishes is tracked before it leaves
	// the outbox, by the API's relay and by the drains' alike.
	a.Scheduler.Relay().Tracker = a.Reconciler

	if err := a.router(authCfg); err != nil {
		return err
	}
	return a.drains()
}

// router mounts every route once; FunctionHandler narrows it per function.
func (a *App) router(authCfg auth.Config) error {
	authn := httpapi.NewAuthenticator(a.tokens)
	a.authn = authn
	mux := http.NewServeMux()
	ar := httpapi.NewAuthRoutes(a.Auth, authn, httpapi.NewClientIP(authCfg.TrustedProxies))
	for _, rt := range ar.Routes() {
		a.routes = append(a.routes, Route{Method: rt.Method, Path: rt.Path, Function: functionOf(rt.Method, rt.Path)})
	}
	ar.Register(mux)
	dr := httpapi.NewDomainRoutes(httpapi.DomainDeps{
		Auth: authn, Clients: a.Clients, Shifts: a.Scheduler, Timesheets: a.Sheets,
		Invoices: a.Invoices, Pricing: a.Pricing, Settings: a.Settings,
	})
	for _, rt := range dr.Routes() {
		a.routes = append(a.routes, Route{Method: rt.Method, Path: rt.Path, Function: functionOf(rt.Method, rt.Path)})
	}
	dr.Register(mux)
	// The health route is served by every HTTP function and the local
	// runner; it reports each dependency without secrets.
	mux.HandleFunc("GET /health", a.health)
	a.routes = append(a.routes, Route{Method: "GET", Path: "/health", Function: ScheduleShift})
	a.mux = mux
	return nil
}

// health answers whether the dependencies respond. The route is public (a
// load balancer or uptime check calls it without a token), so anonymous
// callers get only the verdict; the per-dependency report, whose errors can
// name internal addresses, is for admins (a valid admin bearer token).
func (a *App) health(w http.ResponseWriter, r *http.Request) {
	rep := health.Check(r.Context(), a.Redis, a.Mongo)
	status := http.StatusOK
	if !rep.OK {
		status = http.StatusServiceUnavailable
	}
	if p, err := a.authn.Authenticate(r); err == nil && p.Role == auth.RoleAdmin {
		httpapi.WriteJSON(w, status, rep)
		return
	}
	httpapi.WriteJSON(w, status, struct {
		OK bool `json:"ok"`
	}{rep.OK})
}

// drains subscribes the consumers and creates the job workers.
func (a *App) drains() error {
	opts := a.consumer
	sub, err := a.Bus.Subscribe([]string{event.ShiftCompleted}, OnShiftCompleted,
		logEvents(a.Logger, OnShiftCompleted, a.Sheets.OnShiftCompleted), event.Durable)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", OnShiftCompleted, err)
	}
	invoices, err := a.Queues.Worker(job.InvoiceGeneration, logJobs(a.Logger, a.Invoices.Generate), opts)
	if err != nil {
		return fmt.Errorf("worker %s: %w", job.InvoiceGeneration, err)
	}
	emails, err := a.Queues.Worker(job.EmailNotifications, logJobs(a.Logger, a.Mailer.Send), opts)
	if err != nil {
		return fmt.Errorf("worker %s: %w", job.EmailNotifications, err)
	}
	a.drainers = map[string]event.Drainer{
		// The relay runs inside every drain of the subscriber (docs/design.md
		// decision 4), so an event left in an outbox by a crash is
		// published by the next scheduled drain at the latest.
		OnShiftCompleted: shift.WithRelay(sub, a.Scheduler.Relay()),
		// The invoice worker also sends the invoice emails: one function,
		// two queues drained side by side within one deadline.
		InvoiceWorker: Parallel(invoices, emails),
	}
	// Every drain may reconcile; the gate lets one run per
	// RECONCILE_INTERVAL through across all processes.
	for name, d := range a.drainers {
		a.drainers[name] = reconcile.With(d, a.Reconciler)
	}
	// Outermost, so the registration covers the reconciler's share too.
	a.wrapDrains(map[string][]event.Drainer{OnShiftCompleted: {sub}, InvoiceWorker: {invoices, emails}})
	return nil
}

// Route is one route of the HTTP API and the function that serves it.
type Route struct {
	Method, Path, Function string
}

// Routes lists every route the router serves, with its function.
func (a *App) Routes() []Route { return append([]Route(nil), a.routes...) }

// functionOf decides which HTTP function serves a route: login and user
// management go to login (argon2 needs the most memory), completing a
// shift to completeShift (the write that starts the invoice pipeline), and
// everything else the scheduler's screens use to scheduleShift.
func functionOf(method, path string) string {
	switch {
	case path == "/login" || path == "/users" || len(path) > 7 && path[:7] == "/users/":
		return Login
	case method == http.MethodPost && path == "/shifts/{id}/complete":
		return CompleteShift
	default:
		return ScheduleShift
	}
}

// Handler serves every route (the local runner, a single-container
// deployment), with request logging and correlation ids.
func (a *App) Handler() http.Handler {
	return requestLog(a.Logger, securityHeaders(routerErrors(a.mux)))
}

// FunctionHandler serves the routes of one HTTP function and answers 404
// for the others, so a function only does what its gateway routes say.
func (a *App) FunctionHandler(name string) http.Handler {
	own := http.NewServeMux()
	n := 0
	for _, rt := range a.routes {
		if rt.Function == name || rt.Path == "/health" {
			own.Handle(rt.Method+" "+rt.Path, a.mux)
			n++
		}
	}
	if n == 0 {
		panic(fmt.Sprintf("app: no routes for function %q", name))
	}
	return requestLog(a.Logger, securityHeaders(routerErrors(own)))
}

// IssueToken signs a token for p without a password check or a login
// budget: for trusted local tooling only (the local runner's invoke), never
// reachable from a request.
func (a *App) IssueToken(p auth.Principal) (auth.Token, error) { return a.tokens.Issue(p) }

// Drainer returns the drainer of a consumer function.
func (a *App) Drainer(name string) event.Drainer { return a.drainers[name] }

// Drain returns the function a serverless trigger runs for a consumer:
// Drain, or DrainLongPoll when DRAIN_MODE=longpoll (near-real-time for a
// fixed cost: the invocation waits for work until its deadline).
func (a *App) Drain(name string) func(context.Context) (event.DrainSummary, error) {
	d := a.drainers[name]
	if d == nil {
		panic(fmt.Sprintf("app: no drain named %q", name))
	}
	if a.longPoll {
		return d.DrainLongPoll
	}
	return d.Drain
}

// RunDrains runs every drain in a loop until ctx is cancelled (the local
// runner and the long-running worker), then lets each finish or hand back
// its in-flight work. It returns the first error of any loop.
func (a *App) RunDrains(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(a.drainers))
	for _, name := range DrainFunctions() {
		d := a.drainers[name]
		go func() {
			err := d.Run(logging.With(ctx, "function", name))
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%s: %w", name, err)
				cancel()
			} else {
				err = nil
			}
			errs <- err
		}()
	}
	var first error
	for range a.drainers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Reconcile runs the reconciler now, regardless of the interval (the
// local runner's `reconcile` command).
func (a *App) Reconcile(ctx context.Context) (reconcile.Report, error) { return a.Reconciler.Run(ctx) }

// Close releases the clients.
func (a *App) Close(ctx context.Context) {
	if a.Mongo != nil {
		_ = mongodb.Disconnect(ctx, a.Mongo, a.Logger)
	}
	if a.Redis != nil {
		_ = redisconn.Close(a.Redis, a.Logger)
	}
}

// keyPrefix reads REDIS_KEY_PREFIX (default "sf"), which starts the keys
// of the queues, the event bus and the cache, so that several deployments
// (or test runs) can share one Redis.
func keyPrefix(getenv func(string) string) (string, error) {
	v := getenv("REDIS_KEY_PREFIX")
	if v == "" {
		return redisstream.DefaultPrefix, nil
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return "", &config.VarError{Var: "REDIS_KEY_PREFIX", Reason: fmt.Sprintf("%q may hold only letters, digits, '-', '_' and '.'", v)}
		}
	}
	return v, nil
}

func drainMode(getenv func(string) string) (bool, error) {
	switch v := getenv("DRAIN_MODE"); v {
	case "", "drain":
		return false, nil
	case "longpoll":
		return true, nil
	default:
		return false, &config.VarError{Var: "DRAIN_MODE", Reason: fmt.Sprintf("%q is not drain or longpoll", v)}
	}
}
