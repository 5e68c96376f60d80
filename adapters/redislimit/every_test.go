package redislimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/redislimit"
	"github.com/shiftflow/shiftflow/adapters/testenv"
)

func TestEveryLetsOneCallerThroughPerInterval(t *testing.T) {
	rdb, mini := testenv.MiniRedis(t)
	key := testenv.Unique("every")
	a, b := redislimit.NewEvery(rdb, key, time.Minute), redislimit.NewEvery(rdb, key, time.Minute)
	ctx := context.Background()
	if ok, err := a.Allow(ctx); !ok || err != nil {
		t.Fatalf("first: %v %v", ok, err)
	}
	if ok, _ := b.Allow(ctx); ok {
		t.Fatal("a second caller within the interval was let through")
	}
	mini.Server.FastForward(time.Minute)
	if ok, _ := b.Allow(ctx); !ok {
		t.Fatal("the next interval must let a caller through")
	}
}
