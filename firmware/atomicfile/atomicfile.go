// Package atomicfile replaces small files so that a power cut leaves the
// old file or the new one, never a torn one: write a temporary file beside
// the target, fsync it, rename it over the target, fsync the directory.
// The appliance keeps its sealed key, recovery wrap, config and clock
// anchor this way (on FAT as well as ext4).
//
// The temporary file is created with O_EXCL and O_NOFOLLOW under a random
// name (".NAME.tmp-RANDOM"), so a symlink or file planted in the directory
// is never written through, and two writers never share one temporary file.
//
// Limits: one file at a time (no multi-file transactions); of two writers
// of one path, the last rename wins; a power cut between create and rename
// leaves a temporary file behind, which the next Write of that path
// removes.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Write replaces path with data (mode 0600). With exclusive it refuses to
// replace an existing file (an error wrapping os.ErrExist).
func Write(path string, data []byte, exclusive bool) error {
	if exclusive {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w", path, os.ErrExist)
		}
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	removeStale(dir, base)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := filepath.Join(dir, tmpPrefix(base)+hex.EncodeToString(rnd[:]))
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, &os.PathError{Op: "create", Path: tmp, Err: err})
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir of %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir of %s: %w", path, err)
	}
	return nil
}

func tmpPrefix(base string) string { return "." + base + ".tmp-" }

// removeStale removes the temporary files an interrupted Write of base
// left in dir (unlink never follows a symlink). Errors are ignored: a
// leftover only takes room.
func removeStale(dir, base string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix(base)) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
