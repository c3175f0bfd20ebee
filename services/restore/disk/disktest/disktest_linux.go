// Package disktest makes Holdfast data disk images for tests of any
// package: a sparse file formatted ext4 with the data disk's label, loop-
// mounted read-write for as long as it takes to create a store in store/
// with a recovery blob and committed snapshots, then unmounted, as the
// appliance would leave it. It also checks that a test left no mount or
// loop device behind. It is for tests only.
//
// Limits: Linux only; needs root, loop devices, mkfs.ext4 (e2fsprogs) and
// the mount and losetup commands (util-linux); it fails the test, never
// skips it, when one is missing. The store's files stay sealed inside the
// image; the image itself is an ordinary file in t.TempDir.
package disktest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// Label and StoreDir of a data disk (package disk has the same).
const (
	Label    = "holdfast-data"
	StoreDir = "store"
)

// ImageSize is the (sparse) size of the images made here.
const ImageSize = 128 << 20

// Object is one object a test puts into a snapshot (the type all restore
// tests share).
type Object = restoretest.Object

// Image is a data disk image holding a store.
type Image struct {
	Path      string
	Master    []byte // the store's master key
	Recovery  recoverykey.Key
	Snapshots []string // committed snapshot IDs, in order
}

// MakeImage makes a data disk image whose store holds one committed
// snapshot per element of snaps, each with its objects put in order.
func MakeImage(t testing.TB, snaps ...[]Object) *Image {
	t.Helper()
	ctx := context.Background()
	img := Blank(t, Label)
	mnt := Mount(t, img, false)
	im := &Image{Path: img, Master: bytes.Repeat([]byte{0x5a}, store.MasterKeySize)}
	rk, err := recoverykey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	im.Recovery = rk
	blob, err := recoverykey.Wrap(im.Master, rk)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Init(ctx, filepath.Join(mnt, StoreDir), store.StaticKey(im.Master),
		store.InitOptions{PackSize: 4 << 20, RecoveryBlob: blob}, store.Options{})
	if err != nil {
		t.Fatalf("init store on the image: %v", err)
	}
	for i, objs := range snaps {
		sn, err := s.Begin(ctx, store.BeginOptions{Source: "disk-test", RetainUntil: time.Now().AddDate(1, 0, 0)})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte(o.Key), ContentType: o.ContentType, UserMeta: o.Meta}, bytes.NewReader(o.Data)); err != nil {
				t.Fatalf("snapshot %d: put %q: %v", i, o.Key, err)
			}
		}
		m, err := sn.Commit(ctx, store.CommitOptions{})
		if err != nil {
			t.Fatalf("snapshot %d: commit: %v", i, err)
		}
		im.Snapshots = append(im.Snapshots, m.ID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	Unmount(t, mnt)
	return im
}

// MakeV1Image makes a data disk image whose store was written by the code
// before snapshot heads (manifests in the first format, HFSNAP01): the
// fixture storetest.V1Store describes, sealed as the appliance leaves it.
func MakeV1Image(t testing.TB) (*Image, storetest.V1Fixture) {
	t.Helper()
	img := Blank(t, Label)
	mnt := Mount(t, img, false)
	fx := storetest.V1Store(t, filepath.Join(mnt, StoreDir))
	rk, err := recoverykey.Parse(fx.Recovery)
	if err != nil {
		t.Fatal(err)
	}
	Unmount(t, mnt)
	return &Image{Path: img, Recovery: rk, Snapshots: fx.Snapshots}, fx
}

// Blank makes a sparse image formatted ext4 with label and nothing on it.
func Blank(t testing.TB, label string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, ImageSize); err != nil {
		t.Fatal(err)
	}
	run(t, "mkfs.ext4", "-q", "-F", "-L", label, img)
	return img
}

// Mount loop-mounts img (read-only when ro) on a new directory and returns
// it; the test's cleanup unmounts it if Unmount was not called.
func Mount(t testing.TB, img string, ro bool) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := "loop"
	if ro {
		opts = "loop,ro"
	}
	run(t, "mount", "-t", "ext4", "-o", opts, img, mnt)
	t.Cleanup(func() {
		if mounted(mnt) {
			Unmount(t, mnt)
		}
	})
	return mnt
}

// Unmount unmounts mnt (mount -o loop detaches the loop device with it).
func Unmount(t testing.TB, mnt string) {
	t.Helper()
	run(t, "umount", mnt)
}

// Losetup attaches a loop device over img, read-write, standing in for a
// real disk, and returns its path; the cleanup detaches it.
func Losetup(t testing.TB, img string) string {
	t.Helper()
	dev := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	})
	return dev
}

// SHA256 returns the SHA-256 of the file at path.
func SHA256(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// CheckReleased fails the test if a loop device backed by img, other than
// those in keep, is still mounted or attached.
func CheckReleased(t testing.TB, img string, keep ...string) {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// Only img's own loop devices count: tests of other packages mount
	// their images at the same time (go test runs packages in parallel).
	for _, l := range Loops(t, img) {
		if slices.Contains(keep, l) {
			continue
		}
		for _, line := range strings.Split(string(mi), "\n") {
			if strings.Contains(line, " "+l+" ") {
				t.Errorf("still mounted: %s", line)
			}
		}
	}
	// Current kernels detach a released loop device synchronously; allow a
	// moment for older ones.
	deadline := time.Now().Add(2 * time.Second)
	for {
		var left []string
		for _, l := range Loops(t, img) {
			if !slices.Contains(keep, l) {
				left = append(left, l)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("loop device still attached to %s: %v", img, left)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Loops returns the loop devices backed by img.
func Loops(t testing.TB, img string) []string {
	t.Helper()
	return strings.Fields(run(t, "losetup", "--list", "--noheadings", "--output", "NAME", "--associated", img))
}

func mounted(mnt string) bool {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == mnt {
			return true
		}
	}
	return false
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is missing (run `make setup`: e2fsprogs, util-linux): %v", name, err)
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (needs root and loop devices): %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
