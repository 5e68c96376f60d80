// Package email delivers core/invoice messages: over SMTP when SMTP_URL is
// set, otherwise as .eml files in a local outbox directory (OUTBOX_DIR),
// which is what offline development and tests look at.
package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
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

// Send delivers one message (Prepare, then Commit), without a
// sent-record: tests and tools. The invoice Mailer uses the two phases.
func (s *SMTP) Send(ctx context.Context, m invoice.Message) error {
	p, err := s.Prepare(ctx, m)
	if err != nil {
		return err
	}
	return p.Commit(ctx)
}

// Prepare connects (TLS, STARTTLS, AUTH as configured), sends MAIL, RCPT
// and DATA, and writes the whole message, flushed to the socket, but not
// the terminating "<CRLF>.<CRLF>": the server holds the message and has
// not accepted it (docs/design.md, "Emails: the sent-record and its
// window"). The connection honours ctx's deadline and cancellation.
func (s *SMTP) Prepare(ctx context.Context, m invoice.Message) (invoice.Pending, error) {
	raw, err := Compose(m, time.Now())
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	conn, err := s.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("smtp %s: connect: %w", s.addr, err)
	}
	prepared := false
	defer func() {
		if !prepared {
			_ = conn.Close()
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancellation (not only the deadline) interrupts a stuck server.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		return nil, fmt.Errorf("smtp %s: greeting: %w", s.addr, err)
	}
	if err := s.hello(c); err != nil {
		return nil, err
	}
	if err := c.Mail(m.From); err != nil {
		return nil, fmt.Errorf("smtp %s: MAIL FROM: %w", s.addr, err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return nil, fmt.Errorf("smtp %s: RCPT TO %s: %w", s.addr, m.To, err)
	}
	w, err := startData(c)
	if err != nil {
		return nil, fmt.Errorf("smtp %s: DATA: %w", s.addr, err)
	}
	if _, err := w.Write(raw); err != nil {
		return nil, fmt.Errorf("smtp %s: write message: %w", s.addr, err)
	}
	// Everything but the terminator leaves the process now, so that
	// Commit is one small write.
	if err := c.Text.W.Flush(); err != nil {
		return nil, fmt.Errorf("smtp %s: write message: %w", s.addr, err)
	}
	prepared = true
	return &smtpPending{addr: s.addr, timeout: s.Timeout, conn: conn, c: c, data: w}, nil
}

func (s *SMTP) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{}
	if s.implicitTLS {
		return (&tls.Dialer{NetDialer: d, Config: s.tlsConfig()}).DialContext(ctx, "tcp", s.addr)
	}
	return d.DialContext(ctx, "tcp", s.addr)
}

func (s *SMTP) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: s.host, RootCAs: s.roots, MinVersion: tls.VersionTLS12}
}

// hello upgrades to TLS when offered (or required) and authenticates.
func (s *SMTP) hello(c *smtp.Client) error {
	if !s.implicitTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(s.tlsConfig()); err != nil {
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
	return nil
}

// startData sends DATA and returns the dot-writer of the message. Not
// net/smtp's Client.Data: its Close ignores the terminator's write error,
// and Commit must tell "terminator not written" (the server does not have
// the message) from "no reply" (it may).
func startData(c *smtp.Client) (io.WriteCloser, error) {
	id, err := c.Text.Cmd("DATA")
	if err != nil {
		return nil, err
	}
	c.Text.StartResponse(id)
	defer c.Text.EndResponse(id)
	if _, _, err := c.Text.ReadResponse(354); err != nil {
		return nil, err
	}
	return c.Text.DotWriter(), nil
}

// smtpPending is a message inside DATA, written but for its terminator.
// Nothing may be written on c before Commit: any textproto command would
// close the dot-writer, i.e. write the terminator. So Abort closes the
// connection (RSET is impossible inside DATA: it would be message text).
type smtpPending struct {
	addr    string
	timeout time.Duration
	conn    net.Conn
	c       *smtp.Client
	data    io.WriteCloser
}

// Commit writes the terminator (one write of at most five bytes) and
// reads the reply. ctx without a deadline gets the sender's Timeout.
func (p *smtpPending) Commit(ctx context.Context) error {
	defer p.conn.Close()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	_ = p.conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = p.conn.SetDeadline(time.Now()) })
	defer stop()
	if err := p.data.Close(); err != nil {
		// A failed write did not put the whole terminator on the wire.
		return fmt.Errorf("smtp %s: end of data not written: %w", p.addr, err)
	}
	if _, _, err := p.c.Text.ReadResponse(250); err != nil {
		var refused *textproto.Error
		if errors.As(err, &refused) {
			return fmt.Errorf("smtp %s: message refused: %w", p.addr, err)
		}
		return fmt.Errorf("smtp %s: %w: %w", p.addr, invoice.ErrUnconfirmed, err)
	}
	_ = p.c.Quit()
	return nil
}

