package tpm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// MasterKeySize is the size of the store's master key.
const MasterKeySize = 32

// Session parameters: SHA-256 sessions with 16-byte nonces, salted with the
// SRK (so the session key is unknown to anyone watching the bus) and
// AES-128-CFB parameter encryption (so the key is never on the bus in clear).
const (
	nonceSize = 16
	aesBits   = 128
)

type srkHandle struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    tpm2.TPMTPublic
}

// createSRK recreates the storage root key from the TCG ECC P-256 SRK
// template in the owner hierarchy. The same TPM (same owner seed) gives the
// same key every boot. Once TakeOwnership has set the owner auth, the SRK
// persisted at SRKHandle is used instead (same key, same Name; creating it
// would need the owner auth, owner.go).
func createSRK(tr transport.TPM) (*srkHandle, func(), error) {
	if srk, ok := persistentSRK(tr); ok {
		return srk, func() {}, nil
	}
	rsp, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}).Execute(tr)
	if err != nil {
		return nil, nil, fmt.Errorf("create SRK: %w", err)
	}
	flush := func() { (tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}).Execute(tr) }
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush()
		return nil, nil, fmt.Errorf("SRK public: %w", err)
	}
	return &srkHandle{handle: rsp.ObjectHandle, name: rsp.Name, pub: *pub}, flush, nil
}

func sealedTemplate(authPolicy []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		// No UserWithAuth: only the policy opens it.
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true},
		AuthPolicy:       tpm2.TPM2BDigest{Buffer: authPolicy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
	}
}

// NewMasterKey returns 32 bytes from the TPM's RNG and the kernel's mixed
// with HKDF-SHA256: the key is as good as the better of the two.
func (t *TPM) NewMasterKey(ctx context.Context) ([]byte, error) {
	tr, err := t.Random(ctx, MasterKeySize)
	if err != nil {
		return nil, err
	}
	osr := make([]byte, MasterKeySize)
	if _, err := rand.Read(osr); err != nil {
		return nil, fmt.Errorf("kernel RNG: %w", err)
	}
	k, err := hkdf.Key(sha256.New, append(osr, tr...), nil, "holdfast master key v1", MasterKeySize)
	if err != nil {
		return nil, fmt.Errorf("mix master key: %w", err)
	}
	return k, nil
}

// seal seals master to the policy under the SRK, using the current PCR
// values except where override gives a predicted one.
func (t *TPM) seal(ctx context.Context, master []byte, p Policy, override PCRValues) (*sealedFile, error) {
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return nil, err
	}
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("seal: master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	var sf *sealedFile
	err := t.do(ctx, func(tr transport.TPM) error {
		vals, err := checkBanks(tr, p.all(), p.AllowUnmeasured)
		if err != nil {
			return err
		}
		for n, v := range override {
			vals[n] = v
		}
		policy, err := sealingPolicy(p, vals)
		if err != nil {
			return fmt.Errorf("sealing policy: %w", err)
		}
		srk, flush, err := createSRK(tr)
		if err != nil {
			return err
		}
		defer flush()
		rsp, err := (tpm2.Create{
			ParentHandle: tpm2.AuthHandle{
				Handle: srk.handle,
				Name:   srk.name,
				Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, nonceSize,
					tpm2.Salted(srk.handle, srk.pub),
					tpm2.AESEncryption(aesBits, tpm2.EncryptIn)),
			},
			InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
				Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: master}),
			}},
			InPublic: tpm2.New2B(sealedTemplate(policy)),
		}).Execute(tr)
		if err != nil {
			return fmt.Errorf("seal (TPM2_Create): %w", err)
		}
		sf = &sealedFile{
			mode:       modePCR,
			fwMask:     pcrMask(p.FirmwarePCRs),
			cfgMask:    pcrMask(p.ConfigPCRs),
			srkName:    srk.name.Buffer,
			authPolicy: policy,
			public:     tpm2.Marshal(rsp.OutPublic),
			private:    tpm2.Marshal(rsp.OutPrivate),
		}
		if p.Authority != nil {
			name, err := authorityName(p.Authority)
			if err != nil {
				return err
			}
			sf.mode = modeAuthorize
			sf.authName = name.Buffer
		}
		return nil
	})
	return sf, err
}

