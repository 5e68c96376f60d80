package redisstream

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/testenv"
)

// target is one Redis of the contract suite with a key prefix of its own,
// removed when the test ends, so tests share a real server safely.
type target struct {
	name   string
	client redis.UniversalClient
	prefix string
	real   bool // a real redis-server (idle times and trimming are exact)
}

func eachTarget(t *testing.T, f func(t *testing.T, tg target)) {
	t.Helper()
	for _, tt := range testenv.RedisTargets(t) {
		t.Run(tt.Name, func(t *testing.T) {
			tg := target{name: tt.Name, client: tt.Client, prefix: testenv.Unique("sft"), real: tt.Name != "embedded"}
			t.Cleanup(func() { deletePrefix(t, tg.client, tg.prefix) })
			f(t, tg)
		})
	}
}

func deletePrefix(t testing.TB, c redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		return iter.Err()
	}
	var err error
	switch cc := c.(type) {
	case *redis.ClusterClient:
		err = cc.ForEachMaster(ctx, del)
	case *redis.Client:
		err = del(ctx, cc)
	}
	if err != nil {
		t.Logf("cleanup %s: %v", prefix, err)
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
