package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
	"github.com/shiftflow/shiftflow/adapters/redisstream"
	"github.com/shiftflow/shiftflow/core/job"
)

// shiftflowSystem is adapters/redisstream's job queue with its defaults:
// NewQueues(client, QueueOptions{Prefix}) to add, Queues.Worker(queue,
// handler, WorkerOptions{Concurrency}) with Run to process, as the local
// runner and container deployments do.
type shiftflowSystem struct {
	client *redis.Client
	q      *redisstream.Queues
	prefix string
	queue  string
	cancel context.CancelFunc
	done   chan error
}

func newShiftflow(ropt *redis.Options, counter *tripCounter) (*shiftflowSystem, error) {
	c := redis.NewClient(ropt)
	c.AddHook(counter)
	// A prefix of its own: every key of this run starts with it, and
	// Cleanup deletes exactly those.
	prefix := uniqueName("sfbench")
	return &shiftflowSystem{
		client: c,
		q:      redisstream.NewQueues(c, redisstream.QueueOptions{Prefix: prefix}),
		prefix: prefix,
		queue:  "bench",
	}, nil
}

func (s *shiftflowSystem) Name() string { return "shiftflow" }

func (s *shiftflowSystem) Notes() []string {
	return []string{
		"shiftflow: redisstream.NewQueues(go-redis client, QueueOptions{Prefix}) + Add(ctx, queue, name, data, job.Options{});",
		"  Queues.Worker(queue, handler, WorkerOptions{Concurrency: C}) + Run(ctx); everything else at its defaults:",
		"  a generated ULID job id, Attempts 3, KeepCompleted 100, Prefetch 4 x Concurrency, VisibilityTimeout 30s, BlockInterval 1s,",
		"  PollInterval 500ms (delayed/retry promotion), go-redis default pool",
	}
}

func (s *shiftflowSystem) Enqueue(ctx context.Context, seq int) error {
	_, err := s.q.Add(ctx, s.queue, "noop", json.RawMessage(strconv.Itoa(seq)), job.Options{})
	return err
}

func (s *shiftflowSystem) StartWorkers(ctx context.Context, concurrency int, handle func(seq int)) error {
	w, err := s.q.Worker(s.queue, func(_ context.Context, j *job.Job) error {
		seq, err := strconv.Atoi(string(j.Data))
		if err != nil {
			return job.Permanent(fmt.Errorf("bad data %q: %w", j.Data, err))
		}
		handle(seq)
		return nil
	}, redisstream.WorkerOptions{Concurrency: concurrency})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- w.Run(rctx) }()
	return nil
}

// StopWorkers cancels Run, which finishes in-flight jobs and records
// their results before it returns.
func (s *shiftflowSystem) StopWorkers(context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	err := <-s.done
	s.cancel, s.done = nil, nil
	if err != nil {
		return fmt.Errorf("worker run: %w", err)
	}
	return nil
}

func (s *shiftflowSystem) Cleanup(ctx context.Context) error {
	defer s.client.Close()
	return deleteMatching(ctx, s.client, s.prefix+":*")
}
