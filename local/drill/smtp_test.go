package drill

// A counting SMTP server inside the test: every message the runner's
// mailer hands over (the server answered 250 to its DATA) is counted by
// Message-ID and by recipient + subject, so a second send of one invoice
// is visible however the sender names it.
//
// TODO(issue 9): switch to adapters/email/smtptest once it is merged; this
// is the drill's own small copy until then.

import (
	"errors"
	"io"
	"log"
	"mime"
	"net"
	"net/mail"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// mailCounter counts accepted deliveries.
type mailCounter struct {
	mu       sync.Mutex
	total    int
	byID     map[string]int // Message-ID -> deliveries
	bySubj   map[string]int // recipient + "\x00" + subject -> deliveries
	bad      int            // messages without a Message-ID or unparsable
	lastSeen time.Time
}

// mailCounts is a snapshot.
type mailCounts struct {
	Total      int
	ByID       map[string]int
	BySubject  map[string]int
	Bad        int
	LastSeenAt time.Time
}

// duplicates is how many deliveries beyond the first one of each
// Message-ID there were, and how many Message-IDs were sent more than once.
func (c mailCounts) duplicates() (extra, ids int) {
	for _, n := range c.ByID {
		if n > 1 {
			extra += n - 1
			ids++
		}
	}
	return extra, ids
}

func (m *mailCounter) snapshot() mailCounts {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := mailCounts{Total: m.total, Bad: m.bad, LastSeenAt: m.lastSeen,
		ByID: make(map[string]int, len(m.byID)), BySubject: make(map[string]int, len(m.bySubj))}
	for k, v := range m.byID {
		out.ByID[k] = v
	}
	for k, v := range m.bySubj {
		out.BySubject[k] = v
	}
	return out
}

func (m *mailCounter) record(to string, raw io.Reader) error {
	msg, err := mail.ReadMessage(raw)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.total++
	m.lastSeen = time.Now()
	if err != nil {
		m.bad++
		return nil
	}
	_, _ = io.Copy(io.Discard, msg.Body)
	id := msg.Header.Get("Message-ID")
	subj, derr := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if id == "" || derr != nil {
		m.bad++
	}
	m.byID[id]++
	m.bySubj[to+"\x00"+subj]++
	return nil
}

// startMailCounter runs a plain (no TLS, no AUTH) SMTP server on loopback
// and returns it with its address.
func startMailCounter(t *testing.T) (*mailCounter, string) {
	t.Helper()
	m := &mailCounter{byID: map[string]int{}, bySubj: map[string]int{}}
	srv := gosmtp.NewServer(mailBackend{m})
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	srv.MaxMessageBytes = 1 << 20
	// Killed workers reset their connections; that is the drill, not news.
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return m, l.Addr().String()
}

type mailBackend struct{ m *mailCounter }

func (b mailBackend) NewSession(*gosmtp.Conn) (gosmtp.Session, error) {
	return &mailSession{m: b.m}, nil
}

type mailSession struct {
	m  *mailCounter
	to []string
}

func (s *mailSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *mailSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	if len(s.to) != 1 {
		return errors.New("drill: expected exactly one recipient")
	}
	return s.m.record(s.to[0], r)
}
func (s *mailSession) Reset()        { s.to = nil }
func (s *mailSession) Logout() error { return nil }
