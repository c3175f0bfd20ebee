package tpm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// PCR numbers of the default policy (SHA-256 bank).
const (
	// PCRSecureBoot: UEFI firmware measures the Secure Boot state and keys.
	PCRSecureBoot = 7
	// PCRKernel: systemd-stub measures the UKI (kernel, initrd, cmdline).
	PCRKernel = 11
	// PCRConfig: Holdfast's init extends it with the digest of the config
	// (ExtendConfigPCR) before it unseals.
	PCRConfig = 15
)

// numPCRs is the number of PCRs of a PC Client TPM.
const numPCRs = 24

// Policy says which PCRs the master key is sealed to and how.
//
// Without Authority every PCR in FirmwarePCRs and ConfigPCRs is bound to its
// value at sealing time (TPM2_PolicyPCR); any change needs a reseal. With
// Authority (the Holdfast firmware signing key) the FirmwarePCRs are bound
// through TPM2_PolicyAuthorize: any PCR values for which the authority signed
// a policy unseal, so a signed firmware update needs no reseal; the
// ConfigPCRs stay bound to their values at sealing time.
type Policy struct {
	FirmwarePCRs []int // default {7, 11}
	ConfigPCRs   []int // default {15}
	// Authority is the public half of the firmware signing key; nil
	// selects plain PolicyPCR sealing.
	Authority *ecdsa.PublicKey
	// AllowUnmeasured permits sealing to PCRs that read all zeros (no
	// firmware measured them: development boards, tests). Production
	// leaves it false so a box without measured boot fails early.
	AllowUnmeasured bool
}

// DefaultPolicy is PolicyPCR over SHA-256 PCRs 7, 11 and 15.
func DefaultPolicy() Policy {
	return Policy{FirmwarePCRs: []int{PCRSecureBoot, PCRKernel}, ConfigPCRs: []int{PCRConfig}}
}

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p.FirmwarePCRs == nil {
		p.FirmwarePCRs = d.FirmwarePCRs
	}
	if p.ConfigPCRs == nil {
		p.ConfigPCRs = d.ConfigPCRs
	}
	return p
}

func (p Policy) all() []int {
	return normPCRs(append(slices.Clone(p.FirmwarePCRs), p.ConfigPCRs...))
}

func (p Policy) validate() error {
	all := append(slices.Clone(p.FirmwarePCRs), p.ConfigPCRs...)
	if len(all) == 0 {
		return fmt.Errorf("policy selects no PCR")
	}
	seen := map[int]bool{}
	for _, n := range all {
		if n < 0 || n >= numPCRs {
			return fmt.Errorf("PCR %d out of range 0..%d", n, numPCRs-1)
		}
		if seen[n] {
			return fmt.Errorf("PCR %d selected twice", n)
		}
		seen[n] = true
	}
	if p.Authority != nil && len(p.FirmwarePCRs) == 0 {
		return fmt.Errorf("a signed policy needs at least one firmware PCR")
	}
	return nil
}

func normPCRs(pcrs []int) []int {
	out := slices.Clone(pcrs)
	slices.Sort(out)
	return slices.Compact(out)
}

// pcrMask is the PCR selection as a bit mask (bit n = PCR n).
func pcrMask(pcrs []int) uint32 {
	var m uint32
	for _, n := range pcrs {
		m |= 1 << n
	}
	return m
}

func maskPCRs(m uint32) []int {
	var out []int
	for n := range numPCRs {
		if m&(1<<n) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// selection is the SHA-256 TPML_PCR_SELECTION of pcrs.
func selection(pcrs []int) tpm2.TPMLPCRSelection {
	u := make([]uint, len(pcrs))
	for i, n := range pcrs {
		u[i] = uint(n)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(u...),
	}}}
}

// PCRValues maps a PCR number to its SHA-256 value.
type PCRValues map[int][]byte

// ReadPCRs reads SHA-256 PCRs.
func (t *TPM) ReadPCRs(ctx context.Context, pcrs []int) (PCRValues, error) {
	var out PCRValues
	err := t.do(ctx, func(tr transport.TPM) error {
		var err error
		out, err = readPCRs(tr, pcrs)
		return err
	})
	return out, err
}

func readPCRs(tr transport.TPM, pcrs []int) (PCRValues, error) {
	out := PCRValues{}
	// TPM2_PCR_Read returns at most 8 digests per call; read one by one.
	for _, n := range normPCRs(pcrs) {
		r, err := (tpm2.PCRRead{PCRSelectionIn: selection([]int{n})}).Execute(tr)
		if err != nil {
			return nil, fmt.Errorf("read PCR %d: %w", n, err)
		}
		if len(r.PCRValues.Digests) != 1 || len(r.PCRValues.Digests[0].Buffer) != sha256.Size {
			return nil, unsealErr(ErrPCRBank, "PCR %d has no SHA-256 value (bank not allocated?)", n)
		}
		out[n] = r.PCRValues.Digests[0].Buffer
	}
	return out, nil
}

