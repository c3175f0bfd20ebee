package store

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mountFS makes a filesystem of fstype in a sparse image, loop-mounts it and
// returns the mount point. Cleanup clears the store's flags and unmounts.
func mountFS(t *testing.T, fstype string) string {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs." + fstype)
	if err != nil {
		t.Fatalf("mkfs.%s is missing: run `make setup` (installs e2fsprogs, xfsprogs, btrfs-progs): %v", fstype, err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, fstype+".img")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	// xfs needs at least 300 MiB; the image is sparse.
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 512<<20); err != nil {
		t.Fatal(err)
	}
	args := map[string][]string{"ext4": {"-q", "-F"}, "xfs": {"-q", "-f"}, "btrfs": {"-q", "-f"}}[fstype]
	if out, err := exec.Command(mkfs, append(args, img)...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.%s: %v\n%s", fstype, err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", "-t", fstype, img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount %s image (needs root and loop devices): %v\n%s", fstype, err, out)
	}
	t.Cleanup(func() {
		unsealAll(t, mnt)
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}
