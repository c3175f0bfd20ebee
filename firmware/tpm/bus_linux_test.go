package tpm_test

import (
	"bytes"
	"net"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/holdfast-appliance/holdfast/firmware/tpm"
)

// recorder keeps every command and response that crosses the "bus".
type recorder struct {
	transport.TPMCloser
	mu  sync.Mutex
	bus [][]byte
}

func (r *recorder) Send(cmd []byte) ([]byte, error) {
	rsp, err := r.TPMCloser.Send(cmd)
	r.mu.Lock()
	r.bus = append(r.bus, bytes.Clone(cmd), bytes.Clone(rsp))
	r.mu.Unlock()
	return rsp, err
}

// TestKeyNeverOnTheBusInClear records all TPM traffic of provisioning and
// unsealing and checks the master key appears in none of it: the sessions
// are salted and parameter-encrypted.
func TestKeyNeverOnTheBusInClear(t *testing.T) {
	m := newMachine(t, boot1)
	ctx := ctxT(t)
	m.tpm.Close() // swtpm serves one connection at a time
	c, err := net.Dial("unix", m.sim.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{TPMCloser: tpm.StreamTransport(c)}
	tp := tpm.New(rec, m.log)
	m.tpm = tp // the machine's cleanup closes it
	// Provision seals, then unseals once.
	prov, err := tp.Provision(ctx, m.keyDir, tpm.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := (&tpm.Unsealer{TPM: tp, Dir: m.keyDir, Policy: tpm.DefaultPolicy()}).MasterKey(ctx)
	if err != nil || !bytes.Equal(key, prov.MasterKey) {
		t.Fatalf("unseal: %v", err)
	}
	if len(rec.bus) < 20 {
		t.Fatalf("recorded only %d messages", len(rec.bus))
	}
	for i, msg := range rec.bus {
		for _, probe := range [][]byte{prov.MasterKey, prov.MasterKey[:8], prov.MasterKey[24:]} {
			if bytes.Contains(msg, probe) {
				t.Fatalf("message %d on the bus contains master key bytes in clear", i)
			}
		}
	}
}
