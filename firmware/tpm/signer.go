package tpm

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/holdfast-appliance/holdfast/firmware/receipt"
)

// receiptKeyTemplate is the receipt signing key: a restricted ECDSA P-256
// (SHA-256) signing key created as a primary in the endorsement hierarchy.
// A primary is derived from the hierarchy seed and the template, so the same
// TPM yields the same key every boot with nothing stored. The endorsement
// hierarchy is chosen because quotes by keys in other hierarchies obfuscate
// resetCount and restartCount. Restricted means the key signs only what the
// TPM generated itself (quotes) or data proven not to look like it, so no
// one can make it sign a forged attestation.
// ecdsaP256Parms are the public parameters of an ECDSA P-256 / SHA-256
// signing key: the firmware signing key and the receipt key share them.
func ecdsaP256Parms() tpm2.TPMUPublicParms {
	return tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	})
}

func receiptKeyTemplate() tpm2.TPMTPublic {
	label := sha256.Sum256([]byte("holdfast receipt signing key v1"))
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                true,
			Restricted:          true,
			SignEncrypt:         true,
		},
		Parameters: ecdsaP256Parms(),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: label[:]},
			Y: tpm2.TPM2BECCParameter{},
		}),
	}
}

// Signer is the store.ReceiptSigner of the appliance: after each commit it
// has the TPM quote the manifest digest (with the TPM clock and the PCRs in
// QuotePCRs) and returns the encoded receipt (package receipt).
type Signer struct {
	TPM *TPM
	// QuotePCRs are included in each quote so a receipt also records
	// which firmware and config were running; nil means 7, 11, 15.
	QuotePCRs []int

	mu  sync.Mutex
	pub *ecdsa.PublicKey
}

func (s *Signer) quotePCRs() []int {
	if s.QuotePCRs == nil {
		return DefaultPolicy().all()
	}
	return normPCRs(s.QuotePCRs)
}

func createReceiptKey(tr transport.TPM) (*tpm2.CreatePrimaryResponse, *ecdsa.PublicKey, func(), error) {
	rsp, err := (tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(receiptKeyTemplate()),
	}).Execute(tr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create receipt key: %w", err)
	}
	flush := func() { (tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}).Execute(tr) }
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush()
		return nil, nil, nil, fmt.Errorf("receipt key public: %w", err)
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		flush()
		return nil, nil, nil, fmt.Errorf("receipt key parameters: %w", err)
	}
	pt, err := pub.Unique.ECC()
	if err != nil {
		flush()
		return nil, nil, nil, fmt.Errorf("receipt key point: %w", err)
	}
	k, err := tpm2.ECDSAPub(parms, pt)
	if err != nil {
		flush()
		return nil, nil, nil, fmt.Errorf("receipt key: %w", err)
	}
	return rsp, k, flush, nil
}

// PublicKey returns the receipt key's public half.
func (s *Signer) PublicKey(ctx context.Context) (*ecdsa.PublicKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pub != nil {
		return s.pub, nil
	}
	err := s.TPM.do(ctx, func(tr transport.TPM) error {
		_, pub, flush, err := createReceiptKey(tr)
		if err != nil {
			return err
		}
		flush()
		s.pub = pub
		return nil
	})
	return s.pub, err
}

// PublicKeyPEM returns the receipt key as PEM PKIX, the form `holdfast
// receipt verify --pubkey` reads.
func (s *Signer) PublicKeyPEM(ctx context.Context) ([]byte, error) {
	pub, err := s.PublicKey(ctx)
	if err != nil {
		return nil, err
	}
	return receipt.MarshalPublicKeyPEM(pub)
}

// SignManifest implements store.ReceiptSigner.
func (s *Signer) SignManifest(ctx context.Context, snapshotID string, digest [32]byte) ([]byte, error) {
	r := &receipt.Receipt{SnapshotID: snapshotID, ManifestDigest: digest}
	bind := receipt.Bind(snapshotID, digest)
	err := s.TPM.do(ctx, func(tr transport.TPM) error {
		key, pub, flush, err := createReceiptKey(tr)
		if err != nil {
			return err
		}
		defer flush()
		if r.KeyID, err = receipt.KeyID(pub); err != nil {
			return err
		}
		q, err := (tpm2.Quote{
			SignHandle:     tpm2.AuthHandle{Handle: key.ObjectHandle, Name: key.Name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: bind[:]},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      selection(s.quotePCRs()),
		}).Execute(tr)
		if err != nil {
			return fmt.Errorf("TPM2_Quote: %w", err)
		}
		sig, err := q.Signature.Signature.ECDSA()
		if err != nil {
			return fmt.Errorf("quote signature: %w", err)
		}
		if len(sig.SignatureR.Buffer) > 32 || len(sig.SignatureS.Buffer) > 32 {
			return fmt.Errorf("quote signature: bad ECDSA P-256 size")
		}
		copy(r.R[32-len(sig.SignatureR.Buffer):], sig.SignatureR.Buffer)
		copy(r.S[32-len(sig.SignatureS.Buffer):], sig.SignatureS.Buffer)
		r.Attest = q.Quoted.Bytes()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sign manifest %s: %w", snapshotID, err)
	}
	return r.Encode()
}
