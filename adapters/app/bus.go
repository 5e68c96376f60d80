package app

import (
	"time"

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

// newBus returns the event bus on Redis Streams: one stream of events
// under the deployment's key prefix, each durable subscriber a consumer
// group (docs/design.md#1). Five attempts with exponential backoff
// (1 s to 5 min), then the dead-letter stream; retention keeps the bus's
// defaults (see adapters/redisstream).
func newBus(rdb redis.UniversalClient, prefix string, opts redisstream.ConsumerOptions) (Bus, error) {
	return redisstream.NewBus(rdb, redisstream.BusOptions{
		Prefix: prefix,
		Subscription: redisstream.SubscribeOptions{ConsumerOptions: opts, Attempts: 5,
			Backoff: job.Backoff{Type: job.BackoffExponential, Base: time.Second, Cap: 5 * time.Minute}},
		Logger: opts.Logger,
	}), nil
}
