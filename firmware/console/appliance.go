package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
)

// ApplianceOptions configure WaitForConfig.
type ApplianceOptions struct {
	Board   string
	Version string
	// PCR11 is announced in HELLO (see Hello.PCR11).
	PCR11 string
	// Validate checks a pushed config and returns its summary; nil means
	// the package's Validate.
	Validate func([]byte) (string, error)
	// Previous is the config in force, if any; the summary says whether
	// the push changes it.
	Previous       []byte
	HelloInterval  time.Duration
	ConfirmTimeout time.Duration
	Log            hclog.Logger
	// Human receives the lines meant for a person on the console.
	Human io.Writer
	// Typed delivers lines the operator typed on the console (the text
	// between frames); nil if there is no such input.
	Typed <-chan string
}

// WaitForConfig announces that the appliance waits for a config and runs
// the exchange until a valid config is confirmed, which it returns. It
// returns only then or when ctx ends or the link fails.
func WaitForConfig(ctx context.Context, c *frame.Conn, o ApplianceOptions) ([]byte, error) {
	if o.Validate == nil {
		o.Validate = Validate
	}
	if o.HelloInterval <= 0 {
		o.HelloInterval = DefaultHelloInterval
	}
	if o.ConfirmTimeout <= 0 {
		o.ConfirmTimeout = DefaultConfirmTimeout
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Human == nil {
		o.Human = io.Discard
	}
	hello, err := json.Marshal(Hello{State: "waiting-for-config", Board: o.Board, Version: o.Version, PCR11: o.PCR11})
	if err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	// HELLO goes out every HelloInterval; the human line every
	// humanEvery-th time, so that a person's screen does not scroll away.
	const humanEvery = 10
	announcements := 0
	announce := func() error {
		if announcements%humanEvery == 0 {
			fmt.Fprintf(o.Human, "%s (push one with: holdfast console push --port DEV cfg.hcl)\r\n", WaitingLine)
		}
		announcements++
		return c.Post(frame.TypeHello, hello)
	}
	if err := announce(); err != nil {
		return nil, err
	}
	tick := time.NewTicker(o.HelloInterval)
	defer tick.Stop()
	frames := make(chan frame.Frame)
	recvErr := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			f, err := c.Recv(rctx)
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case frames <- f:
			case <-rctx.Done():
				return
			}
		}
	}()
	defer wg.Wait()
	defer stop()

	s := &session{c: c, o: o, frames: frames, recvErr: recvErr}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for config: %w", ctx.Err())
		case err := <-recvErr:
			return nil, fmt.Errorf("wait for config: %w", err)
		case <-tick.C:
			if err := announce(); err != nil {
				return nil, err
			}
		case f := <-frames:
			if f.Type != frame.TypeConfigBegin {
				o.Log.Debug("ignoring frame while waiting", "type", f.Type)
				continue
			}
			cfg, err := s.receive(ctx, f)
			if err == nil {
				return cfg, nil
			}
			var r rejection
			if !errors.As(err, &r) {
				return nil, err
			}
			o.Log.Warn("config not accepted", "reason", r.msg)
			fmt.Fprintf(o.Human, "holdfast: config not accepted: %s\r\n", strings.ReplaceAll(r.msg, "\n", "\r\n  "))
			if err := s.result(ctx, Result{OK: false, Message: r.msg}); err != nil {
				return nil, err
			}
			announcements = 0
			if err := announce(); err != nil {
				return nil, err
			}
		}
	}
}

// rejection is a failed exchange that goes back to waiting.
type rejection struct{ msg string }

func (r rejection) Error() string { return r.msg }

type session struct {
	c       *frame.Conn
	o       ApplianceOptions
	frames  <-chan frame.Frame
	recvErr <-chan error
}

func (s *session) next(ctx context.Context, timeout time.Duration) (frame.Frame, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return frame.Frame{}, ctx.Err()
	case err := <-s.recvErr:
		return frame.Frame{}, err
	case <-t.C:
		return frame.Frame{}, rejection{"timed out waiting for the host"}
	case f := <-s.frames:
		return f, nil
	}
}

func (s *session) result(ctx context.Context, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("result: %w", err)
	}
	return s.c.Send(ctx, frame.TypeResult, b)
}

