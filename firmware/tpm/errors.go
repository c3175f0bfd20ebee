package tpm

import (
	"errors"
	"fmt"
)

// Errors that classify why the master key could not be unsealed. An
// *UnsealError wraps exactly one of them; test with errors.Is. Every one of
// them means "enter safe mode": the boot flow formats nothing, initialises
// nothing and waits for the recovery key at the console (invariant I6).
var (
	// ErrNoTPM: no TPM device, or it does not answer.
	ErrNoTPM = errors.New("no TPM")
	// ErrNoSealedKey: the sealed-key file is missing (config partition
	// empty, lost or never provisioned).
	ErrNoSealedKey = errors.New("no sealed key")
	// ErrBadSealedKey: the sealed-key file exists but cannot be parsed.
	ErrBadSealedKey = errors.New("sealed key file is damaged")
	// ErrWrongTPM: the key was sealed by another TPM, or this TPM was
	// cleared (its storage root key changed).
	ErrWrongTPM = errors.New("key was sealed by another TPM or the TPM was cleared")
	// ErrPolicy: the PCRs do not match the sealing policy (other firmware,
	// other UKI, other config, Secure Boot changed) and no signed policy
	// covers the current values.
	ErrPolicy = errors.New("PCR policy not satisfied")
	// ErrPCRBank: the SHA-256 PCR bank is not allocated, or a PCR the
	// policy uses is unmeasured (all zeros or all ones).
	ErrPCRBank = errors.New("PCR bank unusable")
)

// UnsealError is the error of a failed unseal. Kind is one of the sentinel
// errors above; Err is the underlying cause.
type UnsealError struct {
	Kind error
	Err  error
}

func (e *UnsealError) Error() string {
	if e.Err == nil {
		return "unseal master key: " + e.Kind.Error()
	}
	return fmt.Sprintf("unseal master key: %v: %v", e.Kind, e.Err)
}

// Is matches the Kind.
func (e *UnsealError) Is(target error) bool { return target == e.Kind }

// Unwrap returns the cause.
func (e *UnsealError) Unwrap() error { return e.Err }

func unsealErr(kind error, format string, a ...any) error {
	return &UnsealError{Kind: kind, Err: fmt.Errorf(format, a...)}
}

// Errors of the TPM clock (see Clock). Each freezes prune.
var (
	// ErrClockUnsafe: the TPM reports safe=NO (its Clock may have been
	// rolled back by a power cut).
	ErrClockUnsafe = errors.New("TPM clock not safe")
	// ErrClockRollback: the TPM was reset, cleared or replaced since the
	// anchor, or its Clock is behind the anchor, so elapsed time cannot be
	// measured.
	ErrClockRollback = errors.New("TPM clock rolled back or reset since the anchor")
	// ErrClockAhead: the wall clock is further ahead than the TPM clock's
	// advance allows.
	ErrClockAhead = errors.New("wall clock ahead of the TPM clock")
	// ErrClockBehind: the wall clock is before the anchor's time.
	ErrClockBehind = errors.New("wall clock behind the clock anchor")
	// ErrNoAnchor: no valid clock anchor (missing, or its MAC fails).
	ErrNoAnchor = errors.New("no valid clock anchor")
)
