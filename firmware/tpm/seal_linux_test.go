package tpm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
)

func TestProvisionAndUnseal(t *testing.T) {
	other := boot1
	other.uki = "holdfast UKI 1.1 (unsigned update)"
	newCfg := boot1
	newCfg.config = "cfg B"

	cases := []struct {
		name string
		// after provisioning on boot1, act changes the machine
		act  func(m *machine)
		want error // nil: unseal gives the provisioned key
	}{
		{"same boot", func(m *machine) {}, nil},
		{"orderly restart, same boot state", func(m *machine) { m.reboot(boot1) }, nil},
		{"restart after a power cut, same boot state", func(m *machine) { m.powerCut(); m.boot(boot1) }, nil},
		{"PCR 7 extended after boot", func(m *machine) {
			if err := m.tpm.ExtendPCR(ctxT(t), tpm.PCRSecureBoot, digest("evil")); err != nil {
				t.Fatal(err)
			}
		}, tpm.ErrPolicy},
		{"config PCR capped after unseal", func(m *machine) {
			if err := m.tpm.CapConfigPCR(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		}, tpm.ErrPolicy},
		{"other UKI", func(m *machine) { m.reboot(other) }, tpm.ErrPolicy},
		{"other config", func(m *machine) { m.reboot(newCfg) }, tpm.ErrPolicy},
		{"UKI not measured", func(m *machine) { m.reboot(bootState{secureBoot: boot1.secureBoot, config: boot1.config}) }, tpm.ErrPCRBank},
		{"fresh TPM", func(m *machine) { m.freshTPM(boot1) }, tpm.ErrWrongTPM},
		{"sealed key missing", func(m *machine) {
			os.Rename(filepath.Join(m.keyDir, tpm.SealedKeyFile), filepath.Join(m.keyDir, "moved-away"))
		}, tpm.ErrNoSealedKey},
		{"sealed key damaged", func(m *machine) {
			p := filepath.Join(m.keyDir, tpm.SealedKeyFile)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o600)
		}, tpm.ErrBadSealedKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, boot1)
			ctx := ctxT(t)
			prov, err := m.tpm.Provision(ctx, m.keyDir, tpm.DefaultPolicy(), nil)
			if err != nil {
				t.Fatalf("provision: %v", err)
			}
			if len(prov.MasterKey) != tpm.MasterKeySize {
				t.Fatalf("master key is %d bytes", len(prov.MasterKey))
			}
			tc.act(m)
			before := snapshotDir(t, m.keyDir)
			key, err := m.unsealer(tpm.DefaultPolicy()).MasterKey(ctx)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unseal: %v", err)
				}
				if !bytes.Equal(key, prov.MasterKey) {
					t.Fatal("unsealed a different key")
				}
			} else {
				var ue *tpm.UnsealError
				if !errors.As(err, &ue) || !errors.Is(err, tc.want) {
					t.Fatalf("unseal: got %v, want *UnsealError wrapping %v", err, tc.want)
				}
				if key != nil {
					t.Fatal("a failed unseal returned key bytes")
				}
				t.Logf("typed error as expected: %v", err)
			}
			// A failed (or successful) unseal never writes anything (I6).
			if after := snapshotDir(t, m.keyDir); !sameDir(before, after) {
				t.Fatalf("unseal changed the key directory: %v -> %v", names(before), names(after))
			}
		})
	}
}

func TestProvisionRefusesExistingKey(t *testing.T) {
	m := newMachine(t, boot1)
	ctx := ctxT(t)
	if _, err := m.tpm.Provision(ctx, m.keyDir, tpm.DefaultPolicy(), nil); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, m.keyDir)
	if _, err := m.tpm.Provision(ctx, m.keyDir, tpm.DefaultPolicy(), nil); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second provision: got %v, want os.ErrExist", err)
	}
	if !sameDir(before, snapshotDir(t, m.keyDir)) {
		t.Fatal("a refused provision changed the key directory")
	}
}

func TestPCRBankChecks(t *testing.T) {
	cases := []struct {
		name string
		bs   bootState
		p    tpm.Policy
		want error
	}{
		{"secure boot PCR unmeasured", bootState{uki: "u", config: "c"}, tpm.DefaultPolicy(), tpm.ErrPCRBank},
		{"config PCR not extended by init", bootState{secureBoot: "s", uki: "u"}, tpm.DefaultPolicy(), tpm.ErrPCRBank},
		{"unmeasured allowed on a dev board", bootState{config: "c"}, tpm.Policy{AllowUnmeasured: true}, nil},
		{"PCR out of range", boot1, tpm.Policy{FirmwarePCRs: []int{7, 30}}, errAny},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, tc.bs)
			_, err := m.tpm.Provision(ctxT(t), m.keyDir, tc.p, nil)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("provision: %v", err)
			case tc.want == errAny && err == nil:
				t.Fatal("provision succeeded")
			case tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
				t.Fatalf("provision: got %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				if files := snapshotDir(t, m.keyDir); len(files) != 0 {
					t.Fatalf("failed provision left files: %v", names(files))
				}
			}
		})
	}
}

var errAny = errors.New("any error")

