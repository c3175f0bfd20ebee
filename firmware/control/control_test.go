package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// pair connects a PID 1 end (handler h1) and a worker end (handler hw).
func pair(t *testing.T, h1, hw Handler, o1 Options) (*Conn, *Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	o1.Side, o1.Handler = PID1, h1
	return New(a, o1), New(b, Options{Side: Worker, Handler: hw})
}

// raw is a worker end driven by hand: lines written, replies read.
func raw(t *testing.T, h Handler, o Options) (net.Conn, *bufio.Reader) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	o.Side, o.Handler = PID1, h
	New(a, o)
	return b, bufio.NewReader(b)
}

const snap = "20260101T000000Z-01234567"

func TestCallAndTypedErrors(t *testing.T) {
	h1 := func(ctx context.Context, req Request) (Reply, error) {
		switch r := req.(type) {
		case *SignRequest:
			if r.Snapshot != snap {
				return nil, Errorf(NotFound, "no sealed manifest %s", r.Snapshot)
			}
			return &SignReply{Receipt: []byte("r")}, nil
		}
		return nil, Errorf(Refused, "unexpected")
	}
	hw := func(ctx context.Context, req Request) (Reply, error) {
		switch r := req.(type) {
		case *PullRequest:
			if r.Source != "mail" {
				return nil, Errorf(NotFound, "no source %q", r.Source)
			}
			return &PullReply{Status: &PullStatus{Summary: "ok"}}, nil
		case *ExtendRequest:
			return nil, errors.New("plain failure")
		}
		return nil, nil
	}
	p1, w := pair(t, h1, hw, Options{})
	ctx := context.Background()
	tests := []struct {
		name string
		c    *Conn
		req  Request
		kind Kind
	}{
		{"pull ok", p1, &PullRequest{Source: "mail"}, ""},
		{"pull unknown source", p1, &PullRequest{Source: "nope"}, NotFound},
		{"extend untyped error is internal", p1, &ExtendRequest{Snapshot: snap, Hold: true, Reason: "r"}, Internal},
		{"sign ok", w, &SignRequest{Snapshot: snap}, ""},
		{"sign other snapshot", w, &SignRequest{Snapshot: "20260101T000000Z-ffffffff"}, NotFound},
		{"worker may not send pull", w, &PullRequest{Source: "mail"}, Refused},
		{"pid1 may not send sign", p1, &SignRequest{Snapshot: snap}, Refused},
		{"invalid request not sent", p1, &PullRequest{Source: "a\x1b[2Jb"}, Invalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.Call(ctx, tc.req)
			if got := KindOf(err); got != tc.kind {
				t.Fatalf("kind %q (%v), want %q", got, err, tc.kind)
			}
			if tc.kind != "" && !errors.Is(err, &Error{Kind: tc.kind}) {
				t.Fatalf("errors.Is does not match kind %s: %v", tc.kind, err)
			}
		})
	}
	r, err := Do[*PullReply](ctx, p1, &PullRequest{Source: "mail"})
	if err != nil || r.Status.Summary != "ok" {
		t.Fatalf("Do: %+v, %v", r, err)
	}
}

// TestHostileLines: what a worker writes by hand is refused with a typed
// error, never handed to the handler.
func TestHostileLines(t *testing.T) {
	called := make(chan Request, 10)
	h := func(ctx context.Context, req Request) (Reply, error) {
		called <- req
		return &SignReply{Receipt: []byte("x")}, nil
	}
	c, r := raw(t, h, Options{})
	tests := []struct{ name, line, kind string }{
		{"unknown op", `{"id":1,"op":"format-disk"}`, "invalid"},
		{"op of the other side", `{"id":2,"op":"init","body":{}}`, "refused"},
		{"unknown field", `{"id":3,"op":"sign","body":{"snapshot":"` + snap + `","digest":"AAAA"}}`, "invalid"},
		{"bad snapshot", `{"id":4,"op":"sign","body":{"snapshot":"../../etc"}}`, "invalid"},
		{"notice with an id", `{"id":5,"op":"status","body":{"source":"mail","status":{}}}`, "invalid"},
		{"oversized field", `{"id":6,"op":"sign","body":{"snapshot":"` + strings.Repeat("a", 100) + `"}}`, "invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Write([]byte(tc.line + "\n")); err != nil {
				t.Fatal(err)
			}
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(line, `"kind":"`+tc.kind+`"`) {
				t.Fatalf("reply %s, want kind %s", line, tc.kind)
			}
		})
	}
	select {
	case req := <-called:
		t.Fatalf("handler called with %#v", req)
	default:
	}
}

// TestOversizedLineEndsChannel: a line over MaxLine ends the connection
// instead of being buffered.
func TestOversizedLineEndsChannel(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := New(a, Options{Side: PID1, Handler: func(context.Context, Request) (Reply, error) { return nil, nil }})
	go func() { _, _ = b.Write([]byte(strings.Repeat("x", MaxLine+10))) }()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("channel still open after an oversized line")
	}
	if c.Err() == nil || errors.Is(c.Err(), os.ErrClosed) {
		t.Fatalf("err %v", c.Err())
	}
}

// TestFloodRefusedBusy: beyond MaxInFlight a request is answered busy at
// once, not queued.
func TestFloodRefusedBusy(t *testing.T) {
	release := make(chan struct{})
	h := func(ctx context.Context, req Request) (Reply, error) {
		<-release
		return &SignReply{Receipt: []byte("x")}, nil
	}
	_, w := pair(t, h, nil, Options{MaxInFlight: 4, SignRate: Rate{Every: time.Hour, Burst: 1000}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 50
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() { _, err := w.Call(ctx, &SignRequest{Snapshot: snap}); errs <- err }()
	}
	busy := 0
	for i := 0; i < n-4; i++ {
		if err := <-errs; KindOf(err) == Busy {
			busy++
		} else {
			t.Fatalf("request %d: %v, want busy", i, err)
		}
	}
	close(release)
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("in-flight request: %v", err)
		}
	}
	if busy != n-4 {
		t.Fatalf("busy %d, want %d", busy, n-4)
	}
}

