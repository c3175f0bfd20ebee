// Package receipt encodes, decodes and verifies Holdfast's signed snapshot
// receipts. A receipt says "this appliance's TPM, at this TPM clock reading,
// vouched for a manifest with this SHA-256": it is a TPM2_Quote by a
// TPM-resident ECDSA P-256 key whose qualifying data binds the snapshot ID
// and the manifest digest, so the clock fields are the TPM's own, not
// software's claim. Verify needs only the receipt and the signing key's
// public half (PEM PKIX), never a TPM: `holdfast receipt verify` runs it
// offline anywhere.
//
// Limits: a receipt proves what the TPM signed and when (by the TPM's clock,
// which counts powered-on milliseconds, not calendar time); it does not by
// itself prove the manifest's content is what was pulled from the source,
// and code running as root while the TPM is reachable could have the TPM
// sign a manifest digest of its choosing.
package receipt

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// Receipt file (STORE/receipts/<id>.receipt):
//
//	| offset | size | field                                                  |
//	|--------|------|--------------------------------------------------------|
//	| 0      | 8    | magic "HOLDRCPT"                                       |
//	| 8      | 2    | version, big endian (1)                                |
//	| 10     | 1    | N, length of the snapshot ID                           |
//	| 11     | N    | snapshot ID (ASCII)                                    |
//	| 11+N   | 32   | manifest digest: SHA-256 of STORE/snapshots/<id>.snap  |
//	| 43+N   | 32   | key ID: SHA-256 of the signing key's PKIX DER          |
//	| 75+N   | 2    | A, length of the attestation, big endian               |
//	| 77+N   | A    | TPMS_ATTEST of a TPM2_Quote, as the TPM produced it:   |
//	|        |      | magic TPM_GENERATED, extraData = Bind(ID, digest),     |
//	|        |      | clockInfo (clock, resetCount, restartCount, safe),     |
//	|        |      | firmwareVersion, quoted PCR selection and digest       |
//	| 77+N+A | 32   | ECDSA r, big endian, zero padded                       |
//	| 109+N+A| 32   | ECDSA s                                                |
//
// The signature is ECDSA P-256 over SHA-256(TPMS_ATTEST).
const (
	magic   = "HOLDRCPT"
	Version = 1
)

// ClockInfo is the TPM clock reading inside a receipt.
type ClockInfo struct {
	Clock        uint64 // ms the TPM has been powered
	ResetCount   uint32
	RestartCount uint32
	Safe         bool
}

// Receipt is a decoded receipt.
type Receipt struct {
	SnapshotID     string
	ManifestDigest [32]byte
	KeyID          [32]byte
	Attest         []byte // TPMS_ATTEST, the signed bytes
	R, S           [32]byte

	// Parsed from Attest by Parse and Verify.
	Clock           ClockInfo
	FirmwareVersion uint64
	PCRDigest       []byte
	PCRs            []int
}

