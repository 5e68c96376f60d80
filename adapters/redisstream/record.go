package redisstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Recording results and fetching entries: the round trips the dispatcher
// (loop.go) starts on goroutines of their own.

// minRecordRetry is the least time a record call keeps retrying: a Redis
// failover or restart takes seconds to tens of seconds (managed failovers
// up to about a minute), and a result given up on is a re-run after the
// visibility timeout (docs/design.md, "Engine guarantees"). Retrying past
// the lease is safe: a result whose entry another consumer reclaimed in
// the meantime is dropped by the finish script's still-pending check.
const minRecordRetry = 60 * time.Second

// flush records a batch, retrying transient errors with backoff (capped at
// a second) for as long as the lease on its entries is ours: until the
// latest lease plus the visibility timeout, at least minRecordRetry,
// never past a drain's deadline. A result counts only while its entry is
// still pending, so running a finish script twice changes nothing. A retry
// never fetches: if the failed call did fetch and only its reply was lost,
// its entries are this consumer's pending ones, and the dispatcher recovers
// them (fetchLost). If Redis stays unreachable the entries stay pending
// and are reclaimed after the visibility timeout: at-least-once, never lost.
func (r *runState) flush(outs []outcome, marks []*delivery, fetch int) flushRes {
	res := flushRes{fetch: fetch, outs: outs}
	until := r.recordUntil(outs)
	wait := 50 * time.Millisecond
	tries := 0
	for {
		tries++
		ds, applied, err := r.finish(r.recCtx, outs, marks, fetch)
		if err == nil {
			r.count(outs, applied)
			res.ds = ds
			if tries > 1 {
				r.e.log.Info("results recorded after retrying", "entries", len(outs), "tries", tries)
			}
			return res
		}
		r.e.regroup(r.recCtx, err)
		if fetch > 0 {
			res.fetchLost, fetch = true, 0
		}
		if r.recCtx.Err() != nil || time.Now().Add(wait).After(until) || !sleepCtx(r.recCtx, wait) {
			r.e.log.Error("recording results failed; entries will be reclaimed after the visibility timeout",
				"entries", len(outs), "tries", tries, "err", err)
			return res
		}
		wait = min(wait*2, time.Second)
	}
}

// recordUntil is how long a batch's recording may be retried.
func (r *runState) recordUntil(outs []outcome) time.Time {
	var last time.Time
	r.mu.Lock()
	for _, o := range outs {
		if o.d.leased.After(last) {
			last = o.d.leased
		}
	}
	r.mu.Unlock()
	until := last.Add(r.e.opt.VisibilityTimeout)
	if least := time.Now().Add(minRecordRetry); until.Before(least) {
		until = least
	}
	if r.hasDL {
		if end := r.stopAt.Add(r.e.opt.SafetyMargin / 2); end.Before(until) {
			until = end
		}
	}
	return until
}

// finish is one record call: start marks, results, and a fetch.
func (r *runState) finish(ctx context.Context, outs []outcome, marks []*delivery, fetch int) ([]*delivery, []int64, error) {
	script, keys, args := r.e.lane.finishCall(r.consumer, outs, marks, fetch)
	v, err := script.Run(ctx, r.e.client, keys, args...).Slice()
	if err != nil {
		return nil, nil, fmt.Errorf("record results (%s): %w", r.e.lane.label(), err)
	}
	if len(v) < 2 {
		return nil, nil, fmt.Errorf("record results (%s): unexpected reply %v", r.e.lane.label(), v)
	}
	var applied []int64
	if l, ok := v[0].([]any); ok {
		for _, x := range l {
			if i, ok := x.(int64); ok {
				applied = append(applied, i)
			}
		}
	}
	return parseStreamsReply(v[1], r.e.lane.streams()), applied, nil
}

