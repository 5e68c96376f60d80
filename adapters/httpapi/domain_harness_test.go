package httpapi_test

// The harness of the domain route tests: the whole application on the
// MongoDB wire-protocol server (testenv.MongoDB: the real one when
// SHIFTFLOW_TEST_MONGODB_URI is set, else embedded FerretDB) and Redis for
// the cache. The event bus and the job queue are the small in-memory
// implementations below until adapters/redisstream is wired in (domBus,
// domQueue): they keep every published event and every added job so tests
// can deliver them as often as they like.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/email"
	"github.com/shiftflow/shiftflow/adapters/httpapi"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/rediscache"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/auth"
	"github.com/shiftflow/shiftflow/core/cache"
	"github.com/shiftflow/shiftflow/core/client"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"github.com/shiftflow/shiftflow/core/org"
	"github.com/shiftflow/shiftflow/core/pricing"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/timesheet"
	"github.com/shiftflow/shiftflow/core/ulid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// domBus is an in-memory event.Publisher that keeps every event.
type domBus struct {
	mu     sync.Mutex
	events []event.Event
	fail   error
}

func (b *domBus) Publish(_ context.Context, e event.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	b.events = append(b.events, e)
	return nil
}

func (b *domBus) ofType(typ string) []event.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []event.Event
	for _, e := range b.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// domQueue is an in-memory job.Adder with job-id de-duplication.
type domQueue struct {
	mu   sync.Mutex
	jobs map[string][]*job.Job // queue -> jobs in order
	ids  map[string]bool       // queue/id
}

func (q *domQueue) Add(_ context.Context, queue, name string, data any, o job.Options) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.jobs == nil {
		q.jobs, q.ids = map[string][]*job.Job{}, map[string]bool{}
	}
	id := o.JobID
	if id == "" {
		id = ulid.New()
	}
	if q.ids[queue+"/"+id] {
		return id, nil
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return "", err
	}
	q.ids[queue+"/"+id] = true
	q.jobs[queue] = append(q.jobs[queue], &job.Job{ID: id, Queue: queue, Name: name, Data: raw, Attempt: 1, MaxAttempts: 3, CorrelationID: o.CorrelationID, CreatedAt: time.Now()})
	return id, nil
}

func (q *domQueue) list(queue string) []*job.Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*job.Job(nil), q.jobs[queue]...)
}

// domApp is the application under test.
type domApp struct {
	t        *testing.T
	db       *mongo.Database
	h        http.Handler
	tokens   *auth.Tokens
	bus      *domBus
	queue    *domQueue
	cache    *cache.Cache
	outbox   string
	shifts   *shift.Scheduler
	sheets   *timesheet.Service
	invoices *invoice.Worker
	mailer   *invoice.Mailer
	prices   *pricing.Service
	settings *org.Service
	clients  *client.Service
}

func domNewApp(t *testing.T) *domApp {
	t.Helper()
	return domNewAppOn(t, testenv.MongoDB(t))
}