func (s *session) receive(ctx context.Context, begin frame.Frame) ([]byte, error) {
	var hdr ConfigBegin
	if err := json.Unmarshal(begin.Payload, &hdr); err != nil {
		return nil, rejection{fmt.Sprintf("bad CONFIG-BEGIN: %v", err)}
	}
	if hdr.Size <= 0 || hdr.Size > MaxConfigSize {
		return nil, rejection{fmt.Sprintf("config size %d: want 1..%d bytes", hdr.Size, MaxConfigSize)}
	}
	s.o.Log.Info("receiving config", "bytes", hdr.Size)
	var buf bytes.Buffer
	for {
		f, err := s.next(ctx, 30*time.Second)
		if err != nil {
			return nil, err
		}
		switch f.Type {
		case frame.TypeConfigData:
			if buf.Len()+len(f.Payload) > hdr.Size {
				return nil, rejection{"config longer than announced"}
			}
			buf.Write(f.Payload)
			continue
		case frame.TypeConfigEnd:
		case frame.TypeConfigBegin:
			return s.receive(ctx, f) // the host restarted the push
		default:
			return nil, rejection{fmt.Sprintf("unexpected %s during a config push", f.Type)}
		}
		break
	}
	cfg := buf.Bytes()
	if len(cfg) != hdr.Size || sum(cfg) != hdr.SHA256 {
		return nil, rejection{fmt.Sprintf("config damaged in transit: got %d bytes sha256 %s, announced %d bytes sha256 %s", len(cfg), sum(cfg), hdr.Size, hdr.SHA256)}
	}
	summary, err := s.o.Validate(cfg)
	if err != nil {
		return nil, rejection{err.Error()}
	}
	switch {
	case s.o.Previous == nil:
		summary = "new config (none was in force)\n" + summary
	case bytes.Equal(s.o.Previous, cfg):
		summary = "unchanged: identical to the config in force\n" + summary
	default:
		summary = "replaces the config in force (sha256 " + sum(s.o.Previous) + ")\n" + summary
	}
	fmt.Fprintf(s.o.Human, "holdfast: received config:\r\n%s", strings.ReplaceAll(summary, "\n", "\r\n"))
	if err := s.c.Send(ctx, frame.TypeSummary, []byte(summary)); err != nil {
		return nil, err
	}
	const prompt = "type yes to apply this config"
	fmt.Fprintf(s.o.Human, "holdfast: %s\r\n", prompt)
	if err := s.c.Send(ctx, frame.TypePrompt, []byte(prompt)); err != nil {
		return nil, err
	}
	answer, err := s.answer(ctx)
	if err != nil {
		return nil, err
	}
	if answer != "yes" {
		return nil, rejection{fmt.Sprintf("not confirmed (answer %q)", answer)}
	}
	msg := fmt.Sprintf("%s (sha256 %s)", AcceptedLine, sum(cfg))
	fmt.Fprintf(s.o.Human, "%s\r\n", msg)
	s.o.Log.Info("config accepted", "sha256", sum(cfg))
	if err := s.result(ctx, Result{OK: true, SHA256: sum(cfg), Message: msg}); err != nil {
		if !errors.Is(err, frame.ErrNoAck) {
			return nil, err
		}
		// The operator confirmed; only the host's receipt of the result
		// is unknown (it may have gone away). The config stands.
		s.o.Log.Warn("host did not acknowledge the result", "error", err)
	}
	return cfg, nil
}

// answer waits for an ANSWER frame or a line typed on the console.
func (s *session) answer(ctx context.Context) (string, error) {
	t := time.NewTimer(s.o.ConfirmTimeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case err := <-s.recvErr:
			return "", err
		case <-t.C:
			return "", rejection{"no confirmation in time"}
		case line := <-s.o.Typed:
			line = strings.TrimSpace(line)
			if line != "" {
				return line, nil
			}
		case f := <-s.frames:
			if f.Type == frame.TypeAnswer {
				return strings.TrimSpace(string(f.Payload)), nil
			}
			return "", rejection{fmt.Sprintf("unexpected %s while waiting for confirmation", f.Type)}
		}
	}
}