// count adds the results the script applied (1-based indexes into outs)
// to the summary: exactly what was recorded (a result whose entry was no
// longer ours changed nothing and is not counted).
func (r *runState) count(outs []outcome, applied []int64) {
	for _, i := range applied {
		if i < 1 || int(i) > len(outs) {
			continue
		}
		switch outs[i-1].kind {
		case outOK:
			r.processed.Add(1)
			r.succeeded.Add(1)
		case outRetry:
			r.processed.Add(1)
			r.failed.Add(1)
		case outFail:
			r.processed.Add(1)
			r.dead.Add(1)
		case outRequeue:
			r.requeued.Add(1)
		}
	}
}

func (r *runState) readFailed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	r.e.log.Warn("read failed; retrying", "err", err)
	sleepCtx(ctx, 200*time.Millisecond)
}

// read is one XREADGROUP over the lane's streams for new entries.
func (r *runState) read(ctx context.Context, count int, block time.Duration) ([]*delivery, error) {
	return r.readGroup(ctx, ">", count, block)
}

func (r *runState) readGroup(ctx context.Context, from string, count int, block time.Duration) ([]*delivery, error) {
	l := r.e.lane
	keys := l.streams()
	args := make([]string, 0, 2*len(keys))
	args = append(args, keys...)
	for range keys {
		args = append(args, from)
	}
	a := &redis.XReadGroupArgs{Group: l.group(), Consumer: r.consumer, Streams: args, Count: int64(count), Block: block}
	if block < 0 {
		a.Block = -1
	}
	res, err := r.e.client.XReadGroup(ctx, a).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if r.e.regroup(ctx, err) {
		// Created again; read next time.
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", l.label(), err)
	}
	var out []*delivery
	for _, s := range res {
		idx := indexOf(keys, s.Stream)
		for _, m := range s.Messages {
			if m.Values == nil {
				continue // deleted while pending (history reads only)
			}
			f := make(map[string]string, len(m.Values))
			for k, v := range m.Values {
				if sv, ok := v.(string); ok {
					f[k] = sv
				}
			}
			out = append(out, &delivery{stream: idx, id: m.ID, fields: f})
		}
	}
	return out, nil
}

// recoverOwn returns this consumer's pending entries that it does not hold
// (skip), at most room of them: the entries a record call fetched before
// its reply was lost. Reading history (id 0) counts as a delivery, so
// their delivery counts are set back to 1: no handler started them.
func (r *runState) recoverOwn(ctx context.Context, skip map[string]struct{}, room int) []*delivery {
	if room <= 0 {
		return nil
	}
	ds, err := r.readGroup(ctx, "0", room+len(skip), -1)
	if err != nil {
		r.readFailed(ctx, err)
		return nil
	}
	var out []*delivery
	byStream := map[int][]any{}
	for _, d := range ds {
		if _, held := skip[d.key()]; held || len(out) >= room {
			continue
		}
		out = append(out, d)
		byStream[d.stream] = append(byStream[d.stream], d.id)
	}
	if len(out) == 0 {
		return nil
	}
	l := r.e.lane
	pipe := r.e.client.Pipeline()
	for s, ids := range byStream {
		args := append([]any{"XCLAIM", l.streams()[s], l.group(), r.consumer, 0}, ids...)
		pipe.Do(ctx, append(args, "RETRYCOUNT", 1, "JUSTID")...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		r.e.log.Warn("resetting the delivery count of recovered entries failed", "err", err)
	}
	r.e.log.Warn("recovered entries fetched by a record call whose reply was lost", "entries", len(out))
	return out
}

func indexOf(keys []string, k string) int {
	for i, s := range keys {
		if s == k {
			return i
		}
	}
	return 0
}

// nextID is the stream id right after id ("ms-seq"), the start of the
// next page of a range (an exclusive "(" start needs Redis 6.2).
func nextID(id string) string {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return id
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return id
	}
	if n == math.MaxUint64 {
		m, _ := strconv.ParseUint(ms, 10, 64)
		return strconv.FormatUint(m+1, 10) + "-0"
	}
	return ms + "-" + strconv.FormatUint(n+1, 10)
}
