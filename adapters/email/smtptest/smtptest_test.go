package smtptest_test

import (
	"net"
	"net/smtp"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/email/smtptest"
)

const msg = "From: a@x.test\r\nTo: b@y.test\r\nMessage-ID: <m1@x.test>\r\nSubject: hi\r\n\r\nbody\r\n"

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestServerCountsRefusesAndDrops(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithAuth("u", "p"))
	auth := smtp.PlainAuth("", "u", "p", "127.0.0.1")
	if err := smtp.SendMail(s.Addr(), auth, "a@x.test", []string{"b@y.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if s.Count("<m1@x.test>") != 1 || s.Count("m1@x.test") != 1 || s.Count("m2@x.test") != 0 {
		t.Fatalf("count %d", s.Count("m1@x.test"))
	}
	d := s.Deliveries()[0]
	if d.From != "a@x.test" || len(d.To) != 1 || d.To[0] != "b@y.test" || d.User != "u" || string(d.Body) != msg {
		t.Fatalf("delivery %+v", d)
	}
	if s.URL() != "smtp://u:p@"+s.Addr() {
		t.Fatalf("URL %s", s.URL())
	}

	s.RejectNext(1)
	if err := smtp.SendMail(s.Addr(), auth, "a@x.test", []string{"b@y.test"}, []byte(msg)); err == nil {
		t.Fatal("refusal not reported")
	}
	if s.Count("m1@x.test") != 1 || s.Refused() != 1 {
		t.Fatalf("after refusal: count %d refused %d", s.Count("m1@x.test"), s.Refused())
	}

	// A client that closes inside DATA delivers nothing.
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(auth); err != nil {
		t.Fatal(err)
	}
	_ = c.Mail("a@x.test")
	_ = c.Rcpt("b@y.test")
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte(msg))
	c.Text.W.Flush()
	eventually(t, "the body in DATA", func() bool { return s.InData() == 1 })
	conn.Close()
	eventually(t, "the dropped transaction", func() bool { return s.Dropped() == 1 })
	if s.Count("m1@x.test") != 1 {
		t.Fatal("an unterminated message was delivered")
	}

	// Hang holds the reply; release delivers.
	release := s.Hang()
	done := make(chan error, 1)
	go func() { done <- smtp.SendMail(s.Addr(), auth, "a@x.test", []string{"b@y.test"}, []byte(msg)) }()
	select {
	case err := <-done:
		t.Fatalf("send finished while hanging: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.Count("m1@x.test") != 2 {
		t.Fatalf("count %d after release", s.Count("m1@x.test"))
	}
}
