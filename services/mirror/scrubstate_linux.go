package mirror

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ReadScrubState reads the scrub state file at path as hostile input (see
// the table in scrubstate.go): no symlink is followed, a FIFO never
// blocks, only a regular file of at most maxScrubState bytes is read. A
// missing file wraps fs.ErrNotExist; a bad one wraps ErrBadScrubState.
func ReadScrubState(path string) (ScrubState, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		if err == unix.ELOOP {
			return ScrubState{}, fmt.Errorf("%w: %s is a symlink", ErrBadScrubState, path)
		}
		return ScrubState{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ScrubState{}, fmt.Errorf("read scrub state: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return ScrubState{}, fmt.Errorf("%w: %s is not a regular file (%s)", ErrBadScrubState, path, fi.Mode().Type())
	}
	if fi.Size() > maxScrubState {
		return ScrubState{}, fmt.Errorf("%w: %s is %d bytes, over the bound %d", ErrBadScrubState, path, fi.Size(), maxScrubState)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxScrubState+1))
	if err != nil {
		return ScrubState{}, fmt.Errorf("read scrub state: %w", err)
	}
	if len(raw) > maxScrubState {
		return ScrubState{}, fmt.Errorf("%w: %s grew over the bound %d", ErrBadScrubState, path, maxScrubState)
	}
	return parseScrubState(raw)
}

// WriteScrubState replaces the scrub state file at path atomically: a new
// file in the same directory (O_EXCL, never through a symlink), fsync,
// rename over path, fsync of the directory.
func WriteScrubState(path string, st ScrubState) error {
	b, err := st.encode()
	if err != nil {
		return err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(rnd[:]))
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write scrub state: %w", &os.PathError{Op: "create", Path: tmp, Err: err})
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(b)
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
		return fmt.Errorf("write scrub state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write scrub state: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write scrub state: sync directory: %w", err)
	}
	return nil
}
