package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

func TestSyncMakesEachDiskComplete(t *testing.T) {
	e := newEnv(t, "")
	all, err := store.ListSealed(e.a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[store.FileKind]int{}
	for _, f := range all {
		kinds[f.Kind]++
	}
	t.Logf("primary holds %v", kinds)
	for _, k := range []store.FileKind{store.KindPack, store.KindManifest, store.KindRetention, store.KindReceipt, store.KindRecovery} {
		if kinds[k] == 0 {
			t.Fatalf("the test data has no %s", k)
		}
	}
	if kinds[store.KindPack] < 4 {
		t.Fatalf("only %d packs; the test wants several", kinds[store.KindPack])
	}

	res := e.sync(t)
	// The recovery blob came with InitMirror; everything else is copied.
	if len(res.Copied) != len(all)-1 || res.Degraded || len(res.SourceDamaged) != 0 {
		t.Fatalf("sync copied %d of %d files: %+v", len(res.Copied), len(all), res)
	}
	if i := slices.IndexFunc(res.Copied, func(r string) bool { k, _ := store.KindOf(r); return k != store.KindPack }); i < 0 || slices.ContainsFunc(res.Copied[i:], func(r string) bool { k, _ := store.KindOf(r); return k == store.KindPack }) {
		t.Errorf("packs are not all copied before the first manifest: %v", res.Copied)
	}
	sameFiles(t, e.a.Dir(), e.bDir)
	readAlone(t, e.a.Dir(), e.want)
	readAlone(t, e.bDir, e.want)

	// The clock high-water mark went along.
	b, err := store.Open(context.Background(), e.bDir, testKey, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	hwA, _ := e.a.HighWater()
	hwB, _ := b.HighWater()
	b.Close()
	if hwA.IsZero() || !hwA.Equal(hwB) {
		t.Errorf("high-water mark: primary %v, mirror %v", hwA, hwB)
	}

	// Nothing to do the second time; one new snapshot copies only its files.
	if res := e.sync(t); len(res.Copied) != 0 {
		t.Errorf("second sync copied %v", res.Copied)
	}
	e.put(t, 7)
	res = e.sync(t)
	if len(res.Copied) == 0 || len(res.Copied) > 6 {
		t.Errorf("sync after one snapshot copied %v", res.Copied)
	}
	sameFiles(t, e.a.Dir(), e.bDir)
	readAlone(t, e.bDir, e.want)

	rep, err := Scrub(context.Background(), e.disks(), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Unsealed) != 0 || rep.Disks[1].Good != rep.Files {
		t.Fatalf("scrub of a synced pair: %s %+v", rep.Summary(), rep)
	}
	if k := e.alerts.kinds(); len(k) != 0 {
		t.Errorf("alerts on a healthy mirror: %v", k)
	}
}

func TestScrubAndRepair(t *testing.T) {
	ctx := context.Background()
	type damage struct {
		disk string // "A" or "B", or "AB" for both
		kind store.FileKind
		how  string // "flip" or "remove"
	}
	for _, tc := range []struct {
		name string
		damage
		wantFix          bool // a fix is proposed
		wantMissing      bool
		wantUnrepairable bool
		wantConflict     bool
		needsMaintenance bool // only the maintenance window repairs it
	}{
		{"pack flipped on B", damage{"B", store.KindPack, "flip"}, true, false, false, false, true},
		{"manifest flipped on B", damage{"B", store.KindManifest, "flip"}, true, false, false, false, true},
		{"retention record flipped on B", damage{"B", store.KindRetention, "flip"}, true, false, false, false, true},
		{"pack flipped on A", damage{"A", store.KindPack, "flip"}, true, false, false, false, true},
		{"manifest flipped on A", damage{"A", store.KindManifest, "flip"}, true, false, false, false, true},
		{"pack missing on B", damage{"B", store.KindPack, "remove"}, true, true, false, false, false},
		{"manifest missing on A", damage{"A", store.KindManifest, "remove"}, true, true, false, false, false},
		{"receipt missing on B", damage{"B", store.KindReceipt, "remove"}, true, true, false, false, false},
		{"receipt differs", damage{"B", store.KindReceipt, "flip"}, false, false, false, true, false},
		{"pack flipped on both", damage{"AB", store.KindPack, "flip"}, false, false, true, false, false},
		{"manifest flipped on A, missing on B", damage{"AB", store.KindManifest, "flip-remove"}, false, false, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			e.sync(t)
			dirs := map[string]string{"A": e.a.Dir(), "B": e.bDir}
			rel := firstOf(t, e.a.Dir(), tc.kind)
			before := map[string][]byte{} // what each disk held after the damage
			for i, d := range tc.disk {
				p := filepath.Join(dirs[string(d)], rel)
				how := tc.how
				if how == "flip-remove" {
					how = []string{"flip", "remove"}[i]
				}
				switch how {
				case "flip":
					flip(t, p)
					before[string(d)] = mustRead(t, p)
				case "remove":
					remove(t, p)
				}
			}
			goodDisk := "A"
			if tc.disk == "A" {
				goodDisk = "B"
			}
			good := mustRead(t, filepath.Join(dirs[goodDisk], rel))

			rep, err := Scrub(ctx, e.disks(), e.opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("scrub: %s", rep.Summary())
			if rep.OK() {
				t.Fatal("scrub found nothing")
			}
			if !slices.Contains(e.alerts.kinds(), AlertScrubDamage) {
				t.Errorf("no scrub-damage alert: %v", e.alerts.kinds())
			}
			if got := len(rep.Fixes) == 1; got != tc.wantFix {
				t.Fatalf("fixes %+v, want one: %v", rep.Fixes, tc.wantFix)
			}
			if got := len(rep.Unrepairable) == 1; got != tc.wantUnrepairable {
				t.Fatalf("unrepairable %+v, want one: %v", rep.Unrepairable, tc.wantUnrepairable)
			}
			if got := len(rep.Conflicts) == 1; got != tc.wantConflict {
				t.Fatalf("conflicts %+v, want one: %v", rep.Conflicts, tc.wantConflict)
			}
			if tc.wantFix {
				f := rep.Fixes[0]
				if f.Rel != rel || f.To != tc.disk || f.From != goodDisk || f.Missing != tc.wantMissing || f.Kind != tc.kind {
					t.Fatalf("fix %+v, want %s on %s from %s (missing %v)", f, rel, tc.disk, goodDisk, tc.wantMissing)
				}
			}
			fixes := rep.Fixes
			if !tc.wantFix {
				// A forged fix must do no harm.
				fixes = []Fix{{Rel: rel, Kind: tc.kind, From: "A", To: "B"}}
			}

			// Outside the maintenance window: only missing files come back.
			e.alerts.reset()
			res, rerr := Repair(ctx, fixes, e.disks(), e.opts)
			if res == nil {
				t.Fatalf("repair: %v", rerr)
			}
			t.Logf("repair outside the window: repaired %d, left %+v, failed %+v", len(res.Repaired), res.Left, res.Failed)
			if tc.wantFix && tc.needsMaintenance {
				if rerr != nil || len(res.Repaired) != 0 || len(res.Left) != 1 {
					t.Fatalf("repair outside the window: %+v, %v", res, rerr)
				}
				if p := filepath.Join(dirs[tc.disk], rel); !bytes.Equal(mustRead(t, p), before[tc.disk]) {
					t.Fatal("repair outside the window changed the damaged file")
				}
				// In the window (PID 1 holds CAP_LINUX_IMMUTABLE).
				o := e.opts
				o.Maintenance = true
				res, rerr = Repair(ctx, fixes, e.disks(), o)
			}
			switch {
			case tc.wantFix:
				if rerr != nil || len(res.Repaired) != 1 {
					t.Fatalf("repair: %+v, %v", res, rerr)
				}
				if !bytes.Equal(mustRead(t, filepath.Join(dirs[tc.disk], rel)), good) {
					t.Fatalf("%s on %s is not byte-identical to %s's after repair", rel, tc.disk, goodDisk)
				}
				sameFiles(t, e.a.Dir(), e.bDir)
				readAlone(t, e.bDir, e.want)
				readAlone(t, e.a.Dir(), e.want)
				e.alerts.reset()
				rep, err = Scrub(ctx, e.disks(), e.opts)
				if err != nil || !rep.OK() {
					t.Fatalf("scrub after repair: %v %s", err, rep.Summary())
				}
			case tc.wantConflict:
				// A receipt is opaque: neither copy is touched, not even
				// in the maintenance window.
				o := e.opts
				o.Maintenance = true
				res2, _ := Repair(ctx, fixes, e.disks(), o)
				if len(res.Repaired) != 0 || len(res2.Repaired) != 0 || len(res2.Left) != 1 {
					t.Fatalf("a conflicting receipt was replaced: %+v, %+v", res, res2)
				}
			case tc.wantUnrepairable:
				o := e.opts
				o.Maintenance = true
				res, rerr = Repair(ctx, fixes, e.disks(), o)
				if rerr == nil || len(res.Failed) != 1 || len(res.Repaired) != 0 {
					t.Fatalf("repair from a damaged copy: %+v, %v", res, rerr)
				}
				if !strings.Contains(res.Failed[0].Reason, "does not verify") {
					t.Errorf("reason: %s", res.Failed[0].Reason)
				}
				if !slices.Contains(e.alerts.kinds(), AlertScrubDamage) {
					t.Errorf("failed repair raised no alert: %v", e.alerts.kinds())
				}
			}
			// Damage with no good copy is reported, never deleted.
			if tc.wantUnrepairable || tc.wantConflict {
				for d, b := range before {
					if got, err := os.ReadFile(filepath.Join(dirs[d], rel)); err != nil || !bytes.Equal(got, b) {
						t.Errorf("%s on %s changed or vanished: %v", rel, d, err)
					}
				}
			}
		})
	}
}

func TestRepairNeverTouchesAGoodFile(t *testing.T) {
	e := newEnv(t, "")
	e.sync(t)
	o := e.opts
	o.Maintenance = true
	var fixes []Fix
	var before []syscall.Stat_t
	for _, k := range []store.FileKind{store.KindPack, store.KindManifest, store.KindRetention, store.KindReceipt, store.KindRecovery} {
		rel := firstOf(t, e.a.Dir(), k)
		fixes = append(fixes, Fix{Rel: rel, Kind: k, From: "A", To: "B"})
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(e.bDir, rel), &st); err != nil {
			t.Fatal(err)
		}
		before = append(before, st)
	}
	// Paths outside the layout are refused before anything is opened.
	fixes = append(fixes, Fix{Rel: "packs/../../etc/passwd", From: "A", To: "B"}, Fix{Rel: "holdfast-store", From: "A", To: "B"})
	res, err := Repair(context.Background(), fixes, e.disks(), o)
	if err == nil || len(res.Repaired) != 0 || len(res.Left) != 5 || len(res.Failed) != 2 {
		t.Fatalf("repair of good files: %+v, %v", res, err)
	}
	for i, f := range fixes[:5] {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(e.bDir, f.Rel), &st); err != nil {
			t.Fatal(err)
		}
		if st.Ino != before[i].Ino || st.Ctim != before[i].Ctim {
			t.Errorf("%s was touched", f.Rel)
		}
	}
	sameFiles(t, e.a.Dir(), e.bDir)
}

