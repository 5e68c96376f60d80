package redisstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core"
	"github.com/shiftflow/shiftflow/core/job"
)

func applyRetention(t *testing.T, q *Queues, queue string) RetentionResult {
	t.Helper()
	res, err := q.ApplyRetention(context.Background(), queue)
	if err != nil {
		t.Fatalf("ApplyRetention: %v", err)
	}
	return res
}

// Issue 9, item 1(d): de-duplication is a time window, not "while the job
// is among the last KeepCompleted completed ones". Before, a re-run
// invoice job re-added an email job that had already run once more than
// KeepCompleted other jobs had completed since.
func TestDedupWindowOutlivesTheCompletedJob(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		q := NewQueues(tg.client, QueueOptions{Prefix: tg.prefix, KeepCompleted: 2, Logger: quiet})
		queue := testenv.Unique("q")
		var runs atomic.Int32
		w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error { runs.Add(1); return nil }, fastOpts())

		mustAdd(t, q, queue, "email", nil, job.Options{JobID: "invoice-1"})
		mustAdd(t, q, queue, "email", nil, job.Options{JobID: "short", DedupWindow: 300 * time.Millisecond})
		mustAdd(t, q, queue, "email", nil, job.Options{JobID: "no-window", DedupWindow: -1})
		drain(t, w, 10*time.Second)
		for i := range 3 { // more than KeepCompleted complete after them
			mustAdd(t, q, queue, "email", nil, job.Options{JobID: fmt.Sprint("other-", i)})
			drain(t, w, 10*time.Second)
		}
		applyRetention(t, q, queue)
		for _, id := range []string{"invoice-1", "short", "no-window"} {
			if _, err := q.GetJob(ctx, queue, id); core.ErrorCode(err) != core.ENotFound {
				t.Fatalf("job %s should have been trimmed from the completed list: %v", id, err)
			}
		}
		before := runs.Load()

		if id := mustAdd(t, q, queue, "email", nil, job.Options{JobID: "invoice-1"}); id != "invoice-1" {
			t.Fatalf("Add returned %q", id)
		}
		if c := counts(t, q, queue); c.Waiting+c.Delayed != 0 {
			t.Fatalf("re-adding an id within the window added a job: %+v", c)
		}
		// Without a window the id is free once the job is gone.
		mustAdd(t, q, queue, "email", nil, job.Options{JobID: "no-window"})
		// Past its window an id is free again.
		time.Sleep(400 * time.Millisecond)
		mustAdd(t, q, queue, "email", nil, job.Options{JobID: "short"})
		drain(t, w, 10*time.Second)
		if got := runs.Load() - before; got != 2 {
			t.Fatalf("%d runs after re-adding, want 2 (no-window and short, not invoice-1)", got)
		}

		// Remove frees an id whose job is already gone (its contract: the
		// id can be added again), and says so only once.
		if err := q.Remove(ctx, queue, "invoice-1"); err != nil {
			t.Fatalf("Remove of a trimmed id within its window: %v", err)
		}
		if err := q.Remove(ctx, queue, "invoice-1"); core.ErrorCode(err) != core.ENotFound {
			t.Fatalf("second Remove: %v", err)
		}
		mustAdd(t, q, queue, "email", nil, job.Options{JobID: "invoice-1"})
		if c := counts(t, q, queue); c.Waiting != 1 {
			t.Fatalf("removed id not added again: %+v", c)
		}
	})
}

