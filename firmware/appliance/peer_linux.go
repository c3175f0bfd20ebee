package appliance

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// The control channel between PID 1 and the worker: one JSON object per
// line over a socketpair, requests in both directions, each answered by a
// reply carrying its id.
//
//	| op      | from  | fields                                    | reply                |
//	|---------|-------|-------------------------------------------|----------------------|
//	| init    | PID 1 | keys, config, store_dir, create, recovery | err                  |
//	| pull    | PID 1 | source                                    | status, err          |
//	| extend  | PID 1 | snapshot, until, hold, reason             | err                  |
//	| sign    | worker| snapshot, digest                          | receipt, err         |
//	| status  | worker| source, status (after a scheduled pull)   | none                 |
//	| alert   | worker| text                                      | none                 |
//	| restore | PID 1 | snapshot, target, prefix, exact,          | restore, err         |
//	|         |       | receipt_key (restore_linux.go)            |                      |
//	| restore-| PID 1 | none; asked once a second while a restore | restore, err         |
//	| progress|       | runs                                      |                      |
//
// Limits: a message is at most maxMessage bytes; the worker trusts PID 1,
// and PID 1 treats what the worker says as data only (it never acts on a
// path or a command from it), since the worker parses network input.
type message struct {
	ID       int       `json:"id,omitempty"`
	Op       string    `json:"op"`
	Reply    bool      `json:"reply,omitempty"`
	Err      string    `json:"err,omitempty"`
	Source   string    `json:"source,omitempty"`
	Snapshot string    `json:"snapshot,omitempty"`
	Until    time.Time `json:"until,omitzero"`
	Hold     bool      `json:"hold,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	// Keys are the store's subkeys (init); never the master key, which
	// does not leave PID 1 (keys_linux.go).
	Keys     *store.StoreKeys `json:"keys,omitempty"`
	Config   []byte           `json:"config,omitempty"`
	StoreDir string           `json:"store_dir,omitempty"`
	// Disks are the data disks holding the store, the primary first
	// (init); the disk the worker writes to now (primary).
	Disks []diskRef `json:"disks,omitempty"`
	// LastScrub is when the last scrub ended (init); Repair asks PID 1 to
	// repair at the next boot what a scrub found damaged (scrub-done).
	LastScrub time.Time   `json:"last_scrub,omitzero"`
	Repair    bool        `json:"repair,omitempty"`
	Create    bool        `json:"create,omitempty"`
	Recovery  []byte      `json:"recovery,omitempty"`
	Digest    []byte      `json:"digest,omitempty"`
	Receipt   []byte      `json:"receipt,omitempty"`
	Status    *pullStatus `json:"status,omitempty"`
	Text      string      `json:"text,omitempty"`
	// Busy is the worker's answer to quiesce: what still runs; "" when
	// it was idle and now starts nothing new (maintreboot_linux.go).
	Busy string `json:"busy,omitempty"`

	// TrustedTime is T at lockdown (init): new snapshots' retention
	// counts from the later of the wall clock and it, so a wall clock set
	// back cannot shorten them (T only grows, so it is a safe floor).
	TrustedTime time.Time `json:"trusted_time,omitzero"`

	// restore and restore-progress (restore_linux.go). Prefix is bytes,
	// not a string, because JSON would mangle a key that is not UTF-8.
	Target     string         `json:"target,omitempty"`
	Prefix     []byte         `json:"prefix,omitempty"`
	Exact      bool           `json:"exact,omitempty"`
	ReceiptKey []byte         `json:"receipt_key,omitempty"`
	Restore    *restoreReport `json:"restore,omitempty"`
}

// diskRef names a data disk holding the store for the worker.
type diskRef struct {
	Name   string `json:"name"`
	Serial string `json:"serial"`
	Dir    string `json:"dir"`
}

const maxMessage = 1 << 20

// peer is one end of the control channel.
type peer struct {
	w       io.Writer
	wmu     sync.Mutex
	mu      sync.Mutex
	next    int
	pending map[int]chan message
	closed  chan struct{}
	err     error
}

// newPeer starts reading rw; handle is called (in its own goroutine) for
// each request and its returned message is sent back as the reply.
func newPeer(rw io.ReadWriter, handle func(message) *message) *peer {
	p := &peer{w: rw, pending: map[int]chan message{}, closed: make(chan struct{})}
	go func() {
		s := bufio.NewScanner(rw)
		s.Buffer(make([]byte, 64<<10), maxMessage)
		for s.Scan() {
			var m message
			if err := json.Unmarshal(s.Bytes(), &m); err != nil {
				continue
			}
			if m.Reply {
				p.mu.Lock()
				ch := p.pending[m.ID]
				delete(p.pending, m.ID)
				p.mu.Unlock()
				if ch != nil {
					ch <- m
				}
				continue
			}
			go func(m message) {
				r := handle(m)
				if r == nil || m.ID == 0 {
					return
				}
				r.ID, r.Reply, r.Op = m.ID, true, m.Op
				_ = p.send(*r)
			}(m)
		}
		p.mu.Lock()
		p.err = s.Err()
		if p.err == nil {
			p.err = io.EOF
		}
		p.mu.Unlock()
		close(p.closed)
	}()
	return p
}

func (p *peer) send(m message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("control message: %w", err)
	}
	if len(b) >= maxMessage {
		return fmt.Errorf("control message %s is %d bytes", m.Op, len(b))
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if _, err := p.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("control channel: %w", err)
	}
	return nil
}

// notify sends a message that gets no reply.
func (p *peer) notify(m message) error { return p.send(m) }

// call sends a request and waits for its reply; a reply with Err set is
// returned as an error along with the reply.
func (p *peer) call(ctx context.Context, m message) (message, error) {
	ch := make(chan message, 1)
	p.mu.Lock()
	p.next++
	m.ID = p.next
	p.pending[m.ID] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, m.ID)
		p.mu.Unlock()
	}()
	if err := p.send(m); err != nil {
		return message{}, err
	}
	select {
	case r := <-ch:
		if r.Err != "" {
			return r, errors.New(r.Err)
		}
		return r, nil
	case <-p.closed:
		return message{}, fmt.Errorf("%s: control channel closed: %w", m.Op, p.err)
	case <-ctx.Done():
		return message{}, fmt.Errorf("%s: %w", m.Op, ctx.Err())
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
