package tpm

import (
	"context"
	"net"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// StreamTransport exposes the stream transport so tests can wrap it (e.g.
// to record the bus).
func StreamTransport(c net.Conn) transport.TPMCloser { return &streamTransport{conn: c} }

// ShutdownClear sends TPM2_Shutdown(CLEAR), as the Linux TPM driver does
// at reboot and power-off.
func (t *TPM) ShutdownClear(ctx context.Context) error {
	return t.do(ctx, func(tr transport.TPM) error {
		_, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(tr)
		return err
	})
}

// Clear sends TPM2_Clear with lockoutAuth (tests only: it wipes the owner
// hierarchy).
func (t *TPM) Clear(ctx context.Context, lockoutAuth []byte) error {
	return t.do(ctx, func(tr transport.TPM) error {
		_, err := (tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(lockoutAuth)}}).Execute(tr)
		return err
	})
}