// domNewAppOn is domNewApp on an existing database: a second application
// on the same data stands for another process.
func domNewAppOn(t *testing.T, db *mongo.Database) *domApp {
	t.Helper()
	ctx := domCtx(t)
	// The real Redis when configured (SHIFTFLOW_TEST_REDIS_URL), else embedded.
	var rc redis.UniversalClient
	if os.Getenv(testenv.VarRedisURL) != "" {
		rc = testenv.RedisPlain(t)
	} else {
		rc, _ = testenv.MiniRedis(t)
	}
	a := &domApp{t: t, db: db, bus: &domBus{}, queue: &domQueue{}, outbox: filepath.Join(t.TempDir(), "outbox")}
	clientRepo, shiftRepo := mongodb.NewClientRepo(db), mongodb.NewShiftRepo(db)
	wtRepo, invRepo, numbers := mongodb.NewWorkedTimeRepo(db), mongodb.NewInvoiceRepo(db), mongodb.NewInvoiceNumbers(db)
	priceRepo, settingsRepo := mongodb.NewPricingRepo(db), mongodb.NewSettingsRepo(db)
	for _, r := range []interface{ EnsureIndexes(context.Context) error }{clientRepo, shiftRepo, wtRepo, invRepo, numbers, priceRepo, settingsRepo} {
		if err := r.EnsureIndexes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	a.cache = cache.New(rediscache.New(rc), nil, testenv.Unique("cache")+":", nil)
	a.clients = client.NewService(clientRepo, ulid.New, nil)
	a.prices = pricing.NewService(priceRepo, a.cache, a.clients, nil)
	a.settings = org.NewService(settingsRepo, a.cache, nil)
	a.shifts = shift.NewScheduler(shiftRepo, a.clients, a.prices, a.bus, nil)
	a.sheets = timesheet.NewService(wtRepo, a.clients, a.prices, a.queue, nil)
	a.invoices = invoice.NewWorker(invoice.Deps{Store: invRepo, Numbers: numbers, Shifts: a.shifts, WorkedTimes: a.sheets,
		Pricing: a.prices, Settings: a.settings, Publisher: a.bus, Jobs: a.queue})
	a.mailer = invoice.NewMailer(invRepo, mongodb.NewEmailRepo(db), email.NewOutbox(a.outbox), "invoices@shiftflow.test")
	tokens, err := auth.NewHS256Tokens(bytes.Repeat([]byte("k"), 32), "shiftflow-test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a.tokens = tokens
	mux := http.NewServeMux()
	httpapi.NewDomainRoutes(httpapi.DomainDeps{
		Auth: httpapi.NewAuthenticator(tokens), Clients: a.clients, Shifts: a.shifts, Timesheets: a.sheets,
		Invoices: a.invoices, Pricing: a.prices, Settings: a.settings,
	}).Register(mux)
	a.h = mux
	return a
}

func domCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// domAs is who a request is sent as.
type domAs struct{ org, role string }

var (
	domAdmin     = domAs{"org-a", auth.RoleAdmin}
	domScheduler = domAs{"org-a", auth.RoleScheduler}
	domViewer    = domAs{"org-a", auth.RoleViewer}
	domOther     = domAs{"org-b", auth.RoleAdmin}
)

// do sends a request; body may be a string (sent verbatim), nil, or a value
// (sent as JSON).
func (a *domApp) do(who domAs, method, path string, body any) (int, []byte) {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if who.org != "" {
		tok, err := a.tokens.Issue(auth.Principal{UserID: "u-" + who.role, OrganizationID: who.org, Role: who.role})
		if err != nil {
			a.t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok.Value)
	}
	w := httptest.NewRecorder()
	a.h.ServeHTTP(w, req)
	return w.Code, w.Body.Bytes()
}

// must sends a request and fails unless the status is want; it decodes the
// answer into out when out is not nil.
func (a *domApp) must(want int, who domAs, method, path string, body, out any) {
	a.t.Helper()
	code, raw := a.do(who, method, path, body)
	if code != want {
		a.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
}

const domIssueTable = `{"currency":"EUR","taxRateBasisPoints":2000,"roles":{"nurse":{"hourlyRate":3000}},"overtime":{"afterMinutes":480,"multiplierPercent":150},"weekend":{"multiplierPercent":125},"night":{"from":"22:00","to":"06:00","multiplierPercent":120},"minimumBillableMinutes":0}`

// seed saves pricing and settings and creates a client for org-a.
func (a *domApp) seed(who domAs) client.Client {
	a.t.Helper()
	a.must(200, domAs{who.org, auth.RoleAdmin}, "PUT", "/pricing", domIssueTable, nil)
	a.must(200, domAs{who.org, auth.RoleAdmin}, "PUT", "/settings",
		`{"timeZone":"Europe/Berlin","currency":"EUR","invoiceTermsDays":14,"invoicePrefix":"INV-"}`, nil)
	var c client.Client
	a.must(201, domAs{who.org, auth.RoleScheduler}, "POST", "/clients", `{"name":"Acme Care","billingEmail":"ap@acme.test"}`, &c)
	return c
}

// counts returns the number of documents per collection, and the number of
// pending outbox events, to prove a request wrote nothing.
func (a *domApp) counts() map[string]int64 {
	a.t.Helper()
	ctx := domCtx(a.t)
	out := map[string]int64{}
	for _, c := range []string{mongodb.CollClients, mongodb.CollShifts, mongodb.CollWorkedTimes, mongodb.CollInvoices,
		mongodb.CollInvoiceNumbers, mongodb.CollPricing, mongodb.CollPricingClient, mongodb.CollSettings} {
		n, err := a.db.Collection(c).CountDocuments(ctx, bson.D{})
		if err != nil {
			a.t.Fatal(err)
		}
		out[c] = n
	}
	// A changed document (same count) shows in its version and outbox.
	cur, err := a.db.Collection(mongodb.CollShifts).Find(ctx, bson.D{})
	if err != nil {
		a.t.Fatal(err)
	}
	var docs []bson.M
	if err := cur.All(ctx, &docs); err != nil {
		a.t.Fatal(err)
	}
	for _, d := range docs {
		v, _ := d["version"].(int64)
		if v == 0 {
			if v32, ok := d["version"].(int32); ok {
				v = int64(v32)
			}
		}
		out["shiftVersions"] += v
		if ob, ok := d["outbox"].(bson.A); ok {
			out["outbox"] += int64(len(ob))
		}
	}
	a.bus.mu.Lock()
	out["published"] = int64(len(a.bus.events))
	a.bus.mu.Unlock()
	return out
}

// useBusAndJobs rebuilds the services that publish events and add jobs so
// that they use pub and jobs (the real redisstream bus and queues).
func (a *domApp) useBusAndJobs(pub event.Publisher, jobs job.Adder) {
	wtRepo, invRepo := mongodb.NewWorkedTimeRepo(a.db), mongodb.NewInvoiceRepo(a.db)
	a.shifts = shift.NewScheduler(mongodb.NewShiftRepo(a.db), a.clients, a.prices, pub, nil)
	a.sheets = timesheet.NewService(wtRepo, a.clients, a.prices, jobs, nil)
	a.invoices = invoice.NewWorker(invoice.Deps{Store: invRepo, Numbers: mongodb.NewInvoiceNumbers(a.db), Shifts: a.shifts,
		WorkedTimes: a.sheets, Pricing: a.prices, Settings: a.settings, Publisher: pub, Jobs: jobs})
	mux := http.NewServeMux()
	httpapi.NewDomainRoutes(httpapi.DomainDeps{
		Auth: httpapi.NewAuthenticator(a.tokens), Clients: a.clients, Shifts: a.shifts, Timesheets: a.sheets,
		Invoices: a.invoices, Pricing: a.prices, Settings: a.settings,
	}).Register(mux)
	a.h = mux
}
