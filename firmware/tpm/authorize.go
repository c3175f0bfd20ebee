package tpm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// The signed PCR policy route (TPM2_PolicyAuthorize), as systemd and Talos
// do it: the sealed object's policy says "whatever PCR policy the Holdfast
// firmware signing key approved, then PolicyPCR over the config PCR". Each
// firmware release ships, next to its UKI, a signed-policy file with one
// entry per PCR state it produces (SignPCRPolicy at build time, from the
// predicted PCR 7 and 11 values). The appliance then unseals after a signed
// update with no manual step, and nothing an attacker builds unseals unless
// the signing key signed it.

// policyRef qualifies every approval: a signature of the firmware key over
// some other policy digest (for another purpose) never authorises unsealing.
var policyRef = []byte("holdfast/pcr-policy/v1")

// SignedPolicy is one approval by the firmware signing key: "the master key
// may be unsealed when the firmware PCRs in Mask produce policy Digest".
type SignedPolicy struct {
	Mask   uint32   // bit n = PCR n (SHA-256 bank)
	Digest [32]byte // TPM2_PolicyPCR digest over those PCRs
	R, S   [32]byte // ECDSA P-256 signature over SHA-256(Digest || policyRef)
}

// PCRs lists the PCRs the approval covers.
func (p SignedPolicy) PCRs() []int { return maskPCRs(p.Mask) }

func approvalHash(digest []byte) [32]byte {
	return sha256.Sum256(append(append([]byte{}, digest...), policyRef...))
}

// SignPCRPolicy approves the PCR values vals (normally PCRs 7 and 11 as the
// new firmware will measure them) with the firmware signing key. It runs at
// build time, where the private key lives; never on the appliance.
func SignPCRPolicy(key *ecdsa.PrivateKey, vals PCRValues) (SignedPolicy, error) {
	if key.Curve != elliptic.P256() {
		return SignedPolicy{}, errors.New("firmware signing key must be ECDSA P-256")
	}
	d, err := PCRPolicyDigest(vals)
	if err != nil {
		return SignedPolicy{}, err
	}
	h := approvalHash(d)
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		return SignedPolicy{}, fmt.Errorf("sign PCR policy: %w", err)
	}
	var sp SignedPolicy
	pcrs := make([]int, 0, len(vals))
	for n := range vals {
		pcrs = append(pcrs, n)
	}
	sp.Mask = pcrMask(pcrs)
	copy(sp.Digest[:], d)
	r.FillBytes(sp.R[:])
	s.FillBytes(sp.S[:])
	return sp, nil
}

// Verify checks the approval's signature in software.
func (p SignedPolicy) Verify(pub *ecdsa.PublicKey) bool {
	h := approvalHash(p.Digest[:])
	return ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(p.R[:]), new(big.Int).SetBytes(p.S[:]))
}

// Signed-policy file (SignedPolicyFile in the key directory), written by the
// firmware build and replaced with each release:
//
//	| offset | size  | field                                              |
//	|--------|-------|----------------------------------------------------|
//	| 0      | 8     | magic "HOLDPPOL"                                   |
//	| 8      | 2     | version, big endian (1)                            |
//	| 10     | 2     | N, number of entries, big endian                   |
//	| 12     | 100*N | entries:                                           |
//	|        | 4     |   PCR mask, big endian (bit n = SHA-256 PCR n)     |
//	|        | 32    |   TPM2_PolicyPCR digest                            |
//	|        | 32    |   ECDSA r, big endian, zero padded                 |
//	|        | 32    |   ECDSA s, big endian, zero padded                 |
//
// The file needs no checksum: every entry carries its own signature.
const (
	signedPolicyMagic   = "HOLDPPOL"
	signedPolicyVersion = 1
	signedPolicyEntry   = 100
)

// EncodeSignedPolicies encodes a signed-policy file.
func EncodeSignedPolicies(ps []SignedPolicy) ([]byte, error) {
	if len(ps) > 0xffff {
		return nil, errors.New("too many signed policies")
	}
	b := append([]byte(signedPolicyMagic), 0, signedPolicyVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ps)))
	for _, p := range ps {
		b = binary.BigEndian.AppendUint32(b, p.Mask)
		b = append(b, p.Digest[:]...)
		b = append(b, p.R[:]...)
		b = append(b, p.S[:]...)
	}
	return b, nil
}

// DecodeSignedPolicies decodes a signed-policy file.
func DecodeSignedPolicies(b []byte) ([]SignedPolicy, error) {
	if len(b) < 12 || string(b[:8]) != signedPolicyMagic {
		return nil, errors.New("signed policy file: bad magic")
	}
	if v := binary.BigEndian.Uint16(b[8:]); v != signedPolicyVersion {
		return nil, fmt.Errorf("signed policy file: version %d not supported", v)
	}
	n := int(binary.BigEndian.Uint16(b[10:]))
	if len(b) != 12+n*signedPolicyEntry {
		return nil, fmt.Errorf("signed policy file: %d bytes for %d entries", len(b), n)
	}
	out := make([]SignedPolicy, n)
	for i := range out {
		e := b[12+i*signedPolicyEntry:]
		out[i].Mask = binary.BigEndian.Uint32(e)
		copy(out[i].Digest[:], e[4:36])
		copy(out[i].R[:], e[36:68])
		copy(out[i].S[:], e[68:100])
	}
	return out, nil
}

// authorityPublic is the TPMT_PUBLIC of the firmware signing key as the TPM
// loads it (TPM2_LoadExternal); its Name goes into the sealing policy.
func authorityPublic(pub *ecdsa.PublicKey) (tpm2.TPMTPublic, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return tpm2.TPMTPublic{}, errors.New("firmware signing key must be ECDSA P-256")
	}
	raw, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		return tpm2.TPMTPublic{}, fmt.Errorf("firmware signing key: %w", err)
	}
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			SignEncrypt:  true,
			UserWithAuth: true,
		},
		Parameters: ecdsaP256Parms(),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: raw[33:65]},
		}),
	}, nil
}

func authorityName(pub *ecdsa.PublicKey) (tpm2.TPM2BName, error) {
	tp, err := authorityPublic(pub)
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	n, err := tpm2.ObjectName(&tp)
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("firmware signing key name: %w", err)
	}
	return *n, nil
}

// sealingPolicy computes the authPolicy of the sealed object.
func sealingPolicy(p Policy, vals PCRValues) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if p.Authority == nil {
		if err := pcrPolicyDigest(calc, p.all(), vals); err != nil {
			return nil, err
		}
		return calc.Hash().Digest, nil
	}
	name, err := authorityName(p.Authority)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyAuthorize{KeySign: name, PolicyRef: tpm2.TPM2BDigest{Buffer: policyRef}}).Update(calc); err != nil {
		return nil, err
	}
	if len(p.ConfigPCRs) > 0 {
		if err := pcrPolicyDigest(calc, p.ConfigPCRs, vals); err != nil {
			return nil, err
		}
	}
	return calc.Hash().Digest, nil
}
