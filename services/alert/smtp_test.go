package alert

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"
)

const testPassword = "pa55-w0rd-TOPSECRET"

// readMail parses a mail and returns its headers and decoded body (LF line
// ends).
func readMail(t *testing.T, data []byte) (mail.Header, string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("mail does not parse: %v\n%s", err, data)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatalf("body is not quoted-printable: %v", err)
	}
	return msg.Header, strings.ReplaceAll(string(body), "\r\n", "\n")
}

// bodyFields maps each "Label: value" line of a mail body to its value.
func bodyFields(body string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.ContainsAny(k, " \t") {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

func TestSMTPDelivers(t *testing.T) {
	pki := newTestPKI(t)
	sink := startSink(t, sinkOptions{cert: &pki.cert, users: map[string]string{"alerts": testPassword}})
	s, err := NewSMTP(SMTPConfig{
		Server: sink.addr, From: "Holdfast <hf@example.com>",
		To:       []string{"ops@example.com", "On Call <oncall@example.org>"},
		Username: "alerts", Password: testPassword, RootCAs: pki.pool, HeloName: "holdfast-01",
	})
	if err != nil {
		t.Fatal(err)
	}
	a := massChange()
	a.Message += "\nline two\n.\nline four"
	m := Message{ID: "00112233445566778899aabbccddeeff", Appliance: "holdfast-01", Alert: a}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Send(ctx, m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	mails := sink.Mails()
	if len(mails) != 1 {
		t.Fatalf("%d mails arrived, want 1", len(mails))
	}
	got := mails[0]
	if !got.tls || got.user != "alerts" {
		t.Errorf("mail came with tls=%v user=%q, want TLS and user alerts", got.tls, got.user)
	}
	if got.from != "<hf@example.com>" || !slices.Equal(got.to, []string{"<ops@example.com>", "<oncall@example.org>"}) {
		t.Errorf("envelope from %q to %q", got.from, got.to)
	}
	if v := clearVerbs(sink.Commands()); !slices.Equal(v, []string{"EHLO", "STARTTLS"}) {
		t.Errorf("commands sent in clear: %v, want only EHLO and STARTTLS", v)
	}
	if cmds := sink.Commands(); !strings.HasPrefix(cmds[0].line, "EHLO holdfast-01") {
		t.Errorf("first command %q, want EHLO holdfast-01", cmds[0].line)
	}

	h, body := readMail(t, got.data)
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	date, err := h.Date()
	if err != nil {
		t.Fatalf("Date header %q: %v", h.Get("Date"), err)
	}
	from, err := mail.ParseAddress(h.Get("From"))
	if err != nil {
		t.Fatal(err)
	}
	tos, err := h.AddressList("To")
	if err != nil {
		t.Fatal(err)
	}
	headers := []struct {
		name      string
		got, want any
	}{
		{"Subject", subject, "[holdfast holdfast-01] mass-change: source mail-archive"},
		{"Date", date.Equal(a.Time), true},
		{"From", from.String(), `"Holdfast" <hf@example.com>`},
		{"To", len(tos), 2},
		{"To[1]", tos[1].Address, "oncall@example.org"},
		{"Message-ID", h.Get("Message-Id"), "<00112233445566778899aabbccddeeff.holdfast@example.com>"},
		{"Content-Type", h.Get("Content-Type"), "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", h.Get("Content-Transfer-Encoding"), "quoted-printable"},
		{"Auto-Submitted", h.Get("Auto-Submitted"), "auto-generated"},
	}
	for _, c := range headers {
		if c.got != c.want {
			t.Errorf("header %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if !strings.HasPrefix(body, a.Message+"\n\n") {
		t.Errorf("body does not start with the message (the lone dot line included):\n%s", body)
	}
	fields := bodyFields(body)
	want := map[string]string{
		"Appliance": "holdfast-01", "Kind": "mass-change", "Source": "mail-archive",
		"Time": "2026-01-01T00:00:07Z", "Snapshot": a.Snapshot,
		"Previous": "50", "Gone": "50", "Changed": "0", "Held": "2 earlier snapshots under legal hold:",
		"threshold": "30%", "Alert ID": "",
	}
	for k, v := range want {
		if k == "Alert ID" {
			continue
		}
		if fields[k] != v {
			t.Errorf("body field %s = %q, want %q\n%s", k, fields[k], v, body)
		}
	}
	for _, held := range a.Held {
		if !strings.Contains(body, "\n  "+held+"\n") {
			t.Errorf("body does not list held snapshot %s", held)
		}
	}
	if !strings.Contains(body, "Alert ID:    "+m.ID) {
		t.Errorf("body does not give the alert ID")
	}
	if bytes.Contains(got.data, []byte(testPassword)) {
		t.Error("the mail holds the password")
	}
}

// TestSMTPFailures: each broken relay fails with a clear error, the right
// retry class, and no mail; nothing but EHLO (and STARTTLS) is ever sent
// in clear, and the password is never in the error.
func TestSMTPFailures(t *testing.T) {
	pki := newTestPKI(t)
	users := map[string]string{"alerts": testPassword}
	tests := []struct {
		name      string
		sink      sinkOptions
		user      string
		password  string
		noTrust   bool // verify the relay against the system roots
		wantErr   []string
		wantIs    error
		permanent bool
		clear     []string // verbs the sink got before TLS
		noMail    bool     // MAIL must never reach the sink
	}{
		{"no STARTTLS", sinkOptions{noSTARTTLS: true, users: users}, "alerts", testPassword, false,
			[]string{"does not offer STARTTLS", "refusing"}, ErrNoSTARTTLS, true, []string{"EHLO", "QUIT"}, true},
		{"no STARTTLS, no auth", sinkOptions{noSTARTTLS: true}, "", "", false,
			[]string{"does not offer STARTTLS"}, ErrNoSTARTTLS, true, []string{"EHLO", "QUIT"}, true},
		{"wrong password", sinkOptions{users: users}, "alerts", "not-the-password", false,
			[]string{"AUTH PLAIN as \"alerts\"", "535", "credentials invalid"}, nil, true, []string{"EHLO", "STARTTLS"}, true},
		{"unknown user", sinkOptions{users: users}, "mallory", testPassword, false,
			[]string{"AUTH PLAIN as \"mallory\"", "535"}, nil, true, []string{"EHLO", "STARTTLS"}, true},
		{"untrusted certificate", sinkOptions{users: users}, "alerts", testPassword, true,
			[]string{"STARTTLS", "certificate"}, nil, true, []string{"EHLO", "STARTTLS"}, true},
		{"STARTTLS refused", sinkOptions{refuseSTARTTLS: true, users: users}, "alerts", testPassword, false,
			[]string{"STARTTLS", "454"}, nil, false, []string{"EHLO", "STARTTLS"}, true},
		{"AUTH not offered", sinkOptions{}, "alerts", testPassword, false,
			[]string{"offers no AUTH"}, nil, true, []string{"EHLO", "STARTTLS"}, true},
		{"auth required", sinkOptions{users: users}, "", "", false,
			[]string{"MAIL FROM", "530"}, nil, true, []string{"EHLO", "STARTTLS"}, false},
		{"temporary failure", sinkOptions{failData: 1}, "", "", false,
			[]string{"end of DATA", "451"}, nil, false, []string{"EHLO", "STARTTLS"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.sink.cert = &pki.cert
			sink := startSink(t, tt.sink)
			cfg := SMTPConfig{Server: sink.addr, From: "hf@example.com", To: []string{"ops@example.com"},
				Username: tt.user, Password: tt.password, RootCAs: pki.pool}
			if tt.noTrust {
				cfg.RootCAs = nil
			}
			s, err := NewSMTP(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err = s.Send(ctx, Message{Appliance: "hf", Alert: massChange()})
			if err == nil {
				t.Fatal("Send succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), sink.addr) {
				t.Errorf("error %q does not name the server", err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			if IsPermanent(err) != tt.permanent {
				t.Errorf("IsPermanent(%q) = %v, want %v", err, IsPermanent(err), tt.permanent)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error leaks the password: %q", err)
			}
			// The sink records a command before the client sees its reply;
			// give it a moment to record a trailing QUIT.
			time.Sleep(20 * time.Millisecond)
			cmds := sink.Commands()
			if v := clearVerbs(cmds); !slices.Equal(v, tt.clear) {
				t.Errorf("commands in clear: %v, want %v", v, tt.clear)
			}
			for _, c := range cmds {
				if tt.noMail && strings.HasPrefix(c.line, "MAIL") {
					t.Errorf("MAIL was sent: %v", cmds)
				}
			}
			if n := len(sink.Mails()); n != 0 {
				t.Errorf("%d mails arrived, want none", n)
			}
		})
	}
}

// TestSMTPUnreachable: a closed port and a relay that never greets fail
// as transient errors, the second within the context's deadline.
func TestSMTPUnreachable(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	held := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held <- c // never answered
		}
	}()
	defer func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	}()
	for _, tt := range []struct{ name, addr, want string }{
		{"closed port", closedAddr, "connect"},
		{"silent relay", silent.Addr().String(), "greeting"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSMTP(SMTPConfig{Server: tt.addr, From: "hf@example.com", To: []string{"ops@example.com"}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = s.Send(ctx, Message{Appliance: "hf", Alert: massChange()})
			if err == nil || !strings.Contains(err.Error(), tt.want) || IsPermanent(err) {
				t.Fatalf("Send = %v; want a transient error mentioning %q", err, tt.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Send took %s with a 300ms deadline", d)
			}
		})
	}
}

// TestSMTPRetriedOnce: a relay that answers 451 once gets the mail on the
// retry, exactly once.
func TestSMTPRetriedOnce(t *testing.T) {
	pki := newTestPKI(t)
	sink := startSink(t, sinkOptions{cert: &pki.cert, users: map[string]string{"alerts": testPassword}, failData: 1})
	s, err := NewSMTP(SMTPConfig{Server: sink.addr, From: "hf@example.com", To: []string{"ops@example.com"},
		Username: "alerts", Password: testPassword, RootCAs: pki.pool})
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testLog(t)
	d := New(Options{Appliance: "hf", Log: log, Senders: []Sender{s}, Backoff: 20 * time.Millisecond, MaxAttempts: 4})
	if err := d.Alert(t.Context(), massChange()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := len(sink.Mails()); n != 1 {
		t.Fatalf("%d mails arrived, want 1", n)
	}
	datas := 0
	for _, c := range sink.Commands() {
		if c.line == "DATA" {
			datas++
		}
	}
	if st := d.Stats(); datas != 2 || st.Sent != 1 || st.Failed != 0 {
		t.Errorf("DATA sent %d times, stats %+v; want 2 attempts, 1 sent, 0 failed", datas, st)
	}
	_, body := readMail(t, sink.Mails()[0].data)
	if !strings.Contains(body, "Kind:        mass-change") {
		t.Errorf("body:\n%s", body)
	}
}

// TestComposeNoHeaderInjection: line breaks in alert fields cannot add
// headers, and text that is not UTF-8 still makes a valid mail.
func TestComposeNoHeaderInjection(t *testing.T) {
	s, err := NewSMTP(SMTPConfig{Server: "127.0.0.1:25", From: "hf@example.com", To: []string{"ops@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		a    func(a *Message)
	}{
		{"source", func(m *Message) { m.Alert.Source = "x\r\nBcc: evil@example.net" }},
		{"kind", func(m *Message) { m.Alert.Kind = "attack\nBcc: evil@example.net" }},
		{"appliance", func(m *Message) { m.Appliance = "hf\r\n\r\nBcc: evil@example.net" }},
		{"bad utf-8", func(m *Message) { m.Alert.Source = "caf\xe9\nBcc: evil@example.net"; m.Alert.Message = "\xff\xfe" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Message{ID: "id", Appliance: "hf", Alert: massChange()}
			tt.a(&m)
			h, body := readMail(t, s.Compose(m))
			if h.Get("Bcc") != "" {
				t.Fatalf("a Bcc header was injected")
			}
			subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
			if err != nil || strings.ContainsAny(subject, "\r\n") || !strings.HasPrefix(subject, "[holdfast ") {
				t.Errorf("subject %q, %v", subject, err)
			}
			if !strings.Contains(body, "Alert ID:") {
				t.Errorf("body lost its fields:\n%s", body)
			}
		})
	}
}