// TestSignedPolicy: with a firmware signing key, a signed update unseals with
// no reseal; anything unsigned, signed by another key, or a changed config
// does not.
func TestSignedPolicy(t *testing.T) {
	fwKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	evilKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pol := tpm.DefaultPolicy()
	pol.Authority = &fwKey.PublicKey

	release := func(bs bootState) tpm.PCRValues {
		return tpm.PCRValues{
			tpm.PCRSecureBoot: tpm.PCRAfter(digest(bs.secureBoot)),
			tpm.PCRKernel:     tpm.PCRAfter(digest(bs.uki)),
		}
	}
	sign := func(key *ecdsa.PrivateKey, bs bootState) tpm.SignedPolicy {
		sp, err := tpm.SignPCRPolicy(key, release(bs))
		if err != nil {
			t.Fatal(err)
		}
		if !sp.Verify(&key.PublicKey) {
			t.Fatal("signed policy does not verify in software")
		}
		return sp
	}
	v2 := boot1
	v2.uki = "holdfast UKI 2.0 (signed update)"
	v2cfg := v2
	v2cfg.config = "cfg B"

	m := newMachine(t, boot1)
	ctx := ctxT(t)
	prov, err := m.tpm.Provision(ctx, m.keyDir, pol, []tpm.SignedPolicy{sign(fwKey, boot1)})
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	steps := []struct {
		name   string
		boot   bootState
		signed []tpm.SignedPolicy // written to the signed-policy file
		want   error
	}{
		{"release 1, signed", boot1, []tpm.SignedPolicy{sign(fwKey, boot1)}, nil},
		{"release 2 booted, no signature for it", v2, []tpm.SignedPolicy{sign(fwKey, boot1)}, tpm.ErrPolicy},
		{"release 2 signed by another key", v2, []tpm.SignedPolicy{sign(evilKey, v2)}, tpm.ErrPolicy},
		{"release 2 signed by the firmware key: no reseal needed", v2, []tpm.SignedPolicy{sign(fwKey, boot1), sign(fwKey, v2)}, nil},
		{"release 2 signed, but the config changed", v2cfg, []tpm.SignedPolicy{sign(fwKey, v2)}, tpm.ErrPolicy},
		{"no signed-policy file", v2, nil, tpm.ErrPolicy},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			m.reboot(st.boot)
			p := filepath.Join(m.keyDir, tpm.SignedPolicyFile)
			os.Remove(p)
			if st.signed != nil {
				b, err := tpm.EncodeSignedPolicies(st.signed)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			key, err := m.unsealer(pol).MasterKey(ctxT(t))
			if st.want == nil {
				if err != nil {
					t.Fatalf("unseal: %v", err)
				}
				if !bytes.Equal(key, prov.MasterKey) {
					t.Fatal("unsealed a different key")
				}
				return
			}
			if !errors.Is(err, st.want) {
				t.Fatalf("unseal: got %v, want %v", err, st.want)
			}
			t.Logf("typed error as expected: %v", err)
		})
	}
}

// TestResealWithRecoveryKey is the console flow after an unsigned change:
// unseal fails, the operator types the recovery key, the key is resealed to
// the new boot state.
func TestResealWithRecoveryKey(t *testing.T) {
	m := newMachine(t, boot1)
	ctx := ctxT(t)
	prov, err := m.tpm.Provision(ctx, m.keyDir, tpm.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	v2 := boot1
	v2.uki = "holdfast UKI 1.1 (unsigned)"
	m.reboot(v2)
	if _, err := m.unsealer(tpm.DefaultPolicy()).MasterKey(ctx); !errors.Is(err, tpm.ErrPolicy) {
		t.Fatalf("unseal after the update: got %v, want ErrPolicy", err)
	}
	typed := prov.RecoveryKey.String()
	rk, err := recoverykey.Parse(typed)
	if err != nil {
		t.Fatal(err)
	}
	master, err := recoverykey.Opener{Key: rk, Path: filepath.Join(m.keyDir, tpm.RecoveryFile)}.MasterKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := recoverykey.Generate()
	if err := m.tpm.Reseal(ctx, m.keyDir, master, other, tpm.DefaultPolicy(), nil); !errors.Is(err, recoverykey.ErrWrongKey) {
		t.Fatalf("reseal with another recovery key: got %v, want ErrWrongKey", err)
	}
	if err := m.tpm.Reseal(ctx, m.keyDir, bytes.Repeat([]byte{1}, 32), rk, tpm.DefaultPolicy(), nil); err == nil {
		t.Fatal("resealed a key that is not this box's")
	}
	if err := m.tpm.Reseal(ctx, m.keyDir, master, rk, tpm.DefaultPolicy(), nil); err != nil {
		t.Fatalf("reseal: %v", err)
	}
	m.reboot(v2)
	key, err := m.unsealer(tpm.DefaultPolicy()).MasterKey(ctx)
	if err != nil {
		t.Fatalf("unseal after reseal: %v", err)
	}
	if !bytes.Equal(key, prov.MasterKey) {
		t.Fatal("unsealed a different key after reseal")
	}

	// Reseal ahead of a config change, with the predicted config PCR.
	next := v2
	next.config = "cfg C"
	if err := m.tpm.Reseal(ctx, m.keyDir, master, rk, tpm.DefaultPolicy(), tpm.PCRValues{tpm.PCRConfig: tpm.PCRAfter(digest(next.config))}); err != nil {
		t.Fatalf("reseal for the next config: %v", err)
	}
	m.reboot(next)
	if key, err = m.unsealer(tpm.DefaultPolicy()).MasterKey(ctx); err != nil || !bytes.Equal(key, prov.MasterKey) {
		t.Fatalf("unseal with the predicted config: %v", err)
	}
}
