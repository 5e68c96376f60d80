package email_test

// Crash points of a delivery, with a real process: the test binary re-runs
// itself as a mailer child that stops at a chosen point, and the parent
// SIGKILLs, or the child SIGSTOPs itself while the parent re-runs the job
// (docs/design.md, "Emails: the sent-record and its window").

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/email"
	"github.com/shiftflow/shiftflow/adapters/mongodb"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/invoice"
	"github.com/shiftflow/shiftflow/core/job"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

const childEnv = "SHIFTFLOW_TEST_MAILER_CHILD"

// Crash points the child can stop at, all around the record's insert.
const (
	pointBeforeInsert = "before-insert"  // prepared (body written), block
	pointAfterInsert  = "after-insert"   // record taken, block before the terminator
	pointWaitInWindow = "wait-in-window" // record taken, wait for a byte on stdin, then go on to commit
)

// TestMailerChild is the child process; it does nothing in a normal run.
func TestMailerChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("child process of the crash tests")
	}
	var j job.Job
	if err := json.Unmarshal([]byte(os.Getenv(childEnv+"_JOB")), &j); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := mongo.Connect(options.Client().ApplyURI(os.Getenv(childEnv + "_MONGO")))
	if err != nil {
		t.Fatal(err)
	}
	db := c.Database(os.Getenv(childEnv + "_DB"))
	s, err := email.NewSMTP(os.Getenv(childEnv+"_SMTP"), nil)
	if err != nil {
		t.Fatal(err)
	}
	records := crashPoint{SentRecords: mongodb.NewEmailRepo(db), point: os.Getenv(childEnv)}
	err = invoice.NewMailer(mongodb.NewInvoiceRepo(db), records, s, testFrom).Send(ctx, &j)
	fmt.Printf("DONE %v\n", err)
}

type crashPoint struct {
	invoice.SentRecords
	point string
}

func (c crashPoint) Insert(ctx context.Context, rec invoice.SentRecord) (bool, error) {
	if c.point == pointBeforeInsert {
		fmt.Println("POINT")
		select {}
	}
	won, err := c.SentRecords.Insert(ctx, rec)
	fmt.Println("POINT")
	switch c.point {
	case pointAfterInsert:
		select {}
	case pointWaitInWindow:
		// Go on when the parent says so (it SIGSTOPs us first). Not a
		// SIGSTOP to ourselves: the kernel may wake another thread to stop
		// the process, and this one would run on for a moment.
		_, _ = os.Stdin.Read(make([]byte, 1))
	}
	return won, err
}

type child struct {
	cmd   *exec.Cmd
	lines chan string
	stdin io.WriteCloser
}

// startChild runs the mailer child on j, stopping at point.
func (e *mailEnv) startChild(j *job.Job, point string, db string) *child {
	e.t.Helper()
	raw, _ := json.Marshal(j)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMailerChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+point, childEnv+"_JOB="+string(raw),
		childEnv+"_MONGO="+testenv.MongoURI(e.t), childEnv+"_DB="+db, childEnv+"_SMTP="+e.srv.URL())
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 16), stdin: in}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return c
}

// await returns the first line of the child's that starts with prefix.
func (c *child) await(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child ended before %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %q from the child", prefix)
		}
	}
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

// stopped reports whether every thread of the child is stopped (state T):
// a group stop reaches the threads one by one.
func (c *child) stopped() bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", c.cmd.Process.Pid))
	for _, task := range tasks {
		raw, err := os.ReadFile(task)
		if err != nil {
			return false
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		if len(f) == 0 || f[0] != "T" {
			return false
		}
	}
	return len(tasks) > 0
}

// rxQueue returns the bytes received and not yet read on the established
// loopback connection whose local port is port (from /proc/net/tcp).
func rxQueue(t *testing.T, port string) int64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	local := fmt.Sprintf("0100007F:%04X", p)
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 4 && f[1] == local && f[3] == "01" { // 01: ESTABLISHED
			queues := strings.SplitN(f[4], ":", 2)
			n, _ := strconv.ParseInt(queues[1], 16, 64)
			return n
		}
	}
	t.Fatalf("no established connection on port %s", port)
	return 0
}