// checkBanks fails early (ErrPCRBank) when the SHA-256 bank is not
// allocated for every PCR in pcrs, or when one reads all zeros or all ones
// (nothing was measured into it) and allowUnmeasured is false.
func checkBanks(tr transport.TPM, pcrs []int, allowUnmeasured bool) (PCRValues, error) {
	caps, err := (tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}).Execute(tr)
	if err != nil {
		return nil, fmt.Errorf("get PCR capability: %w", err)
	}
	assigned, err := caps.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("parse PCR capability: %w", err)
	}
	var sha256Sel []byte
	for _, s := range assigned.PCRSelections {
		if s.Hash == tpm2.TPMAlgSHA256 {
			sha256Sel = s.PCRSelect
		}
	}
	if sha256Sel == nil {
		return nil, unsealErr(ErrPCRBank, "the TPM has no SHA-256 PCR bank allocated")
	}
	for _, n := range pcrs {
		if n/8 >= len(sha256Sel) || sha256Sel[n/8]&(1<<(n%8)) == 0 {
			return nil, unsealErr(ErrPCRBank, "PCR %d is not allocated in the SHA-256 bank", n)
		}
	}
	vals, err := readPCRs(tr, pcrs)
	if err != nil {
		return nil, err
	}
	if !allowUnmeasured {
		for _, n := range pcrs {
			v := vals[n]
			if bytes.Equal(v, make([]byte, sha256.Size)) || bytes.Equal(v, bytes.Repeat([]byte{0xff}, sha256.Size)) {
				return nil, unsealErr(ErrPCRBank, "PCR %d is unmeasured (%x...): measured boot is off or init did not extend it", n, v[:4])
			}
		}
	}
	return vals, nil
}

// ExtendConfigPCR extends PCRConfig with the SHA-256 digest of the
// appliance's config. Init calls it once per boot, before unsealing; the
// sealing policy then only opens for that config.
func (t *TPM) ExtendConfigPCR(ctx context.Context, configDigest [32]byte) error {
	return t.ExtendPCR(ctx, PCRConfig, configDigest)
}

// ExtendPCR extends SHA-256 PCR n with digest.
func (t *TPM) ExtendPCR(ctx context.Context, n int, digest [32]byte) error {
	if n < 0 || n >= numPCRs {
		return fmt.Errorf("PCR %d out of range", n)
	}
	return t.do(ctx, func(tr transport.TPM) error {
		_, err := (tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(n), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: digest[:]}}},
		}).Execute(tr)
		if err != nil {
			return fmt.Errorf("extend PCR %d: %w", n, err)
		}
		return nil
	})
}

// CapSeparator is what CapConfigPCR extends: after it the config PCR no
// longer matches the sealing policy for the rest of the boot.
var capSeparator = sha256.Sum256([]byte("holdfast: master key released, PCR capped"))

// CapConfigPCR extends PCRConfig with a fixed separator. Init calls it right
// after unsealing (and after any reseal or provisioning), so code that gains
// root later in the same boot cannot unseal the key again.
func (t *TPM) CapConfigPCR(ctx context.Context) error {
	return t.ExtendPCR(ctx, PCRConfig, capSeparator)
}

// PCRAfter returns the value a SHA-256 PCR holds after extending a zeroed PCR
// with each digest in turn: what PCRConfig will read on a boot with a given
// config (PCRAfter(configDigest)).
func PCRAfter(digests ...[32]byte) []byte {
	v := make([]byte, sha256.Size)
	for _, d := range digests {
		s := sha256.Sum256(append(v, d[:]...))
		v = s[:]
	}
	return v
}

// pcrPolicyDigest computes the policy digest of TPM2_PolicyPCR over pcrs with
// the given values, starting from prev (nil = a fresh policy).
func pcrPolicyDigest(calc *tpm2.PolicyCalculator, pcrs []int, vals PCRValues) error {
	h := sha256.New()
	for _, n := range normPCRs(pcrs) {
		v, ok := vals[n]
		if !ok || len(v) != sha256.Size {
			return fmt.Errorf("no SHA-256 value for PCR %d", n)
		}
		h.Write(v)
	}
	return tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}, Pcrs: selection(normPCRs(pcrs))}.Update(calc)
}

// PCRPolicyDigest is the TPM2_PolicyPCR policy digest (SHA-256) for the given
// PCR values: what the firmware build signs for a release (SignPCRPolicy).
func PCRPolicyDigest(vals PCRValues) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	pcrs := make([]int, 0, len(vals))
	for n := range vals {
		pcrs = append(pcrs, n)
	}
	if err := pcrPolicyDigest(calc, pcrs, vals); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}
