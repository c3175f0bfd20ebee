package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"regexp"
	"sort"
	"strings"
	"time"
)

// ErrNoSTARTTLS means the relay does not offer STARTTLS; nothing but EHLO
// was sent to it.
var ErrNoSTARTTLS = errors.New("the server does not offer STARTTLS; refusing to send alerts in clear")

// SMTPConfig configures an SMTP sender.
type SMTPConfig struct {
	Server   string   // host:port
	From     string   // "a@example.com" or "Name <a@example.com>"
	To       []string // at least one, same forms
	Username string   // AUTH PLAIN when not empty
	Password string
	// RootCAs verifies the relay's certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// HeloName is the name given in EHLO; empty means "localhost".
	HeloName string
}

// SMTP sends alerts as mail through one relay.
type SMTP struct {
	cfg  SMTPConfig
	host string
	from *mail.Address
	to   []*mail.Address
}

// NewSMTP checks cfg and returns its sender.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	host, port, err := net.SplitHostPort(cfg.Server)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("smtp server %q: want host:port", cfg.Server)
	}
	s := &SMTP{cfg: cfg, host: host}
	if s.from, err = mail.ParseAddress(cfg.From); err != nil {
		return nil, fmt.Errorf("smtp from %q: %w", cfg.From, err)
	}
	if len(cfg.To) == 0 {
		return nil, errors.New("smtp: no recipient")
	}
	for _, t := range cfg.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("smtp to %q: %w", t, err)
		}
		s.to = append(s.to, a)
	}
	if cfg.Username != "" && cfg.Password == "" {
		return nil, fmt.Errorf("smtp: username %q without a password", cfg.Username)
	}
	if s.cfg.HeloName == "" || !heloRE.MatchString(s.cfg.HeloName) {
		s.cfg.HeloName = "localhost"
	}
	return s, nil
}

var heloRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$`)

// Name returns "smtp".
func (s *SMTP) Name() string { return "smtp" }

// Send delivers m as one mail to every recipient, in one SMTP transaction.
// ctx bounds the whole exchange.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	if err := s.send(ctx, m); err != nil {
		return fmt.Errorf("smtp %s: %w", s.cfg.Server, err)
	}
	return nil
}

func (s *SMTP) send(ctx context.Context, m Message) (err error) {
	msg := s.Compose(m)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Server)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	// The whole exchange obeys ctx: a deadline, and cancellation cuts the
	// connection.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
	}()
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		conn.Close()
		return classify("greeting", err)
	}
	defer c.Close()
	if err := c.Hello(s.cfg.HeloName); err != nil {
		return classify("EHLO", err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		_ = c.Quit()
		return Permanent(ErrNoSTARTTLS)
	}
	tc := &tls.Config{ServerName: s.host, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if err := c.StartTLS(tc); err != nil {
		return classify("STARTTLS", err)
	}
	if st, ok := c.TLSConnectionState(); !ok || !st.HandshakeComplete {
		return Permanent(errors.New("STARTTLS: no TLS session after the handshake"))
	}
	if s.cfg.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return Permanent(errors.New("AUTH: the server offers no AUTH after STARTTLS, but a username is configured"))
		}
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, s.host)); err != nil {
			return classify(fmt.Sprintf("AUTH PLAIN as %q", s.cfg.Username), err)
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return classify("MAIL FROM", err)
	}
	for _, to := range s.to {
		if err := c.Rcpt(to.Address); err != nil {
			return classify("RCPT TO <"+to.Address+">", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return classify("DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return classify("DATA", err)
	}
	if err := w.Close(); err != nil {
		// The relay answered the end of the data: 250 or a refusal.
		return classify("end of DATA", err)
	}
	// The mail is accepted; a failed QUIT does not undo that.
	_ = c.Quit()
	return nil
}

// classify wraps err with the step it happened at and marks permanent
// failures: SMTP 5xx replies and TLS certificate errors. Network errors and
// 4xx replies stay transient.
func classify(step string, err error) error {
	err = fmt.Errorf("%s: %w", step, err)
	var tpe *textproto.Error
	if errors.As(err, &tpe) {
		if tpe.Code >= 500 {
			return Permanent(err)
		}
		return err
	}
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalid) || errors.As(err, &verify) {
		return Permanent(err)
	}
	return err
}

// Subject returns the mail subject for m:
// "[holdfast NAME] KIND: source SOURCE", with " (N more folded)" for a
// summary.
func Subject(m Message) string {
	s := fmt.Sprintf("[holdfast %s] %s", m.Appliance, m.Alert.Kind)
	if m.Alert.Source != "" {
		s += ": source " + m.Alert.Source
	}
	if m.Folded > 0 {
		s += fmt.Sprintf(" (%d more folded)", m.Folded)
	}
	return cleanText(s, true, 200)
}

// Compose returns m as a complete mail: headers, a blank line and a
// quoted-printable UTF-8 body, lines ending in CRLF.
func (s *SMTP) Compose(m Message) []byte {
	m = m.normalize()
	var b bytes.Buffer
	tos := make([]string, len(s.to))
	for i, a := range s.to {
		tos[i] = a.String()
	}
	domain := "holdfast.invalid"
	if i := strings.LastIndexByte(s.from.Address, '@'); i >= 0 && i < len(s.from.Address)-1 {
		domain = s.from.Address[i+1:]
	}
	hdr := []struct{ k, v string }{
		{"From", s.from.String()},
		{"To", strings.Join(tos, ", ")},
		{"Subject", mime.QEncoding.Encode("utf-8", Subject(m))},
		{"Date", m.Alert.Time.Format(time.RFC1123Z)},
		{"Message-ID", "<" + m.ID + ".holdfast@" + domain + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", "quoted-printable"},
		{"Auto-Submitted", "auto-generated"},
		{"X-Holdfast-Kind", mime.QEncoding.Encode("utf-8", cleanText(m.Alert.Kind, true, 64))},
	}
	for _, h := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", h.k, h.v)
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = io.WriteString(qp, strings.ReplaceAll(Body(m), "\n", "\r\n"))
	_ = qp.Close()
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// Body returns the plain-text body of the mail for m: the message, then
// every field of the alert, one per line.
func Body(m Message) string {
	a := m.Alert
	var b strings.Builder
	b.WriteString(cleanText(a.Message, false, maxText))
	b.WriteString("\n\n")
	line := func(k, v string) { fmt.Fprintf(&b, "%-12s %s\n", k+":", v) }
	line("Appliance", cleanText(m.Appliance, true, 200))
	line("Kind", cleanText(a.Kind, true, 200))
	line("Source", cleanText(a.Source, true, 1024))
	line("Time", a.Time.UTC().Format(time.RFC3339Nano))
	if m.Folded > 0 {
		line("Folded", fmt.Sprintf("%d alerts of this kind and source from %s to %s (the last one is shown)",
			m.Folded, m.WindowStart.UTC().Format(time.RFC3339), m.WindowEnd.UTC().Format(time.RFC3339)))
	}
	if a.Snapshot != "" {
		line("Snapshot", cleanText(a.Snapshot, true, 200))
	}
	if a.Previous != 0 || a.Gone != 0 || a.Changed != 0 || a.Kind == KindMassChange {
		line("Previous", fmt.Sprint(a.Previous))
		line("Gone", fmt.Sprint(a.Gone))
		line("Changed", fmt.Sprint(a.Changed))
	}
	if len(a.Held) > 0 {
		line("Held", fmt.Sprintf("%d earlier snapshots under legal hold:", len(a.Held)))
		for i, h := range a.Held {
			if i == 1000 {
				fmt.Fprintf(&b, "  ... and %d more\n", len(a.Held)-i)
				break
			}
			fmt.Fprintf(&b, "  %s\n", cleanText(h, true, 200))
		}
	}
	keys := make([]string, 0, len(a.Details))
	for k := range a.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		line(cleanText(k, true, 64), cleanText(a.Details[k], true, 4096))
	}
	fmt.Fprintf(&b, "%-12s %s\n", "Alert ID:", m.ID)
	return b.String()
}
