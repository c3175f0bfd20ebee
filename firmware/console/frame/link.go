package frame

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Link defaults.
const (
	DefaultAckTimeout = 1500 * time.Millisecond
	DefaultRetries    = 8
	inboxSize         = 64
)

// Errors from a Conn.
var (
	ErrNoAck  = errors.New("no acknowledgement from the other side")
	ErrClosed = errors.New("console connection closed")
)

// Options configure a Conn.
type Options struct {
	// AckTimeout is how long Send waits for an ACK before resending.
	AckTimeout time.Duration
	// Retries is how often Send resends before giving up.
	Retries int
	// Text receives the bytes between frames (kernel messages, log lines,
	// typed input). Nil discards them.
	Text io.Writer
	// Log receives link-level diagnostics (retries, damage). Nil discards.
	Log hclog.Logger
}

// Conn is a reliable, ordered message link over a byte stream shared with
// text: stop-and-wait with one outstanding frame per direction. Every frame
// other than ACK and NACK is acknowledged by the receiver; a duplicate
// (same sequence number as the last one delivered, i.e. our ACK was lost)
// is acknowledged again and dropped.
type Conn struct {
	rw   io.ReadWriter
	opts Options

	wmu     sync.Mutex // serialises writes of frames and text
	sendMu  sync.Mutex // one reliable Send at a time
	seqMu   sync.Mutex
	nextSeq uint16

	acks chan Frame // ACK/NACK frames, for the current Send
	ctrl chan Frame // ACK/NACK frames to write, so that Run never blocks on a write
	// ctrlPending counts control frames queued or being written.
	ctrlPending atomic.Int64
	inbox       chan Frame
	done        chan struct{}
	err         error // why Run stopped; read after done is closed
}

// NewConn returns a Conn on rw. Call Run to start reading. The first
// sequence number is random, so that a restarted peer is not mistaken for a
// duplicate.
func NewConn(rw io.ReadWriter, o Options) *Conn {
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.Retries <= 0 {
		o.Retries = DefaultRetries
	}
	if o.Text == nil {
		o.Text = io.Discard
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	var seed [2]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails on Linux
	return &Conn{
		rw:      rw,
		opts:    o,
		nextSeq: binary.BigEndian.Uint16(seed[:]),
		acks:    make(chan Frame, 8),
		ctrl:    make(chan Frame, 64),
		inbox:   make(chan Frame, inboxSize),
		done:    make(chan struct{}),
	}
}

// Run reads and dispatches until the stream fails or ctx ends. It returns
// the read error (io.EOF when the other side closed). To stop a blocked
// Read, close the stream.
func (c *Conn) Run(ctx context.Context) error {
	defer close(c.done)
	stopWriter := make(chan struct{})
	defer close(stopWriter)
	go c.writeControl(stopWriter)
	var dec Decoder
	buf := make([]byte, 4096)
	lastSeq := -1
	for {
		if err := ctx.Err(); err != nil {
			c.err = err
			return err
		}
		n, err := c.rw.Read(buf)
		if n > 0 {
			dec.Feed(buf[:n])
			for {
				ev, ok := dec.Next()
				if !ok {
					break
				}
				lastSeq = c.dispatch(ev, lastSeq)
			}
		}
		if err != nil {
			c.err = fmt.Errorf("console read: %w", err)
			return c.err
		}
	}
}

func (c *Conn) dispatch(ev Event, lastSeq int) int {
	switch ev.Kind {
	case EventText:
		_, _ = c.opts.Text.Write(ev.Text)
	case EventDamaged:
		c.opts.Log.Debug("damaged frame", "type", ev.Frame.Type, "seq", ev.Frame.Seq)
		if ev.Frame.Type != TypeAck && ev.Frame.Type != TypeNack && ev.Frame.Type.Known() {
			c.control(TypeNack, ev.Frame.Seq)
		}
	case EventFrame:
		f := ev.Frame
		switch f.Type {
		case TypeAck, TypeNack:
			select {
			case c.acks <- f:
			default: // nobody is waiting; a late ACK
			}
			return lastSeq
		}
		if int(f.Seq) == lastSeq {
			c.opts.Log.Debug("duplicate frame", "type", f.Type, "seq", f.Seq)
			c.control(TypeAck, f.Seq)
			return lastSeq
		}
		// Only Run adds to the inbox, so room seen here stays. The ACK
		// is queued before the frame is delivered, so that a receiver
		// that returns at once and Drains does not lose it.
		if len(c.inbox) == cap(c.inbox) {
			// Inbox full: do not acknowledge, the sender will retry.
			c.opts.Log.Warn("inbox full, dropping frame", "type", f.Type, "seq", f.Seq)
			return lastSeq
		}
		c.control(TypeAck, f.Seq)
		c.inbox <- f
		return int(f.Seq)
	}
	return lastSeq
}

// writeControl writes the ACKs and NACKs that Run queues.
func (c *Conn) writeControl(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case f := <-c.ctrl:
			if err := c.writeFrame(f); err != nil {
				c.opts.Log.Debug("writing control frame", "error", err)
			}
			c.ctrlPending.Add(-1)
		}
	}
}

