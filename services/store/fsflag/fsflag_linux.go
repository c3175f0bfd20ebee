package fsflag

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Get returns the inode flags of path. It opens the file read-only with
// O_NOFOLLOW, so a symlink is never followed.
func Get(path string) (uint32, error) {
	fd, err := open(path)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return getFD(fd, path)
}

// Has reports whether every bit of want is set on path.
func Has(path string, want uint32) (bool, error) {
	flags, err := Get(path)
	if err != nil {
		return false, err
	}
	return flags&want == want, nil
}

// Set ORs bits into the inode flags of path. It is a no-op when they are set.
func Set(path string, bits uint32) error {
	return change(path, bits, 0)
}

// Clear removes bits from the inode flags of path. Only prune calls it.
func Clear(path string, bits uint32) error {
	return change(path, 0, bits)
}

// SetFD ORs bits into the flags of an open file.
func SetFD(f *os.File, bits uint32) error {
	fd := int(f.Fd())
	flags, err := getFD(fd, f.Name())
	if err != nil {
		return err
	}
	if flags&bits == bits {
		return nil
	}
	return setFD(fd, f.Name(), flags|bits)
}

func change(path string, set, clear uint32) error {
	fd, err := open(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	flags, err := getFD(fd, path)
	if err != nil {
		return err
	}
	next := (flags | set) &^ clear
	if next == flags {
		return nil
	}
	return setFD(fd, path, next)
}

func open(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

func getFD(fd int, path string) (uint32, error) {
	v, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return 0, wrap("get flags", path, err)
	}
	return v, nil
}

func setFD(fd int, path string, flags uint32) error {
	v := int(flags)
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, v); err != nil {
		return wrap("set flags", path, err)
	}
	return nil
}

func wrap(op, path string, err error) error {
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%s %s: %w", op, path, ErrUnsupported)
	}
	return &os.PathError{Op: op, Path: path, Err: err}
}
