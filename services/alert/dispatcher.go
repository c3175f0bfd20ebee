package alert

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/ingest"
)

// Dispatcher defaults (Options fields left zero).
const (
	DefaultQueueSize   = 64
	DefaultMaxAttempts = 6
	DefaultBackoff     = 10 * time.Second
	DefaultMaxBackoff  = 5 * time.Minute
	DefaultSendTimeout = time.Minute
	// DefaultMaxKeys bounds the kind+source pairs whose rate-limit windows
	// are open at once; alerts of further pairs share one window.
	DefaultMaxKeys = 1024
)

// ErrClosed is returned by Alert after Close (the alert is still logged).
var ErrClosed = errors.New("alert dispatcher is closed")

// Options configures a Dispatcher. Zero fields take the defaults.
type Options struct {
	Appliance string       // the appliance's name, in every message
	Log       hclog.Logger // nil: alerts are not logged (tests)
	Senders   []Sender
	// RateLimit alerts of one kind and source are sent per Window; the
	// rest are folded into one summary at the window's end. Defaults:
	// config.DefaultRateLimitCount per config.DefaultRateLimitWindow.
	RateLimit int
	Window    time.Duration
	// QueueSize bounds the messages waiting for each sender; an alert that
	// finds a queue full is dropped for that sender (and logged).
	QueueSize int
	// MaxAttempts bounds the attempts to send one message; Backoff is the
	// wait before the first retry, doubling up to MaxBackoff.
	MaxAttempts         int
	Backoff, MaxBackoff time.Duration
	// SendTimeout bounds one attempt.
	SendTimeout time.Duration
	// MaxKeys bounds the rate-limit windows open at once.
	MaxKeys int
	// Now gives the time stamped on alerts without one; nil is time.Now.
	Now func() time.Time
}

// Stats counts what a Dispatcher did. Queued, Sent, Failed and Dropped
// count per sender (an alert for two senders counts twice).
type Stats struct {
	Alerts    int64 // alerts given to Alert
	Folded    int64 // alerts the rate limit folded into a summary
	Summaries int64 // summaries made
	Queued    int64 // messages put on a sender's queue
	Sent      int64 // messages delivered
	Failed    int64 // messages given up (permanent error, attempts used up, or Close gave up)
	Dropped   int64 // messages not queued: queue full or dispatcher closed
}

// Dispatcher is an ingest.Alerter that logs every alert and hands it to its
// senders in the background, under a rate limit, with retries. Its methods
// are safe for concurrent use.
type Dispatcher struct {
	opts    Options
	log     hclog.Logger
	workers []*worker
	wg      sync.WaitGroup
	base    context.Context // cancelled when Close gives up
	abort   context.CancelFunc

	mu      sync.Mutex
	closed  bool
	windows map[string]*window

	alerts, folded, summaries, queued, sent, failed, dropped atomic.Int64
}

var _ ingest.Alerter = (*Dispatcher)(nil)

type worker struct {
	s Sender
	q chan Message
}

// window is the rate-limit state of one kind and source.
type window struct {
	key         string
	overflow    bool // the window shared by pairs beyond Options.MaxKeys
	start       time.Time
	sent        int
	folded      int
	first, last time.Time // of the folded alerts
	lastAlert   ingest.Alert
	timer       *time.Timer
}

const overflowKey = "\x00overflow"

// New starts a Dispatcher: one goroutine per sender. Close stops it.
func New(opts Options) *Dispatcher {
	if opts.RateLimit <= 0 {
		opts.RateLimit = config.DefaultRateLimitCount
	}
	if opts.Window <= 0 {
		opts.Window = config.DefaultRateLimitWindow
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = DefaultSendTimeout
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &Dispatcher{opts: opts, log: opts.Log, windows: map[string]*window{}}
	if d.log == nil {
		d.log = hclog.NewNullLogger()
	}
	d.base, d.abort = context.WithCancel(context.Background())
	for _, s := range opts.Senders {
		w := &worker{s: s, q: make(chan Message, opts.QueueSize)}
		d.workers = append(d.workers, w)
		d.wg.Add(1)
		go d.run(w)
	}
	return d
}

// Stats returns the counts so far.
func (d *Dispatcher) Stats() Stats {
	return Stats{
		Alerts: d.alerts.Load(), Folded: d.folded.Load(), Summaries: d.summaries.Load(),
		Queued: d.queued.Load(), Sent: d.sent.Load(), Failed: d.failed.Load(), Dropped: d.dropped.Load(),
	}
}

// Alert logs a, then queues it for every sender unless the rate limit
// folds it, and returns at once: it never waits for the network. The error
// says which senders had no room for it (or that d is closed); the alert
// is logged in any case. ctx is not used: nothing here blocks.
func (d *Dispatcher) Alert(_ context.Context, a ingest.Alert) error {
	d.alerts.Add(1)
	if a.Time.IsZero() {
		a.Time = d.opts.Now()
	}
	a.Time = a.Time.UTC()
	_ = ingest.LogAlerter{Log: d.log}.Alert(context.Background(), a)

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		d.dropped.Add(int64(len(d.workers)))
		return fmt.Errorf("alert %s for %q not sent: %w", a.Kind, a.Source, ErrClosed)
	}
	w := d.windowFor(a)
	if w.sent >= d.opts.RateLimit {
		if w.folded == 0 {
			w.first = a.Time
		}
		w.folded++
		w.last = a.Time
		w.lastAlert = a
		d.folded.Add(1)
		d.log.Debug("alert folded by the rate limit", "kind", a.Kind, "source", a.Source,
			"folded", w.folded, "window_ends", w.start.Add(d.opts.Window).UTC().Format(time.RFC3339))
		return nil
	}
	w.sent++
	return d.enqueue(Message{ID: newID(), Appliance: d.opts.Appliance, Alert: a})
}

