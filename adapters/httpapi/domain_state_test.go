package httpapi_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// domState is everything the application has stored, as text: every
// document of every collection of the test's database (canonical extended
// JSON, in _id order) and every Redis key of the bus and the queues (under
// the test's prefix) with its type and whole value. Two equal states mean
// a request changed nothing, not merely that the counts stayed the same.
type domState map[string]string

// state snapshots the stored state; rb is the real bus and queues the
// application publishes to and adds jobs to (nil: MongoDB only).
func (a *domApp) state(rb *domRealBus) domState {
	a.t.Helper()
	ctx := domCtx(a.t)
	st := domState{}
	names, err := a.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		a.t.Fatal(err)
	}
	for _, name := range names {
		cur, err := a.db.Collection(name).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			a.t.Fatalf("read %s: %v", name, err)
		}
		var docs []bson.Raw
		if err := cur.All(ctx, &docs); err != nil {
			a.t.Fatalf("read %s: %v", name, err)
		}
		var b strings.Builder
		for _, d := range docs {
			js, err := bson.MarshalExtJSON(d, true, false)
			if err != nil {
				a.t.Fatal(err)
			}
			b.Write(js)
			b.WriteByte('\n')
		}
		st["mongodb "+name] = b.String()
	}
	if rb != nil {
		for k, v := range domRedisState(a.t, ctx, rb.rc, rb.prefix) {
			st["redis "+k] = v
		}
	}
	a.bus.mu.Lock()
	st["in-memory published"] = fmt.Sprint(len(a.bus.events))
	a.bus.mu.Unlock()
	return st
}

// domRedisState reads every key that starts with prefix, with its value.
func domRedisState(t *testing.T, ctx context.Context, rc redis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	var keys []string
	iter := rc.Scan(ctx, 0, prefix+"*", 200).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan %s*: %v", prefix, err)
	}
	if len(keys) == 0 {
		t.Fatalf("no Redis key under %s: the snapshot would prove nothing", prefix)
	}
	out := map[string]string{}
	for _, k := range keys {
		typ, err := rc.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		switch typ {
		case "string":
			v, err = rc.Get(ctx, k).Result()
		case "hash":
			v, err = rc.HGetAll(ctx, k).Result()
		case "list":
			v, err = rc.LRange(ctx, k, 0, -1).Result()
		case "set":
			var m []string
			m, err = rc.SMembers(ctx, k).Result()
			sort.Strings(m)
			v = m
		case "zset":
			v, err = rc.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "stream":
			var entries []redis.XMessage
			if entries, err = rc.XRange(ctx, k, "-", "+").Result(); err == nil {
				groups, gerr := rc.XInfoGroups(ctx, k).Result()
				var gs []string
				for _, g := range groups {
					gs = append(gs, fmt.Sprintf("%s pending=%d last=%s", g.Name, g.Pending, g.LastDeliveredID))
				}
				v = fmt.Sprint(entries, gs, gerr)
			}
		default:
			v = "(type " + typ + ")"
		}
		if err != nil && err != redis.Nil {
			t.Fatalf("read %s (%s): %v", k, typ, err)
		}
		out[k] = typ + " " + fmt.Sprint(v)
	}
	return out
}

// diff lists the keys whose value differs between two states.
func (s domState) diff(after domState) string {
	var b strings.Builder
	for k, v := range s {
		if w, ok := after[k]; !ok {
			fmt.Fprintf(&b, "removed %s\n", k)
		} else if w != v {
			fmt.Fprintf(&b, "changed %s:\n  before %s\n  after  %s\n", k, v, w)
		}
	}
	for k, w := range after {
		if _, ok := s[k]; !ok {
			fmt.Fprintf(&b, "added %s: %s\n", k, w)
		}
	}
	return b.String()
}