func TestSignRateLimited(t *testing.T) {
	h := func(ctx context.Context, req Request) (Reply, error) { return &SignReply{Receipt: []byte("x")}, nil }
	_, w := pair(t, h, nil, Options{SignRate: Rate{Every: time.Hour, Burst: 3}})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := w.Call(ctx, &SignRequest{Snapshot: snap}); err != nil {
			t.Fatalf("sign %d: %v", i, err)
		}
	}
	if _, err := w.Call(ctx, &SignRequest{Snapshot: snap}); KindOf(err) != Refused {
		t.Fatalf("4th sign: %v, want refused", err)
	}
}

// TestDocsTable checks the protocol tables of the package doc and of
// docs/control.md against Ops and the JSON fields of each body type.
func TestDocsTable(t *testing.T) {
	for _, file := range []string{"doc.go", "../../docs/control.md"} {
		t.Run(file, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			rows := parseTable(string(b))
			ops := Ops()
			if len(rows) != len(ops) {
				t.Fatalf("%d rows, %d ops", len(rows), len(ops))
			}
			for i, sp := range ops {
				r := rows[i]
				if r[0] != string(sp.Op) || r[1] != string(sp.From) {
					t.Errorf("row %d: %q from %q, code: %q from %q", i, r[0], r[1], sp.Op, sp.From)
				}
				if got, want := r[2], fields(sp.Request); got != want {
					t.Errorf("%s request fields: doc %q, code %q", sp.Op, got, want)
				}
				want := "(notice)"
				if !sp.Notice {
					want = fields(sp.Reply)
				}
				if r[3] != want {
					t.Errorf("%s reply fields: doc %q, code %q", sp.Op, r[3], want)
				}
			}
		})
	}
}

var rowRE = regexp.MustCompile(`^\s*(?://\s*)?\|(.*)\|\s*$`)

// parseTable reads the table whose header starts with "| op": each row's
// op, from, request and reply cells, continuation rows (empty op) joined.
func parseTable(s string) [][4]string {
	var rows [][4]string
	in := false
	for _, line := range strings.Split(s, "\n") {
		m := rowRE.FindStringSubmatch(line)
		if m == nil {
			if in && len(rows) > 0 {
				break
			}
			continue
		}
		cells := strings.Split(m[1], "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 4 {
			continue
		}
		if cells[0] == "op" {
			in = true
			continue
		}
		if !in || strings.HasPrefix(cells[0], "---") {
			continue
		}
		if cells[0] == "" && len(rows) > 0 {
			last := &rows[len(rows)-1]
			for i := 2; i < 4; i++ {
				if cells[i] != "" {
					last[i] = strings.TrimSpace(last[i] + " " + cells[i])
				}
			}
			continue
		}
		rows = append(rows, [4]string{cells[0], cells[1], cells[2], cells[3]})
	}
	return rows
}

// fields lists a body type's JSON field names, "-" for none.
func fields(t reflect.Type) string {
	t = t.Elem()
	var names []string
	for i := 0; i < t.NumField(); i++ {
		n, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, n)
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, " ")
}

// TestNoticeFloodLogsLittle: notices the handler refuses are dropped and
// logged once in a thousand, so a flood cannot flood PID 1's log.
func TestNoticeFloodLogsLittle(t *testing.T) {
	var buf lockedBuf
	log := hclog.New(&hclog.LoggerOptions{Output: &buf})
	done := make(chan struct{})
	var n int
	h := func(ctx context.Context, req Request) (Reply, error) {
		if _, ok := req.(*SignRequest); ok {
			close(done) // the request after the notices: they were all read
			return &SignReply{Receipt: []byte("x")}, nil
		}
		n++
		return nil, Errorf(NotFound, "no source")
	}
	_, w := pair(t, h, nil, Options{MaxInFlight: 1, Log: log})
	for i := 0; i < 3000; i++ {
		if err := w.Notify(&StatusNotice{Source: "invented", Status: &PullStatus{}}); err != nil {
			t.Fatal(err)
		}
	}
	for {
		if _, err := w.Call(context.Background(), &SignRequest{Snapshot: snap}); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	<-done
	if lines := strings.Count(buf.String(), "\n"); lines > 6 {
		t.Errorf("%d log lines for 3000 refused notices:\n%s", lines, buf.String())
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStoreKeysValidate: every key is exactly 32 bytes; the clock key is
// either absent (the export's read-only part) or 32 bytes, never a short
// key that would make a weak MAC.
func TestStoreKeysValidate(t *testing.T) {
	k32 := bytes.Repeat([]byte{1}, 32)
	tests := []struct {
		name  string
		clock []byte
		data  []byte
		ok    bool
	}{
		{"full", k32, k32, true},
		{"read-only part", nil, k32, true},
		{"short clock key", []byte{1}, k32, false},
		{"31-byte clock key", k32[:31], k32, false},
		{"long clock key", append(append([]byte{}, k32...), 1), k32, false},
		{"short data key", k32, k32[:16], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := StoreKeys{ChunkID: k32, Data: tc.data, Meta: k32, Clock: tc.clock}
			if err := k.validate(); (err == nil) != tc.ok {
				t.Fatalf("validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