// windowFor returns the open rate-limit window of a's kind and source,
// opening one when there is none. d.mu is held.
func (d *Dispatcher) windowFor(a ingest.Alert) *window {
	key := a.Kind + "\x00" + a.Source
	if w := d.windows[key]; w != nil {
		return w
	}
	w := &window{key: key}
	if len(d.windows) >= d.opts.MaxKeys {
		if ow := d.windows[overflowKey]; ow != nil {
			return ow
		}
		w = &window{key: overflowKey, overflow: true}
	}
	w.start = d.opts.Now().UTC()
	w.timer = time.AfterFunc(d.opts.Window, func() { d.endWindow(w) })
	d.windows[w.key] = w
	return w
}

// endWindow closes w when its time is up, queueing its summary.
func (d *Dispatcher) endWindow(w *window) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.windows[w.key] != w {
		return // Close flushed it
	}
	delete(d.windows, w.key)
	if w.folded > 0 {
		_ = d.enqueue(d.summary(w, w.start.Add(d.opts.Window)))
	}
}

// summary returns the message that reports w's folded alerts.
func (d *Dispatcher) summary(w *window, end time.Time) Message {
	d.summaries.Add(1)
	a := w.lastAlert
	a.Time = end.UTC()
	what := fmt.Sprintf("%d more %s alerts for source %q", w.folded, a.Kind, a.Source)
	if w.overflow {
		what = fmt.Sprintf("%d more alerts (more than %d kinds and sources alerted at once; the last: %s for %q)", w.folded, d.opts.MaxKeys, a.Kind, a.Source)
	}
	a.Message = fmt.Sprintf("%s between %s and %s were not sent one by one (rate limit: %s for each kind and source). The last of them: %s",
		what, w.first.UTC().Format(time.RFC3339), w.last.UTC().Format(time.RFC3339),
		config.RateLimit{Count: d.opts.RateLimit, Window: d.opts.Window}, a.Message)
	d.log.Warn("alerts folded by the rate limit", "kind", a.Kind, "source", a.Source, "folded", w.folded)
	return Message{ID: newID(), Appliance: d.opts.Appliance, Alert: a, Folded: w.folded, WindowStart: w.start, WindowEnd: end.UTC()}
}

// enqueue puts m on every sender's queue without waiting. d.mu is held.
func (d *Dispatcher) enqueue(m Message) error {
	var errs []error
	for _, w := range d.workers {
		select {
		case w.q <- m:
			d.queued.Add(1)
		default:
			d.dropped.Add(1)
			d.log.Error("alert dropped: the sender's queue is full", "sender", w.s.Name(),
				"queue", cap(w.q), "kind", m.Alert.Kind, "source", m.Alert.Source, "alert_id", m.ID)
			errs = append(errs, fmt.Errorf("alert %s for %q not queued for %s: its queue of %d is full", m.Alert.Kind, m.Alert.Source, w.s.Name(), cap(w.q)))
		}
	}
	return errors.Join(errs...)
}

// run delivers w's queue until it is closed.
func (d *Dispatcher) run(w *worker) {
	defer d.wg.Done()
	for m := range w.q {
		if d.base.Err() != nil {
			d.failed.Add(1)
			d.log.Error("alert not delivered: the dispatcher closed first", "sender", w.s.Name(),
				"kind", m.Alert.Kind, "source", m.Alert.Source, "alert_id", m.ID)
			continue
		}
		d.deliver(w.s, m)
	}
}

// deliver sends m through s, retrying transient failures with backoff.
func (d *Dispatcher) deliver(s Sender, m Message) {
	log := d.log.With("sender", s.Name(), "kind", m.Alert.Kind, "source", m.Alert.Source, "alert_id", m.ID)
	backoff := d.opts.Backoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(d.base, d.opts.SendTimeout)
		err := s.Send(ctx, m)
		cancel()
		if err == nil {
			d.sent.Add(1)
			log.Info("alert sent", "attempt", attempt, "folded", m.Folded)
			return
		}
		switch {
		case IsPermanent(err):
			d.failed.Add(1)
			log.Error("alert not delivered: permanent failure", "attempt", attempt, "error", err)
			return
		case attempt >= d.opts.MaxAttempts:
			d.failed.Add(1)
			log.Error("alert not delivered: attempts used up", "attempts", attempt, "error", err)
			return
		case d.base.Err() != nil:
			d.failed.Add(1)
			log.Error("alert not delivered: the dispatcher closed first", "attempt", attempt, "error", err)
			return
		}
		log.Warn("alert not delivered yet; will retry", "attempt", attempt, "retry_in", backoff.String(), "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-d.base.Done():
			t.Stop()
		}
		backoff = min(2*backoff, d.opts.MaxBackoff)
	}
}

// Close stops taking alerts, queues the summaries of the open rate-limit
// windows (cut short), and waits until every queued message is delivered
// or given up, or until ctx ends: then the attempts under way are
// cancelled, what is left is given up and logged, and the error says how
// many messages were not delivered. Calling Close again returns nil.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	for _, w := range d.windows {
		w.timer.Stop()
		if w.folded > 0 {
			_ = d.enqueue(d.summary(w, d.opts.Now()))
		}
	}
	d.windows = nil
	d.closed = true
	for _, w := range d.workers {
		close(w.q)
	}
	d.mu.Unlock()

	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		d.abort()
		return nil
	case <-ctx.Done():
		pending := d.queued.Load() - d.sent.Load() - d.failed.Load()
		d.abort()
		<-done
		return fmt.Errorf("close alerts: gave up %d undelivered messages: %w", pending, context.Cause(ctx))
	}
}
