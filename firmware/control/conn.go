package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Kind is the kind of a failure, what the receiver acts on.
type Kind string

// The kinds of error.
const (
	Refused    Kind = "refused"     // not allowed: wrong side, unknown source, rate limit
	Invalid    Kind = "invalid"     // the message failed to decode or validate
	NotFound   Kind = "not-found"   // a named source, target or snapshot does not exist
	Busy       Kind = "busy"        // too many requests in flight, or one already runs
	DiskFailed Kind = "disk-failed" // a data disk failed (EIO, EROFS)
	Internal   Kind = "internal"    // anything else
)

func (k Kind) known() bool {
	switch k {
	case Refused, Invalid, NotFound, Busy, DiskFailed, Internal:
		return true
	}
	return false
}

// Error is a failure as it crosses the channel: a kind and a bounded text.
type Error struct {
	Kind Kind   `json:"kind"`
	Text string `json:"text"`
}

func (e *Error) Error() string { return string(e.Kind) + ": " + e.Text }

// Is matches an *Error of the same kind, so errors.Is(err,
// &control.Error{Kind: control.NotFound}) tells the kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Text == ""
}

// Errorf makes an *Error of kind k.
func Errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Text: fmt.Sprintf(format, args...)}
}

// KindOf is the kind of err: its *Error's, Internal for any other error,
// "" for nil.
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// asError turns a handler's error into what crosses the channel.
func asError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Kind: Internal, Text: err.Error()}
	} else if error(e) != err {
		// Wrapped: keep the whole text.
		e = &Error{Kind: e.Kind, Text: err.Error()}
	}
	if len(e.Text) > MaxText {
		e = &Error{Kind: e.Kind, Text: e.Text[:MaxText]}
	}
	return e
}

