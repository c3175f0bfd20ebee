package alert

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/ingest"
)

// fakeSender records messages and fails as its fail function says.
type fakeSender struct {
	mu    sync.Mutex
	got   []Message
	calls int
	fail  func(call int) error // nil: always succeed
	block chan struct{}        // when set, Send waits for it (or ctx)
}

func (f *fakeSender) Name() string { return "fake" }

func (f *fakeSender) Send(ctx context.Context, m Message) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail(f.calls); err != nil {
			return err
		}
	}
	f.got = append(f.got, m)
	return nil
}

func (f *fakeSender) Messages() []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Message(nil), f.got...)
}

func (f *fakeSender) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func closeNow(t *testing.T, d *Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestRateLimitBurst: 100 alerts of one kind and source in a burst reach a
// real webhook receiver as at most RateLimit alerts plus one summary, sent
// when the window ends, that counts the other 95; other sources have their
// own windows.
func TestRateLimitBurst(t *testing.T) {
	rc := startReceiver(t)
	log, _ := testLog(t)
	const limit, window = 5, 400 * time.Millisecond
	d := New(Options{Appliance: "hf", Log: log, Senders: []Sender{rc.webhook(t, "/h")},
		RateLimit: limit, Window: window, QueueSize: 200})
	start := time.Now()
	for i := range 100 {
		a := ingest.Alert{Kind: KindPullFailed, Source: "flappy", Message: fmt.Sprintf("pull failed, attempt %d", i)}
		if err := d.Alert(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := d.Alert(t.Context(), ingest.Alert{Kind: KindPullFailed, Source: "steady", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Alert(t.Context(), ingest.Alert{Kind: KindDiskFull, Source: "flappy", Message: "other kind"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the summary", func() bool { return len(rc.Requests()) >= limit+3+1+1 })
	closeNow(t, d)
	type doc struct {
		Kind, Source, Message string
		Folded                int
		RawStart              string `json:"window_start"`
		RawEnd                string `json:"window_end"`
		Time                  time.Time
	}
	var plain, summaries []doc
	perSource := map[string]int{}
	for _, r := range rc.Requests() {
		checkSigned(t, r)
		var dc doc
		if err := json.Unmarshal(r.body, &dc); err != nil {
			t.Fatal(err)
		}
		if dc.Folded > 0 {
			summaries = append(summaries, dc)
			continue
		}
		plain = append(plain, dc)
		perSource[dc.Kind+"/"+dc.Source]++
	}
	if perSource["pull-failed/flappy"] != limit || perSource["pull-failed/steady"] != 3 || perSource["disk-full/flappy"] != 1 {
		t.Errorf("plain alerts per kind/source: %v; want %d flappy, 3 steady, 1 disk-full", perSource, limit)
	}
	if len(summaries) != 1 {
		t.Fatalf("%d summaries, want 1", len(summaries))
	}
	s := summaries[0]
	if s.Folded != 95 || s.Kind != KindPullFailed || s.Source != "flappy" ||
		!strings.Contains(s.Message, "95 more pull-failed alerts") || !strings.Contains(s.Message, "attempt 99") {
		t.Errorf("summary %+v", s)
	}
	ws, err1 := time.Parse(time.RFC3339Nano, s.RawStart)
	we, err2 := time.Parse(time.RFC3339Nano, s.RawEnd)
	if err1 != nil || err2 != nil || we.Sub(ws) != window || !s.Time.Equal(we) {
		t.Errorf("summary window %q to %q (time %s); want %s long, time at its end", s.RawStart, s.RawEnd, s.Time, window)
	}
	if took := time.Since(start); took < window {
		t.Errorf("the summary came after %s, before the %s window ended", took, window)
	}
	st := d.Stats()
	if st.Alerts != 104 || st.Folded != 95 || st.Summaries != 1 || st.Sent != int64(limit+3+1+1) {
		t.Errorf("stats %+v", st)
	}
}

// TestRateLimitWindows covers the window's life with a fake sender.
func TestRateLimitWindows(t *testing.T) {
	tests := []struct {
		name      string
		limit     int
		window    time.Duration
		maxKeys   int
		alerts    []ingest.Alert
		pause     time.Duration // then the same alerts again
		wantPlain int
		wantSums  []int // Folded of each summary, in order
	}{
		{"under the limit", 3, time.Hour, 0, repeat("a", 3), 0, 3, nil},
		{"close flushes an open window", 2, time.Hour, 0, repeat("a", 10), 0, 2, []int{8}},
		{"a new window after the old ends", 2, 150 * time.Millisecond, 0, repeat("a", 3), 400 * time.Millisecond, 4, []int{1, 1}},
		{"too many keys share one window", 1, time.Hour, 3, distinct(10), 0, 4, []int{6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSender{}
			d := New(Options{Appliance: "hf", Senders: []Sender{f}, RateLimit: tt.limit, Window: tt.window, MaxKeys: tt.maxKeys})
			for _, a := range tt.alerts {
				if err := d.Alert(t.Context(), a); err != nil {
					t.Fatal(err)
				}
			}
			if tt.pause > 0 {
				time.Sleep(tt.pause)
				for _, a := range tt.alerts {
					if err := d.Alert(t.Context(), a); err != nil {
						t.Fatal(err)
					}
				}
			}
			closeNow(t, d)
			plain, sums := 0, []int(nil)
			for _, m := range f.Messages() {
				if m.Folded > 0 {
					sums = append(sums, m.Folded)
				} else {
					plain++
				}
			}
			if plain != tt.wantPlain || fmt.Sprint(sums) != fmt.Sprint(tt.wantSums) {
				t.Errorf("%d plain messages and summaries %v; want %d and %v", plain, sums, tt.wantPlain, tt.wantSums)
			}
		})
	}
}

func repeat(source string, n int) []ingest.Alert {
	out := make([]ingest.Alert, n)
	for i := range out {
		out[i] = ingest.Alert{Kind: KindScrubDamage, Source: source, Message: fmt.Sprint(i)}
	}
	return out
}

func distinct(n int) []ingest.Alert {
	out := make([]ingest.Alert, n)
	for i := range out {
		out[i] = ingest.Alert{Kind: KindDiskError, Source: fmt.Sprintf("disk%d", i), Message: fmt.Sprint(i)}
	}
	return out
}

// TestRetries: transient failures are retried up to MaxAttempts, permanent
// ones are not retried, and each outcome is counted.
func TestRetries(t *testing.T) {
	transient := errors.New("connection reset")
	tests := []struct {
		name      string
		fail      func(call int) error
		wantCalls int
		sent      int64
		failed    int64
	}{
		{"succeeds at once", nil, 1, 1, 0},
		{"succeeds on the third", func(c int) error {
			if c < 3 {
				return transient
			}
			return nil
		}, 3, 1, 0},
		{"never succeeds", func(int) error { return transient }, 4, 0, 1},
		{"permanent", func(int) error { return Permanent(errors.New("535 bad login")) }, 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSender{fail: tt.fail}
			log, logs := testLog(t)
			d := New(Options{Appliance: "hf", Log: log, Senders: []Sender{f}, MaxAttempts: 4, Backoff: time.Millisecond})
			if err := d.Alert(t.Context(), massChange()); err != nil {
				t.Fatal(err)
			}
			closeNow(t, d)
			st := d.Stats()
			if f.Calls() != tt.wantCalls || st.Sent != tt.sent || st.Failed != tt.failed {
				t.Errorf("%d calls, stats %+v; want %d calls, %d sent, %d failed", f.Calls(), st, tt.wantCalls, tt.sent, tt.failed)
			}
			if tt.failed > 0 && !strings.Contains(logs.String(), "alert not delivered") {
				t.Errorf("the failure was not logged")
			}
		})
	}
}

// TestQueueFull: with the sender stuck, alerts past the queue's room are
// dropped with an error, and Alert still returns at once.
func TestQueueFull(t *testing.T) {
	f := &fakeSender{block: make(chan struct{})}
	log, logs := testLog(t)
	d := New(Options{Appliance: "hf", Log: log, Senders: []Sender{f}, QueueSize: 2, RateLimit: 100})
	var errs []error
	start := time.Now()
	for i := range 10 {
		a := massChange()
		a.Source = fmt.Sprint("s", i)
		if i == 1 {
			// The worker has taken the first one off the queue.
			waitFor(t, 5*time.Second, "the first send", func() bool { return d.Stats().Queued == 1 && len(d.workers[0].q) == 0 })
		}
		errs = append(errs, d.Alert(t.Context(), a))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Alert blocked: %s", took)
	}
	dropped := 0
	for _, err := range errs {
		if err != nil {
			dropped++
			if !strings.Contains(err.Error(), "queue of 2 is full") {
				t.Errorf("error %q", err)
			}
		}
	}
	if dropped != 7 || d.Stats().Dropped != 7 {
		t.Errorf("%d dropped (stats %+v), want 7: 1 in flight, 2 queued", dropped, d.Stats())
	}
	if !strings.Contains(logs.String(), "alert dropped") {
		t.Error("drops were not logged")
	}
	close(f.block)
	closeNow(t, d)
	if n := len(f.Messages()); n != 3 {
		t.Errorf("%d delivered, want 3", n)
	}
}

// TestLogAndClose: every alert is logged (folded ones too) with
// alert=true; after Close, Alert still logs and returns ErrClosed.
func TestLogAndClose(t *testing.T) {
	f := &fakeSender{}
	log, logs := testLog(t)
	d := New(Options{Appliance: "hf", Log: log, Senders: []Sender{f}, RateLimit: 2})
	for range 5 {
		if err := d.Alert(t.Context(), massChange()); err != nil {
			t.Fatal(err)
		}
	}
	closeNow(t, d)
	if err := d.Alert(t.Context(), massChange()); !errors.Is(err, ErrClosed) {
		t.Errorf("Alert after Close = %v, want ErrClosed", err)
	}
	if err := d.Close(t.Context()); err != nil {
		t.Errorf("second Close = %v", err)
	}
	alerts := 0
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if rec["alert"] == true {
			alerts++
			if rec["kind"] != KindMassChange || rec["source"] != "mail-archive" || rec["@level"] != "error" {
				t.Errorf("alert log line %v", rec)
			}
		}
	}
	if alerts != 6 {
		t.Errorf("%d alert log lines, want 6", alerts)
	}
	if n := len(f.Messages()); n != 3 {
		t.Errorf("%d messages, want 2 and a summary", n)
	}
}

// TestFromConfig: a config file's alerts block, loaded by services/config,
// drives a dispatcher that reaches a real HTTPS receiver through the CA
// bundle it names.
func TestFromConfig(t *testing.T) {
	rc := startReceiver(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hook-ca.pem"), certPEM(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`appliance { name = "holdfast-01" }
source "mail" {
  s3 {
    endpoint   = "127.0.0.1:9000"
    bucket     = "mail"
    access_key = "a"
    secret_key = "b"
  }
  schedule = "every 6h"
}
alerts {
  webhook {
    url          = %q
    secret       = %q
    bearer_token = %q
    ca_bundle    = "hook-ca.pem"
  }
  rate_limit = "2 per 1h"
}
`, rc.srv.URL+"/hooks/x", testSecret, testToken)
	cfg, err := config.Parse(filepath.Join(dir, "cfg.hcl"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testLog(t)
	d, err := FromConfig(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := d.Alert(t.Context(), ingest.Alert{Kind: KindSafeMode, Message: "the TPM would not unseal"}); err != nil {
			t.Fatal(err)
		}
	}
	closeNow(t, d)
	reqs := rc.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 2 and a summary (rate_limit 2 per 1h)", len(reqs))
	}
	for _, r := range reqs {
		checkSigned(t, r)
		if !strings.Contains(string(r.body), `"appliance":"holdfast-01"`) || !strings.Contains(string(r.body), `"kind":"safe-mode"`) {
			t.Errorf("body %s", r.body)
		}
	}
	if _, err := NewSenders(nil, "hf"); err == nil {
		t.Error("NewSenders(nil) succeeded")
	}
}

// certPEM returns the receiver's certificate in PEM, as a CA bundle.
func certPEM(rc *receiver) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.srv.Certificate().Raw})
}

func TestDiskFull(t *testing.T) {
	tests := []struct {
		used, total uint64
		alert       bool
		pct         string
	}{
		{0, 0, false, ""},
		{50, 100, false, ""},
		{85, 100, false, ""},
		{86, 100, true, "86.0"},
		{999, 1000, true, "99.9"},
		{1000, 1000, true, "100.0"},
	}
	for _, tt := range tests {
		a, ok := DiskFull("store", "/srv/hf", tt.used, tt.total)
		if ok != tt.alert {
			t.Errorf("DiskFull(%d of %d) = %v, want %v", tt.used, tt.total, ok, tt.alert)
			continue
		}
		if ok && (a.Kind != KindDiskFull || a.Source != "store" || a.Details["used_pct"] != tt.pct || !strings.Contains(a.Message, "/srv/hf")) {
			t.Errorf("DiskFull(%d of %d) = %+v", tt.used, tt.total, a)
		}
	}
}

func TestKinds(t *testing.T) {
	want := "pull-failed mass-change disk-error scrub-damage clock-anomaly safe-mode disk-full attack test"
	if got := strings.Join(Kinds(), " "); got != want {
		t.Errorf("Kinds() = %s", got)
	}
}
