package store

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openUnnamedTemp opens a new read-write file in dir that has no name, so
// nothing is left behind when the process dies: O_TMPFILE, or, where the
// file system lacks it, a file created and unlinked at once.
func openUnnamedTemp(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), dir+"/(unnamed)"), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("temporary file in %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".holdfast-ids-*")
	if err != nil {
		return nil, fmt.Errorf("temporary file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("temporary file: unlink: %w", err)
	}
	return f, nil
}