// control queues an ACK or NACK; when the queue is full it is dropped and
// the peer's retry covers it.
func (c *Conn) control(typ Type, seq uint16) {
	c.ctrlPending.Add(1)
	select {
	case c.ctrl <- Frame{Type: typ, Seq: seq}:
	default:
		c.ctrlPending.Add(-1)
	}
}

func (c *Conn) seq() uint16 {
	c.seqMu.Lock()
	defer c.seqMu.Unlock()
	c.nextSeq++
	return c.nextSeq
}

func (c *Conn) writeFrame(f Frame) error {
	b, err := Encode(f)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.rw.Write(b); err != nil {
		return fmt.Errorf("console write %s: %w", f.Type, err)
	}
	return nil
}

// Drain waits until the queued ACKs and NACKs are written, so that closing
// the stream right after the last message does not lose its ACK.
func (c *Conn) Drain(ctx context.Context) error {
	for c.ctrlPending.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: %w", ctx.Err())
		case <-c.done:
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// WriteText writes human text to the stream between frames. Each byte
// that starts the frame magic (0xF1) is written as the four characters
// \xf1, so nothing written as text, whoever wrote it (a child's log line,
// a worker-supplied field, a typed byte echoed back), can be read as a
// frame by the other side. It reports len(p) on success.
func (c *Conn) WriteText(p []byte) (int, error) {
	q := p
	if bytes.IndexByte(p, Magic[0]) >= 0 {
		q = bytes.ReplaceAll(p, Magic[:1], []byte(`\xf1`))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.rw.Write(q); err != nil {
		return 0, fmt.Errorf("console write text: %w", err)
	}
	return len(p), nil
}

// Post sends a frame once without waiting for an acknowledgement (for
// announcements that are repeated anyway, such as HELLO).
func (c *Conn) Post(typ Type, payload []byte) error {
	return c.writeFrame(Frame{Type: typ, Seq: c.seq(), Payload: payload})
}

// Send sends a frame and waits until the other side acknowledges it,
// resending after AckTimeout or at once on a NACK, up to Retries times.
func (c *Conn) Send(ctx context.Context, typ Type, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("send %s: %w", typ, ErrTooLarge)
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	f := Frame{Type: typ, Seq: c.seq(), Payload: payload}
	// Drop stale ACKs from an earlier Send.
	for len(c.acks) > 0 {
		<-c.acks
	}
	for attempt := 0; attempt <= c.opts.Retries; attempt++ {
		if attempt > 0 {
			c.opts.Log.Debug("resending", "type", typ, "seq", f.Seq, "attempt", attempt)
		}
		if err := c.writeFrame(f); err != nil {
			return err
		}
		timer := time.NewTimer(c.opts.AckTimeout)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return fmt.Errorf("send %s: %w", typ, ctx.Err())
			case <-c.done:
				timer.Stop()
				return fmt.Errorf("send %s: %w: %w", typ, ErrClosed, c.err)
			case <-timer.C:
				break wait
			case a := <-c.acks:
				if a.Seq != f.Seq {
					continue // a stale or foreign ACK
				}
				if a.Type == TypeAck {
					timer.Stop()
					return nil
				}
				timer.Stop()
				break wait // NACK: resend now
			}
		}
	}
	return fmt.Errorf("send %s seq %d: %w after %d tries", typ, f.Seq, ErrNoAck, c.opts.Retries+1)
}

// Recv returns the next message frame.
func (c *Conn) Recv(ctx context.Context) (Frame, error) {
	select {
	case f := <-c.inbox:
		return f, nil
	default:
	}
	select {
	case f := <-c.inbox:
		return f, nil
	case <-ctx.Done():
		return Frame{}, fmt.Errorf("receive: %w", ctx.Err())
	case <-c.done:
		return Frame{}, fmt.Errorf("receive: %w: %w", ErrClosed, c.err)
	}
}
