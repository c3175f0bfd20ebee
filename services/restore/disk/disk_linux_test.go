package disk_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/restore"
	"github.com/holdfast-appliance/holdfast/services/restore/disk"
	"github.com/holdfast-appliance/holdfast/services/restore/disk/disktest"
	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// testLogger logs everything package disk says to the test's log.
func testLogger(t testing.TB) hclog.Logger { return restoretest.Logger(t, "disk", hclog.Debug) }

// s3Objects are keys MinIO takes as they are, hostile ones included.
func s3Objects() []disktest.Object {
	return []disktest.Object{
		{Key: "plain.txt", Data: []byte("hello\n"), ContentType: "text/plain", Meta: map[string]string{"Owner": "alice"}},
		{Key: "empty", Data: nil},
		{Key: "big/multipart.bin", Data: restoretest.RandBytes(1, 12<<20+333)},
		{Key: "line1\nline2", Data: restoretest.RandBytes(2, 1001)},
		{Key: "k\" level=error msg=\"forged", Data: restoretest.RandBytes(3, 1002)},
		{Key: "%2e%2e%2f", Data: restoretest.RandBytes(4, 1003)},
		{Key: "Grüße/日本語/🙂", Data: restoretest.RandBytes(5, 1004)},
		{Key: "dir/a", Data: restoretest.RandBytes(6, 1005)},
	}
}

// dirOnlyObjects are keys a directory restore writes under the unsafe-keys
// directory.
func dirOnlyObjects() []disktest.Object {
	return []disktest.Object{
		{Key: "../../etc/passwd", Data: []byte("escape")},
		{Key: "/etc/shadow", Data: []byte("absolute")},
		{Key: "a\x00b", Data: []byte("nul")},
		{Key: "\xff\xfek", Data: []byte("bad utf8")},
		{Key: "..", Data: []byte("dotdot")},
	}
}

func wantMap(objs []disktest.Object) map[string][32]byte {
	m := map[string][32]byte{}
	for _, o := range objs {
		m[o.Key] = sha256.Sum256(o.Data)
	}
	return m
}

// openStore opens the store on an opened disk with the paper recovery key,
// as `holdfast restore --disk` does.
func openStore(t *testing.T, d *disk.Disk, k recoverykey.Key) (*store.Store, error) {
	t.Helper()
	if _, err := store.ReadRecoveryBlob(d.StoreDir); err != nil {
		return nil, err
	}
	return store.Open(context.Background(), d.StoreDir,
		recoverykey.Opener{Key: k, Path: filepath.Join(d.StoreDir, "recovery", "wrapped-key")},
		store.Options{ReadOnly: true})
}

// dirSums returns the sha256 of every object a directory restore wrote,
// by key (unsafe keys resolved through the index).
func dirSums(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	got := map[string][32]byte{}
	idx := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(dir, restore.UnsafeDir, restore.UnsafeIndex)); err == nil {
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			f := strings.Split(line, "\t")
			k, err := strconv.Unquote(f[1])
			if err != nil {
				t.Fatalf("index line %q: %v", line, err)
			}
			idx[filepath.Join(restore.UnsafeDir, f[0])] = k
		}
	}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == filepath.Join(restore.UnsafeDir, restore.UnsafeIndex) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if k, ok := idx[rel]; ok {
			rel = k
		}
		got[rel] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func compare(t *testing.T, what string, got, want map[string][32]byte) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: key %q missing", what, k)
		case g != w:
			t.Errorf("%s: key %q: sha256 differs", what, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected key %q", what, k)
		}
	}
}

