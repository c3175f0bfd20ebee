package tpm_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/receipt"
	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/services/store"
)

func putSnapshot(t testing.TB, s *store.Store, source string, until time.Time, objs map[string]string) *store.Manifest {
	t.Helper()
	ctx := context.Background()
	sn, err := s.Begin(ctx, store.BeginOptions{Source: source, RetainUntil: until})
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	keys := make([]string, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte(k)}, strings.NewReader(objs[k])); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	m, err := sn.Commit(ctx, store.CommitOptions{})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return m
}

func readObject(t testing.TB, s *store.Store, id, key string) string {
	t.Helper()
	_, o, err := s.FindObject(id, []byte(key))
	if err != nil {
		t.Fatalf("find %q in %s: %v", key, id, err)
	}
	var buf bytes.Buffer
	if err := s.WriteObject(context.Background(), o, &buf); err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return buf.String()
}

// TestRecoveryKeyOpensStore: a store made with the TPM-sealed key opens on
// "any Linux PC" (no TPM at all) with the paper recovery key and the wrapped
// key file, from the config partition or from the copy beside the store.
func TestRecoveryKeyOpensStore(t *testing.T) {
	m := newMachine(t, boot1)
	ctx := ctxT(t)
	prov, err := m.tpm.Provision(ctx, m.keyDir, tpm.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	base := storeBase(t)
	dir := filepath.Join(base, "store")
	s, err := store.Init(ctx, dir, m.unsealer(tpm.DefaultPolicy()), store.InitOptions{}, store.Options{Logger: m.log})
	if err != nil {
		t.Fatalf("init with the TPM key: %v", err)
	}
	objs := map[string]string{"etc/passwd": "root:x:0:0", "big": strings.Repeat("holdfast ", 50000)}
	snap := putSnapshot(t, s, "src", time.Now().Add(time.Hour), objs)
	s.Close()

	// The copy of the wrapped key that lives beside the store.
	blob, err := os.ReadFile(filepath.Join(m.keyDir, tpm.RecoveryFile))
	if err != nil {
		t.Fatal(err)
	}
	beside := filepath.Join(base, "holdfast-recovery")
	if err := recoverykey.WriteFile(beside, blob); err != nil {
		t.Fatal(err)
	}
	if err := recoverykey.WriteFile(beside, blob); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second write of the wrapped key: got %v, want os.ErrExist", err)
	}
	m.powerCut() // the appliance is dead; no TPM from here on

	paper := prov.RecoveryKey.String()
	typed := strings.ReplaceAll(paper, "-", " ") // as an operator types it
	for _, path := range []string{filepath.Join(m.keyDir, tpm.RecoveryFile), beside} {
		rk, err := recoverykey.Parse(typed)
		if err != nil {
			t.Fatalf("parse %q: %v", typed, err)
		}
		s2, err := store.Open(ctx, dir, recoverykey.Opener{Key: rk, Path: path}, store.Options{Logger: m.log, ReadOnly: true})
		if err != nil {
			t.Fatalf("open with the recovery key (%s): %v", path, err)
		}
		for k, v := range objs {
			if got := readObject(t, s2, snap.ID, k); got != v {
				t.Fatalf("object %q differs after recovery", k)
			}
		}
		s2.Close()
	}

	// A typo is named by group, before any cryptography.
	b := []byte(paper)
	pos := 3*7 + 2 // group 4, third digit
	b[pos] = '0' + (b[pos]-'0'+1)%10
	_, err = recoverykey.Parse(string(b))
	var ge *recoverykey.GroupError
	if !errors.As(err, &ge) || ge.Group != 4 {
		t.Fatalf("typo in group 4: got %v", err)
	}
	// A well-formed but different key does not open the store.
	other, _ := recoverykey.Generate()
	if _, err := store.Open(ctx, dir, recoverykey.Opener{Key: other, Path: beside}, store.Options{ReadOnly: true}); !errors.Is(err, recoverykey.ErrWrongKey) {
		t.Fatalf("open with another recovery key: got %v, want ErrWrongKey", err)
	}
}

// wallClock is a settable wall clock that runs at real speed from a base.
type wallClock struct {
	mu     sync.Mutex
	start  time.Time
	base   time.Time
	offset time.Duration
}

func (w *wallClock) now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.base.Add(time.Since(w.start) + w.offset)
}

func (w *wallClock) set(off time.Duration) {
	w.mu.Lock()
	w.offset = off
	w.mu.Unlock()
}