// Bind is the qualifying data of the quote: it ties the TPM's signature to
// one snapshot ID and one manifest digest.
func Bind(snapshotID string, digest [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("holdfast receipt v1\x00"))
	h.Write([]byte(snapshotID))
	h.Write([]byte{0})
	h.Write(digest[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Encode serialises a receipt.
func (r *Receipt) Encode() ([]byte, error) {
	if len(r.SnapshotID) == 0 || len(r.SnapshotID) > 255 {
		return nil, fmt.Errorf("receipt: snapshot ID length %d", len(r.SnapshotID))
	}
	if len(r.Attest) > 0xffff {
		return nil, errors.New("receipt: attestation too long")
	}
	b := append([]byte(magic), 0, Version, byte(len(r.SnapshotID)))
	b = append(b, r.SnapshotID...)
	b = append(b, r.ManifestDigest[:]...)
	b = append(b, r.KeyID[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Attest)))
	b = append(b, r.Attest...)
	b = append(b, r.R[:]...)
	return append(b, r.S[:]...), nil
}

// Parse decodes a receipt and its attestation without checking the
// signature. Use Verify to trust it.
func Parse(b []byte) (*Receipt, error) {
	if len(b) < 11 || string(b[:8]) != magic {
		return nil, errors.New("receipt: not a Holdfast receipt")
	}
	if v := binary.BigEndian.Uint16(b[8:]); v != Version {
		return nil, fmt.Errorf("receipt: version %d not supported", v)
	}
	n := int(b[10])
	if len(b) < 11+n+66 {
		return nil, errors.New("receipt: truncated")
	}
	r := &Receipt{SnapshotID: string(b[11 : 11+n])}
	p := b[11+n:]
	copy(r.ManifestDigest[:], p[:32])
	copy(r.KeyID[:], p[32:64])
	a := int(binary.BigEndian.Uint16(p[64:]))
	p = p[66:]
	if len(p) != a+64 {
		return nil, errors.New("receipt: truncated or trailing bytes")
	}
	r.Attest = bytes.Clone(p[:a])
	copy(r.R[:], p[a:a+32])
	copy(r.S[:], p[a+32:])
	if err := r.parseAttest(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Receipt) parseAttest() error {
	at, err := tpm2.Unmarshal[tpm2.TPMSAttest](r.Attest)
	if err != nil {
		return fmt.Errorf("receipt: attestation: %w", err)
	}
	if at.Magic != tpm2.TPMGeneratedValue {
		return errors.New("receipt: attestation was not generated by a TPM")
	}
	if at.Type != tpm2.TPMSTAttestQuote {
		return fmt.Errorf("receipt: attestation type 0x%x, want a quote", uint16(at.Type))
	}
	want := Bind(r.SnapshotID, r.ManifestDigest)
	if !bytes.Equal(at.ExtraData.Buffer, want[:]) {
		return errors.New("receipt: the attestation is for another snapshot ID or manifest digest")
	}
	q, err := at.Attested.Quote()
	if err != nil {
		return fmt.Errorf("receipt: quote: %w", err)
	}
	r.Clock = ClockInfo{Clock: at.ClockInfo.Clock, ResetCount: at.ClockInfo.ResetCount, RestartCount: at.ClockInfo.RestartCount, Safe: bool(at.ClockInfo.Safe)}
	r.FirmwareVersion = at.FirmwareVersion
	r.PCRDigest = q.PCRDigest.Buffer
	for _, s := range q.PCRSelect.PCRSelections {
		if s.Hash != tpm2.TPMAlgSHA256 {
			continue
		}
		for i, m := range s.PCRSelect {
			for bit := range 8 {
				if m&(1<<bit) != 0 {
					r.PCRs = append(r.PCRs, i*8+bit)
				}
			}
		}
	}
	return nil
}

// ErrBadSignature means the receipt's signature does not verify under the
// given key.
var ErrBadSignature = errors.New("receipt signature does not verify")

// ErrOtherKey means the receipt was signed by another key than the one given.
var ErrOtherKey = errors.New("receipt was signed by another key")

// Verify checks a receipt against the signing key's public half: the key ID,
// the ECDSA signature over the attestation, that the attestation is a TPM
// quote, and that it binds the receipt's snapshot ID and manifest digest.
// The caller compares ManifestDigest with the manifest it holds.
func Verify(b []byte, pub *ecdsa.PublicKey) (*Receipt, error) {
	r, err := Parse(b)
	if err != nil {
		return nil, err
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	if id != r.KeyID {
		return nil, ErrOtherKey
	}
	h := sha256.Sum256(r.Attest)
	if !ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(r.R[:]), new(big.Int).SetBytes(r.S[:])) {
		return nil, ErrBadSignature
	}
	return r, nil
}

// VerifyFor is Verify for one snapshot: the receipt b must also name
// snapshot id and sign digest, the SHA-256 of the manifest the caller
// holds (or computed itself). Every failure says INVALID.
func VerifyFor(b []byte, pub *ecdsa.PublicKey, id string, digest [32]byte) (*Receipt, error) {
	r, err := Verify(b, pub)
	if err != nil {
		return nil, fmt.Errorf("receipt of snapshot %s: INVALID: %w", id, err)
	}
	if r.SnapshotID != id {
		return nil, fmt.Errorf("receipt of snapshot %s: INVALID: it names snapshot %s", id, r.SnapshotID)
	}
	if r.ManifestDigest != digest {
		return nil, fmt.Errorf("receipt of snapshot %s: INVALID: manifest digest %x, receipt signs %x", id, digest, r.ManifestDigest)
	}
	return r, nil
}

// KeyID is SHA-256 of the key's PKIX DER encoding.
func KeyID(pub *ecdsa.PublicKey) ([32]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, fmt.Errorf("receipt key: %w", err)
	}
	return sha256.Sum256(der), nil
}

// MarshalPublicKeyPEM encodes the receipt key as a PEM "PUBLIC KEY" (PKIX).
func MarshalPublicKeyPEM(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("receipt key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM decodes a PEM "PUBLIC KEY" holding an ECDSA P-256 key.
func ParsePublicKeyPEM(b []byte) (*ecdsa.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("receipt key: no PEM PUBLIC KEY block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("receipt key: %w", err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("receipt key: not an ECDSA P-256 key")
	}
	return ek, nil
}

// ErrManifestMismatch means a manifest's SHA-256 differs from the digest the
// receipt vouches for.
var ErrManifestMismatch = errors.New("manifest does not match the receipt")

// CheckManifest compares the SHA-256 of manifest (the bytes of
// STORE/snapshots/<id>.snap) with the receipt's digest.
func (r *Receipt) CheckManifest(manifest io.Reader) error {
	h := sha256.New()
	if _, err := io.Copy(h, manifest); err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	var got [32]byte
	h.Sum(got[:0])
	if got != r.ManifestDigest {
		return fmt.Errorf("%w: manifest SHA-256 %x, receipt %x", ErrManifestMismatch, got, r.ManifestDigest)
	}
	return nil
}
