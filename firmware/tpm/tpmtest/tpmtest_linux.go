// Package tpmtest gives tests of any package a TPM to talk to: a swtpm with
// a fresh state, started for the test and killed when it ends. It is for
// tests only.
//
// Limits: needs Debian's swtpm (make setup); fails the test, never skips,
// when it is missing. Linux only.
package tpmtest

import (
	"context"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/swtpm"
)

// Start starts a swtpm with a fresh state and returns a TPM connected to
// it; both go away when the test ends.
func Start(t testing.TB) *tpm.TPM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sim, err := swtpm.Start(ctx, swtpm.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start swtpm: %v", err) // ErrNotInstalled says: run make setup
	}
	t.Cleanup(func() { sim.Kill() })
	tp, err := tpm.Dial(ctx, "unix", sim.SocketPath(), nil)
	if err != nil {
		t.Fatalf("dial swtpm: %v", err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}
