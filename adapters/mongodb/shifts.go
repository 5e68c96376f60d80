package mongodb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/shift"
	"github.com/shiftflow/shiftflow/core/ulid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ShiftRepo stores shifts with their outbox (docs/design.md#4): each
// change and its event are one single-document update, so no transaction
// is needed and FerretDB works.
//
// The outbox is an array on the shift document. Entries are removed by
// rewriting the array with $set, conditioned on the shift's version,
// because FerretDB silently ignores $pull with a condition. hasOutbox
// makes pending shifts findable with a plain indexed equality.
//
// On MongoDB a conditioned update is atomic. FerretDB v1 runs it as read,
// modify, write back the whole document with nothing held in between
// (measured: 12 concurrent updates conditioned on one version, up to 6
// "won"; a relay removal could overwrite a concurrent completion). So on
// FerretDB (detected once with buildInfo) every write of a shift document
// first takes a lease in shiftLocks, an insert into a unique _id, which is
// atomic there too; writes in one process are also serialised in memory
// first, so the lease is only contended across processes. On MongoDB no
// lease is taken.
type ShiftRepo struct {
	c, leases *mongo.Collection
	local     keyedMutex

	detect   sync.Once
	useLease bool
}

// leaseTTL bounds how long a crashed writer blocks a shift; a write holds
// the lease for one read and one update.
const leaseTTL = 10 * time.Second

// leaseWait is how long a write waits for another process's lease.
const leaseWait = 5 * time.Second

// NewShiftRepo returns the repository on db.
func NewShiftRepo(db *mongo.Database) *ShiftRepo {
	return &ShiftRepo{c: db.Collection(CollShifts), leases: db.Collection(CollShiftLeases), local: keyedMutex{m: map[string]*keyLock{}}}
}

type leaseDoc struct {
	ID        string    `bson:"_id"`
	Owner     string    `bson:"owner"`
	ExpiresAt time.Time `bson:"expiresAt"`
}

// needsLease reports whether the server is FerretDB. If buildInfo fails
// the repo plays safe and takes leases.
func (r *ShiftRepo) needsLease(ctx context.Context) bool {
	r.detect.Do(func() {
		var info bson.M
		err := r.c.Database().RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info)
		_, ferret := info["ferretdbVersion"]
		r.useLease = err != nil || ferret
	})
	return r.useLease
}

// lock serialises writes of one shift: in memory within the process, and
// with a lease document across processes on FerretDB. The returned
// function releases both.
func (r *ShiftRepo) lock(ctx context.Context, id string) (func(), error) {
	unlock := r.local.lock(id)
	if !r.needsLease(ctx) {
		return unlock, nil
	}
	owner := ulid.New()
	deadline := time.Now().Add(leaseWait)
	for {
		_, err := r.leases.InsertOne(ctx, leaseDoc{ID: id, Owner: owner, ExpiresAt: time.Now().Add(leaseTTL).UTC()})
		if err == nil {
			return func() {
				// Release even if the request's context has ended.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				_, _ = r.leases.DeleteOne(rctx, bson.D{{Key: "_id", Value: id}, {Key: "owner", Value: owner}})
				unlock()
			}, nil
		}
		if !IsDuplicateKey(err) {
			unlock()
			return nil, fmt.Errorf("lease shift %s: %w", id, err)
		}
		var held leaseDoc
		if err := r.leases.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&held); err == nil && time.Now().After(held.ExpiresAt) {
			// The holder died: take the lease over.
			_, _ = r.leases.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "owner", Value: held.Owner}})
			continue
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			unlock()
			return nil, &core.Error{Code: core.EUnavailable, Message: "the shift is being changed by another request; try again",
				Err: fmt.Errorf("lease shift %s: held by another process", id)}
		}
		time.Sleep(time.Duration(2+rand.IntN(8)) * time.Millisecond)
	}
}