func TestSyncCopiesWhatTheSecondaryLost(t *testing.T) {
	e := newEnv(t, "")
	e.sync(t)
	var lost []string
	for _, k := range []store.FileKind{store.KindPack, store.KindManifest, store.KindRetention, store.KindReceipt} {
		rel := firstOf(t, e.bDir, k)
		remove(t, filepath.Join(e.bDir, rel))
		lost = append(lost, rel)
	}
	res := e.sync(t)
	slices.Sort(lost)
	got := slices.Sorted(slices.Values(res.Copied))
	if !slices.Equal(got, lost) {
		t.Fatalf("sync copied %v, want %v", got, lost)
	}
	sameFiles(t, e.a.Dir(), e.bDir)
	readAlone(t, e.bDir, e.want)
}

func TestSecondaryMissing(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup returns B's directory and the functions that pull the disk
		// out and put it back.
		setup func(t *testing.T) (dir string, out, back func())
		want  string // in the degraded reason
	}{
		{"directory gone", func(t *testing.T) (string, func(), func()) {
			mnt := storetest.Dir(t) // the disk's mount point; the store lives below
			if err := os.Mkdir(mnt, 0o700); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(mnt, "store"),
				func() { must(t, os.Rename(mnt, mnt+".away")) },
				func() { must(t, os.Rename(mnt+".away", mnt)) }
		}, "is missing"},
		{"ext4 disk unmounted", func(t *testing.T) (string, func(), func()) {
			mnt, unmount, remount := mountExt4(t)
			return filepath.Join(mnt, "store"), unmount, remount
		}, "is missing"},
		{"empty directory in its place", func(t *testing.T) (string, func(), func()) {
			mnt := storetest.Dir(t)
			must(t, os.Mkdir(mnt, 0o700))
			dir := filepath.Join(mnt, "store")
			return dir,
				func() { must(t, os.Rename(mnt, mnt+".away")); must(t, os.MkdirAll(dir, 0o700)) },
				func() { must(t, os.RemoveAll(mnt)); must(t, os.Rename(mnt+".away", mnt)) }
		}, "holds no store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir, out, back := tc.setup(t)
			e := newEnv(t, dir)
			e.sync(t)
			out()
			// The primary keeps working.
			id := e.put(t, 9)
			res, err := Sync(ctx, e.a, e.diskB(), e.opts)
			if !errors.Is(err, ErrDegraded) || res == nil || !res.Degraded || !strings.Contains(res.Reason, tc.want) {
				t.Fatalf("sync with the disk out: %+v, %v", res, err)
			}
			if k := e.alerts.kinds(); !slices.Equal(k, []string{AlertDiskError}) {
				t.Fatalf("alerts %v, want one disk-error", k)
			}
			if _, err := os.Stat(filepath.Join(dir, "holdfast-store")); err == nil {
				t.Fatal("sync created a store where the disk was missing")
			}
			e.alerts.reset()
			rep, err := Scrub(ctx, e.disks(), e.opts)
			if err != nil || rep.OK() || rep.Disks[1].Available || !rep.Disks[0].Available || rep.Disks[0].Good != rep.Files {
				t.Fatalf("scrub with the disk out: %v %+v", err, rep)
			}
			if !slices.Contains(e.alerts.kinds(), AlertDiskError) {
				t.Errorf("scrub raised no disk-error alert: %v", e.alerts.kinds())
			}
			readAlone(t, e.a.Dir(), e.want)

			back()
			res = e.sync(t)
			if !slices.ContainsFunc(res.Copied, func(r string) bool { return strings.Contains(r, id) }) {
				t.Fatalf("catch-up did not copy snapshot %s: %v", id, res.Copied)
			}
			sameFiles(t, e.a.Dir(), dir)
			readAlone(t, dir, e.want)
		})
	}
}

