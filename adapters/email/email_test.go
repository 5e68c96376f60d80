package email_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/email"
	"github.com/shiftflow/shiftflow/adapters/email/smtptest"
	"github.com/shiftflow/shiftflow/core/invoice"
)

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
	srv := smtptest.Start(t, smtptest.WithAuth("mailer", "s3cret"), smtptest.WithSTARTTLS(tlsConf))
	s, err := email.NewSMTP(srv.URL()+"?starttls=required", pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Send(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Deliveries()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	got := msgs[0]
	if got.From != "invoices@shiftflow.test" || len(got.To) != 1 || got.To[0] != "ap@client.test" || got.User != "mailer" || !got.TLS {
		t.Fatalf("envelope %+v", got)
	}
	m, body := parse(t, got.Body)
	dec := new(mime.WordDecoder)
	if subj, _ := dec.DecodeHeader(m.Header.Get("Subject")); subj != sample().Subject {
		t.Fatalf("subject %q", subj)
	}
	// The key at the sender's domain: the same on every send.
	if m.Header.Get("Message-Id") != "<invoice-01J0TEST@shiftflow.test>" || srv.Count("<invoice-01J0TEST@shiftflow.test>") != 1 {
		t.Fatalf("message id %q", m.Header.Get("Message-Id"))
	}
	if body != strings.ReplaceAll(sample().Text, "\n", "\r\n") {
		t.Fatalf("body %q", body)
	}
}

func TestSMTPSDeliversOverImplicitTLS(t *testing.T) {
	tlsConf, pool := selfSigned(t)
	srv := smtptest.Start(t, smtptest.WithAuth("mailer", "s3cret"), smtptest.WithImplicitTLS(tlsConf))
	s, err := email.NewSMTP(srv.URL(), pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Send(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.Deliveries(); len(msgs) != 1 || !msgs[0].TLS || msgs[0].User != "mailer" {
		t.Fatalf("received %+v", msgs)
	}
	// A client that does not trust the certificate refuses to talk.
	untrusted, _ := email.NewSMTP(srv.URL(), x509.NewCertPool())
	if err := untrusted.Send(ctx, sample()); err == nil {
		t.Fatal("sent to a server with an untrusted certificate")
	}
}

func TestSMTPFailuresAreReported(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	plainAddr := smtptest.Start(t, smtptest.WithAuth("mailer", "s3cret")).Addr()
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

func TestOutboxNeverOverwritesASecondSend(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o := email.NewOutbox(dir)
	for i := 0; i < 3; i++ { // each send of the same message is its own file
		if err := o.Send(context.Background(), sample()); err != nil {
			t.Fatal(err)
		}
	}
	// An aborted one leaves nothing.
	p, err := o.Prepare(context.Background(), sample())
	if err != nil {
		t.Fatal(err)
	}
	p.Abort()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	all, _ := os.ReadDir(dir)
	want := []string{"invoice-01J0TEST.2.eml", "invoice-01J0TEST.3.eml", "invoice-01J0TEST.eml"}
	if len(files) != 3 || len(all) != 3 {
		t.Fatalf("files %v (%d entries)", files, len(all))
	}
	for i, f := range files {
		if filepath.Base(f) != want[i] {
			t.Fatalf("files %v, want %v", files, want)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "invoice-01J0TEST.eml"))
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