// TestRestoreFromImage restores both snapshots of an image, one to a
// directory and one to MinIO, and checks that the image did not change by
// a single byte.
func TestRestoreFromImage(t *testing.T) {
	snap1 := s3Objects()
	snap2 := append(s3Objects()[:3], dirOnlyObjects()...)
	snap2 = append(snap2, disktest.Object{Key: "only-in-2", Data: restoretest.RandBytes(9, 5000)})
	im := disktest.MakeImage(t, snap1, snap2)
	before := disktest.SHA256(t, im.Path)
	ctx := context.Background()

	d, err := disk.Open(ctx, im.Path, disk.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if d.Superblock.Label != disk.Label || d.Superblock.NeedsRecovery {
		t.Errorf("superblock %+v", d.Superblock)
	}
	if ro, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d.Loop), "ro")); strings.TrimSpace(string(ro)) != "1" {
		t.Errorf("%s: sysfs ro = %q, want 1", d.Loop, ro)
	}
	// The mount refuses writes, even by root.
	if err := os.WriteFile(filepath.Join(d.MountPoint, "x"), []byte("x"), 0o600); !errors.Is(err, unix.EROFS) {
		t.Errorf("write on the mounted disk: %v, want EROFS", err)
	}
	s, err := openStore(t, d, im.Recovery)
	if err != nil {
		t.Fatalf("open store with the recovery key: %v", err)
	}

	out := filepath.Join(t.TempDir(), "out")
	res, err := restore.ToDir(ctx, s, im.Snapshots[1], "", out, restore.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("restore to dir: %v", err)
	}
	if res.UnsafeKeys != len(dirOnlyObjects()) {
		t.Errorf("%d unsafe keys, want %d", res.UnsafeKeys, len(dirOnlyObjects()))
	}
	compare(t, "dir", dirSums(t, out), wantMap(snap2))

	m := testminio.Start(t)
	m.MakeBucket(t, "rescue", false)
	tgt := restore.Target{Endpoint: m.Endpoint, Bucket: "rescue", Prefix: "disk/", AccessKey: testminio.AccessKey, SecretKey: config.Secret(testminio.SecretKey)}
	if _, err := restore.ToS3(ctx, s, im.Snapshots[0], "", tgt, restore.Options{PartSize: restore.MinPartSize, Logger: testLogger(t)}); err != nil {
		t.Fatalf("restore to S3: %v", err)
	}
	restoretest.CheckBucket(t, m, "rescue", "disk/", restoretest.Want(snap1), restore.MinPartSize)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mnt := d.MountPoint
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := os.Stat(mnt); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("mount point %s left behind: %v", mnt, err)
	}
	disktest.CheckReleased(t, im.Path)
	if after := disktest.SHA256(t, im.Path); after != before {
		t.Errorf("the image changed: sha256 %x before, %x after", before, after)
	}
}