func TestSyncRefusesAnotherStore(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "")
	other, err := store.Init(ctx, storetest.Dir(t), testKey, store.InitOptions{}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	tree := func() []string { // every path and inode flag under the other store
		var out []string
		filepath.WalkDir(other.Dir(), func(p string, d os.DirEntry, err error) error {
			fl, _ := fsflag.Get(p)
			info, _ := d.Info()
			out = append(out, fmt.Sprintf("%s %x %d %v", p, fl, info.Size(), info.ModTime()))
			return nil
		})
		return out
	}
	untouched := tree()
	res, err := Sync(ctx, e.a, Disk{Name: "B", Dir: other.Dir()}, e.opts)
	if !errors.Is(err, ErrDegraded) || !strings.Contains(res.Reason, "holds store") {
		t.Fatalf("sync into another store: %+v, %v", res, err)
	}
	if !slices.Equal(tree(), untouched) {
		t.Fatalf("sync touched another store:\n%v\n%v", untouched, tree())
	}
	if k := e.alerts.kinds(); !slices.Equal(k, []string{AlertDiskError}) {
		t.Fatalf("alerts %v", k)
	}
	// Scrub refuses to mix them up too.
	rep, err := Scrub(ctx, []Disk{e.diskA(), {Name: "B", Dir: other.Dir()}}, e.opts)
	if err != nil || rep.Disks[1].Available {
		t.Fatalf("scrub with a foreign disk: %v %+v", err, rep)
	}
}