// Unseal opens the master key sealed in dir. signed lists the firmware's
// signed PCR policies (needed only for a key sealed with an Authority). Every
// failure is an *UnsealError; its Kind tells safe mode what to show.
func (t *TPM) Unseal(ctx context.Context, dir string, p Policy, signed []SignedPolicy) ([]byte, error) {
	sf, err := readSealed(dir)
	if err != nil {
		return nil, err
	}
	fw, cfg := maskPCRs(sf.fwMask), maskPCRs(sf.cfgMask)
	var key []byte
	err = t.do(ctx, func(tr transport.TPM) error {
		if _, err := checkBanks(tr, normPCRs(append(fw, cfg...)), p.AllowUnmeasured); err != nil {
			return err
		}
		srk, flush, err := createSRK(tr)
		if err != nil {
			return err
		}
		defer flush()
		if !bytes.Equal(srk.name.Buffer, sf.srkName) {
			return unsealErr(ErrWrongTPM, "SRK name %x, sealed under %x", srk.name.Buffer, sf.srkName)
		}
		pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](sf.public)
		if err != nil {
			return unsealErr(ErrBadSealedKey, "public blob: %v", err)
		}
		priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](sf.private)
		if err != nil {
			return unsealErr(ErrBadSealedKey, "private blob: %v", err)
		}
		obj, err := (tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: tpm2.PasswordAuth(nil)},
			InPrivate:    *priv,
			InPublic:     *pub,
		}).Execute(tr)
		if errors.Is(err, tpm2.TPMRCIntegrity) {
			return unsealErr(ErrWrongTPM, "load sealed object: %v", err)
		}
		if err != nil {
			return unsealErr(ErrBadSealedKey, "load sealed object: %v", err)
		}
		defer (tpm2.FlushContext{FlushHandle: obj.ObjectHandle}).Execute(tr)

		sess, closeSess, err := tpm2.PolicySession(tr, tpm2.TPMAlgSHA256, nonceSize,
			tpm2.Salted(srk.handle, srk.pub),
			tpm2.AESEncryption(aesBits, tpm2.EncryptOut))
		if err != nil {
			return fmt.Errorf("start policy session: %w", err)
		}
		defer closeSess()
		switch sf.mode {
		case modePCR:
			if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: selection(normPCRs(append(fw, cfg...)))}).Execute(tr); err != nil {
				return fmt.Errorf("TPM2_PolicyPCR: %w", err)
			}
		case modeAuthorize:
			if err := authorize(tr, sess.Handle(), sf, p.Authority, signed); err != nil {
				return err
			}
			if len(cfg) > 0 {
				if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: selection(cfg)}).Execute(tr); err != nil {
					return fmt.Errorf("TPM2_PolicyPCR (config): %w", err)
				}
			}
		}
		rsp, err := (tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.ObjectHandle, Name: obj.Name, Auth: sess}}).Execute(tr)
		if errors.Is(err, tpm2.TPMRCPolicyFail) {
			return unsealErr(ErrPolicy, "PCRs %v do not have the values the key was sealed to", append(fw, cfg...))
		}
		if err != nil {
			return fmt.Errorf("TPM2_Unseal: %w", err)
		}
		key = rsp.OutData.Buffer
		return nil
	})
	if err != nil {
		var ue *UnsealError
		if !errors.As(err, &ue) {
			err = &UnsealError{Kind: ErrNoTPM, Err: err}
		}
		return nil, err
	}
	if len(key) != MasterKeySize {
		return nil, unsealErr(ErrBadSealedKey, "unsealed %d bytes, want %d", len(key), MasterKeySize)
	}
	return key, nil
}

