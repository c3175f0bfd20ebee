package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// fillDeadline bounds one fill, whatever the size of the disk.
const fillDeadline = 15 * time.Minute

// fill writes zeros to file until ENOSPC (or the free space of its file
// system plus 64 MiB), then removes it. It returns the bytes written and
// why it stopped.
func fill(file string) (int64, string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(file), &st); err != nil {
		return 0, "", fmt.Errorf("statfs %s: %w", filepath.Dir(file), err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	limit := free + 64<<20
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, "", fmt.Errorf("create filler: %w", unwrapPath(err))
	}
	buf := make([]byte, 4<<20)
	var n int64
	stop := "limit reached"
	deadline := time.Now().Add(fillDeadline)
	for n < limit {
		if time.Now().After(deadline) {
			stop = "time limit reached"
			break
		}
		k, err := f.Write(buf[:min(int64(len(buf)), limit-n)])
		n += int64(k)
		if err != nil {
			stop = "stopped by " + unwrapPath(err).Error()
			break
		}
	}
	if err := f.Sync(); err != nil && errors.Is(err, unix.ENOSPC) {
		stop += ", fsync: no space"
	}
	f.Close()
	return n, fmt.Sprintf("%s (statfs free %d)", stop, free), nil
}

// fillResult fills the disk through file and checks that no committed
// store file was lost; the filler is removed afterwards.
func (e *env) fillResult(file string) result {
	before, berr := e.walk()
	n, why, err := fill(file)
	if err != nil {
		return refusedf("%v", err)
	}
	after, aerr := e.walk()
	removed := errOr(os.Remove(file), "ok")
	if berr != nil || aerr != nil {
		return refusedf("wrote %d bytes, %s; filler removed: %s (store not checked: %v)", n, why, removed, errors.Join(berr, aerr))
	}
	if ch := diffStates(before, after); len(ch) > 0 {
		return succeededf("wrote %d bytes, %s; committed files changed: %s; filler removed: %s", n, why, summarize(ch, 3), removed)
	}
	return refusedf("wrote %d bytes, %s; nothing committed lost; filler removed: %s", n, why, removed)
}