// envelope is one line on the wire.
type envelope struct {
	ID    uint64          `json:"id,omitempty"`
	Op    Op              `json:"op"`
	Reply bool            `json:"reply,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
	Err   *Error          `json:"err,omitempty"`
}

// Handler answers one request from the other side. req is one of the
// request types of the ops the other side may send; the reply must be of
// the op's reply type (nil for a notice).
type Handler func(ctx context.Context, req Request) (Reply, error)

// Rate is a token bucket: Burst at once, then one every Every.
type Rate struct {
	Every time.Duration
	Burst int
}

// Options configure a Conn.
type Options struct {
	// Side is this end; requests are accepted only for the ops the
	// other side may send.
	Side    Side
	Handler Handler
	// MaxInFlight bounds the requests from the other side handled at
	// once; a request beyond it is answered Busy (a notice dropped).
	// 0 means DefaultMaxInFlight.
	MaxInFlight int
	// SignRate limits the sign requests PID 1 answers; the zero value
	// means DefaultSignRate. Beyond it, sign is answered Refused.
	SignRate Rate
	Log      hclog.Logger
}

// Defaults.
const DefaultMaxInFlight = 16

// DefaultSignRate allows a burst of 32 receipts, then one a second: a pull
// commits one snapshot and asks for one receipt.
var DefaultSignRate = Rate{Every: time.Second, Burst: 32}

// Conn is one end of the control channel.
type Conn struct {
	o       Options
	w       io.Writer
	wmu     sync.Mutex
	sem     chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan envelope
	tokens  float64
	refill  time.Time
	dropped int
	done    chan struct{}
	err     error
}

// New starts reading rw and serving the other side's requests with
// o.Handler, each in its own goroutine, at most o.MaxInFlight at once.
func New(rw io.ReadWriter, o Options) *Conn {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.SignRate.Burst <= 0 {
		o.SignRate = DefaultSignRate
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{o: o, w: rw, sem: make(chan struct{}, o.MaxInFlight), ctx: ctx, cancel: cancel,
		pending: map[uint64]chan envelope{}, done: make(chan struct{}), tokens: float64(o.SignRate.Burst), refill: time.Now()}
	go c.read(rw)
	return c
}

// Done is closed when the channel ended; rw is closed then, when it is an
// io.Closer.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the channel ended (io.EOF when the other side closed it).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) read(r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), MaxLine)
	for s.Scan() {
		var e envelope
		d := json.NewDecoder(bytes.NewReader(s.Bytes()))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			c.o.Log.Warn("control: undecodable message dropped", "error", err)
			continue
		}
		if e.Reply {
			c.mu.Lock()
			ch := c.pending[e.ID]
			delete(c.pending, e.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- e
			}
			continue
		}
		c.serve(e)
	}
	c.mu.Lock()
	c.err = s.Err()
	if c.err == nil {
		c.err = io.EOF
	}
	c.mu.Unlock()
	c.cancel()
	// An ended channel is closed, so that the other side sees it end
	// (a writer of an oversized line would otherwise block for ever).
	if cl, ok := r.(io.Closer); ok {
		_ = cl.Close()
	}
	close(c.done)
}

// serve checks one request and hands it to the handler.
func (c *Conn) serve(e envelope) {
	sp, ok := spec(e.Op)
	switch {
	case !ok:
		c.refuse(e, Errorf(Invalid, "unknown op %q", e.Op))
		return
	case sp.From == c.o.Side:
		c.refuse(e, Errorf(Refused, "op %s is not sent by %s", e.Op, c.other()))
		return
	case sp.Notice != (e.ID == 0):
		c.refuse(e, Errorf(Invalid, "op %s: id %d (a notice has none, a request one)", e.Op, e.ID))
		return
	}
	req := reflect.New(sp.Request.Elem()).Interface().(Request)
	if err := decode(e.Body, req); err != nil {
		c.refuse(e, Errorf(Invalid, "%s: %v", e.Op, err))
		return
	}
	if e.Op == OpSign && !c.take() {
		c.refuse(e, Errorf(Refused, "sign: over the rate limit (%d at once, then one every %s)", c.o.SignRate.Burst, c.o.SignRate.Every))
		return
	}
	select {
	case c.sem <- struct{}{}:
	default:
		c.refuse(e, Errorf(Busy, "%s: %d requests in flight already", e.Op, c.o.MaxInFlight))
		return
	}
	go func() {
		defer func() { <-c.sem }()
		rep, err := c.o.Handler(c.ctx, req)
		if sp.Notice {
			if err != nil {
				c.refuse(e, asError(err)) // logged once in 1000: a flood must not flood the log
			}
			return
		}
		out := envelope{ID: e.ID, Op: e.Op, Reply: true, Err: asError(err)}
		if rep != nil && !isNil(rep) {
			if reflect.TypeOf(rep) != sp.Reply {
				out.Err = Errorf(Internal, "%s: handler replied %T", e.Op, rep)
			} else if b, merr := json.Marshal(rep); merr != nil {
				out.Err = Errorf(Internal, "%s: %v", e.Op, merr)
			} else {
				out.Body = b
			}
		}
		if err := c.write(out); err != nil {
			c.o.Log.Warn("control: reply not sent", "op", e.Op, "error", err)
		}
	}()
}

func isNil(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

func (c *Conn) other() Side {
	if c.o.Side == PID1 {
		return Worker
	}
	return PID1
}

// refuse answers a request with err (a notice is dropped, and logged the
// first time of every 1000).
func (c *Conn) refuse(e envelope, err *Error) {
	if e.ID == 0 {
		c.mu.Lock()
		n := c.dropped
		c.dropped++
		c.mu.Unlock()
		if n%1000 == 0 {
			c.o.Log.Warn("control: notice dropped", "op", e.Op, "error", err, "dropped", n+1)
		}
		return
	}
	if werr := c.write(envelope{ID: e.ID, Op: e.Op, Reply: true, Err: err}); werr != nil {
		c.o.Log.Warn("control: refusal not sent", "op", e.Op, "error", werr)
	}
}

// take takes a sign token.
func (c *Conn) take() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	r := c.o.SignRate
	if r.Every > 0 {
		c.tokens += float64(now.Sub(c.refill)) / float64(r.Every)
	}
	c.refill = now
	if c.tokens > float64(r.Burst) {
		c.tokens = float64(r.Burst)
	}
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// decode decodes a body strictly and validates it.
func decode(body json.RawMessage, v interface{ Validate() error }) error {
	if len(body) > 0 {
		d := json.NewDecoder(bytes.NewReader(body))
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			return err
		}
	}
	return v.Validate()
}

func (c *Conn) write(e envelope) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("control %s: %w", e.Op, err)
	}
	if len(b)+1 > MaxLine {
		return Errorf(Invalid, "control %s: %d bytes, over %d", e.Op, len(b)+1, MaxLine)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("control channel: %w", err)
	}
	return nil
}

// checkOut checks that this side may send req, validates it and encodes it.
func (c *Conn) checkOut(req Request) (OpSpec, json.RawMessage, error) {
	sp, ok := spec(req.Op())
	if !ok || sp.From != c.o.Side {
		return sp, nil, Errorf(Refused, "op %s is not sent by %s", req.Op(), c.o.Side)
	}
	if reflect.TypeOf(req) != sp.Request {
		return sp, nil, Errorf(Internal, "op %s: request of type %T", req.Op(), req)
	}
	if err := req.Validate(); err != nil {
		return sp, nil, Errorf(Invalid, "%s: %v", req.Op(), err)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return sp, nil, fmt.Errorf("control %s: %w", req.Op(), err)
	}
	return sp, b, nil
}

// Notify sends a notice, which gets no reply.
func (c *Conn) Notify(req Request) error {
	sp, b, err := c.checkOut(req)
	if err != nil {
		return err
	}
	if !sp.Notice {
		return Errorf(Internal, "op %s is a request, not a notice", req.Op())
	}
	return c.write(envelope{Op: req.Op(), Body: b})
}

// Call sends a request and waits for its reply, which it decodes and
// validates; an error from the other side is returned as an *Error, with
// the reply when one came along.
func (c *Conn) Call(ctx context.Context, req Request) (Reply, error) {
	sp, b, err := c.checkOut(req)
	if err != nil {
		return nil, err
	}
	if sp.Notice {
		return nil, Errorf(Internal, "op %s is a notice", req.Op())
	}
	ch := make(chan envelope, 1)
	c.mu.Lock()
	c.next++
	id := c.next
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := c.write(envelope{ID: id, Op: req.Op(), Body: b}); err != nil {
		return nil, err
	}
	select {
	case e := <-ch:
		if e.Err != nil && (!e.Err.Kind.known() || len(e.Err.Text) > MaxText) {
			return nil, Errorf(Invalid, "%s: reply with a malformed error", req.Op())
		}
		var rep Reply
		if len(e.Body) > 0 || e.Err == nil {
			rep = reflect.New(sp.Reply.Elem()).Interface().(Reply)
			if derr := decode(e.Body, rep); derr != nil {
				return nil, Errorf(Invalid, "%s reply: %v", req.Op(), derr)
			}
		}
		if e.Err != nil {
			return rep, e.Err
		}
		return rep, nil
	case <-c.done:
		return nil, fmt.Errorf("%s: control channel closed: %w", req.Op(), c.Err())
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", req.Op(), ctx.Err())
	}
}

// Do is Call with the reply's type: Do[*control.PullReply](ctx, c, req).
// The reply is the zero value (nil) when none came.
func Do[R Reply](ctx context.Context, c *Conn, req Request) (R, error) {
	rep, err := c.Call(ctx, req)
	r, _ := rep.(R)
	return r, err
}
