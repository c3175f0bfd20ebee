package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames, failing if the target exists.
func renameNoReplace(from, to string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// startWriteback asks the kernel to start writing a range of f to disk
// without waiting (sync_file_range SYNC_FILE_RANGE_WRITE). It is only a
// hint; durability still comes from fsync.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