func crashEnv(t *testing.T) (*mailEnv, string) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	e := newMailEnv(t)
	return e, e.dbName
}

func TestKillBeforeTheRecordDeliversNothingAndTheRerunDeliversOnce(t *testing.T) {
	e, db := crashEnv(t)
	j, msgID := e.invoiceJob()
	c := e.startChild(j, pointBeforeInsert, db)
	c.await(t, "POINT")
	c.kill(t)
	eventually(t, "the killed transaction dropped", func() bool { return e.srv.Dropped() == 1 })
	if _, ok := e.record(j); ok || e.srv.Count(msgID) != 0 {
		t.Fatalf("after the kill: record %v, %d deliveries", ok, e.srv.Count(msgID))
	}
	if err := e.mailer(nil).Send(e.ctx, j); err != nil { // the re-run
		t.Fatal(err)
	}
	if n := e.srv.Count(msgID); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
}

// The documented window: a kill between the record and the terminator
// loses the email and leaves the record in "committing" for an operator.
func TestKillInsideTheWindowLeavesACommittingRecordAndNoDelivery(t *testing.T) {
	e, db := crashEnv(t)
	j, msgID := e.invoiceJob()
	c := e.startChild(j, pointAfterInsert, db)
	c.await(t, "POINT")
	c.kill(t)
	eventually(t, "the killed transaction dropped", func() bool { return e.srv.Dropped() == 1 })
	if err := e.mailer(nil).Send(e.ctx, j); err != nil { // the re-run skips
		t.Fatal(err)
	}
	rec, ok := e.record(j)
	if !ok || rec.State != invoice.SentCommitting || e.srv.Count(msgID) != 0 {
		t.Fatalf("record %+v %v, %d deliveries", rec, ok, e.srv.Count(msgID))
	}
}

func TestKillAfterTheTerminatorWriteStillDelivers(t *testing.T) {
	e, db := crashEnv(t)
	j, msgID := e.invoiceJob()
	// The server reads nothing of the message for 6 s: the body and the
	// terminator wait in the sockets' buffers while the child dies.
	e.srv.StallData(6 * time.Second)
	c := e.startChild(j, pointWaitInWindow, db)
	c.await(t, "POINT")
	// The body sits unread in the server's receive queue; the terminator
	// adds to it once the child has written it. Kill right then.
	port := e.srv.Addr()[strings.LastIndexByte(e.srv.Addr(), ':')+1:]
	body := rxQueue(t, port)
	if _, err := c.stdin.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the terminator in the server's receive queue", func() bool { return rxQueue(t, port) > body })
	c.kill(t)
	eventually(t, "the delivery", func() bool { return e.srv.Count(msgID) == 1 })
	e.srv.StallData(0)
	if err := e.mailer(nil).Send(e.ctx, j); err != nil {
		t.Fatal(err)
	}
	rec, ok := e.record(j)
	if !ok || rec.State != invoice.SentCommitting || e.srv.Count(msgID) != 1 || e.srv.Dropped() != 0 {
		t.Fatalf("record %+v %v, %d deliveries, %d dropped", rec, ok, e.srv.Count(msgID), e.srv.Dropped())
	}
}

func TestFrozenInsideTheWindowWhileTheJobReruns(t *testing.T) {
	e, db := crashEnv(t)
	j, msgID := e.invoiceJob()
	c := e.startChild(j, pointWaitInWindow, db)
	c.await(t, "POINT")
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the child stopped", c.stopped)
	if _, err := c.stdin.Write([]byte{1}); err != nil { // read only once it runs again
		t.Fatal(err)
	}
	if err := e.mailer(nil).Send(e.ctx, j); err != nil { // another worker's re-run
		t.Fatal(err)
	}
	if n := e.srv.Count(msgID); n != 0 {
		t.Fatalf("the re-run delivered %d", n)
	}
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if done := c.await(t, "DONE"); done != "DONE <nil>" {
		t.Fatalf("child: %s", done)
	}
	if rec, ok := e.record(j); !ok || rec.State != invoice.SentDelivered || e.srv.Count(msgID) != 1 {
		t.Fatalf("record %+v %v, %d deliveries", rec, ok, e.srv.Count(msgID))
	}
}
