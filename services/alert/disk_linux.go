package alert

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DiskUsage returns the bytes in use and the total size of the filesystem
// holding path (statfs(2)); blocks reserved for root count as used, since
// the store's unprivileged writer cannot have them.
func DiskUsage(path string) (used, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	total = st.Blocks * bs
	return total - st.Bavail*bs, total, nil
}
