package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/hashicorp/go-hclog"
)

// TPM is one connection to a TPM 2.0. Its methods are safe for concurrent
// use: every operation (including all the commands of one session) runs
// under one lock, so the unsealer, the clock and the receipt signer can
// share a TPM.
type TPM struct {
	mu     sync.Mutex
	tr     transport.TPMCloser
	dl     deadliner // set for stream transports; nil for a device file
	broken error     // set when a command was interrupted mid-stream
	log    hclog.Logger
}

type deadliner interface{ SetDeadline(time.Time) error }

// New wraps an open go-tpm transport (e.g. linuxtpm.Open("/dev/tpmrm0")).
// The TPM owns tr and closes it in Close.
func New(tr transport.TPMCloser, log hclog.Logger) *TPM {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &TPM{tr: tr, log: log}
}

// Dial connects to a TPM that speaks the raw TPM 2.0 command protocol over a
// stream socket: swtpm's --server socket ("unix", path) or ("tcp",
// "127.0.0.1:port"). A failed connection wraps ErrNoTPM.
func Dial(ctx context.Context, network, addr string, log hclog.Logger) (*TPM, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s %s: %v", ErrNoTPM, network, addr, err)
	}
	t := New(&streamTransport{conn: c}, log)
	t.dl = c
	return t, nil
}

// Close closes the connection. It does not shut the TPM down; see Shutdown.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tr.Close()
}

// do runs fn with exclusive use of the TPM. A deadline or cancellation of
// ctx interrupts a stream transport; the connection is then unusable
// (responses would be out of step) and later calls fail.
func (t *TPM) do(ctx context.Context, fn func(tr transport.TPM) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil {
		return fmt.Errorf("tpm connection unusable: %w", t.broken)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.dl != nil {
		dl, _ := ctx.Deadline()
		if err := t.dl.SetDeadline(dl); err != nil {
			return fmt.Errorf("tpm deadline: %w", err)
		}
		stop := context.AfterFunc(ctx, func() { t.dl.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	err := fn(t.tr)
	if err != nil && ctx.Err() != nil && t.dl != nil {
		t.broken = ctx.Err()
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// Shutdown sends TPM2_Shutdown(STATE). The TPM persists its Clock (and the
// state a later TPM Restart needs) only on an orderly shutdown, so the
// appliance calls it as the last TPM command before power-off or reboot;
// without it the next boot sees a TPM Reset, safe=NO, and prune freezes.
func (t *TPM) Shutdown(ctx context.Context) error {
	return t.do(ctx, func(tr transport.TPM) error {
		if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUState}).Execute(tr); err != nil {
			return fmt.Errorf("tpm2_shutdown(state): %w", err)
		}
		t.log.Info("TPM shut down (state saved)")
		return nil
	})
}

// Random returns n bytes from the TPM's RNG (TPM2_GetRandom).
func (t *TPM) Random(ctx context.Context, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	err := t.do(ctx, func(tr transport.TPM) error {
		for len(out) < n {
			want := min(n-len(out), 32)
			r, err := (tpm2.GetRandom{BytesRequested: uint16(want)}).Execute(tr)
			if err != nil {
				return fmt.Errorf("tpm2_getrandom: %w", err)
			}
			if len(r.RandomBytes.Buffer) == 0 {
				return errors.New("tpm2_getrandom returned no bytes")
			}
			out = append(out, r.RandomBytes.Buffer...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

// streamTransport carries TPM 2.0 commands over a byte stream: one command
// out, one response back, the response framed by the size in its 10-byte
// header (tag u16, size u32, code u32).
type streamTransport struct {
	conn net.Conn
}

const maxResponse = 1 << 16

func (s *streamTransport) Send(cmd []byte) ([]byte, error) {
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpm stream: send: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("tpm stream: read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("tpm stream: response size %d out of range", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("tpm stream: read response: %w", err)
	}
	return rsp, nil
}

func (s *streamTransport) Close() error { return s.conn.Close() }
