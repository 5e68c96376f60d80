package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// asynqSystem is hibiken/asynq v0.26.0 set up the way its README's
// quickstart does: asynq.NewClient + client.Enqueue for producers, and
// asynq.NewServer(redisOpt, asynq.Config{Concurrency, Queues}) with a
// ServeMux for workers. Everything else stays at asynq's defaults.
type asynqSystem struct {
	opt    countingConnOpt
	queue  string
	client *asynq.Client
	srv    *asynq.Server
}

const asynqTaskType = "bench:noop"

// countingConnOpt is asynq.RedisClientOpt (the connection option asynq's
// documentation uses) with the harness's round-trip hook added to every
// client asynq makes from it. The clients are otherwise exactly the ones
// RedisClientOpt builds.
type countingConnOpt struct {
	asynq.RedisClientOpt
	counter *tripCounter
}

func (o countingConnOpt) MakeRedisClient() interface{} {
	c := o.RedisClientOpt.MakeRedisClient().(*redis.Client)
	c.AddHook(o.counter)
	return c
}

func newAsynq(ropt *redis.Options, counter *tripCounter) *asynqSystem {
	opt := countingConnOpt{
		RedisClientOpt: asynq.RedisClientOpt{
			Network:   ropt.Network,
			Addr:      ropt.Addr,
			Username:  ropt.Username,
			Password:  ropt.Password,
			DB:        ropt.DB,
			TLSConfig: ropt.TLSConfig,
		},
		counter: counter,
	}
	return &asynqSystem{
		opt:    opt,
		queue:  uniqueName("bench-asynq"),
		client: asynq.NewClient(opt),
	}
}

func (a *asynqSystem) Name() string { return "asynq" }

func (a *asynqSystem) Notes() []string {
	return []string{
		"asynq v0.26.0: NewClient(RedisClientOpt) + Enqueue(task, Queue(q)); NewServer(RedisClientOpt, Config{Concurrency: C, Queues: {q: 1}}) + ServeMux",
		"asynq defaults kept: TaskCheckInterval 1s (an idle worker sleeps 0.5-1.5s before polling again, no blocking pop),",
		"  DelayedTaskCheckInterval 5s, HealthCheckInterval 15s, ShutdownTimeout 8s, MaxRetry 25, Timeout 30m,",
		"  a random UUID task id per Enqueue; only LogLevel is raised to Warn to keep the output readable",
	}
}

func (a *asynqSystem) Enqueue(ctx context.Context, seq int) error {
	t := asynq.NewTask(asynqTaskType, []byte(strconv.Itoa(seq)))
	_, err := a.client.EnqueueContext(ctx, t, asynq.Queue(a.queue))
	return err
}

func (a *asynqSystem) StartWorkers(_ context.Context, concurrency int, handle func(seq int)) error {
	a.srv = asynq.NewServer(a.opt, asynq.Config{
		Concurrency: concurrency,
		Queues:      map[string]int{a.queue: 1},
		LogLevel:    asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(asynqTaskType, func(_ context.Context, t *asynq.Task) error {
		seq, err := strconv.Atoi(string(t.Payload()))
		if err != nil {
			return fmt.Errorf("bad payload %q: %w", t.Payload(), err)
		}
		handle(seq)
		return nil
	})
	return a.srv.Start(mux)
}

func (a *asynqSystem) StopWorkers(context.Context) error {
	if a.srv != nil {
		// Shutdown waits for in-flight tasks (up to ShutdownTimeout) and
		// clears this server's entries from asynq:servers / asynq:workers.
		a.srv.Shutdown()
		a.srv = nil
	}
	return nil
}

// Cleanup removes the benchmark queue and only its keys
// (asynq:{<queue>}:*), leaving every other asynq queue on the server alone.
func (a *asynqSystem) Cleanup(ctx context.Context) error {
	defer a.client.Close()
	insp := asynq.NewInspector(a.opt.RedisClientOpt)
	defer insp.Close()
	var errs []error
	if err := insp.DeleteQueue(a.queue, true); err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		errs = append(errs, fmt.Errorf("asynq delete queue: %w", err))
	}
	c := a.opt.RedisClientOpt.MakeRedisClient().(*redis.Client)
	defer c.Close()
	if err := deleteMatching(ctx, c, "asynq:{"+a.queue+"}:*"); err != nil {
		errs = append(errs, err)
	}
	if err := c.SRem(ctx, "asynq:queues", a.queue).Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteMatching deletes the keys matching a pattern that names only the
// benchmark's own keys.
func deleteMatching(ctx context.Context, c redis.UniversalClient, pattern string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return fmt.Errorf("delete %s: %w", pattern, err)
			}
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("scan %s: %w", pattern, err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("delete %s: %w", pattern, err)
	}
	return nil
}