// keyedMutex serialises work per key and forgets keys nobody holds.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	l, ok := k.m[key]
	if !ok {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// EnsureIndexes creates the repository's indexes.
func (r *ShiftRepo) EnsureIndexes(ctx context.Context) error {
	return ensureIndexes(ctx, r.c,
		index("org_start", false, bson.D{{Key: "organizationId", Value: 1}, {Key: "start", Value: 1}}),
		index("has_outbox", false, bson.D{{Key: "hasOutbox", Value: 1}}),
	)
}

// outboxDoc is an event as stored: the payload as a JSON string so that it
// comes back byte for byte.
type outboxDoc struct {
	ID             string    `bson:"id"`
	Type           string    `bson:"type"`
	OrganizationID string    `bson:"organizationId"`
	Time           time.Time `bson:"time"`
	CorrelationID  string    `bson:"correlationId"`
	SchemaVersion  int       `bson:"schemaVersion"`
	Payload        string    `bson:"payload"`
}

func toOutbox(e event.Event) outboxDoc {
	return outboxDoc{ID: e.ID, Type: e.Type, OrganizationID: e.OrganizationID, Time: e.Time.UTC(),
		CorrelationID: e.CorrelationID, SchemaVersion: e.SchemaVersion, Payload: string(e.Payload)}
}

func (d outboxDoc) event() event.Event {
	return event.Event{ID: d.ID, Type: d.Type, OrganizationID: d.OrganizationID, Time: d.Time.UTC(),
		CorrelationID: d.CorrelationID, SchemaVersion: d.SchemaVersion, Payload: json.RawMessage(d.Payload)}
}

type shiftDoc struct {
	shift.Shift `bson:",inline"`
	Outbox      []outboxDoc `bson:"outbox"`
	HasOutbox   bool        `bson:"hasOutbox"`
}

var shiftFields = bson.D{{Key: "outbox", Value: 0}, {Key: "hasOutbox", Value: 0}}

// Insert stores a new shift with ev in its outbox.
func (r *ShiftRepo) Insert(ctx context.Context, s shift.Shift, ev event.Event) error {
	if _, err := r.c.InsertOne(ctx, shiftDoc{Shift: s, Outbox: []outboxDoc{toOutbox(ev)}, HasOutbox: true}); err != nil {
		return fmt.Errorf("insert shift: %w", err)
	}
	return nil
}

// Update writes the shift's fields and appends ev to the outbox in one
// update conditioned on prevVersion. Errors: core.EConflict.
func (r *ShiftRepo) Update(ctx context.Context, s shift.Shift, prevVersion int64, ev event.Event) error {
	unlock, err := r.lock(ctx, s.ID)
	if err != nil {
		return err
	}
	defer unlock()
	filter := bson.D{{Key: "_id", Value: s.ID}, {Key: "organizationId", Value: s.OrganizationID}, {Key: "version", Value: prevVersion}}
	if r.needsLease(ctx) {
		// The lease makes this writer the only one of the shift, so the
		// condition can be checked first and the update filtered on _id
		// alone, the only filter FerretDB pushes down to SQL (any other
		// filter reads and decodes every shift). The conditioned update
		// was no more atomic on FerretDB: the lease is what guards it.
		var cur struct {
			OrganizationID string `bson:"organizationId"`
			Version        int64  `bson:"version"`
		}
		err := r.c.FindOne(ctx, bson.D{{Key: "_id", Value: s.ID}},
			options.FindOne().SetProjection(bson.D{{Key: "organizationId", Value: 1}, {Key: "version", Value: 1}})).Decode(&cur)
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return fmt.Errorf("update shift: %w", err)
		}
		if err != nil || cur.OrganizationID != s.OrganizationID || cur.Version != prevVersion {
			return core.Conflict("shift %s was changed by another request; reload it and try again", s.ID)
		}
		filter = bson.D{{Key: "_id", Value: s.ID}}
	}
	update := bson.D{
		{Key: "$set", Value: bson.D{
			{Key: "clientId", Value: s.ClientID}, {Key: "workerId", Value: s.WorkerID}, {Key: "role", Value: s.Role},
			{Key: "start", Value: s.Start.UTC()}, {Key: "end", Value: s.End.UTC()}, {Key: "breakMinutes", Value: s.BreakMinutes},
			{Key: "notes", Value: s.Notes}, {Key: "status", Value: s.Status}, {Key: "version", Value: s.Version},
			{Key: "cancelReason", Value: s.CancelReason},
			{Key: "updatedAt", Value: s.UpdatedAt.UTC()}, {Key: "hasOutbox", Value: true},
		}},
		{Key: "$push", Value: bson.D{{Key: "outbox", Value: toOutbox(ev)}}},
	}
	res, err := r.c.UpdateOne(ctx, filter, update)
	if err != nil {
		return fmt.Errorf("update shift: %w", err)
	}
	if res.MatchedCount == 0 {
		return core.Conflict("shift %s was changed by another request; reload it and try again", s.ID)
	}
	return nil
}

