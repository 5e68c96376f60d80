package redisstream

import (
	"context"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/core/job"
)

func TestSmoke(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		ctx := ctxT(t, 10*time.Second)
		q := NewQueues(tg.client, QueueOptions{Prefix: tg.prefix})
		for i := 0; i < 25; i++ {
			if _, err := q.Add(ctx, "smoke", "n", map[string]int{"i": i}, job.Options{}); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		w, _ := q.Worker("smoke", func(ctx context.Context, j *job.Job) error { got++; return nil }, WorkerOptions{Concurrency: 1, HandlerTimeout: 2 * time.Second})
		sum, err := w.Drain(ctx)
		t.Logf("%+v %v got=%d", sum, err, got)
		c, err := q.Counts(ctx, "smoke")
		t.Logf("%+v %v", c, err)
	})
}
