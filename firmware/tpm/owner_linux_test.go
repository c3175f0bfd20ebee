package tpm_test

import (
	"bytes"
	"testing"

	"github.com/holdfast-appliance/holdfast/firmware/tpm"
)

// TestOwnership: before TakeOwnership anything can TPM2_ClockSet the TPM
// forward (the finding); after it ClockSet needs the owner auth derived
// from the master key, and the SRK (persisted) still unseals the master key
// across reboots, for Reseal, and for Identity. TakeOwnership is
// idempotent.
func TestOwnership(t *testing.T) {
	m := newMachine(t, boot1)
	ctx := ctxT(t)
	ci, err := m.tpm.ReadClock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.tpm.ClockSet(ctx, ci.Clock+3_600_000, nil); err != nil {
		t.Fatalf("a fresh TPM refused ClockSet with an empty owner auth: %v", err)
	}
	idBefore, err := m.tpm.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := m.tpm.Provision(ctx, m.keyDir, tpm.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	master, err := m.unsealer(tpm.DefaultPolicy()).MasterKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := tpm.OwnerAuth(master)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := m.tpm.TakeOwnership(ctx, auth)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 3 {
		t.Fatalf("TakeOwnership changed %v, want srk, owner and lockout", changed)
	}
	if changed, err := m.tpm.TakeOwnership(ctx, auth); err != nil || len(changed) != 0 {
		t.Fatalf("second TakeOwnership: changed %v, %v", changed, err)
	}

	for _, tc := range []struct {
		name string
		auth []byte
		ok   bool
	}{
		{"empty owner auth", nil, false},
		{"a wrong owner auth", bytes.Repeat([]byte{1}, 32), false},
		{"the box's owner auth", auth, true},
	} {
		ci, err := m.tpm.ReadClock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = m.tpm.ClockSet(ctx, ci.Clock+3_600_000, tc.auth)
		if (err == nil) != tc.ok {
			t.Fatalf("ClockSet with %s: %v", tc.name, err)
		}
		after, _ := m.tpm.ReadClock(ctx)
		if moved := after.Clock >= ci.Clock+3_600_000; moved != tc.ok {
			t.Fatalf("ClockSet with %s moved the Clock: %v (from %d to %d)", tc.name, moved, ci.Clock, after.Clock)
		}
		if !tc.ok {
			// A wrong auth counts against dictionary-attack lockout
			// on a real TPM; swtpm too. Keep to one try per case.
			t.Logf("ClockSet with %s refused: %v", tc.name, err)
		}
	}
	if err := m.tpm.Clear(ctx, nil); err == nil {
		t.Fatal("TPM2_Clear with an empty lockout auth succeeded")
	}

	// The SRK still works: across a reboot, for Reseal, for Identity.
	m.reboot(boot1)
	got, err := m.unsealer(tpm.DefaultPolicy()).MasterKey(ctx)
	if err != nil || !bytes.Equal(got, master) {
		t.Fatalf("unseal after ownership and a reboot: %v", err)
	}
	if id, err := m.tpm.Identity(ctx); err != nil || id != idBefore {
		t.Fatalf("identity after ownership %x, %v; want %x", id, err, idBefore)
	}
	if err := m.tpm.Reseal(ctx, m.keyDir, master, prov.RecoveryKey, tpm.DefaultPolicy(), nil); err != nil {
		t.Fatalf("reseal after ownership: %v", err)
	}
	m.reboot(boot1)
	if got, err := m.unsealer(tpm.DefaultPolicy()).MasterKey(ctx); err != nil || !bytes.Equal(got, master) {
		t.Fatalf("unseal after reseal: %v", err)
	}
}
