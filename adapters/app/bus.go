package app

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/shiftflow/shiftflow/adapters/redisstream"
	"github.com/shiftflow/shiftflow/core/event"
	"github.com/shiftflow/shiftflow/core/job"
)

// Bus is the event bus the services publish to and the drains consume.
type Bus interface {
	event.Publisher
	event.Subscriber
}

// newBus returns the event bus on Redis.
//
// Interim wiring until adapters/redisstream ships its stream bus: each
// durable subscriber gets its own job queue ("events-<subscriber>"), and
// Publish adds the event to the queue of every durable subscriber of its
// type with the event id as job id. That keeps the bus's contract, every
// subscriber receives every event of its types, instances share the work,
// a redelivered event (same id) is de-duplicated, failures retry with
// backoff and end in the queue's dead letters, on the same Redis Streams
// machinery as the jobs. Local subscribers run inside Publish.
func newBus(_ redis.UniversalClient, q *redisstream.Queues, opts redisstream.ConsumerOptions) (Bus, error) {
	return &queueBus{q: q, opts: opts}, nil
}

type subscription struct {
	types []string
	name  string
	h     event.Handler
	mode  event.Mode
}

type queueBus struct {
	q    *redisstream.Queues
	opts redisstream.ConsumerOptions
	mu   sync.RWMutex
	subs []subscription
}

func eventQueue(subscriber string) string { return "events-" + subscriber }

func (b *queueBus) Publish(ctx context.Context, e event.Event) error {
	b.mu.RLock()
	subs := slices.Clone(b.subs)
	b.mu.RUnlock()
	for _, s := range subs {
		if !slices.Contains(s.types, e.Type) {
			continue
		}
		if s.mode == event.Local {
			if err := s.h(ctx, e); err != nil {
				return fmt.Errorf("local subscriber %s: %w", s.name, err)
			}
			continue
		}
		if _, err := b.q.Add(ctx, eventQueue(s.name), e.Type, e, job.Options{JobID: e.ID, CorrelationID: e.CorrelationID}); err != nil {
			return fmt.Errorf("publish %s %s to %s: %w", e.Type, e.ID, s.name, err)
		}
	}
	return nil
}

func (b *queueBus) Subscribe(types []string, name string, h event.Handler, mode event.Mode) (event.Drainer, error) {
	b.mu.Lock()
	b.subs = append(b.subs, subscription{types: types, name: name, h: h, mode: mode})
	b.mu.Unlock()
	if mode == event.Local {
		return nil, nil
	}
	return b.q.Worker(eventQueue(name), func(ctx context.Context, j *job.Job) error {
		var e event.Event
		if err := json.Unmarshal(j.Data, &e); err != nil {
			return event.Permanent(fmt.Errorf("decode event of job %s: %w", j.ID, err))
		}
		return h(ctx, e)
	}, b.opts)
}
