// Package tpm is Holdfast's use of the TPM 2.0 (through go-tpm's tpm2
// package): it seals the store's master key to the boot state, measures the
// config, provides the trusted clock prune relies on, and signs snapshot
// receipts. It serves invariants I5 (time cannot be faked into expiring
// data), I6 (a confused appliance never destroys data) and I9 (stolen disks
// are useless). docs/tpm.md has the key hierarchy, the PCR policy, the
// recovery key, the reseal trade-offs and the time rules as tables.
//
// What it does:
//
//   - Provision makes a 32-byte master key (TPM RNG and kernel RNG mixed
//     with HKDF), seals it as a KEYEDHASH object under the SRK (recreated each
//     boot from the TCG ECC P-256 template in the owner hierarchy) with a
//     PolicyPCR policy over SHA-256 PCRs 7, 11 and 15, or, with a firmware
//     signing key, a PolicyAuthorize policy (signed firmware updates unseal
//     with no manual step) followed by PolicyPCR over PCR 15. It also wraps
//     the key under a paper recovery key (package recoverykey). All sessions
//     are salted with the SRK and AES-128-CFB parameter-encrypted, so the key
//     never crosses the bus in clear.
//   - Unsealer is the store.KeySource. A failed unseal returns an
//     *UnsealError (errors.Is with ErrNoTPM, ErrNoSealedKey, ErrBadSealedKey,
//     ErrWrongTPM, ErrPolicy, ErrPCRBank). The boot flow maps every one of
//     them to safe mode: nothing is formatted, initialised or resealed; the
//     console waits for the recovery key. Nothing in this package creates or
//     replaces a key as a reaction to a failure.
//   - ReadClock and Identity feed the trusted time (firmware/trustedtime),
//     which prune uses. Clock (the older anchor-vouched wall clock) remains
//     only so an updated box can start T from its anchor. TPM.Shutdown
//     sends TPM2_Shutdown(STATE) at poweroff and reboot, without which the
//     TPM does not persist its clock. ClockSet exists for tests.
//   - Signer is the store.ReceiptSigner: a TPM2_Quote by a restricted ECDSA
//     P-256 primary key in the endorsement hierarchy over the manifest digest
//     (package receipt verifies offline).
//
// Limits: one TPM connection is serialised by a mutex; the owner and
// endorsement hierarchies are assumed to have empty auth values (as a
// fresh TPM has), so code running as root with access to the TPM device
// could call TPM2_ClockSet or sign quotes; the device node must be closed to
// everything but init after lockdown, and init caps the config PCR
// (CapConfigPCR) after unsealing so the key cannot be unsealed again in the
// same boot. The TPM clock stops while the box is off, so T credits nothing
// for the time off (retention runs late by it).
package tpm
