package ingest

// A full disk: the store lives on a small loop-mounted ext4 file system and
// a pull brings in a bucket larger than the disk.

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// mountExt4 makes an ext4 file system of size bytes in an image (no blocks
// reserved for root, so root in the test sees the disk as the appliance's
// unprivileged writer would), loop-mounts it and returns the mount point.
// Cleanup clears the store's flags and unmounts; the caller closes the
// store first (cleanups run last registered first).
func mountExt4(t *testing.T, size int64) string {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Fatalf("mkfs.ext4 is missing: run `make setup` (installs e2fsprogs): %v", err)
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", "-t", "ext4", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount the ext4 image (needs root and loop devices): %v\n%s", err, out)
	}
	t.Cleanup(func() {
		storetest.Unseal(t, mnt)
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// fixedClock is a store.Clock that reads what the test sets.
type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() (time.Time, error) { return c.t, nil }

// fillBucket uploads n objects of size bytes each (one part: ETag = MD5)
// under prefix and returns them.
func fillBucket(t *testing.T, m *testminio.Server, bucket, prefix string, seed uint64, n, size int) map[string][]byte {
	t.Helper()
	objs := map[string][]byte{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("%s%03d", prefix, i)
		objs[k] = randBytes(seed+uint64(i), size)
		m.Put(t, bucket, k, objs[k], minio.PutObjectOptions{PartSize: 16 << 20})
	}
	return objs
}

// checkStoreClean asserts that no snapshot is in progress, tmp/ is empty
// and every pack in packs/ is sealed.
func checkStoreClean(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"wip", "tmp"} {
		es, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 0 {
			t.Errorf("%s/ holds %d entries after the failed pull (first %s)", sub, len(es), es[0].Name())
		}
	}
	packs := 0
	filepath.WalkDir(filepath.Join(dir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		packs++
		if sealed, err := fsflag.Has(p, fsflag.Immutable); err != nil || !sealed {
			t.Errorf("pack %s is not sealed (%v)", p, err)
		}
		return nil
	})
	t.Logf("%d packs, all sealed", packs)
}

func diskFullAlerts(al *alerts) []Alert {
	var out []Alert
	for _, a := range al.list() {
		if a.Kind == KindDiskFull {
			out = append(out, a)
		}
	}
	return out
}

func TestFullDisk(t *testing.T) {
	ctx := context.Background()
	mnt := mountExt4(t, 64<<20)
	m := testminio.Start(t)
	m.MakeBucket(t, "old", false)
	m.MakeBucket(t, "mail", false)
	m.MakeBucket(t, "dbs", false)
	oldObjs := fillBucket(t, m, "old", "old/", 100, 4, 4<<20) // 16 MiB
	fillBucket(t, m, "mail", "mail/", 200, 20, 4<<20)         // 80 MiB: more than the disk
	db := fillBucket(t, m, "dbs", "db/", 300, 12, 1<<20)      // 12 MiB

	pclk := &fixedClock{t: time.Now()}
	dir := filepath.Join(mnt, "store")
	s, err := store.Init(ctx, dir, testKey, store.InitOptions{PackSize: 4 << 20}, store.Options{Logger: testLogger(t), PruneClock: pclk})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	al := &alerts{}
	p := &Puller{Store: s, Log: testLogger(t), Alerter: al}
	source := func(name string) config.Source {
		src := minioSource(m, name, m.Endpoint, name)
		src.Retention = config.Retention{AllFor: config.Period{Days: 1}}
		src.LegalHoldOnMassChange = false
		return src
	}

	// An old source: a snapshot that will expire, then a small newer one
	// (prune always keeps a source's newest).
	o1, err := p.Pull(ctx, source("old"))
	if err != nil {
		t.Fatal(err)
	}
	removeAll(t, m, "old")
	tiny := map[string][]byte{"tiny": []byte("what is left")}
	fill(t, m, "old", tiny)
	o2, err := p.Pull(ctx, source("old"))
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.Snapshots()
	if err != nil {
		t.Fatal(err)
	}
	used, total, _ := diskUsage(dir)
	t.Logf("disk: %d MiB, %d MiB used before the big pull", total>>20, used>>20)

	// The bucket larger than the disk: the pull stops with ENOSPC, names
	// it, raises one disk-full alert, and commits nothing.
	start := time.Now()
	res, err := p.Pull(ctx, source("mail"))
	t.Logf("pull of 80 MiB onto the disk: %s: %v", time.Since(start).Round(time.Millisecond), err)
	if res != nil || err == nil {
		t.Fatalf("pull of a bucket larger than the disk: %+v, %v; want it stopped", res, err)
	}
	for _, w := range []string{"no space left on device", "disk full", "committed snapshots are unchanged"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	full := diskFullAlerts(al)
	if len(full) != 1 || full[0].Source != "mail" || !strings.Contains(full[0].Message, "no space left on device") {
		t.Fatalf("disk-full alerts %+v; want one for source mail naming ENOSPC", full)
	}
	t.Logf("alert: %s", full[0].Message)
	after, err := s.Snapshots()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(before, after, func(a, b store.SnapshotInfo) bool { return a.ID == b.ID }) {
		t.Fatalf("snapshots were %v, are %v after the failed pull", before, after)
	}
	checkStoreClean(t, dir)
	checkAll := func() {
		t.Helper()
		checkLatest(t, s, o2.Snapshot, tiny)
		rep, err := s.Verify(ctx)
		if err != nil || !rep.OK() {
			t.Fatalf("verify: %v, %+v", err, rep)
		}
	}
	checkLatest(t, s, o1.Snapshot, oldObjs)
	checkAll()

	// Reopen, as after a reboot: recovery finds nothing to clean.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = store.Open(ctx, dir, testKey, store.Options{Logger: testLogger(t), PruneClock: pclk}); err != nil {
		t.Fatal(err)
	}
	p.Store = s
	checkStoreClean(t, dir)
	checkLatest(t, s, o1.Snapshot, oldObjs)
	checkAll()

	usedBefore, _, _ := diskUsage(dir)
	t.Logf("%d of %d MiB used after the failed pull", usedBefore>>20, total>>20)

	// Prune, two days on: o1 has expired (o2 is the newest of its source),
	// and so are the packs the failed pull sealed but no snapshot names.
	pclk.t = time.Now().Add(48 * time.Hour)
	pr, err := s.Prune(ctx, store.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prune: expired %v, %d packs removed, %d MiB freed", pr.Expired, len(pr.Packs), pr.FreedBytes>>20)
	if !slices.Equal(pr.Expired, []string{o1.Snapshot}) {
		t.Fatalf("prune expired %v, want only %s", pr.Expired, o1.Snapshot)
	}
	if infos, _ := s.Snapshots(); len(infos) != 1 || infos[0].ID != o2.Snapshot {
		t.Fatalf("snapshots after prune: %+v, want only %s", infos, o2.Snapshot)
	}
	if used, _, _ = diskUsage(dir); usedBefore-used < 16<<20 {
		t.Errorf("prune freed %d MiB of the disk, want at least the 16 MiB of the expired snapshot", (usedBefore-used)>>20)
	}
	checkAll()

	// Now the next pull completes.
	r, err := p.Pull(ctx, source("dbs"))
	if err != nil || !r.Complete {
		t.Fatalf("pull after prune: %v", err)
	}
	checkLatest(t, s, r.Snapshot, db)
	checkAll()
	used, total, _ = diskUsage(dir)
	over := float64(used) > DefaultDiskFullThreshold*float64(total)
	if got := len(diskFullAlerts(al)); got != 1+btoi(over) {
		t.Errorf("%d disk-full alerts at %.0f%% used, want %d", got, 100*float64(used)/float64(total), 1+btoi(over))
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestDiskFullThreshold: after a pull, a disk fuller than the threshold
// raises one disk-full alert; below it, or with the check off, none.
func TestDiskFullThreshold(t *testing.T) {
	s := newStore(t)
	used, total, err := diskUsage(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	share := float64(used) / float64(total)
	if share <= 0 || share >= 1 {
		t.Fatalf("disk usage %d of %d bytes", used, total)
	}
	tests := []struct {
		name      string
		threshold float64
		alert     bool
	}{
		{"below the share in use", share / 2, true},
		{"above it", (1 + share) / 2, false},
		{"check off", -1, false},
	}
	b := &memBucket{}
	b.put([]byte("a"), []byte("1"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			al := &alerts{}
			p := &Puller{Store: s, Log: testLogger(t), Alerter: al, DiskFullThreshold: tt.threshold}
			res, err := p.pull(context.Background(), testSource("t", "mem", "mem"), b)
			if err != nil {
				t.Fatal(err)
			}
			got := diskFullAlerts(al)
			if (len(got) == 1) != tt.alert || len(got) > 1 {
				t.Fatalf("alerts %+v at %.1f%% used, threshold %v", got, 100*share, tt.threshold)
			}
			if tt.alert && (got[0].Snapshot != res.Snapshot || !strings.Contains(got[0].Message, "% used")) {
				t.Errorf("alert %+v", got[0])
			}
		})
	}
}
