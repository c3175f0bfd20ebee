package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
)

// TestCommands runs commands over a noisy, damaging link and typed on the
// console, against a handler that echoes, fails or writes several frames.
func TestCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	arw, hrw := link(t, 7)
	ac := startConn(t, ctx, arw, nil)
	hc := startConn(t, ctx, hrw, io.Discard)
	big := strings.Repeat("0123456789abcdef", 400) // 6.4 KiB: several OUTPUT frames
	handler := func(_ context.Context, cmd Command, out io.Writer) error {
		switch cmd.Name {
		case "echo":
			fmt.Fprint(out, strings.Join(cmd.Args, " "))
			return nil
		case "big":
			fmt.Fprint(out, big)
			return nil
		case "fail":
			fmt.Fprint(out, "partial output")
			return errors.New("it failed")
		}
		return fmt.Errorf("unknown command %q", cmd.Name)
	}
	typed := make(chan string, 1)
	human := &lineSink{}
	sctx, scancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- Serve(sctx, ac, ServeOptions{Handler: handler, Typed: typed, Human: human, Prompt: "> "})
	}()
	for _, tc := range []struct {
		name    string
		cmd     Command
		out     string
		wantErr string
	}{
		{"echo", Command{Name: "echo", Args: []string{"a", "b c"}}, "a b c", ""},
		{"several frames", Command{Name: "big"}, big, ""},
		{"failure", Command{Name: "fail"}, "partial output", "it failed"},
		{"unknown", Command{Name: "nope"}, "", `unknown command "nope"`},
		{"hostile args", Command{Name: "echo", Args: []string{"\x1b[2J", "\xff"}}, "\x1b[2J \ufffd", ""},
	} {
		var out bytes.Buffer
		d, err := RunCommand(ctx, hc, tc.cmd, &out)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (!errors.Is(err, ErrCommandFailed) || !strings.Contains(d.Message, tc.wantErr)):
			t.Errorf("%s: err %v, done %+v; want %q", tc.name, err, d, tc.wantErr)
		}
		if out.String() != tc.out {
			t.Errorf("%s: output %q, want %q", tc.name, out.String(), tc.out)
		}
	}
	typed <- "echo typed   words"
	typed <- "   "
	typed <- "fail"
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(human.String(), "error: it failed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := human.String(); !strings.Contains(got, "> typed words> ") || !strings.Contains(got, "partial outputerror: it failed\r\n> ") {
		t.Errorf("console shows %q", got)
	}
	scancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve returned %v, want context.Canceled", err)
	}
	if _, err := RunCommand(ctx, hc, Command{Name: strings.Repeat("x", MaxCommandSize)}, io.Discard); err == nil {
		t.Error("an oversized command was sent")
	}
}

// TestStaleDoneIgnored: a DONE and OUTPUT the appliance resends for an
// earlier host (whose ACK was lost when it let go of the line) must not
// answer the next host's command.
func TestStaleDoneIgnored(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	arw, hrw := link(t, 0)
	ac := startConn(t, ctx, arw, nil)
	hc := startConn(t, ctx, hrw, io.Discard)
	go func() {
		f, err := ac.Recv(ctx)
		if err != nil {
			return
		}
		var cmd Command
		_ = json.Unmarshal(f.Payload, &cmd)
		stale, _ := json.Marshal(Done{ID: "0123456789abcdef", OK: true})
		_ = ac.Send(ctx, frame.TypeOutput, []byte("0123456789abcdef\x00stale output"))
		_ = ac.Send(ctx, frame.TypeDone, stale)
		_ = ac.Send(ctx, frame.TypeOutput, append([]byte(cmd.ID+"\x00"), "fresh output"...))
		done, _ := json.Marshal(Done{ID: cmd.ID, OK: true})
		_ = ac.Send(ctx, frame.TypeDone, done)
	}()
	var out bytes.Buffer
	d, err := RunCommand(ctx, hc, Command{Name: "status"}, &out)
	if err != nil || !d.OK || out.String() != "fresh output" {
		t.Fatalf("RunCommand = %+v, %v, output %q; want only the fresh answer", d, err, out.String())
	}
}