// Abort closes the connection inside DATA. Only the end of mail data
// confirms a transaction (RFC 5321 section 3.3), so the server discards
// the unterminated message.
func (p *smtpPending) Abort() { _ = p.conn.Close() }

// Outbox writes each message to <dir>/<message key>.eml. It never
// overwrites: a second send of the same message is written next to the
// first as <key>.2.eml, then .3.eml and so on, so a duplicate is visible.
type Outbox struct{ dir string }

var _ invoice.Sender = (*Outbox)(nil)

// NewOutbox returns an outbox writing to dir (created on first use).
func NewOutbox(dir string) *Outbox { return &Outbox{dir: dir} }

// Dir returns the directory.
func (o *Outbox) Dir() string { return o.dir }

var fileSafe = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// maxCopies bounds the names tried for one message.
const maxCopies = 1000

// Send writes the message (Prepare, then Commit), without a sent-record.
func (o *Outbox) Send(ctx context.Context, m invoice.Message) error {
	p, err := o.Prepare(ctx, m)
	if err != nil {
		return err
	}
	return p.Commit(ctx)
}

// Prepare writes the message to a temporary file in the directory.
func (o *Outbox) Prepare(_ context.Context, m invoice.Message) (invoice.Pending, error) {
	raw, err := Compose(m, time.Now())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return nil, fmt.Errorf("outbox %s: %w", o.dir, err)
	}
	tmp, err := os.CreateTemp(o.dir, ".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("outbox %s: %w", o.dir, err)
	}
	_, werr := tmp.Write(raw)
	if err := errors.Join(werr, tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return nil, fmt.Errorf("outbox %s: write: %w", o.dir, err)
	}
	return &outboxPending{dir: o.dir, tmp: tmp.Name(), base: fileSafe.ReplaceAllString(m.ID, "_"), raw: raw}, nil
}

type outboxPending struct {
	dir, tmp, base string
	raw            []byte
}

// Commit gives the temporary file the first free name: a hard link fails
// when the name exists, so nothing is overwritten even by a racing writer.
func (p *outboxPending) Commit(context.Context) error {
	defer os.Remove(p.tmp)
	for n := 1; n <= maxCopies; n++ {
		name := p.base + ".eml"
		if n > 1 {
			name = fmt.Sprintf("%s.%d.eml", p.base, n)
		}
		err := place(p.tmp, filepath.Join(p.dir, name), p.raw)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("outbox %s: %w", p.dir, err)
		}
	}
	return fmt.Errorf("outbox %s: %d copies of %s exist", p.dir, maxCopies, p.base)
}

// Abort removes the temporary file.
func (p *outboxPending) Abort() { _ = os.Remove(p.tmp) }

// place puts tmp at dst unless dst exists (fs.ErrExist then): a hard link,
// or on a file system without them an exclusive create of dst.
func place(tmp, dst string, raw []byte) error {
	err := os.Link(tmp, dst)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.Write(raw)
	if err := errors.Join(werr, f.Close()); err != nil {
		_ = os.Remove(dst)
		return err
	}
	return nil
}

// messageID is the shape of an RFC 5322 msg-id this package writes.
var messageID = regexp.MustCompile(`^<[A-Za-z0-9!#$%&'*+/=?^_{|}~.-]+@[A-Za-z0-9.-]+>$`)

// Compose renders an RFC 5322 message with CRLF line ends, a UTF-8
// quoted-printable body and m.MessageID (by default invoice.MessageID of
// m.ID at the From domain). Addresses and
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
	msgID := m.MessageID
	if msgID == "" {
		msgID = invoice.MessageID(m.ID, m.From)
	}
	if !messageID.MatchString(msgID) {
		return nil, fmt.Errorf("email: Message-ID %q is not <left@right>", msgID)
	}
	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", m.From)
	hdr("To", m.To)
	hdr("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	hdr("Date", now.UTC().Format(time.RFC1123Z))
	hdr("Message-ID", msgID)
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
