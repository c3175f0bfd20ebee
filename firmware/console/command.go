package console

// Commands, once the appliance runs (or waits in safe mode):
//
//	host                                     appliance
//	COMMAND {id, name, args}             ─►
//	                                     ◄─  OUTPUT id NUL "text" × n (≤ 1 KiB each)
//	                                     ◄─  DONE {id, ok, message}
//
// The id (random, chosen by the host) ties OUTPUT and DONE to their
// command: a DONE the appliance resends because the previous host tool let
// go of the line before its ACK got through must not answer the next one.
//
// The same commands can be typed on the console by a person: a typed line
// is split on spaces and answered in plain text on the console.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
)

// Command is the COMMAND payload.
type Command struct {
	ID   string   `json:"id,omitempty"`
	Name string   `json:"name"`
	Args []string `json:"args,omitempty"`
}

func (c Command) String() string { return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " ")) }

// Done is the DONE payload.
type Done struct {
	ID      string `json:"id,omitempty"`
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// ErrCommandFailed is returned by RunCommand when the appliance reports
// that the command failed.
var ErrCommandFailed = errors.New("command failed on the appliance")

// MaxCommandSize bounds an encoded COMMAND.
const MaxCommandSize = frame.MaxPayload

// RunCommand sends cmd and copies its output to out until DONE.
func RunCommand(ctx context.Context, c *frame.Conn, cmd Command, out io.Writer) (Done, error) {
	var id [8]byte
	_, _ = rand.Read(id[:])
	cmd.ID = hex.EncodeToString(id[:])
	b, err := json.Marshal(cmd)
	if err != nil {
		return Done{}, fmt.Errorf("command: %w", err)
	}
	if len(b) > MaxCommandSize {
		return Done{}, fmt.Errorf("command is %d bytes encoded, limit %d", len(b), MaxCommandSize)
	}
	if err := c.Send(ctx, frame.TypeCommand, b); err != nil {
		return Done{}, fmt.Errorf("send command %q: %w", cmd.Name, err)
	}
	for {
		f, err := c.Recv(ctx)
		if err != nil {
			return Done{}, fmt.Errorf("command %q: %w", cmd.Name, err)
		}
		switch f.Type {
		case frame.TypeOutput:
			fid, text, ok := bytes.Cut(f.Payload, []byte{0})
			if !ok || string(fid) != cmd.ID {
				continue // another command's, resent
			}
			if _, err := out.Write(text); err != nil {
				return Done{}, fmt.Errorf("command output: %w", err)
			}
		case frame.TypeDone:
			var d Done
			if err := json.Unmarshal(f.Payload, &d); err != nil {
				return Done{}, fmt.Errorf("bad DONE: %w", err)
			}
			if d.ID != cmd.ID {
				continue // another command's, resent
			}
			if !d.OK {
				return d, fmt.Errorf("%w: %s", ErrCommandFailed, d.Message)
			}
			return d, nil
		}
	}
}

// Handler runs one command, writing what it shows to out. Its error is
// reported to the operator (DONE with ok=false, or a line on the console).
type Handler func(ctx context.Context, cmd Command, out io.Writer) error

// ServeOptions configure Serve.
type ServeOptions struct {
	Handler Handler
	// Typed delivers the lines typed on the console; Human is where their
	// answers go. Either may be nil.
	Typed <-chan string
	Human io.Writer
	// Prompt is printed on the console before each typed command.
	Prompt string
	Log    hclog.Logger
}

// Serve answers commands from frames and from typed lines, one at a time,
// until ctx ends or the link fails.
func Serve(ctx context.Context, c *frame.Conn, o ServeOptions) error {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Human == nil {
		o.Human = io.Discard
	}
	var mu sync.Mutex // one command at a time
	frames := make(chan frame.Frame)
	recvErr := make(chan error, 1)
	go func() {
		for {
			f, err := c.Recv(ctx)
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case frames <- f:
			case <-ctx.Done():
				return
			}
		}
	}()
	if o.Prompt != "" {
		fmt.Fprint(o.Human, o.Prompt)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			return fmt.Errorf("console: %w", err)
		case line, ok := <-o.Typed:
			if !ok {
				o.Typed = nil
				continue
			}
			fields := strings.Fields(line)
			if len(fields) == 0 {
				if o.Prompt != "" {
					fmt.Fprint(o.Human, o.Prompt)
				}
				continue
			}
			cmd := Command{Name: fields[0], Args: fields[1:]}
			o.Log.Info("console command (typed)", "command", cmd.Name)
			mu.Lock()
			err := o.Handler(ctx, cmd, o.Human)
			mu.Unlock()
			if err != nil {
				fmt.Fprintf(o.Human, "error: %v\r\n", err)
			}
			if o.Prompt != "" {
				fmt.Fprint(o.Human, o.Prompt)
			}
		case f := <-frames:
			if f.Type != frame.TypeCommand {
				o.Log.Debug("ignoring frame", "type", f.Type)
				continue
			}
			var cmd Command
			if err := json.Unmarshal(f.Payload, &cmd); err != nil || cmd.Name == "" {
				if err := sendDone(ctx, c, Done{ID: cmd.ID, OK: false, Message: "malformed COMMAND"}); err != nil {
					return err
				}
				continue
			}
			o.Log.Info("console command", "command", cmd.Name)
			out := &outputWriter{ctx: ctx, c: c, id: cmd.ID}
			mu.Lock()
			err := o.Handler(ctx, cmd, out)
			mu.Unlock()
			if ferr := out.flush(); ferr != nil {
				return ferr
			}
			d := Done{ID: cmd.ID, OK: err == nil}
			if err != nil {
				d.Message = err.Error()
			}
			if err := sendDone(ctx, c, d); err != nil {
				return err
			}
		}
	}
}

func sendDone(ctx context.Context, c *frame.Conn, d Done) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("done: %w", err)
	}
	if len(b) > frame.MaxPayload {
		d.Message = d.Message[:frame.MaxPayload/2] + "…"
		b, _ = json.Marshal(d)
	}
	if err := c.Send(ctx, frame.TypeDone, b); err != nil {
		return fmt.Errorf("send DONE: %w", err)
	}
	return nil
}

// outputWriter sends a command's output as OUTPUT frames, a full frame at
// a time.
type outputWriter struct {
	ctx context.Context
	c   *frame.Conn
	id  string
	buf bytes.Buffer
	err error
}

// room is the text one OUTPUT frame carries after "id NUL".
func (w *outputWriter) room() int { return frame.MaxPayload - len(w.id) - 1 }

func (w *outputWriter) send() {
	text := w.buf.Next(w.room())
	payload := make([]byte, 0, len(w.id)+1+len(text))
	payload = append(append(append(payload, w.id...), 0), text...)
	w.err = w.c.Send(w.ctx, frame.TypeOutput, payload)
}

func (w *outputWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.buf.Write(p)
	for w.buf.Len() >= w.room() && w.err == nil {
		w.send()
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// Flush sends what is buffered now, without waiting for a full frame: a
// long-running command calls it after each progress line, so the host sees
// progress as it happens.
func (w *outputWriter) Flush() error { return w.flush() }

func (w *outputWriter) flush() error {
	for w.buf.Len() > 0 && w.err == nil {
		w.send()
	}
	return w.err
}
