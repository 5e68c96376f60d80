// Package email delivers core/invoice messages: over SMTP when SMTP_URL is
// set, otherwise as .eml files in a local outbox directory (OUTBOX_DIR),
// which is what offline development and tests look at.
package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/shiftflow/shiftflow/core/invoice"
)

// Variables read by FromEnv.
const (
	VarSMTPURL   = "SMTP_URL"   // smtp://user:pass@host:587 (STARTTLS when offered) or smtps://…:465
	VarFrom      = "EMAIL_FROM" // sender address, default invoices@shiftflow.invalid
	VarOutboxDir = "OUTBOX_DIR" // where .eml files go without SMTP_URL, default ./outbox
	DefaultFrom  = "invoices@shiftflow.invalid"
	DefaultDir   = "outbox"
)

// FromEnv returns the sender the environment asks for and the From address.
func FromEnv(getenv func(string) string) (invoice.Sender, string, error) {
	from := strings.TrimSpace(getenv(VarFrom))
	if from == "" {
		from = DefaultFrom
	}
	if a, err := mail.ParseAddress(from); err != nil || a.Address != from {
		return nil, "", fmt.Errorf("%s=%q: not a bare email address", VarFrom, from)
	}
	if raw := strings.TrimSpace(getenv(VarSMTPURL)); raw != "" {
		s, err := NewSMTP(raw, nil)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", VarSMTPURL, err)
		}
		return s, from, nil
	}
	dir := strings.TrimSpace(getenv(VarOutboxDir))
	if dir == "" {
		dir = DefaultDir
	}
	return NewOutbox(dir), from, nil
}

// SMTP sends through an SMTP server.
type SMTP struct {
	addr, host     string
	implicitTLS    bool
	requireTLS     bool
	user, password string
	roots          *x509.CertPool
	// Timeout bounds one delivery when ctx has no deadline.
	Timeout time.Duration
}

var _ invoice.Sender = (*SMTP)(nil)

// NewSMTP parses smtp://[user:pass@]host[:port][?starttls=required] or
// smtps://… (TLS from the first byte). roots, when not nil, replaces the
// system roots (tests, private relays).
func NewSMTP(raw string, roots *x509.CertPool) (*SMTP, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	s := &SMTP{host: u.Hostname(), roots: roots, Timeout: 30 * time.Second}
	port := u.Port()
	switch u.Scheme {
	case "smtp":
		if port == "" {
			port = "587"
		}
		s.requireTLS = u.Query().Get("starttls") == "required"
	case "smtps":
		s.implicitTLS = true
		if port == "" {
			port = "465"
		}
	default:
		return nil, fmt.Errorf("scheme must be smtp or smtps, not %q", u.Scheme)
	}
	if s.host == "" {
		return nil, fmt.Errorf("host is missing")
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.password, _ = u.User.Password()
	}
	s.addr = net.JoinHostPort(s.host, port)
	return s, nil
}

// Send delivers one message. The connection honours ctx's deadline.
func (s *SMTP) Send(ctx context.Context, m invoice.Message) error {
	raw, err := Compose(m, time.Now())
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	tlsConf := &tls.Config{ServerName: s.host, RootCAs: s.roots, MinVersion: tls.VersionTLS12}
	d := &net.Dialer{}
	var conn net.Conn
	if s.implicitTLS {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tlsConf}).DialContext(ctx, "tcp", s.addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", s.addr)
	}
	if err != nil {
		return fmt.Errorf("smtp %s: connect: %w", s.addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancellation (not only the deadline) interrupts a stuck server.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		return fmt.Errorf("smtp %s: greeting: %w", s.addr, err)
	}
	defer c.Close()
	if !s.implicitTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsConf); err != nil {
				return fmt.Errorf("smtp %s: STARTTLS: %w", s.addr, err)
			}
		} else if s.requireTLS {
			return fmt.Errorf("smtp %s: server does not offer STARTTLS and the URL requires it", s.addr)
		}
	}
	if s.user != "" {
		// net/smtp refuses PLAIN without TLS except to localhost, which
		// keeps passwords off the wire.
		if err := c.Auth(smtp.PlainAuth("", s.user, s.password, s.host)); err != nil {
			return fmt.Errorf("smtp %s: authentication as %s failed: %w", s.addr, s.user, err)
		}
	}
	if err := c.Mail(m.From); err != nil {
		return fmt.Errorf("smtp %s: MAIL FROM: %w", s.addr, err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("smtp %s: RCPT TO %s: %w", s.addr, m.To, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp %s: DATA: %w", s.addr, err)
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("smtp %s: write message: %w", s.addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp %s: message refused: %w", s.addr, err)
	}
	_ = c.Quit()
	return nil
}

// Outbox writes each message to <dir>/<message id>.eml. Writing the same
// message again replaces the file, so a retried job leaves one file.
type Outbox struct{ dir string }

var _ invoice.Sender = (*Outbox)(nil)

// NewOutbox returns an outbox writing to dir (created on first use).
func NewOutbox(dir string) *Outbox { return &Outbox{dir: dir} }

// Dir returns the directory.
func (o *Outbox) Dir() string { return o.dir }

var fileSafe = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// Send writes the message atomically (temporary file, then rename).
func (o *Outbox) Send(ctx context.Context, m invoice.Message) error {
	raw, err := Compose(m, time.Now())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fmt.Errorf("outbox %s: %w", o.dir, err)
	}
	name := fileSafe.ReplaceAllString(m.ID, "_") + ".eml"
	tmp, err := os.CreateTemp(o.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("outbox %s: %w", o.dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return fmt.Errorf("outbox %s: write: %w", o.dir, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("outbox %s: write: %w", o.dir, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(o.dir, name)); err != nil {
		return fmt.Errorf("outbox %s: %w", o.dir, err)
	}
	return nil
}

// Compose renders an RFC 5322 message with CRLF line ends, a UTF-8
// quoted-printable body and a Message-ID derived from m.ID. Addresses and
// subject must not contain line breaks (header injection).
func Compose(m invoice.Message, now time.Time) ([]byte, error) {
	for name, v := range map[string]string{"from": m.From, "to": m.To} {
		a, err := mail.ParseAddress(v)
		if err != nil || a.Address != v {
			return nil, fmt.Errorf("email: %s %q is not a bare address", name, v)
		}
	}
	if strings.ContainsAny(m.Subject, "\r\n") || strings.ContainsAny(m.ID, "\r\n<>") || m.ID == "" {
		return nil, fmt.Errorf("email: subject or id contains a line break or is empty")
	}
	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", m.From)
	hdr("To", m.To)
	hdr("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	hdr("Date", now.UTC().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+m.ID+"@shiftflow>")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", `text/plain; charset="utf-8"`)
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	text := strings.ReplaceAll(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n", "\r\n")
	if _, err := qp.Write([]byte(text)); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
