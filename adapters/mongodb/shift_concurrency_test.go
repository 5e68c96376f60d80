package mongodb_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/shift"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Separate ShiftRepo values stand for separate processes: each has its own
// in-process lock, so only what the server (and the repo's cross-process
// guard) does keeps them apart.

func TestConcurrentWritersOfOneShiftOnlyOneWinsEachVersion(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	s := mkShift("org1", time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	if err := mongodb.NewShiftRepo(db).Insert(ctx, s, mkEvent(event.ShiftCreated, s)); err != nil {
		t.Fatal(err)
	}
	const writers = 12
	var wins atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := mongodb.NewShiftRepo(db)
			next := s
			next.Version = 2
			next.Notes = string(rune('a' + i))
			err := r.Update(ctx, next, 1, mkEvent(event.ShiftUpdated, next))
			switch core.ErrorCode(err) {
			case "":
				wins.Add(1)
			case core.EConflict:
			default:
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d writers changed version 1 -> 2, want exactly 1", wins.Load())
	}
	evs, _ := mongodb.NewShiftRepo(db).Outbox(ctx, s.ID)
	if len(evs) != 2 {
		t.Fatalf("outbox has %d events, want created + the one winning update", len(evs))
	}
}

func TestRelayRemovalsNeverDropAConcurrentChange(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	s := mkShift("org1", time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	writer, relay := mongodb.NewShiftRepo(db), mongodb.NewShiftRepo(db)
	if err := writer.Insert(ctx, s, mkEvent(event.ShiftCreated, s)); err != nil {
		t.Fatal(err)
	}
	const changes = 40
	var removed sync.Map
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a relay in another process removing whatever it sees
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			evs, err := relay.Outbox(ctx, s.ID)
			if err != nil {
				t.Error(err)
				return
			}
			var ids []string
			for _, e := range evs {
				ids = append(ids, e.ID)
			}
			if len(ids) > 0 {
				if err := relay.RemoveFromOutbox(ctx, s.ID, ids); err != nil {
					t.Error(err)
					return
				}
				for _, id := range ids {
					removed.Store(id, true)
				}
			}
		}
	}()
	var written []string
	cur := s
	for i := 0; i < changes; i++ {
		next := cur
		next.Version = cur.Version + 1
		ev := mkEvent(event.ShiftUpdated, next)
		if err := writer.Update(ctx, next, cur.Version, ev); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
		written = append(written, ev.ID)
		cur = next
	}
	close(done)
	wg.Wait()
	got, err := writer.Get(ctx, "org1", s.ID)
	if err != nil || got.Version != int64(changes+1) {
		t.Fatalf("version %d, want %d: a removal overwrote a change", got.Version, changes+1)
	}
	left, _ := writer.Outbox(ctx, s.ID)
	inOutbox := map[string]bool{}
	for _, e := range left {
		inOutbox[e.ID] = true
	}
	for _, id := range written {
		if _, ok := removed.Load(id); !ok && !inOutbox[id] {
			t.Fatalf("event %s was neither removed by the relay nor left in the outbox: lost", id)
		}
	}
}

func TestALeaseLeftByADeadProcessIsTakenOver(t *testing.T) {
	ctx := ctxT(t)
	db := testenv.MongoDB(t)
	r := mongodb.NewShiftRepo(db)
	s := mkShift("org1", time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	if err := r.Insert(ctx, s, mkEvent(event.ShiftCreated, s)); err != nil {
		t.Fatal(err)
	}
	// What a writer killed while holding the lease leaves behind (only
	// FerretDB uses leases; on MongoDB the document is simply ignored).
	_, err := db.Collection(mongodb.CollShiftLeases).InsertOne(ctx, bson.D{{Key: "_id", Value: s.ID},
		{Key: "owner", Value: "dead"}, {Key: "expiresAt", Value: time.Now().Add(-time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	next := s
	next.Version, next.Status = 2, shift.StatusCancelled
	start := time.Now()
	if err := r.Update(ctx, next, 1, mkEvent(event.ShiftCancelled, next)); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %v to take over an expired lease", time.Since(start))
	}
	if got, _ := r.Get(ctx, "org1", s.ID); got.Status != shift.StatusCancelled {
		t.Fatalf("status %s", got.Status)
	}
}