// authorize runs the signed-policy half of the session: PolicyPCR over the
// firmware PCRs, then PolicyAuthorize with the approval that matches.
func authorize(tr transport.TPM, sess tpm2.TPMHandle, sf *sealedFile, authority *ecdsa.PublicKey, signed []SignedPolicy) error {
	if authority == nil {
		return unsealErr(ErrPolicy, "key is sealed to a firmware signing key but none is configured")
	}
	tp, err := authorityPublic(authority)
	if err != nil {
		return unsealErr(ErrPolicy, "%v", err)
	}
	fw := maskPCRs(sf.fwMask)
	if _, err := (tpm2.PolicyPCR{PolicySession: sess, Pcrs: selection(fw)}).Execute(tr); err != nil {
		return fmt.Errorf("TPM2_PolicyPCR (firmware): %w", err)
	}
	gd, err := (tpm2.PolicyGetDigest{PolicySession: sess}).Execute(tr)
	if err != nil {
		return fmt.Errorf("TPM2_PolicyGetDigest: %w", err)
	}
	var approval *SignedPolicy
	for i := range signed {
		if signed[i].Mask == sf.fwMask && bytes.Equal(signed[i].Digest[:], gd.PolicyDigest.Buffer) {
			approval = &signed[i]
			break
		}
	}
	if approval == nil {
		return unsealErr(ErrPolicy, "no signed policy approves the current values of PCRs %v (%d signed policies offered)", fw, len(signed))
	}
	ext, err := (tpm2.LoadExternal{InPublic: tpm2.New2B(tp), Hierarchy: tpm2.TPMRHOwner}).Execute(tr)
	if err != nil {
		return fmt.Errorf("load firmware signing key: %w", err)
	}
	defer (tpm2.FlushContext{FlushHandle: ext.ObjectHandle}).Execute(tr)
	if !bytes.Equal(ext.Name.Buffer, sf.authName) {
		return unsealErr(ErrPolicy, "key is sealed to another firmware signing key")
	}
	h := approvalHash(approval.Digest[:])
	ver, err := (tpm2.VerifySignature{
		KeyHandle: ext.ObjectHandle,
		Digest:    tpm2.TPM2BDigest{Buffer: h[:]},
		Signature: tpm2.TPMTSignature{
			SigAlg: tpm2.TPMAlgECDSA,
			Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
				Hash:       tpm2.TPMAlgSHA256,
				SignatureR: tpm2.TPM2BECCParameter{Buffer: approval.R[:]},
				SignatureS: tpm2.TPM2BECCParameter{Buffer: approval.S[:]},
			}),
		},
	}).Execute(tr)
	if err != nil {
		return unsealErr(ErrPolicy, "signed policy signature rejected by the TPM: %v", err)
	}
	if _, err := (tpm2.PolicyAuthorize{
		PolicySession:  sess,
		ApprovedPolicy: tpm2.TPM2BDigest{Buffer: approval.Digest[:]},
		PolicyRef:      tpm2.TPM2BDigest{Buffer: policyRef},
		KeySign:        ext.Name,
		CheckTicket:    ver.Validation,
	}).Execute(tr); err != nil {
		return unsealErr(ErrPolicy, "TPM2_PolicyAuthorize: %v", err)
	}
	return nil
}

// Unsealer is the store.KeySource of the appliance: it unseals the master
// key from Dir with the TPM. It never creates, formats or reseals anything;
// a failure is an *UnsealError that the boot flow maps to safe mode.
type Unsealer struct {
	TPM    *TPM
	Dir    string
	Policy Policy
}

// MasterKey unseals the master key. Signed policies are read from
// Dir/pcr-policy.signed when the key was sealed to a firmware signing key.
func (u *Unsealer) MasterKey(ctx context.Context) ([]byte, error) {
	var signed []SignedPolicy
	if u.Policy.Authority != nil {
		b, err := os.ReadFile(filepath.Join(u.Dir, SignedPolicyFile))
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, unsealErr(ErrPolicy, "read signed policies: %v", err)
		default:
			if signed, err = DecodeSignedPolicies(b); err != nil {
				return nil, unsealErr(ErrPolicy, "%v", err)
			}
		}
	}
	return u.TPM.Unseal(ctx, u.Dir, u.Policy, signed)
}
