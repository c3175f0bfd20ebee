package ingest

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// diskUsage returns the bytes in use and the size of the file system
// holding path (statfs(2)). Blocks reserved for root count as used: the
// store's writer runs unprivileged on the appliance and cannot have them.
func diskUsage(path string) (used, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	total = st.Blocks * bs
	return total - st.Bavail*bs, total, nil
}
