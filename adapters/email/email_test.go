package email_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/shiftflow/shiftflow/adapters/email"
	"github.com/shiftflow/shiftflow/core/invoice"
)

// received is one message the loopback server accepted.
type received struct {
	from, to, user string
	tls            bool
	data           []byte
}

type backend struct {
	mu   sync.Mutex
	msgs []received
	user string
	pass string
}

func (b *backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	return &session{b: b, conn: c}, nil
}

type session struct {
	b        *backend
	conn     *gosmtp.Conn
	cur      received
	authUser string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != s.b.user || pass != s.b.pass {
			return errors.New("bad credentials")
		}
		s.authUser = user
		return nil
	}), nil
}
func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if s.b.user != "" && s.authUser == "" {
		return gosmtp.ErrAuthRequired
	}
	s.cur.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error { s.cur.to = to; return nil }
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.cur.data, s.cur.user, s.cur.tls = b, s.authUser, isTLS
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, s.cur)
	s.b.mu.Unlock()
	return nil
}
func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }

// startServer runs a go-smtp server on loopback; with tlsConf it offers
// STARTTLS.
func startServer(t *testing.T, user, pass string, tlsConf *tls.Config) (*backend, string) {
	t.Helper()
	be := &backend{user: user, pass: pass}
	srv := gosmtp.NewServer(be)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.TLSConfig = tlsConf
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return be, l.Addr().String()
}

func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

func sample() invoice.Message {
	return invoice.Message{ID: "invoice-01J0TEST", From: "invoices@shiftflow.test", To: "ap@client.test",
		Subject: "Invoice INV-000001: EUR 270.00 – März", Text: "Invoice INV-000001\nTotal: EUR 270.00\n"}
}

func parse(t *testing.T, raw []byte) (*mail.Message, string) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("not an RFC 5322 message: %v\n%s", err, raw)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	return m, string(body)
}

func TestSMTPDeliversWithAuthOverSTARTTLS(t *testing.T) {
	tlsConf, pool := selfSigned(t)
	be, addr := startServer(t, "mailer", "s3cret", tlsConf)
	s, err := email.NewSMTP("smtp://mailer:s3cret@"+addr+"?starttls=required", pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Send(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	if len(be.msgs) != 1 {
		t.Fatalf("%d messages", len(be.msgs))
	}
	got := be.msgs[0]
	if got.from != "invoices@shiftflow.test" || got.to != "ap@client.test" || got.user != "mailer" || !got.tls {
		t.Fatalf("envelope %+v", got)
	}
	m, body := parse(t, got.data)
	dec := new(mime.WordDecoder)
	if subj, _ := dec.DecodeHeader(m.Header.Get("Subject")); subj != sample().Subject {
		t.Fatalf("subject %q", subj)
	}
	if m.Header.Get("Message-Id") != "<invoice-01J0TEST@shiftflow>" {
		t.Fatalf("message id %q", m.Header.Get("Message-Id"))
	}
	if body != strings.ReplaceAll(sample().Text, "\n", "\r\n") {
		t.Fatalf("body %q", body)
	}
}

func TestSMTPSDeliversOverImplicitTLS(t *testing.T) {
	tlsConf, pool := selfSigned(t)
	be := &backend{user: "mailer", pass: "s3cret"}
	srv := gosmtp.NewServer(be)
	srv.Domain = "localhost"
	l, err := tls.Listen("tcp", "127.0.0.1:0", tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	s, err := email.NewSMTP("smtps://mailer:s3cret@"+l.Addr().String(), pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Send(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	if len(be.msgs) != 1 || !be.msgs[0].tls || be.msgs[0].user != "mailer" {
		t.Fatalf("received %+v", be.msgs)
	}
	// A client that does not trust the certificate refuses to talk.
	untrusted, _ := email.NewSMTP("smtps://mailer:s3cret@"+l.Addr().String(), x509.NewCertPool())
	if err := untrusted.Send(ctx, sample()); err == nil {
		t.Fatal("sent to a server with an untrusted certificate")
	}
}

func TestSMTPFailuresAreReported(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, plainAddr := startServer(t, "mailer", "s3cret", nil)
	cases := map[string]string{
		"wrong password":                 "smtp://mailer:nope@" + plainAddr,
		"STARTTLS required, not offered": "smtp://mailer:s3cret@" + plainAddr + "?starttls=required",
		"nobody listening":               "smtp://127.0.0.1:1",
	}
	for name, u := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := email.NewSMTP(u, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(ctx, sample()); err == nil {
				t.Fatal("send succeeded")
			}
		})
	}
	for _, bad := range []string{"http://x", "smtp://", "::"} {
		if _, err := email.NewSMTP(bad, nil); err == nil {
			t.Errorf("NewSMTP(%q) accepted", bad)
		}
	}
}

func TestOutboxWritesOneFilePerMessage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o := email.NewOutbox(dir)
	for i := 0; i < 3; i++ { // a retried job rewrites the same file
		if err := o.Send(context.Background(), sample()); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || filepath.Base(files[0]) != "invoice-01J0TEST.eml" {
		t.Fatalf("files %v", files)
	}
	raw, _ := os.ReadFile(files[0])
	m, body := parse(t, raw)
	if m.Header.Get("To") != "ap@client.test" || !strings.Contains(body, "EUR 270.00") {
		t.Fatalf("file content wrong: %s", raw)
	}
}

func TestComposeRejectsHeaderInjection(t *testing.T) {
	for name, mutate := range map[string]func(*invoice.Message){
		"to with CRLF":      func(m *invoice.Message) { m.To = "a@b.test\r\nBcc: x@y.test" },
		"subject with LF":   func(m *invoice.Message) { m.Subject = "hi\nBcc: x@y.test" },
		"display-name from": func(m *invoice.Message) { m.From = "Evil <a@b.test>" },
	} {
		m := sample()
		mutate(&m)
		if _, err := email.Compose(m, time.Now()); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestFromEnvChoosesTheSender(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	s, from, err := email.FromEnv(get)
	if _, ok := s.(*email.Outbox); !ok || err != nil || from != email.DefaultFrom {
		t.Fatalf("default: %T %q %v", s, from, err)
	}
	env[email.VarSMTPURL] = "smtps://u:p@mail.example.test"
	env[email.VarFrom] = "billing@example.test"
	if s, from, err := email.FromEnv(get); err != nil || from != "billing@example.test" {
		t.Fatalf("smtp: %T %q %v", s, from, err)
	} else if _, ok := s.(*email.SMTP); !ok {
		t.Fatalf("SMTP_URL set but sender is %T", s)
	}
	env[email.VarSMTPURL] = "ftp://x"
	if _, _, err := email.FromEnv(get); err == nil || !strings.Contains(err.Error(), email.VarSMTPURL) {
		t.Fatalf("bad SMTP_URL: %v", err)
	}
}
