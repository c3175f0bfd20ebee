package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// The worker adversary's control techniques (issue 16): code inside the
// worker speaks to PID 1 over the control channel (firmware/control,
// docs/control.md). A TEST image's PID 1 gives it two channels of its own
// beside the worker's, each served by PID 1's real handler for the worker
// (fromWorker): -control-fd, on which it floods and fakes messages, and
// -lying-fd, on which PID 1's console carries out `hold` and `extend`
// through the adversary instead of the worker. One row per technique,
// numbered on from the planted rows:
//
//	ATTACK N worker-control NAME: refused|SUCCEEDED|n/a: detail
//
// PID 1 adds its own verdicts after the adversary exits (ATTACK CHECK
// worker-control ..., firmware/appliance/attack_worker_linux.go): the
// config partition byte-identical, no status kept for an invented source,
// the primary disk unchanged, its own alert still in status, its
// goroutines and memory back.
//
// | name                   | tries                                                               | SUCCEEDED when                          |
// |------------------------|---------------------------------------------------------------------|-----------------------------------------|
// | fake-hold              | answer PID 1's `hold` of a real snapshot with {} and record nothing | the console says done                   |
// | fake-extend            | answer PID 1's `extend SNAPSHOT 30y` with {} and record nothing     | the console says done                   |
// | status-flood-invented  | 5000 status notices for invented sources, 8 KiB of text each        | PID 1's VmRSS grows 32 MiB, or no answer|
// | status-flood-configured| 5000 status notices for each configured source, 4 KiB summary       | as above                                |
// | status-error-flood     | 200 failed-pull statuses of a configured source (each an alert)     | no answer after (and CHECK own-alert-   |
// |                        |                                                                     | kept)                                   |
// | alert-flood            | 200 alert notices, fake "verified OK" text, unknown kinds           | as above                                |
// | escape-sequences       | alert, mirror, scrub-progress and status text with ESC, OSC 52,     | no answer after (the VM test: status    |
// |                        | the console's frame bytes                                           | shows no raw ESC)                       |
// | sign-flood             | 300 sign requests of a real sealed snapshot at once                 | more receipts than the rate allows      |
// | concurrent-flood       | 5000 sign requests and 1000 status notices written without waiting | a request unanswered or answered twice, |
// |                        |                                                                     | a receipt, no answer after              |
// | sign-missing           | sign of valid IDs no snapshot has, and of a wip journal's ID        | a receipt                               |
// | sign-unsealed          | sign of an unsealed copy of a real manifest, of the planted garbage,| a receipt, or no answer in 30 s         |
// |                        | symlink and FIFO manifests                                          |                                         |
// | sign-foreign-id        | sign of "../" paths, 64 capitals, 65 bytes, an empty ID             | anything but invalid                    |
// | sign-foreign-digest    | sign with a digest (or sha256, manifest) field of the worker's      | anything but invalid                    |
// | config-write-ops       | the old design's scrub-done and repair requests, and reseal, unlock,| anything but invalid (CHECK config-     |
// |                        | config, write-config                                                | partition-unchanged)                    |
// | wrong-side-ops         | init, pull, extend, scrub, restore, restore-progress, quiesce,      | anything but refused                    |
// |                        | send-alert sent by the worker                                       |                                         |
// | fake-replies           | 2000 unsolicited replies (extend, sign, pull, init) to PID 1        | any answer, or none to the probe after  |
// | notice-request-mixup   | a notice with an id, a request without one                          | anything but invalid or silence         |
// | malformed-frames       | empty, truncated, non-object, NUL, invalid UTF-8, unknown envelope  | a receipt or an accepted request, or no |
// |                        | field, bodies of the wrong type, 100000-deep nesting, a 1 MiB-less  | answer after                            |
// |                        | line with an oversized field                                        |                                         |
// | primary-foreign        | primary naming a disk PID 1 never gave, and a real name with "/"    | no answer after (CHECK primary-         |
// |                        |                                                                     | unchanged)                              |
// | oversized-frame        | a 2 MiB line                                                        | the channel stays open                  |
// | pid1-memory            | /proc/1/status VmRSS and VmHWM before the first and after the last  | VmRSS grew 32 MiB or VmHWM 64 MiB       |

