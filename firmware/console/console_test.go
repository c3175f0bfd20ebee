package console

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
)

const goodConfig = `appliance { name = "holdfast-test" }
source "mail" {
  s3 {
    endpoint   = "10.0.2.2:9000"
    bucket     = "mail"
    access_key = "READONLY"
    secret_key = "secret"
  }
  schedule = "every 6h"
  retention {
    all_for = "14d"
  }
}
`

// noisy copies src to dst, inserting kernel-like lines between chunks and
// flipping a byte in every flipEvery-th chunk (0: never).
func noisy(dst io.WriteCloser, src io.Reader, seed uint64, flipEvery int) {
	defer dst.Close()
	rng := rand.New(rand.NewPCG(seed, seed))
	buf := make([]byte, 512)
	for i := 1; ; i++ {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := append([]byte(nil), buf[:n]...)
			if flipEvery > 0 && i%flipEvery == 0 {
				chunk[rng.IntN(n)] ^= 0x55
			}
			if rng.IntN(8) == 0 {
				cut := rng.IntN(n + 1)
				chunk = append(chunk[:cut:cut], append([]byte("\r\n[   12.345678] virtio_net virtio0 enp0s3: renamed\r\n"), chunk[cut:]...)...)
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

type duplex struct {
	io.Reader
	io.Writer
}

// link returns the two ends of a noisy duplex stream.
func link(t *testing.T, flipEvery int) (appliance, host io.ReadWriter) {
	ar, hw := io.Pipe() // host → appliance
	hr, aw := io.Pipe() // appliance → host
	ar2, hw2 := io.Pipe()
	hr2, aw2 := io.Pipe()
	go noisy(hw2, ar, 1, flipEvery)
	go noisy(aw2, hr, 2, flipEvery)
	t.Cleanup(func() { ar.Close(); hr.Close(); ar2.Close(); hr2.Close() })
	return duplex{ar2, aw}, duplex{hr2, hw}
}

func startConn(t *testing.T, ctx context.Context, rw io.ReadWriter, text io.Writer) *frame.Conn {
	c := frame.NewConn(rw, frame.Options{AckTimeout: 100 * time.Millisecond, Retries: 30, Text: text})
	go c.Run(ctx)
	return c
}

type lineSink struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lineSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lineSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestPush(t *testing.T) {
	big := goodConfig + "# " + strings.Repeat("padding so the config spans several frames ", 100) + "\n"
	tests := []struct {
		name      string
		cfg       string
		answer    string
		flipEvery int
		previous  string
		wantErr   error
		wantMsg   string
		summary   string
	}{
		{"accepted", goodConfig, "yes", 0, "", nil, "config accepted", "new config"},
		{"accepted through damage and noise", big, "yes", 9, "", nil, "config accepted", "new config"},
		{"unchanged", goodConfig, "yes", 0, goodConfig, nil, "config accepted", "unchanged"},
		{"replaces", goodConfig, "yes", 0, "appliance {}", nil, "config accepted", "replaces the config in force"},
		{"not confirmed", goodConfig, "no", 0, "", ErrRejected, "not confirmed", "new config"},
		{"invalid", "source {", "yes", 0, "", ErrRejected, "config:", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			arw, hrw := link(t, tt.flipEvery)
			human := &lineSink{}
			ac := startConn(t, ctx, arw, nil)
			hc := startConn(t, ctx, hrw, io.Discard)
			var prev []byte
			if tt.previous != "" {
				prev = []byte(tt.previous)
			}
			type res struct {
				cfg []byte
				err error
			}
			done := make(chan res, 1)
			actx, acancel := context.WithCancel(ctx)
			defer acancel()
			go func() {
				cfg, err := WaitForConfig(actx, ac, ApplianceOptions{
					Board: "test", HelloInterval: 50 * time.Millisecond, Human: human, Previous: prev,
				})
				done <- res{cfg, err}
			}()
			var gotSummary string
			r, err := Push(ctx, hc, []byte(tt.cfg), HostOptions{Confirm: func(summary, prompt string) (string, error) {
				gotSummary = summary
				if !strings.Contains(prompt, "type yes") {
					t.Errorf("prompt %q", prompt)
				}
				return tt.answer, nil
			}})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Push err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(r.Message, tt.wantMsg) {
				t.Errorf("result message %q, want %q", r.Message, tt.wantMsg)
			}
			if !strings.Contains(gotSummary, tt.summary) {
				t.Errorf("summary %q, want %q", gotSummary, tt.summary)
			}
			if tt.wantErr == nil {
				got := <-done
				if got.err != nil || string(got.cfg) != tt.cfg {
					t.Fatalf("appliance got %q, %v", got.cfg, got.err)
				}
				if !strings.Contains(human.String(), AcceptedLine) || !strings.Contains(human.String(), WaitingLine) {
					t.Errorf("human lines %q", human.String())
				}
				if !strings.Contains(gotSummary, `appliance "holdfast-test"`) {
					t.Errorf("summary %q lacks the appliance name", gotSummary)
				}
				if !strings.Contains(gotSummary, "maintenance reboot (prune): weekly sun 03:00 (UTC)") {
					t.Errorf("summary %q lacks the maintenance schedule (the default)", gotSummary)
				}
				return
			}
			// A rejected push leaves the appliance waiting: it announces again
			// (give it a moment to get there before stopping it).
			for deadline := time.Now().Add(5 * time.Second); strings.Count(human.String(), WaitingLine) < 2 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			acancel()
			if got := <-done; !errors.Is(got.err, context.Canceled) {
				t.Errorf("appliance returned %v after a rejection, want it still waiting", got.err)
			}
			if strings.Count(human.String(), WaitingLine) < 2 {
				t.Errorf("appliance did not go back to waiting: %q", human.String())
			}
		})
	}
}

// TestTypedConfirmation confirms with a line typed on the console.
func TestTypedConfirmation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, h := net.Pipe()
	defer a.Close()
	defer h.Close()
	typed := make(chan string, 1)
	pr, pw := io.Pipe()
	go func() {
		s := bufio.NewScanner(pr)
		for s.Scan() {
			typed <- s.Text()
		}
	}()
	ac := startConn(t, ctx, a, pw)
	hc := startConn(t, ctx, h, io.Discard)
	done := make(chan error, 1)
	go func() {
		_, err := WaitForConfig(ctx, ac, ApplianceOptions{Typed: typed, HelloInterval: time.Second})
		done <- err
	}()
	_, err := Push(ctx, hc, []byte(goodConfig), HostOptions{Confirm: func(string, string) (string, error) {
		// The person types on the console instead of answering here.
		if _, err := hc.WriteText([]byte("yes\r\n")); err != nil {
			return "", err
		}
		return "", nil
	}})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("appliance: %v", err)
	}
}

func TestPushRejectsSize(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{{"empty", 0}, {"too large", MaxConfigSize + 1}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := net.Pipe()
			defer a.Close()
			c := frame.NewConn(a, frame.Options{})
			if _, err := Push(context.Background(), c, make([]byte, tt.size), HostOptions{Confirm: func(string, string) (string, error) { return "yes", nil }}); err == nil {
				t.Fatal("Push accepted a config of the wrong size")
			}
		})
	}
}