// TestRestoreFromBlockDevice opens a block device (a loop device standing
// in for /dev/sdb) rather than an image file.
func TestRestoreFromBlockDevice(t *testing.T) {
	objs := s3Objects()[:4]
	im := disktest.MakeImage(t, objs)
	before := disktest.SHA256(t, im.Path)
	dev := disktest.Losetup(t, im.Path)
	d, err := disk.Open(context.Background(), dev, disk.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open %s: %v", dev, err)
	}
	defer d.Close()
	if d.Loop == dev {
		t.Errorf("mounted %s directly, want a read-only loop device over it", dev)
	}
	s, err := openStore(t, d, im.Recovery)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := restore.ToDir(context.Background(), s, im.Snapshots[0], "", out, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	compare(t, "dir", dirSums(t, out), wantMap(objs))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if after := disktest.SHA256(t, im.Path); after != before {
		t.Errorf("the disk changed")
	}
}

// TestUncleanDisk opens a copy of a disk taken while it was mounted
// read-write, as after a power cut: the journal holds a transaction that
// a normal mount would replay, writing to the disk. Open does not.
func TestUncleanDisk(t *testing.T) {
	objs := s3Objects()[:3]
	im := disktest.MakeImage(t, objs)
	mnt := disktest.Mount(t, im.Path, false)
	if err := os.WriteFile(filepath.Join(mnt, "after-the-store"), restoretest.RandBytes(7, 100000), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sync", "-f", mnt).CombinedOutput(); err != nil {
		t.Fatalf("sync: %v %s", err, out)
	}
	crashed := filepath.Join(t.TempDir(), "crashed.img")
	if out, err := exec.Command("cp", "--sparse=always", im.Path, crashed).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	disktest.Unmount(t, mnt)
	before := disktest.SHA256(t, crashed)

	d, err := disk.Open(context.Background(), crashed, disk.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if !d.Superblock.NeedsRecovery {
		t.Errorf("the copy does not need journal recovery: the test made no unclean disk")
	}
	s, err := openStore(t, d, im.Recovery)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	_, err = restore.ToDir(context.Background(), s, im.Snapshots[0], "", out, restore.Options{})
	s.Close()
	if cerr := d.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	compare(t, "dir", dirSums(t, out), wantMap(objs))
	disktest.CheckReleased(t, crashed)
	if after := disktest.SHA256(t, crashed); after != before {
		t.Errorf("the unclean disk changed (journal replayed?)")
	}
}

func TestOpenRefuses(t *testing.T) {
	im := disktest.MakeImage(t, s3Objects()[:1])
	tests := []struct {
		name string
		prep func(t *testing.T) string // returns the path to open
		want error
		msg  string
	}{
		{"image mounted read-write elsewhere", func(t *testing.T) string {
			disktest.Mount(t, im.Path, false)
			return im.Path
		}, disk.ErrMounted, "is mounted on"},
		{"image mounted read-only elsewhere", func(t *testing.T) string {
			disktest.Mount(t, im.Path, true)
			return im.Path
		}, disk.ErrMounted, "is mounted on"},
		{"block device mounted elsewhere", func(t *testing.T) string {
			dev := disktest.Losetup(t, im.Path)
			mnt := filepath.Join(t.TempDir(), "m")
			os.Mkdir(mnt, 0o700)
			if err := unix.Mount(dev, mnt, "ext4", unix.MS_RDONLY, "noload"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Unmount(mnt, 0) })
			return dev
		}, disk.ErrMounted, "is mounted on"},
		{"no store directory", func(t *testing.T) string {
			return disktest.Blank(t, disk.Label)
		}, disk.ErrNoStore, `no store/ directory in the root of its file system (it holds "lost+found")`},
		{"store directory without a store", func(t *testing.T) string {
			img := disktest.Blank(t, "other-label")
			mnt := disktest.Mount(t, img, false)
			if err := os.Mkdir(filepath.Join(mnt, "store"), 0o700); err != nil {
				t.Fatal(err)
			}
			disktest.Unmount(t, mnt)
			return img
		}, disk.ErrNoStore, "store/ has no holdfast-store file"},
		{"blank image", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "zero.img")
			os.WriteFile(p, nil, 0o600)
			os.Truncate(p, 8<<20)
			return p
		}, disk.ErrNotExt4, "are zero"},
		{"partitioned disk", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "gpt.img")
			b := make([]byte, 8<<20)
			b[510], b[511] = 0x55, 0xAA
			copy(b[512:], "EFI PART")
			os.WriteFile(p, b, 0o600)
			return p
		}, disk.ErrNotExt4, "pass the partition"},
		{"random bytes", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "random.img")
			os.WriteFile(p, restoretest.RandBytes(11, 1<<20), 0o600)
			return p
		}, disk.ErrNotExt4, "no ext4 superblock"},
		{"short file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "short.img")
			os.WriteFile(p, []byte("tiny"), 0o600)
			return p
		}, disk.ErrNotExt4, "only 4 bytes"},
		{"directory", func(t *testing.T) string { return t.TempDir() }, disk.ErrNotDisk, "neither"},
		{"character device", func(t *testing.T) string { return "/dev/null" }, disk.ErrNotDisk, "neither"},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, fs.ErrNotExist, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.prep(t)
			var before [32]byte
			var loops []string
			st, serr := os.Stat(p)
			if serr == nil && st.Mode().IsRegular() {
				before = disktest.SHA256(t, p)
				loops = disktest.Loops(t, p)
			}
			d, err := disk.Open(context.Background(), p, disk.Options{Logger: testLogger(t)})
			if err == nil {
				d.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q: want %v and %q", err, tt.want, tt.msg)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name %s", err, p)
			}
			if serr == nil && st.Mode().IsRegular() {
				if disktest.SHA256(t, p) != before {
					t.Errorf("%s changed", p)
				}
				disktest.CheckReleased(t, p, loops...)
			}
		})
	}
}

