package tpm

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Ownership (issue 17): a fresh TPM's owner and lockout authorizations are
// empty, so anything that reaches the TPM could TPM2_ClockSet its Clock
// forward (owner), TPM2_ClockRateAdjust it (owner) or TPM2_Clear it
// (lockout). TakeOwnership sets both to OwnerAuth(master key). The SRK is
// a primary in the owner hierarchy, so creating it would then need that
// auth, which is only known after the master key is unsealed under the
// SRK; TakeOwnership therefore first persists the SRK at SRKHandle, and
// createSRK uses the persistent SRK when it is there (loading children
// under it needs only the SRK's own, empty, auth).
//
//	| step (TakeOwnership, idempotent)       | needs                         |
//	|----------------------------------------|-------------------------------|
//	| SRK at SRKHandle? else EvictControl it | owner auth still empty        |
//	| owner auth unset? HierarchyChangeAuth  | owner auth still empty        |
//	| lockout auth unset? HierarchyChangeAuth| lockout auth still empty      |
//
// Boot order: createSRK (persistent, no auth) → unseal the master key →
// OwnerAuth(master) → TakeOwnership (a no-op once done; it completes a box
// provisioned before ownership, or one interrupted half way). The new auth
// travels in a session salted with the SRK, parameter-encrypted.
//
//	| TPM state found                               | outcome                                   |
//	|-----------------------------------------------|-------------------------------------------|
//	| fresh (auths empty)                           | SRK persisted, owner and lockout auth set |
//	| owner auth already set by someone else        | the SRK cannot be created nor persisted:  |
//	|                                               | provisioning fails ("create SRK"); clear  |
//	|                                               | the TPM in the firmware setup first       |
//	| owner auth set, SRK not persisted             | ErrOwnedElsewhere: nothing changed        |
//	| SRK persisted, owner auth set, lockout empty  | lockout auth set (an interrupted run)     |
//	| TPM2_Clear by the firmware (platform auth)    | auths empty, SRK gone, new seed: the      |
//	|                                               | master key no longer unseals (safe mode)  |
//
// Platform auth belongs to the firmware (usually a random value each boot)
// and is not touched.
const SRKHandle = tpm2.TPMHandle(0x81000F17)

// Bits of TPMA_PERMANENT.
const (
	permOwnerAuthSet   = 1 << 0
	permLockoutAuthSet = 1 << 2
)

// ErrOwnedElsewhere means the TPM's owner auth is set but is not the one
// derived from this box's master key.
var ErrOwnedElsewhere = errors.New("TPM owner authorization set by someone else")

// OwnerAuth derives the owner and lockout authorization from the master
// key. Only PID 1 holds it.
func OwnerAuth(master []byte) ([]byte, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("owner auth: master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	k, err := hkdf.Key(sha256.New, master, nil, "holdfast tpm owner auth v1", 32)
	if err != nil {
		return nil, fmt.Errorf("owner auth: %w", err)
	}
	return k, nil
}

// persistentSRK returns the SRK at SRKHandle if one is there and has the
// SRK template's shape.
func persistentSRK(tr transport.TPM) (*srkHandle, bool) {
	rsp, err := (tpm2.ReadPublic{ObjectHandle: SRKHandle}).Execute(tr)
	if err != nil {
		return nil, false
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, false
	}
	want := tpm2.ECCSRKTemplate
	if pub.Type != want.Type || pub.NameAlg != want.NameAlg || pub.ObjectAttributes != want.ObjectAttributes {
		return nil, false
	}
	return &srkHandle{handle: SRKHandle, name: rsp.Name, pub: *pub}, true
}

func permanent(tr transport.TPM) (uint32, error) {
	rsp, err := (tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTPermanent), PropertyCount: 1}).Execute(tr)
	if err != nil {
		return 0, fmt.Errorf("read TPM_PT_PERMANENT: %w", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, fmt.Errorf("read TPM_PT_PERMANENT: %w", err)
	}
	for _, p := range props.TPMProperty {
		if p.Property == tpm2.TPMPTPermanent {
			return p.Value, nil
		}
	}
	return 0, errors.New("read TPM_PT_PERMANENT: not reported")
}

// TakeOwnership persists the SRK and sets the owner and lockout auth to
// auth where they are still empty (see the table above). It returns which
// it changed, for the log.
func (t *TPM) TakeOwnership(ctx context.Context, auth []byte) (changed []string, err error) {
	err = t.do(ctx, func(tr transport.TPM) error {
		perm, err := permanent(tr)
		if err != nil {
			return err
		}
		srk, ok := persistentSRK(tr)
		if !ok {
			if perm&permOwnerAuthSet != 0 {
				return fmt.Errorf("persist SRK: %w", ErrOwnedElsewhere)
			}
			tsrk, flush, err := createSRK(tr)
			if err != nil {
				return err
			}
			_, err = (tpm2.EvictControl{
				Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
				ObjectHandle:     tpm2.NamedHandle{Handle: tsrk.handle, Name: tsrk.name},
				PersistentHandle: SRKHandle,
			}).Execute(tr)
			flush()
			if err != nil {
				return fmt.Errorf("persist SRK at %#x (TPM2_EvictControl): %w", uint32(SRKHandle), err)
			}
			changed = append(changed, "srk")
			if srk, ok = persistentSRK(tr); !ok {
				return errors.New("persist SRK: not found after TPM2_EvictControl")
			}
		}
		for _, h := range []struct {
			name string
			bit  uint32
			hier tpm2.TPMHandle
		}{{"owner", permOwnerAuthSet, tpm2.TPMRHOwner}, {"lockout", permLockoutAuthSet, tpm2.TPMRHLockout}} {
			if perm&h.bit != 0 {
				continue
			}
			// The empty current auth as a password; the new one
			// encrypted by a second, salted session.
			enc := tpm2.HMAC(tpm2.TPMAlgSHA256, nonceSize, tpm2.Salted(srk.handle, srk.pub),
				tpm2.AESEncryption(aesBits, tpm2.EncryptIn))
			_, err := (tpm2.HierarchyChangeAuth{
				AuthHandle: tpm2.AuthHandle{Handle: h.hier, Auth: tpm2.PasswordAuth(nil)},
				NewAuth:    tpm2.TPM2BAuth{Buffer: auth},
			}).Execute(tr, enc)
			if err != nil {
				return fmt.Errorf("set %s auth (TPM2_HierarchyChangeAuth): %w", h.name, err)
			}
			changed = append(changed, h.name)
		}
		return nil
	})
	if err != nil {
		return changed, fmt.Errorf("take TPM ownership: %w", err)
	}
	return changed, nil
}