// TestPruneTrustsOnlyTheTPMClock drives prune through a store whose clock is
// the TPM clock: a wall clock 10 years ahead or a day behind, and a TPM that
// lost power without TPM2_Shutdown, all freeze prune and delete nothing; an
// orderly reboot keeps time trusted and prune works.
//
// errPowerCut marks the step whose error may be either rollback or unsafe.
var errPowerCut = errors.New("rollback or unsafe")

func TestPruneTrustsOnlyTheTPMClock(t *testing.T) {
	m := newMachine(t, boot1)
	ctx := ctxT(t)
	prov, err := m.tpm.Provision(ctx, m.keyDir, tpm.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	wall := &wallClock{start: time.Now(), base: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	anchorPath := filepath.Join(m.keyDir, tpm.ClockAnchorFile)
	newClock := func() *tpm.Clock {
		c, err := tpm.NewClock(m.tpm, tpm.ClockOptions{AnchorPath: anchorPath, MasterKey: prov.MasterKey, Wall: wall.now, Logger: m.log})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := newClock().Check(ctx); !errors.Is(err, tpm.ErrNoAnchor) {
		t.Fatalf("clock before anchoring: got %v, want ErrNoAnchor", err)
	}
	if err := newClock().Anchor(ctx, wall.now()); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(storeBase(t), "store")
	s, err := store.Init(ctx, dir, m.unsealer(tpm.DefaultPolicy()), store.InitOptions{}, store.Options{Logger: m.log, Clock: newClock()})
	if err != nil {
		t.Fatal(err)
	}
	t0 := wall.now()
	old := putSnapshot(t, s, "src", t0.Add(time.Second), map[string]string{"a": "old data " + strings.Repeat("x", 1000)})
	putSnapshot(t, s, "src", t0.Add(24*time.Hour), map[string]string{"b": "new data"})
	s.Close()
	time.Sleep(1500 * time.Millisecond) // old's retention ends (by wall and TPM alike)

	// open reopens the store as the next boot's maintenance window does.
	open := func() *store.Store {
		t.Helper()
		s, err := store.Open(ctx, dir, m.unsealer(tpm.DefaultPolicy()), store.Options{Logger: m.log, Clock: newClock()})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return s
	}
	steps := []struct {
		name     string
		act      func()
		wantErr  error // from the TPM clock; nil: trusted
		unsafe   bool  // the TPM itself reports safe = NO
		dryRun   bool
		wantGone []string
	}{
		{"wall clock 10 years ahead", func() { wall.set(10 * 365 * 24 * time.Hour) }, tpm.ErrClockAhead, false, false, nil},
		{"wall clock a day behind", func() { wall.set(-24 * time.Hour) }, tpm.ErrClockBehind, false, false, nil},
		{"orderly reboot, wall clock right (dry run)", func() { wall.set(0); m.reboot(boot1) }, nil, false, true, []string{old.ID}},
		{"cold boot after the kernel's Shutdown(CLEAR): a TPM Reset, still trusted (dry run)", func() { m.shutdownClearBoot(boot1) }, nil, false, true, []string{old.ID}},
		{"TPM killed without shutdown (SIGKILL), restarted", func() { m.powerCut(); m.boot(boot1) }, errPowerCut, true, false, nil},
		{"then an orderly reboot: the TPM still reports safe = NO", func() { m.reboot(boot1) }, errPowerCut, true, false, nil},
		{"operator re-anchors at the console, prune runs", func() {
			m.reboot(boot1)
			if err := newClock().Anchor(ctx, wall.now()); err != nil {
				t.Fatalf("re-anchor: %v", err)
			}
		}, nil, true, false, []string{old.ID}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.act()
			s := open()
			defer s.Close()
			ci, err := m.tpm.ReadClock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ci.Safe == st.unsafe {
				t.Fatalf("TPM reports safe = %v, want %v (%+v)", ci.Safe, !st.unsafe, ci)
			}
			_, cerr := newClock().Check(ctx)
			if st.wantErr == nil && cerr != nil {
				t.Fatalf("clock: %v", cerr)
			}
			if st.wantErr == errPowerCut {
				// The Clock restarts from its last NV save: below the
				// anchor (rollback) or not, with safe = NO (unsafe).
				if !errors.Is(cerr, tpm.ErrClockRollback) && !errors.Is(cerr, tpm.ErrClockUnsafe) {
					t.Fatalf("clock: got %v, want ErrClockRollback or ErrClockUnsafe", cerr)
				}
			} else if st.wantErr != nil && !errors.Is(cerr, st.wantErr) {
				t.Fatalf("clock: got %v, want %v", cerr, st.wantErr)
			}
			before := snapshotDir(t, dir)
			res, err := s.Prune(ctx, store.PruneOptions{DryRun: st.dryRun})
			if st.wantErr != nil {
				if !errors.Is(err, store.ErrClockUntrusted) {
					t.Fatalf("prune: got %v, want ErrClockUntrusted", err)
				}
				if after := snapshotDir(t, dir); !sameDir(before, after) {
					t.Fatalf("a refused prune changed the store: %v -> %v", names(before), names(after))
				}
				if _, err := s.ReadManifest(old.ID); err != nil {
					t.Fatalf("expired snapshot gone although prune was frozen: %v", err)
				}
				t.Logf("prune frozen as expected: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("prune: %v", err)
			}
			if !slices.Equal(res.Expired, st.wantGone) {
				t.Fatalf("prune expired %v, want %v", res.Expired, st.wantGone)
			}
			_, err = s.ReadManifest(old.ID)
			if gone := errors.Is(err, store.ErrNotFound); gone == st.dryRun {
				t.Fatalf("dry run %v, but snapshot gone = %v (%v)", st.dryRun, gone, err)
			}
		})
	}
}

// TestReceipts: every commit gets a TPM-signed receipt that verifies offline
// with the PEM public key, also after a reboot; a changed manifest or a
// changed receipt fails.
func TestReceipts(t *testing.T) {
	m := newMachine(t, boot1)
	ctx := ctxT(t)
	signer := &tpm.Signer{TPM: m.tpm}
	pemKey, err := signer.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(storeBase(t), "store")
	s, err := store.Init(ctx, dir, store.StaticKey(bytes.Repeat([]byte{7}, 32)), store.InitOptions{}, store.Options{Logger: m.log, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap := putSnapshot(t, s, "src", time.Now().Add(time.Hour), map[string]string{"k": "v"})
	raw, err := s.Receipt(snap.ID)
	if err != nil {
		t.Fatalf("receipt: %v", err)
	}
	manifest, err := os.ReadFile(filepath.Join(dir, "snapshots", snap.ID+".snap"))
	if err != nil {
		t.Fatal(err)
	}

	// The same key after a reboot (a deterministic primary).
	m.reboot(boot1)
	pemKey2, err := (&tpm.Signer{TPM: m.tpm}).PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pemKey, pemKey2) {
		t.Fatal("the receipt key changed across a reboot")
	}
	pub, err := receipt.ParsePublicKeyPEM(pemKey2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := receipt.Verify(raw, pub)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if r.SnapshotID != snap.ID {
		t.Fatalf("receipt is for %s, want %s", r.SnapshotID, snap.ID)
	}
	if d, _ := s.ManifestDigest(snap.ID); d != r.ManifestDigest {
		t.Fatal("receipt digest differs from the store's manifest digest")
	}
	if err := r.CheckManifest(bytes.NewReader(manifest)); err != nil {
		t.Fatalf("manifest check: %v", err)
	}
	if !r.Clock.Safe || r.Clock.ResetCount == 0 || !slices.Equal(r.PCRs, []int{7, 11, 15}) || len(r.PCRDigest) != 32 {
		t.Fatalf("receipt clock/PCRs look wrong: %+v PCRs %v", r.Clock, r.PCRs)
	}

	changed := bytes.Clone(manifest)
	changed[len(changed)-1] ^= 1
	if err := r.CheckManifest(bytes.NewReader(changed)); !errors.Is(err, receipt.ErrManifestMismatch) {
		t.Fatalf("changed manifest: got %v, want ErrManifestMismatch", err)
	}

	mut := func(f func(*receipt.Receipt)) []byte {
		r2, err := receipt.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		f(r2)
		b, err := r2.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"manifest digest changed", mut(func(r *receipt.Receipt) { r.ManifestDigest[0] ^= 1 })},
		{"snapshot ID changed", mut(func(r *receipt.Receipt) { r.SnapshotID = strings.Replace(r.SnapshotID, "0", "1", 1) })},
		{"attestation changed", mut(func(r *receipt.Receipt) { r.Attest[len(r.Attest)-1] ^= 1 })},
		{"signature changed", mut(func(r *receipt.Receipt) { r.S[31] ^= 1 })},
		{"key ID changed", mut(func(r *receipt.Receipt) { r.KeyID[0] ^= 1 })},
		{"truncated", raw[:len(raw)-1]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if bytes.Equal(tc.b, raw) {
				t.Fatal("mutation did not change the receipt")
			}
			if _, err := receipt.Verify(tc.b, pub); err == nil {
				t.Fatal("a changed receipt verified")
			} else {
				t.Logf("rejected: %v", err)
			}
		})
	}
}
