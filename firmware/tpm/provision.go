package tpm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
)

// Provisioned is the outcome of provisioning: the master key (for store.Init)
// and the recovery key the console shows exactly once.
type Provisioned struct {
	MasterKey   []byte
	RecoveryKey recoverykey.Key
}

// Provision creates a master key, seals it into dir (SealedKeyFile) and wraps
// it under a new recovery key (RecoveryFile). It refuses (os.ErrExist) when
// dir already holds either file: an existing key is never replaced, since
// data may be encrypted under it. After sealing it unseals once to prove the
// policy opens on this boot; signed is needed only with p.Authority.
//
// The console calls it only on an explicit operator request on an
// unprovisioned box, never as a reaction to an unseal failure.
func (t *TPM) Provision(ctx context.Context, dir string, p Policy, signed []SignedPolicy) (*Provisioned, error) {
	master, err := t.NewMasterKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	return t.ProvisionKey(ctx, dir, master, p, signed)
}

// ProvisionKey is Provision with a master key the caller made with
// NewMasterKey: the boot flow needs the key before sealing, to encrypt the
// config whose digest goes into the config PCR the key is sealed to.
func (t *TPM) ProvisionKey(ctx context.Context, dir string, master []byte, p Policy, signed []SignedPolicy) (*Provisioned, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("provision: master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	for _, name := range []string{SealedKeyFile, RecoveryFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return nil, fmt.Errorf("provision: %s: %w (this box already has a key; use the recovery key)", filepath.Join(dir, name), os.ErrExist)
		}
	}
	rk, err := recoverykey.Generate()
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	wrapped, err := recoverykey.Wrap(master, rk)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	sf, err := t.seal(ctx, master, p, nil)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	// The recovery file first: a sealed key without its recovery wrap must
	// never exist.
	if err := recoverykey.WriteFile(filepath.Join(dir, RecoveryFile), wrapped); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, SealedKeyFile), sf.encode(), true); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if err := t.checkUnseal(ctx, dir, p, signed, master); err != nil {
		// Nothing is encrypted under the new key yet: take it back so the
		// operator can fix the cause and provision again.
		os.Remove(filepath.Join(dir, SealedKeyFile))
		os.Remove(filepath.Join(dir, RecoveryFile))
		return nil, fmt.Errorf("provision: the new key does not unseal on this boot: %w", err)
	}
	return &Provisioned{MasterKey: master, RecoveryKey: rk}, nil
}

// Reseal seals master again to the current PCR values (with predicted values
// from override, e.g. PCRConfig for a config about to be applied) and
// replaces dir's sealed key. It is the console flow after an unsigned
// firmware or config change: the operator types the recovery key, the
// recovery Opener yields master, and Reseal binds it to this boot. It checks
// master against the recovery file first, so a wrong key is never sealed.
func (t *TPM) Reseal(ctx context.Context, dir string, master []byte, rk recoverykey.Key, p Policy, override PCRValues) error {
	blob, err := os.ReadFile(filepath.Join(dir, RecoveryFile))
	if err != nil {
		return fmt.Errorf("reseal: %w", err)
	}
	want, err := recoverykey.Unwrap(blob, rk)
	if err != nil {
		return fmt.Errorf("reseal: %w", err)
	}
	if !bytes.Equal(want, master) {
		return errors.New("reseal: this is not the master key of this box's recovery file")
	}
	sf, err := t.seal(ctx, master, p, override)
	if err != nil {
		return fmt.Errorf("reseal: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, SealedKeyFile), sf.encode(), false); err != nil {
		return fmt.Errorf("reseal: %w", err)
	}
	return nil
}

func (t *TPM) checkUnseal(ctx context.Context, dir string, p Policy, signed []SignedPolicy, master []byte) error {
	got, err := t.Unseal(ctx, dir, p, signed)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, master) {
		return errors.New("unsealed a different key")
	}
	return nil
}
