package alert

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpSink is a small SMTP server on 127.0.0.1 for tests: it offers
// STARTTLS (unless noSTARTTLS), AUTH PLAIN after TLS (when users is set),
// and records every command and every mail it accepts.
type smtpSink struct {
	addr string
	ln   net.Listener
	opts sinkOptions

	mu       sync.Mutex
	commands []sinkCommand
	mails    []sinkMail
	failData int // end-of-DATA replies still to answer with 451
}

type sinkOptions struct {
	cert           *tls.Certificate
	noSTARTTLS     bool              // do not offer STARTTLS
	refuseSTARTTLS bool              // offer it, then answer 454
	users          map[string]string // AUTH PLAIN users; nil: no AUTH
	failData       int               // answer the first N end-of-DATA with 451
}

type sinkCommand struct {
	line string // AUTH arguments are replaced by "..."
	tls  bool
}

type sinkMail struct {
	from string
	to   []string
	data []byte
	tls  bool
	user string
}

func startSink(t *testing.T, o sinkOptions) *smtpSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{addr: ln.Addr().String(), ln: ln, opts: o, failData: o.failData}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

func (s *smtpSink) record(line string, tls bool) {
	if v, _, _ := strings.Cut(line, " "); strings.EqualFold(v, "AUTH") {
		line = "AUTH ..."
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commands = append(s.commands, sinkCommand{line, tls})
}

// Mails returns the mails accepted so far.
func (s *smtpSink) Mails() []sinkMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkMail(nil), s.mails...)
}

// Commands returns the commands received so far.
func (s *smtpSink) Commands() []sinkCommand {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkCommand(nil), s.commands...)
}

func (s *smtpSink) serve(conn net.Conn) {
	defer func() { conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	tp := textproto.NewConn(conn)
	inTLS, user := false, ""
	var from string
	var to []string
	reply := func(format string, args ...any) bool { return tp.PrintfLine(format, args...) == nil }
	if !reply("220 sink.test ESMTP test sink") {
		return
	}
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		s.record(line, inTLS)
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			ext := []string{"sink.test greets you"}
			if !inTLS && !s.opts.noSTARTTLS {
				ext = append(ext, "STARTTLS")
			}
			if inTLS && s.opts.users != nil {
				ext = append(ext, "AUTH PLAIN")
			}
			ext = append(ext, "SIZE 1000000")
			for i, e := range ext {
				sep := "-"
				if i == len(ext)-1 {
					sep = " "
				}
				if !reply("250%s%s", sep, e) {
					return
				}
			}
		case "STARTTLS":
			switch {
			case inTLS || s.opts.noSTARTTLS:
				reply("502 5.5.1 not offered")
				continue
			case s.opts.refuseSTARTTLS:
				reply("454 4.7.0 TLS not available right now")
				continue
			}
			if !reply("220 2.0.0 ready to start TLS") {
				return
			}
			tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{*s.opts.cert}})
			if err := tc.Handshake(); err != nil {
				return
			}
			conn, tp, inTLS = tc, textproto.NewConn(tc), true
			from, to, user = "", nil, ""
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			if !inTLS || s.opts.users == nil || !strings.EqualFold(mech, "PLAIN") {
				reply("504 5.5.4 unrecognised authentication type")
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(resp)
			parts := bytes.Split(raw, []byte{0})
			if err != nil || len(parts) != 3 {
				reply("501 5.5.2 cannot decode")
				continue
			}
			u, p := string(parts[1]), string(parts[2])
			if pw, ok := s.opts.users[u]; !ok || pw != p {
				reply("535 5.7.8 authentication credentials invalid")
				continue
			}
			user = u
			reply("235 2.7.0 authentication successful")
		case "MAIL":
			if s.opts.users != nil && user == "" {
				reply("530 5.7.0 authentication required")
				continue
			}
			from = strings.TrimPrefix(arg, "FROM:")
			reply("250 2.1.0 ok")
		case "RCPT":
			to = append(to, strings.TrimPrefix(arg, "TO:"))
			reply("250 2.1.5 ok")
		case "DATA":
			if from == "" || len(to) == 0 {
				reply("503 5.5.1 need MAIL and RCPT first")
				continue
			}
			if !reply("354 go ahead") {
				return
			}
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			s.mu.Lock()
			fail := s.failData > 0
			if fail {
				s.failData--
			} else {
				s.mails = append(s.mails, sinkMail{from: from, to: to, data: data, tls: inTLS, user: user})
			}
			s.mu.Unlock()
			if fail {
				reply("451 4.3.0 temporary failure, try again later")
			} else {
				reply("250 2.0.0 queued")
			}
			from, to = "", nil
		case "RSET":
			from, to = "", nil
			reply("250 2.0.0 ok")
		case "NOOP":
			reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("502 5.5.2 unknown command")
		}
	}
}

// clearVerbs returns the verbs of the commands the sink received before
// TLS.
func clearVerbs(cmds []sinkCommand) []string {
	var out []string
	for _, c := range cmds {
		if !c.tls {
			v, _, _ := strings.Cut(c.line, " ")
			out = append(out, strings.ToUpper(v))
		}
	}
	return out
}