func TestInitMirrorRefusesNonEmpty(t *testing.T) {
	e := newEnv(t, "")
	busy := t.TempDir()
	must(t, os.WriteFile(filepath.Join(busy, "precious"), []byte("data"), 0o600))
	if _, err := store.InitMirror(context.Background(), busy, e.a, testKey, store.Options{}); err == nil {
		t.Fatal("InitMirror took a non-empty directory")
	}
	if b, _ := os.ReadFile(filepath.Join(busy, "precious")); string(b) != "data" {
		t.Fatal("InitMirror touched an existing file")
	}
	wrong := store.StaticKey(bytes.Repeat([]byte{7}, store.MasterKeySize))
	if _, err := store.InitMirror(context.Background(), storetest.Dir(t), e.a, wrong, store.Options{}); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("InitMirror with the wrong key: %v", err)
	}
}

func TestRunnerSyncsInTheBackground(t *testing.T) {
	e := newEnv(t, "")
	r := &Runner{Primary: e.a, Secondary: e.diskB(), Options: e.opts}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	for range 3 {
		r.Kick() // never blocks; kicks fold
	}
	deadline := time.Now().Add(time.Minute)
	for r.Status().Runs == 0 || r.Status().Result == nil {
		if time.Now().After(deadline) {
			t.Fatal("no sync ran")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A pull commits while a sync may still run; the next kick copies it.
	e.put(t, 5)
	r.Kick()
	for {
		fa, _ := store.ListSealed(e.a.Dir())
		fb, _ := store.ListSealed(e.bDir)
		if slices.Equal(fa, fb) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new snapshot never reached the mirror")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
	if st := r.Status(); st.Err != nil && !errors.Is(st.Err, context.Canceled) {
		t.Fatalf("last sync: %v", st.Err)
	}
	sameFiles(t, e.a.Dir(), e.bDir)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