// Issue 9, item 12: failed jobs were kept without bound. Retention keeps
// the newest KeepFailed and none older than FailedMaxAge; completed jobs
// get an age too. A worker's drain applies it on its own.
func TestRetentionBoundsFailedAndCompletedJobs(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		q := NewQueues(tg.client, QueueOptions{Prefix: tg.prefix, KeepCompleted: 2, KeepFailed: 3,
			RetentionInterval: time.Millisecond, Logger: quiet})
		queue := testenv.Unique("q")
		w, _ := q.Worker(queue, func(ctx context.Context, j *job.Job) error {
			if j.Name == "bad" {
				return errors.New("boom")
			}
			return nil
		}, fastOpts())
		// One at a time, so that the order of failing is known.
		for i := range 5 {
			mustAdd(t, q, queue, "bad", nil, job.Options{JobID: fmt.Sprint("f", i), Attempts: 1})
			drain(t, w, 10*time.Second)
			time.Sleep(2 * time.Millisecond) // distinct fail times
		}
		for i := range 4 {
			mustAdd(t, q, queue, "good", nil, job.Options{JobID: fmt.Sprint("c", i)})
		}
		// The drain's first maintenance step applies retention; the jobs it
		// completes are trimmed by the next one (or ApplyRetention).
		drain(t, w, 10*time.Second)
		drain(t, w, 10*time.Second)
		if c := counts(t, q, queue); c.Failed != 3 {
			t.Fatalf("counts %+v: a drain should keep only KeepFailed=3 failed jobs", c)
		}
		applyRetention(t, q, queue)
		if c := counts(t, q, queue); c.Failed != 3 || c.Completed != 2 {
			t.Fatalf("counts %+v, want 3 failed and 2 completed kept", c)
		}
		failed, err := q.ListFailed(ctx, queue, 0, 10)
		if err != nil || len(failed) != 3 || failed[0].ID != "f4" || failed[2].ID != "f2" {
			t.Fatalf("kept failed %+v %v, want f4 f3 f2", failed, err)
		}
		for _, id := range []string{"f0", "f1"} {
			if _, err := q.GetJob(ctx, queue, id); core.ErrorCode(err) != core.ENotFound {
				t.Fatalf("failed job %s beyond KeepFailed still there: %v", id, err)
			}
		}

		// Age: jobs younger than the limit stay, older ones go. (Limits
		// far from the jobs' age, so a slow machine cannot blur them.)
		young := NewQueues(tg.client, QueueOptions{Prefix: tg.prefix, FailedMaxAge: time.Hour,
			CompletedMaxAge: time.Hour, Logger: quiet})
		if res := applyRetention(t, young, queue); res != (RetentionResult{}) {
			t.Fatalf("young jobs removed by age: %+v", res)
		}
		aged := NewQueues(tg.client, QueueOptions{Prefix: tg.prefix, FailedMaxAge: time.Millisecond,
			CompletedMaxAge: time.Millisecond, Logger: quiet})
		time.Sleep(20 * time.Millisecond)
		if res := applyRetention(t, aged, queue); res != (RetentionResult{Completed: 2, Failed: 3}) {
			t.Fatalf("age retention removed %+v, want 2 completed and 3 failed", res)
		}
		if c := counts(t, q, queue); c != (job.Counts{}) {
			t.Fatalf("counts after age retention %+v", c)
		}
		if _, err := q.GetJob(ctx, queue, "f4"); core.ErrorCode(err) != core.ENotFound {
			t.Fatalf("aged failed job still there: %v", err)
		}
		// Negative limits keep everything.
		none := NewQueues(tg.client, QueueOptions{Prefix: tg.prefix, KeepFailed: -1, FailedMaxAge: -1, Logger: quiet})
		for i := range 3 {
			mustAdd(t, none, queue, "bad", nil, job.Options{JobID: fmt.Sprint("n", i), Attempts: 1})
		}
		drain(t, w, 10*time.Second)
		if res := applyRetention(t, none, queue); res.Failed != 0 || counts(t, q, queue).Failed != 3 {
			t.Fatalf("no limits, yet removed %+v", res)
		}
	})
}

// Issue 9, item 11 and docs/design.md#5: every key a script touches is
// passed in KEYS; none is built inside a script from a prefix in ARGV
// (`ARGV[n] .. id`), which Redis Cluster cannot route or check.
func TestScriptsBuildNoKeys(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	script := regexp.MustCompile("(?s)var (\\w+) = redis\\.NewScript\\(([^`]*)`([^`]*)`")
	built := regexp.MustCompile(`ARGV\[\d+\]\s*\.\.`)
	found := 0
	for _, f := range files {
		if regexp.MustCompile(`_test\.go$`).MatchString(f) {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range script.FindAllSubmatch(src, -1) {
			found++
			if name := string(m[1]); built.Match(m[3]) {
				t.Errorf("%s (%s) builds a key from ARGV inside the script; pass it in KEYS", name, f)
			}
		}
	}
	if found < 10 {
		t.Fatalf("found only %d scripts: the pattern no longer matches the code", found)
	}
}
