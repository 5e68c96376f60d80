// Package smtptest runs an SMTP server inside a test (github.com/emersion/go-smtp
// on loopback) that records and counts what it accepts, and can be told to
// refuse or to hang at the end of data. Tests only.
package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// Delivery is one message the server accepted (answered 250 to its end of
// data).
type Delivery struct {
	From      string
	To        []string
	MessageID string // the Message-ID header as sent, with angle brackets
	Body      []byte // the whole message as received: headers and body, CRLF line ends
	User      string // the authenticated user, if any
	TLS       bool   // the session ran over TLS (STARTTLS or implicit)
}

// Hook runs when a message's end of data arrives, before the server
// answers: an error refuses the message (a *gosmtp.SMTPError chooses the
// reply code, anything else is 554); blocking delays the reply.
type Hook func(Delivery) error

// Server is a running test server.
type Server struct {
	srv      *gosmtp.Server
	addr     string
	scheme   string
	user     string
	pass     string
	mu       sync.Mutex
	accepted []Delivery
	refused  int
	dropped  int
	inData   int
	hook     Hook
	rejects  int
	hangs    []chan struct{}
	stall    time.Duration
}

// Option configures Start.
type Option func(*config)

type config struct {
	user, pass  string
	tls         *tls.Config
	implicitTLS bool
	readTimeout time.Duration
}

// WithAuth requires AUTH PLAIN as user/pass before MAIL (allowed without
// TLS: loopback).
func WithAuth(user, pass string) Option { return func(c *config) { c.user, c.pass = user, pass } }

// WithSTARTTLS offers STARTTLS with this certificate.
func WithSTARTTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// WithImplicitTLS speaks TLS from the first byte (smtps).
func WithImplicitTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls, c.implicitTLS = cfg, true }
}

// WithReadTimeout bounds each command line and each DATA (from the DATA
// command to its end); default 30 s. A client silent for longer gets 421.
func WithReadTimeout(d time.Duration) Option { return func(c *config) { c.readTimeout = d } }

// Start runs a server on a free loopback port until the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := config{readTimeout: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{scheme: "smtp", user: cfg.user, pass: cfg.pass}
	srv := gosmtp.NewServer(backend{s})
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = cfg.readTimeout, 30*time.Second
	var l net.Listener
	var err error
	if cfg.implicitTLS {
		s.scheme = "smtps"
		l, err = tls.Listen("tcp", "127.0.0.1:0", cfg.tls)
	} else {
		srv.TLSConfig = cfg.tls
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s.srv, s.addr = srv, l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		s.release()
		_ = srv.Close()
	})
	return s
}

// Addr is host:port.
func (s *Server) Addr() string { return s.addr }

// URL is the SMTP_URL of the server: smtp:// (smtps:// with implicit TLS),
// with the credentials of WithAuth.
func (s *Server) URL() string {
	u := url.URL{Scheme: s.scheme, Host: s.addr}
	if s.user != "" {
		u.User = url.UserPassword(s.user, s.pass)
	}
	return u.String()
}

// Deliveries returns the accepted messages, in order.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.accepted...)
}

// Count returns how many accepted messages carry this Message-ID (with or
// without angle brackets).
func (s *Server) Count(messageID string) int {
	want := strings.Trim(messageID, "<>")
	n := 0
	for _, d := range s.Deliveries() {
		if strings.Trim(d.MessageID, "<>") == want {
			n++
		}
	}
	return n
}

// Refused counts messages whose end of data arrived and were refused.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Dropped counts DATA transactions that ended without an end of data (the
// client closed the connection or went silent): discarded, as SMTP says.
func (s *Server) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// InData counts sessions inside DATA right now (body being received).
func (s *Server) InData() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inData
}

// SetHook installs h (nil removes it); see Hook.
func (s *Server) SetHook(h Hook) {
	s.mu.Lock()
	s.hook = h
	s.mu.Unlock()
}

// StallData makes every DATA wait d before reading the message, so what
// a client writes meanwhile stays in the sockets' buffers (0: no stall).
func (s *Server) StallData(d time.Duration) {
	s.mu.Lock()
	s.stall = d
	s.mu.Unlock()
}

// RejectNext refuses the next n messages with 554 after their end of data.
func (s *Server) RejectNext(n int) {
	s.mu.Lock()
	s.rejects += n
	s.mu.Unlock()
}

// Hang holds the reply to every end of data that arrives until release is
// called (or the test ends); the messages are accepted then.
func (s *Server) Hang() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hangs = append(s.hangs, ch)
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(ch)
			s.mu.Lock()
			for i, h := range s.hangs {
				if h == ch {
					s.hangs = append(s.hangs[:i], s.hangs[i+1:]...)
					break
				}
			}
			s.mu.Unlock()
		})
	}
}

func (s *Server) release() {
	s.mu.Lock()
	hangs := s.hangs
	s.hangs = nil
	s.mu.Unlock()
	for _, ch := range hangs {
		close(ch)
	}
}

var errRejected = &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 0, 0}, Message: "smtptest: message refused"}

// decide runs at an end of data: hangs, then rejects, then the hook.
func (s *Server) decide(d Delivery) error {
	s.mu.Lock()
	hangs := append([]chan struct{}(nil), s.hangs...)
	s.mu.Unlock()
	for _, ch := range hangs {
		<-ch
	}
	s.mu.Lock()
	reject, hook := s.rejects > 0, s.hook
	if reject {
		s.rejects--
	}
	s.mu.Unlock()
	if reject {
		return errRejected
	}
	if hook != nil {
		return hook(d)
	}
	return nil
}

type backend struct{ s *Server }

func (b backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	return &session{s: b.s, conn: c}, nil
}

type session struct {
	s        *Server
	conn     *gosmtp.Conn
	authUser string
	from     string
	to       []string
}

func (se *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (se *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if se.s.user == "" || user != se.s.user || pass != se.s.pass {
			return errors.New("smtptest: bad credentials")
		}
		se.authUser = user
		return nil
	}), nil
}

func (se *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if se.s.user != "" && se.authUser == "" {
		return gosmtp.ErrAuthRequired
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	s := se.s
	s.mu.Lock()
	s.inData++
	stall := s.stall
	s.mu.Unlock()
	time.Sleep(stall)
	body, err := io.ReadAll(r)
	s.mu.Lock()
	s.inData--
	if err != nil {
		s.dropped++
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	_, isTLS := se.conn.TLSConnectionState()
	d := Delivery{From: se.from, To: append([]string(nil), se.to...), Body: body, User: se.authUser, TLS: isTLS}
	if m, perr := mail.ReadMessage(bytes.NewReader(body)); perr == nil {
		d.MessageID = m.Header.Get("Message-Id")
	}
	if err := s.decide(d); err != nil {
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.accepted = append(s.accepted, d)
	s.mu.Unlock()
	return nil
}

func (se *session) Reset()        { se.from, se.to = "", nil }
func (se *session) Logout() error { return nil }
