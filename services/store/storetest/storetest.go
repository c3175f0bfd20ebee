// Package storetest gives tests of any package a directory where a Holdfast
// store can live: on a filesystem with inode flags, removable afterwards
// even though the store sealed its files; and a sampler of peak heap use
// for memory tests. It is for tests only.
//
// Limits: needs root (CAP_LINUX_IMMUTABLE) and a filesystem under TMPDIR
// that supports FS_IOC_SETFLAGS (ext4, xfs, btrfs); it fails the test, never
// skips it, when either is missing.
package storetest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// PackBytes returns the total size of the pack files of the store in dir.
func PackBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(dir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ManifestBytes returns the size of committed snapshot id's manifest in
// the store in dir.
func ManifestBytes(t testing.TB, dir, id string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, "snapshots", id+".snap"))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Dir returns an empty directory (not yet created) for a store. The test's
// cleanup clears the store's flags so the temporary directory can go.
func Dir(t testing.TB) string {
	t.Helper()
	base := t.TempDir()
	t.Cleanup(func() { Unseal(t, base) })
	probe := filepath.Join(base, ".flag-probe")
	if err := os.Mkdir(probe, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := fsflag.Set(probe, fsflag.Append); err != nil {
		t.Fatalf("store tests need root (CAP_LINUX_IMMUTABLE) and a filesystem with inode flags (ext4, xfs, btrfs) under TMPDIR: %v", err)
	}
	if err := fsflag.Clear(probe, fsflag.Append); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(base, "store")
}

// Unseal clears immutable and append flags on everything below dir.
func Unseal(t testing.TB, dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && (d.IsDir() || d.Type().IsRegular()) {
			if err := fsflag.Clear(p, fsflag.Immutable|fsflag.Append); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Logf("unseal %s: %v", p, err)
			}
		}
		return nil
	})
}