// TestWrongRecoveryKey: the disk opens, the store does not, and nothing
// is left mounted.
func TestWrongRecoveryKey(t *testing.T) {
	im := disktest.MakeImage(t, s3Objects()[:1])
	before := disktest.SHA256(t, im.Path)
	d, err := disk.Open(context.Background(), im.Path, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := recoverykey.Generate()
	if s, err := openStore(t, d, other); !errors.Is(err, recoverykey.ErrWrongKey) {
		if s != nil {
			s.Close()
		}
		t.Errorf("open with another recovery key: %v, want ErrWrongKey", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	disktest.CheckReleased(t, im.Path)
	if disktest.SHA256(t, im.Path) != before {
		t.Error("the image changed")
	}
}

// TestCancel: a context canceled before Open, and one canceled in the
// middle of a restore, both leave nothing behind.
func TestCancel(t *testing.T) {
	var objs []disktest.Object
	for i := range 20 {
		objs = append(objs, disktest.Object{Key: fmt.Sprintf("f%02d", i), Data: restoretest.RandBytes(uint64(100+i), 200<<10)})
	}
	im := disktest.MakeImage(t, objs)
	before := disktest.SHA256(t, im.Path)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := disk.Open(ctx, im.Path, disk.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("open with a canceled context: %v", err)
	}
	disktest.CheckReleased(t, im.Path)

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	d, err := disk.Open(ctx, im.Path, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := openStore(t, d, im.Recovery)
	if err != nil {
		t.Fatal(err)
	}
	_, err = restore.ToDir(ctx, s, im.Snapshots[0], "", filepath.Join(t.TempDir(), "out"), restore.Options{
		Parallel: 1, Progress: func(p restore.Progress) { cancel() },
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("restore after cancel: %v", err)
	}
	s.Close()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	disktest.CheckReleased(t, im.Path)
	if disktest.SHA256(t, im.Path) != before {
		t.Error("the image changed")
	}
}

func TestParseSuperblock(t *testing.T) {
	img := disktest.Blank(t, "holdfast-data")
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4096)
	io.ReadFull(f, head)
	f.Close()
	sb, err := disk.ParseSuperblock(head)
	if err != nil || sb.Label != "holdfast-data" || sb.NeedsRecovery || sb.Orphans || sb.Errors {
		t.Errorf("fresh ext4: %+v, %v", sb, err)
	}
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xAA
	for name, b := range map[string][]byte{"zeros": make([]byte, 4096), "mbr": mbr, "short": head[:2000]} {
		if _, err := disk.ParseSuperblock(b); !errors.Is(err, disk.ErrNotExt4) {
			t.Errorf("%s: %v, want ErrNotExt4", name, err)
		}
	}
}

// TestNeedsRoot runs Open as an unprivileged user (this test binary again,
// as nobody) and expects ErrNeedRoot in so many words.
func TestNeedsRoot(t *testing.T) {
	if p := os.Getenv("HOLDFAST_DISK_TEST_UNPRIVILEGED"); p != "" {
		_, err := disk.Open(context.Background(), p, disk.Options{})
		fmt.Printf("ERR=%v\n", err)
		if errors.Is(err, disk.ErrNeedRoot) {
			fmt.Println("NEEDROOT")
		}
		return
	}
	im := disktest.MakeImage(t, s3Objects()[:1])
	// Let nobody read the image: the refusal must come from the loop
	// device, not from the file's permissions.
	pub := filepath.Join(t.TempDir(), "pub")
	if err := os.Mkdir(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	// Open up the test's own temporary directories, nothing above them.
	testBase := filepath.Dir(filepath.Dir(pub))
	for dir := pub; dir != filepath.Dir(testBase); dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o005 != 0o005 {
			os.Chmod(dir, st.Mode().Perm()|0o005)
		}
	}
	img := filepath.Join(pub, "data.img")
	if err := os.Rename(im.Path, img); err != nil {
		t.Fatal(err)
	}
	os.Chmod(img, 0o644)
	// The test binary's own directory is private: run a copy.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(pub, "disk.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestNeedsRoot$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HOLDFAST_DISK_TEST_UNPRIVILEGED="+img)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run as nobody: %v\n%s", err, out)
	}
	t.Logf("as nobody: %s", out)
	if !strings.Contains(string(out), "NEEDROOT") || !strings.Contains(string(out), "needs root") {
		t.Errorf("as nobody: %s; want ErrNeedRoot", out)
	}
	disktest.CheckReleased(t, img)
}

// TestRestoreWithHostileEntries restores from a disk on which the worker
// planted entries named like store files: a FIFO as the index cache and as
// a journal, a symlink to /dev/zero as a manifest, a sparse 1 TiB
// retention record. None hangs or exhausts the paper-key restore.
func TestRestoreWithHostileEntries(t *testing.T) {
	objs := s3Objects()[:4]
	im := disktest.MakeImage(t, objs)
	mnt := disktest.Mount(t, im.Path, false)
	sd := filepath.Join(mnt, disk.StoreDir)
	const id = "20250101T000000Z-0badf00d"
	os.Remove(filepath.Join(sd, "index", "index"))
	for _, plant := range []func() error{
		func() error { return unix.Mkfifo(filepath.Join(sd, "index", "index"), 0o600) },
		func() error { return unix.Mkfifo(filepath.Join(sd, "wip", id+".journal"), 0o600) },
		func() error { return os.Symlink("/dev/zero", filepath.Join(sd, "snapshots", id+".snap")) },
		func() error {
			f, err := os.Create(filepath.Join(sd, "retention", id+".1.ext"))
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(1 << 40)
		},
	} {
		if err := plant(); err != nil {
			t.Fatalf("plant: %v", err)
		}
	}
	disktest.Unmount(t, mnt)

	done := make(chan error, 1)
	out := filepath.Join(t.TempDir(), "out")
	go func() {
		d, err := disk.Open(context.Background(), im.Path, disk.Options{Logger: testLogger(t)})
		if err != nil {
			done <- err
			return
		}
		defer d.Close()
		s, err := openStore(t, d, im.Recovery)
		if err != nil {
			done <- err
			return
		}
		defer s.Close()
		if _, err := s.Snapshots(); err != nil {
			done <- err
			return
		}
		_, err = restore.ToDir(context.Background(), s, im.Snapshots[0], "", out, restore.Options{})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("restore --disk: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("restore --disk hangs")
	}
	compare(t, "dir", dirSums(t, out), wantMap(objs))
}

// TestRestoreV1Store: a disk whose store was written before snapshot heads
// (manifests in the first format) restores with the paper key alone.
func TestRestoreV1Store(t *testing.T) {
	im, fx := disktest.MakeV1Image(t)
	ctx := context.Background()
	d, err := disk.Open(ctx, im.Path, disk.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer d.Close()
	s, err := openStore(t, d, im.Recovery)
	if err != nil {
		t.Fatalf("open store with the recovery key: %v", err)
	}
	defer s.Close()
	infos, err := s.Snapshots()
	if err != nil || len(infos) != len(fx.Snapshots) {
		t.Fatalf("%d snapshots, %v", len(infos), err)
	}
	for _, id := range fx.Snapshots {
		out := filepath.Join(t.TempDir(), "out")
		if _, err := restore.ToDir(ctx, s, id, "", out, restore.Options{Logger: testLogger(t)}); err != nil {
			t.Fatalf("restore %s to dir: %v", id, err)
		}
		want := map[string][32]byte{}
		for k, sum := range fx.Objects[id] {
			b, err := hex.DecodeString(sum)
			if err != nil {
				t.Fatal(err)
			}
			want[k] = [32]byte(b)
		}
		compare(t, id, dirSums(t, out), want)
	}
}