// controlWait bounds one answer of PID 1's.
const controlWait = 30 * time.Second

// rawEnvelope is one line of the control protocol as the adversary
// writes and reads it, without the protocol package's checks.
type rawEnvelope struct {
	ID    uint64          `json:"id,omitempty"`
	Op    string          `json:"op"`
	Reply bool            `json:"reply,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
	Err   *control.Error  `json:"err,omitempty"`
}

// rawConn is the adversary's end of a control channel: it writes any
// line and matches the replies to its ids.
type rawConn struct {
	w       io.Writer
	wmu     sync.Mutex
	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan rawEnvelope
	stray   int // replies to no pending id (or a second reply)
	other   int // lines from PID 1 that are no reply
	eof     chan struct{}
}

func newRawConn(rw io.ReadWriter) *rawConn {
	c := &rawConn{w: rw, pending: map[uint64]chan rawEnvelope{}, next: 1 << 40, eof: make(chan struct{})}
	go c.read(rw)
	return c
}

func (c *rawConn) read(r io.Reader) {
	defer close(c.eof)
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 2*control.MaxLine)
	for s.Scan() {
		var e rawEnvelope
		err := json.Unmarshal(s.Bytes(), &e)
		c.mu.Lock()
		ch := c.pending[e.ID]
		delete(c.pending, e.ID)
		switch {
		case err != nil || !e.Reply:
			c.other++
		case ch == nil:
			c.stray++
		default:
			ch <- e
		}
		c.mu.Unlock()
	}
}

// closed says whether PID 1 ended the channel.
func (c *rawConn) closed() bool {
	select {
	case <-c.eof:
		return true
	default:
		return false
	}
}

// line writes one line (a newline is added).
func (c *rawConn) line(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.w.Write(append(append([]byte(nil), b...), '\n'))
	return err
}

// request writes a request of op with body (marshalled unless it is a
// json.RawMessage) and returns where its reply will arrive.
func (c *rawConn) request(op string, body any) (chan rawEnvelope, error) {
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan rawEnvelope, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	return ch, c.line(envelopeLine(id, op, body))
}

// notice writes a notice (id 0).
func (c *rawConn) notice(op string, body any) error { return c.line(envelopeLine(0, op, body)) }

func envelopeLine(id uint64, op string, body any) []byte {
	raw, ok := body.(json.RawMessage)
	if !ok && body != nil {
		raw, _ = json.Marshal(body)
	}
	b, _ := json.Marshal(rawEnvelope{ID: id, Op: op, Body: raw})
	return b
}

// call writes a request and waits for its reply.
func (c *rawConn) call(op string, body any, wait time.Duration) (rawEnvelope, error) {
	ch, err := c.request(op, body)
	if err != nil {
		return rawEnvelope{}, fmt.Errorf("write: %w", err)
	}
	select {
	case e := <-ch:
		return e, nil
	case <-c.eof:
		return rawEnvelope{}, errors.New("PID 1 ended the channel")
	case <-time.After(wait):
		return rawEnvelope{}, fmt.Errorf("no answer in %s", wait)
	}
}

// kindOf is a reply's verdict: its error kind, "ok" without one.
func kindOf(e rawEnvelope) string {
	if e.Err == nil {
		return "ok"
	}
	return string(e.Err.Kind)
}

// probe checks that PID 1 still answers on the channel (any answer).
func (c *rawConn) probe() error {
	_, err := c.call("sign", &control.SignRequest{Snapshot: missingID(0)}, controlWait)
	return err
}

// missingID is a valid snapshot ID that no snapshot has (year 2002).
func missingID(n int) string { return fmt.Sprintf("20020202T020202Z-%08x", 0xc0ffee00+n) }

// pid1Mem reads PID 1's VmRSS and VmHWM (KiB).
func pid1Mem() (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/1/status")
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		var n int64
		fmt.Sscanf(strings.TrimSpace(v), "%d", &n)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm, nil
}

// memGrowth is the verdict on PID 1's memory between two readings.
func memGrowth(what string, rss0, hwm0 int64, err0 error) result {
	rss, hwm, err := pid1Mem()
	if err0 != nil || err != nil {
		return naf("%s: /proc/1/status unreadable as the worker (%v %v); PID 1's CHECK pid1-memory judges", what, err0, err)
	}
	d := fmt.Sprintf("%s: PID 1 VmRSS %d -> %d KiB, VmHWM %d -> %d KiB", what, rss0, rss, hwm0, hwm)
	if rss-rss0 >= 32<<10 || hwm-hwm0 >= 64<<10 {
		return succeededf("%s: PID 1 grew", d)
	}
	return refusedf("%s", d)
}

// controlTarget is what the control techniques need.
type controlTarget struct {
	ctl     *rawConn
	lying   *lyingWorker
	sources []string // the config's sources
	store   string   // the first store (the primary)
}

// lyingWorker serves PID 1's requests on the -lying-fd channel as a
// worker that lies: extend is answered {} and nothing is recorded.
type lyingWorker struct {
	conn     *control.Conn
	mu       sync.Mutex
	extends  []string
	alerts   int
	verdicts chan string
}

func newLyingWorker(rw io.ReadWriter) *lyingWorker {
	l := &lyingWorker{verdicts: make(chan string, 8)}
	l.conn = control.New(rw, control.Options{Side: control.Worker, Handler: l.handle})
	return l
}

func (l *lyingWorker) handle(_ context.Context, req control.Request) (control.Reply, error) {
	switch m := req.(type) {
	case *control.ExtendRequest:
		l.mu.Lock()
		l.extends = append(l.extends, fmt.Sprintf("%s until=%s hold=%v", m.Snapshot, m.Until.Format(time.DateOnly), m.Hold))
		l.mu.Unlock()
		return &control.Empty{}, nil // "done", and nothing recorded
	case *control.SendAlert:
		if strings.HasPrefix(m.Text, "CONSOLE: ") {
			// The verdict follows the extend it judges: name that one.
			l.mu.Lock()
			ext := "none came"
			if len(l.extends) > 0 {
				ext = l.extends[len(l.extends)-1]
			}
			l.mu.Unlock()
			select {
			case l.verdicts <- ext + "\x00" + m.Text:
			default:
			}
		} else {
			l.mu.Lock()
			l.alerts++
			l.mu.Unlock()
		}
		return nil, nil
	case *control.QuiesceRequest:
		return &control.QuiesceReply{}, nil
	}
	return nil, control.Errorf(control.Refused, "the lying worker answers extend only")
}

// fakeRetention waits for the console's verdicts on the hold and extend
// PID 1 carried out through the lying worker.
func (l *lyingWorker) fakeRetention(row func(string, result)) {
	deadline := time.After(6 * time.Minute)
	for _, name := range []string{"fake-hold", "fake-extend"} {
		select {
		case v := <-l.verdicts:
			ext, v, _ := strings.Cut(v, "\x00")
			switch {
			case strings.Contains(v, ": done"):
				row(name, succeededf("answered extend (%s) with {} and recorded nothing; the console said: %s", ext, v))
			case strings.Contains(v, "failed"):
				row(name, refusedf("answered extend (%s) with {} and recorded nothing; the console said: %s", ext, v))
			default:
				row(name, succeededf("no verdict of the console, counted as a success to be safe: %s", v))
			}
		case <-deadline:
			row(name, succeededf("no verdict of the console in 6 minutes, counted as a success to be safe"))
		}
	}
}

// controlAttack runs the control techniques, printing a row each through
// row, and returns how many it printed.
func controlAttack(t controlTarget, row func(string, result)) {
	rss0, hwm0, memErr := pid1Mem()
	after := func(what string, r result) result {
		if err := t.ctl.probe(); err != nil {
			return combine(r, succeededf("PID 1 did not answer after %s: %v", what, err))
		}
		return r
	}
	if t.lying != nil {
		t.lying.fakeRetention(row)
	}
	big := strings.Repeat("x", control.MaxText-8)

	// Floods of notices.
	flood := func(name string, n int, mk func(i int) *control.StatusNotice) {
		rss, hwm, merr := pid1Mem()
		start := time.Now()
		sent := 0
		for i := range n {
			b := envelopeLine(0, "status", mk(i))
			sent += len(b)
			if err := t.ctl.line(b); err != nil {
				row(name, succeededf("write failed after %d notices: %v", i, err))
				return
			}
		}
		// The probe is answered after every notice before it was read.
		perr := t.ctl.probe()
		r := memGrowth(fmt.Sprintf("%d status notices (%d MiB) read by PID 1 in %s", n, sent>>20, time.Since(start).Round(time.Millisecond)), rss, hwm, merr)
		if perr != nil {
			r = combine(r, succeededf("PID 1 did not answer after %s: %v", name, perr))
		}
		row(name, r)
	}
	flood("status-flood-invented", 5000, func(i int) *control.StatusNotice {
		return &control.StatusNotice{Source: fmt.Sprintf("adversary-%05d", i), Status: &control.PullStatus{Last: time.Now(), Summary: big, Err: big}}
	})
	if len(t.sources) == 0 {
		row("status-flood-configured", naf("PID 1 named no configured source"))
		row("status-error-flood", naf("PID 1 named no configured source"))
	} else {
		flood("status-flood-configured", 5000*len(t.sources), func(i int) *control.StatusNotice {
			return &control.StatusNotice{Source: t.sources[i%len(t.sources)], Status: &control.PullStatus{Last: time.Now(), Summary: "worker adversary: fake status " + big[:1000]}}
		})
		flood("status-error-flood", 200, func(i int) *control.StatusNotice {
			return &control.StatusNotice{Source: t.sources[0], Status: &control.PullStatus{Last: time.Now(), Err: fmt.Sprintf("worker adversary: fake failure %d", i)}}
		})
	}
	{
		var err error
		for i := 0; i < 200 && err == nil; i++ {
			kind := []string{"attack", "appliance", "no-such-kind", "verify-ok"}[i%4]
			err = t.ctl.notice("alert", &control.AlertNotice{Kind: kind, Text: fmt.Sprintf("verify OK: all snapshots intact (worker adversary %d)", i)})
		}
		r := refusedf("200 alert notices sent; PID 1 answers after (its own alert: CHECK own-alert-kept)")
		if err != nil {
			r = succeededf("write: %v", err)
		}
		row("alert-flood", after("alert-flood", r))
	}
	{
		esc := "\x1b[2J\x1b[H\x1b]52;c;aG9sZGZhc3Q=\x07status: all OK\x1b[8m\r\nholdfast> \x00\x9b31m"
		errs := errors.Join(
			t.ctl.notice("alert", &control.AlertNotice{Kind: "attack", Text: esc}),
			t.ctl.notice("mirror", &control.MirrorNotice{Text: esc}),
			t.ctl.notice("scrub-progress", &control.ScrubProgressNotice{Text: esc}))
		if len(t.sources) > 0 {
			errs = errors.Join(errs, t.ctl.notice("status", &control.StatusNotice{Source: t.sources[0], Status: &control.PullStatus{Summary: esc, Err: esc}}))
		}
		r := refusedf("ESC, CSI, OSC 52, C1 and the prompt sent in alert, mirror, scrub-progress and status text (the console's status must quote them)")
		if errs != nil {
			r = succeededf("write: %v", errs)
		}
		row("escape-sequences", after("escape-sequences", r))
	}

	// Signing.
	real := realSnapshot(t.store)
	{
		name := "sign-flood"
		if real == "" {
			row(name, succeededf("no sealed snapshot found to ask receipts for, counted as a success to be safe"))
		} else {
			start := time.Now()
			var chs []chan rawEnvelope
			for range 300 {
				ch, err := t.ctl.request("sign", &control.SignRequest{Snapshot: real})
				if err != nil {
					break
				}
				chs = append(chs, ch)
			}
			kinds := gather(chs, t.ctl, 3*time.Minute)
			took := time.Since(start)
			allowed := control.DefaultSignRate.Burst + int(took/control.DefaultSignRate.Every) + 1
			d := fmt.Sprintf("%d sign requests of sealed snapshot %s in %s: %v; the rate allows %d", len(chs), real, took.Round(time.Millisecond), kinds, allowed)
			switch {
			case kinds["ok"] > allowed:
				row(name, succeededf("%s: more receipts than the rate", d))
			case kinds["unanswered"] > 0:
				row(name, succeededf("%s: requests unanswered", d))
			default:
				row(name, after(name, refusedf("%s", d)))
			}
		}
	}
	{
		name := "concurrent-flood"
		start := time.Now()
		var chs []chan rawEnvelope
		var werr error
		for i := 0; i < 5000 && werr == nil; i++ {
			var ch chan rawEnvelope
			ch, werr = t.ctl.request("sign", &control.SignRequest{Snapshot: missingID(i + 1)})
			chs = append(chs, ch)
			if i%5 == 0 && werr == nil {
				werr = t.ctl.notice("status", &control.StatusNotice{Source: fmt.Sprintf("flood-%d", i), Status: &control.PullStatus{Summary: "flood"}})
			}
		}
		kinds := gather(chs, t.ctl, 5*time.Minute)
		t.ctl.mu.Lock()
		stray := t.ctl.stray
		t.ctl.mu.Unlock()
		d := fmt.Sprintf("5000 sign requests (missing snapshots) and 1000 status notices written without waiting, answered in %s: %v; %d stray replies", time.Since(start).Round(time.Millisecond), kinds, stray)
		switch {
		case werr != nil:
			row(name, succeededf("%s; write: %v", d, werr))
		case kinds["ok"] > 0 || kinds["unanswered"] > 0 || stray > 0:
			row(name, succeededf("%s", d))
		default:
			row(name, after(name, refusedf("%s", d)))
		}
	}
	// expect sends each request and requires one of the kinds in want.
	expect := func(name string, want []string, reqs []struct {
		what, op string
		body     any
	}) {
		// Wait for the rate limit's tokens to come back (one a second),
		// so that the verdict is PID 1's, not the rate limit's.
		time.Sleep(time.Duration(len(reqs)+2) * control.DefaultSignRate.Every)
		var rs []result
		for _, q := range reqs {
			e, err := t.ctl.call(q.op, q.body, controlWait)
			k := kindOf(e)
			switch {
			case err != nil:
				rs = append(rs, succeededf("%s: %v, counted as a success", q.what, err))
			case !contains(want, k):
				rs = append(rs, succeededf("%s: answered %s %s", q.what, k, errText(e)))
			default:
				rs = append(rs, refusedf("%s: %s", q.what, k))
			}
		}
		row(name, after(name, combine(rs...)))
	}
	type req = struct {
		what, op string
		body     any
	}
	var reqs []req
	for i := range 2 {
		reqs = append(reqs, req{"sign of missing " + missingID(100+i), "sign", &control.SignRequest{Snapshot: missingID(100 + i)}})
	}
	journal := fakeID(6)
	if err := os.WriteFile(filepath.Join(t.store, "wip", journal+".journal"), []byte("HFJOURNAL garbage of the worker adversary"), 0o640); err == nil {
		reqs = append(reqs, req{"sign of the ID of an unsealed journal wip/" + journal + ".journal", "sign", &control.SignRequest{Snapshot: journal}})
	} else {
		reqs = append(reqs, req{"sign of the ID of a journal (not written: " + err.Error() + ")", "sign", &control.SignRequest{Snapshot: journal}})
	}
	expect("sign-missing", []string{"not-found"}, reqs)
	reqs = nil
	if real != "" {
		copyID := fakeID(7)
		b, err := os.ReadFile(filepath.Join(t.store, "snapshots", real+".snap"))
		if err == nil {
			err = os.WriteFile(filepath.Join(t.store, "snapshots", copyID+".snap"), b, 0o640)
		}
		reqs = append(reqs, req{fmt.Sprintf("sign of an unsealed copy of %s as %s (%v)", real, copyID, err), "sign", &control.SignRequest{Snapshot: copyID}})
	}
	for i, what := range map[int]string{2: "a symlink to /dev/zero", 3: "a FIFO", 4: "garbage the sealer refused"} {
		reqs = append(reqs, req{"sign of the planted manifest " + fakeID(i) + ", " + what, "sign", &control.SignRequest{Snapshot: fakeID(i)}})
	}
	expect("sign-unsealed", []string{"refused", "not-found", "invalid"}, reqs)
	reqs = nil
	for _, id := range []string{"../../config/master.sealed", strings.Repeat("A", 64), strings.Repeat("2", 65), "", "20010101T000000Z-ADADAD00", "20010101T000000Z-adad/d00"} {
		reqs = append(reqs, req{fmt.Sprintf("sign of %q", id), "sign", json.RawMessage(fmt.Sprintf(`{"snapshot":%q}`, id))})
	}
	expect("sign-foreign-id", []string{"invalid"}, reqs)
	reqs = nil
	digest := strings.Repeat("ab", 32)
	for _, f := range []string{"digest", "sha256", "manifest"} {
		reqs = append(reqs, req{"sign with a " + f + " field", "sign", json.RawMessage(fmt.Sprintf(`{"snapshot":%q,%q:%q}`, orMissing(real), f, digest))})
	}
	expect("sign-foreign-digest", []string{"invalid"}, reqs)
	reqs = nil
	for _, op := range []string{"scrub-done", "repair", "repair-request", "scrub-state", "config", "write-config", "reseal", "unlock", "provision", "shutdown"} {
		reqs = append(reqs, req{op, op, json.RawMessage(`{"text":"damaged: packs/00/x","last":"2001-01-01T00:00:00Z","repair":true,"config":"W3NvdXJjZS5tYWlsXQ=="}`)})
	}
	expect("config-write-ops", []string{"invalid"}, reqs)
	reqs = nil
	for _, op := range []string{"init", "pull", "extend", "scrub", "restore", "restore-progress", "quiesce", "send-alert"} {
		reqs = append(reqs, req{op + " from the worker", op, json.RawMessage(`{}`)})
	}
	expect("wrong-side-ops", []string{"refused"}, reqs)
	{
		name := "fake-replies"
		var err error
		for i := 1; i <= 2000 && err == nil; i++ {
			op := []string{"extend", "sign", "pull", "init"}[i%4]
			b, _ := json.Marshal(rawEnvelope{ID: uint64(i), Op: op, Reply: true, Body: json.RawMessage(`{}`)})
			err = t.ctl.line(b)
		}
		t.ctl.mu.Lock()
		other := t.ctl.other
		t.ctl.mu.Unlock()
		r := refusedf("2000 unsolicited replies (extend, sign, pull, init); PID 1 sent %d lines that are no reply", other)
		if err != nil || other > 0 {
			r = succeededf("2000 unsolicited replies: write %v; PID 1 sent %d lines that are no reply", err, other)
		}
		row(name, after(name, r))
	}
	{
		name := "notice-request-mixup"
		var rs []result
		e, err := t.ctl.call("status", json.RawMessage(`{"source":"x","status":{}}`), controlWait)
		if err != nil || kindOf(e) != "invalid" {
			rs = append(rs, succeededf("status with an id: %s %v", kindOf(e), err))
		} else {
			rs = append(rs, refusedf("status with an id: invalid"))
		}
		if err := t.ctl.line(envelopeLine(0, "sign", &control.SignRequest{Snapshot: orMissing(real)})); err != nil {
			rs = append(rs, succeededf("sign without an id: write %v", err))
		} else {
			rs = append(rs, refusedf("sign without an id: no reply wanted, none signed (the probe after is answered in order)"))
		}
		row(name, after(name, combine(rs...)))
	}
	{
		name := "malformed-frames"
		deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
		lines := [][]byte{
			{}, []byte("{"), []byte("null"), []byte("[]"), []byte(`"x"`), []byte(`{"id":1}`),
			[]byte("\x00\x00\x00\x00"), []byte("{\"id\":9,\"op\":\"sign\",\"body\":{\"snapshot\":\"\xff\xfe\"}}"),
			[]byte(`{"id":11,"op":"sign","body":"x"}`), []byte(`{"id":12,"op":"sign","body":{"snapshot":1}}`),
			[]byte(`{"id":13,"op":"sign","body":{"snapshot":"` + missingID(1) + `"},"extra":1}`),
			[]byte(`{"id":14,"op":"sign","body":[1,2,3]}`), []byte(`{"id":-1,"op":"sign"}`),
			[]byte(`{"id":18446744073709551616,"op":"sign"}`), []byte(deep),
			[]byte(`{"id":15,"op":"status","body":` + deep + `}`),
		}
		long, _ := json.Marshal(rawEnvelope{Op: "status", Body: json.RawMessage(`{"source":"mail","status":{"summary":"` + strings.Repeat("y", control.MaxLine-200) + `"}}`)})
		lines = append(lines, long)
		var err error
		for _, l := range lines {
			if err = t.ctl.line(l); err != nil {
				break
			}
		}
		time.Sleep(2 * time.Second)
		t.ctl.mu.Lock()
		other := t.ctl.other
		t.ctl.mu.Unlock()
		r := refusedf("%d malformed lines (up to %d KiB) sent; PID 1 answered none with a body", len(lines), len(long)>>10)
		if err != nil || other > 0 {
			r = succeededf("%d malformed lines: write %v; %d lines from PID 1 that are no reply", len(lines), err, other)
		}
		row(name, after(name, r))
	}
	{
		name := "primary-foreign"
		errs := errors.Join(
			t.ctl.notice("primary", &control.PrimaryNotice{Disk: control.Disk{Name: "vdz", Dir: "/run"}}),
			t.ctl.notice("primary", &control.PrimaryNotice{Disk: control.Disk{Name: "vdb", Dir: "/"}}),
			t.ctl.notice("primary", &control.PrimaryNotice{Disk: control.Disk{Name: "vdb", Dir: filepath.Dir(t.store)}}))
		r := refusedf("primary notices for a disk PID 1 never gave (CHECK primary-unchanged)")
		if errs != nil {
			r = succeededf("write: %v", errs)
		}
		row(name, after(name, r))
	}
	{
		name := "oversized-frame"
		huge := append([]byte(`{"id":77,"op":"sign","body":{"snapshot":"`), bytes.Repeat([]byte("a"), 2<<20)...)
		huge = append(huge, `"}}`...)
		werr := make(chan error, 1)
		go func() { werr <- t.ctl.line(huge) }()
		select {
		case <-t.ctl.eof:
			row(name, refusedf("a %d KiB line: PID 1 ended and closed the channel", len(huge)>>10))
		case <-time.After(controlWait):
			row(name, succeededf("a %d KiB line: the channel is still open after %s", len(huge)>>10, controlWait))
		}
	}
	time.Sleep(2 * time.Second)
	row("pid1-memory", memGrowth("the whole control battery", rss0, hwm0, memErr))
}

// gather waits for the replies on chs (at most wait in all) and counts
// their kinds; "unanswered" counts the rest.
func gather(chs []chan rawEnvelope, c *rawConn, wait time.Duration) map[string]int {
	kinds := map[string]int{}
	deadline := time.After(wait)
	for i, ch := range chs {
		select {
		case e := <-ch:
			kinds[kindOf(e)]++
		case <-c.eof:
			kinds["unanswered"] += len(chs) - i
			return kinds
		case <-deadline:
			kinds["unanswered"] += len(chs) - i
			return kinds
		}
	}
	return kinds
}

func errText(e rawEnvelope) string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Text
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func orMissing(id string) string {
	if id == "" {
		return missingID(0)
	}
	return id
}

// realSnapshot is a snapshot of the store with a sealed manifest (not one
// the adversary planted).
func realSnapshot(dir string) string {
	es, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil {
		return ""
	}
	for _, e := range es {
		id, ok := strings.CutSuffix(e.Name(), ".snap")
		if !ok || !store.ValidSnapshotID(id) || !e.Type().IsRegular() || strings.HasPrefix(id, "20010101T000000Z-adad") {
			continue
		}
		if isImmutable(filepath.Join(dir, "snapshots", e.Name())) {
			return id
		}
	}
	return ""
}

// isImmutable says whether path carries the immutable flag (the sealer
// sealed it).
func isImmutable(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	return err == nil && flags&flagImmutable != 0
}