// Get returns the organisation's shift. Errors: core.ENotFound.
func (r *ShiftRepo) Get(ctx context.Context, orgID, id string) (shift.Shift, error) {
	var s shift.Shift
	err := findOwned(ctx, r.c, id, orgID, &s, options.FindOne().SetProjection(shiftFields))
	if err != nil {
		return shift.Shift{}, notFound(err, "shift %s not found", id)
	}
	return s, nil
}

// List returns the organisation's shifts starting in [f.From, f.To).
func (r *ShiftRepo) List(ctx context.Context, orgID string, f shift.Filter) ([]shift.Shift, error) {
	filter := timeRange(bson.D{{Key: "organizationId", Value: orgID}}, "start", f.From, f.To)
	if f.Status != "" {
		filter = append(filter, bson.E{Key: "status", Value: f.Status})
	}
	cur, err := r.c.Find(ctx, filter, options.Find().SetProjection(shiftFields).
		SetSort(bson.D{{Key: "start", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(clampLimit(f.Limit)))
	if err != nil {
		return nil, fmt.Errorf("list shifts: %w", err)
	}
	out := []shift.Shift{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list shifts: %w", err)
	}
	return out, nil
}

type outboxView struct {
	Version int64       `bson:"version"`
	Outbox  []outboxDoc `bson:"outbox"`
}

func (r *ShiftRepo) outbox(ctx context.Context, shiftID string) (outboxView, error) {
	var v outboxView
	err := r.c.FindOne(ctx, bson.D{{Key: "_id", Value: shiftID}},
		options.FindOne().SetProjection(bson.D{{Key: "version", Value: 1}, {Key: "outbox", Value: 1}})).Decode(&v)
	return v, err
}

// Outbox returns the shift's pending events, oldest first.
func (r *ShiftRepo) Outbox(ctx context.Context, shiftID string) ([]event.Event, error) {
	v, err := r.outbox(ctx, shiftID)
	if err != nil {
		return nil, notFound(err, "shift %s not found", shiftID)
	}
	out := make([]event.Event, 0, len(v.Outbox))
	for _, d := range v.Outbox {
		out = append(out, d.event())
	}
	return out, nil
}

// PendingShifts returns ids of shifts with pending events.
func (r *ShiftRepo) PendingShifts(ctx context.Context, limit int) ([]string, error) {
	cur, err := r.c.Find(ctx, bson.D{{Key: "hasOutbox", Value: true}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetLimit(clampLimit(limit)))
	if err != nil {
		return nil, fmt.Errorf("pending shifts: %w", err)
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("pending shifts: %w", err)
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	return ids, nil
}

// RemoveFromOutbox removes the events with these ids. It rewrites the
// array conditioned on the version it read: a change that appended an
// event in between bumps the version, the update matches nothing, and the
// loop reads again, so an appended event is never dropped.
func (r *ShiftRepo) RemoveFromOutbox(ctx context.Context, shiftID string, eventIDs []string) error {
	unlock, err := r.lock(ctx, shiftID)
	if err != nil {
		return err
	}
	defer unlock()
	for attempt := 0; attempt < 20; attempt++ {
		v, err := r.outbox(ctx, shiftID)
		if err != nil {
			return notFound(err, "shift %s not found", shiftID)
		}
		remaining := make([]outboxDoc, 0, len(v.Outbox))
		for _, d := range v.Outbox {
			if !slices.Contains(eventIDs, d.ID) {
				remaining = append(remaining, d)
			}
		}
		if len(remaining) == len(v.Outbox) {
			return nil // already removed by another relay
		}
		filter := bson.D{{Key: "_id", Value: shiftID}, {Key: "version", Value: v.Version}}
		if r.needsLease(ctx) {
			// Under the lease nobody else writes this shift, so the version
			// just read is current; filter on _id alone (see Update).
			filter = bson.D{{Key: "_id", Value: shiftID}}
		}
		res, err := r.c.UpdateOne(ctx, filter,
			bson.D{{Key: "$set", Value: bson.D{{Key: "outbox", Value: remaining}, {Key: "hasOutbox", Value: len(remaining) > 0}}}})
		if err != nil {
			return fmt.Errorf("remove outbox entries of %s: %w", shiftID, err)
		}
		if res.MatchedCount == 1 {
			return nil
		}
	}
	return fmt.Errorf("remove outbox entries of %s: shift kept changing", shiftID)
}
