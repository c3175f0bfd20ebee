package configpart

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Mount mounts the FAT config partition dev at mnt (nodev, nosuid,
// noexec, sync, files 0600) and returns the Partition, creating holdfast/
// when missing.
func Mount(dev, mnt string) (*Partition, error) {
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return nil, fmt.Errorf("config partition: %w", err)
	}
	flags := uintptr(unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_SYNCHRONOUS | unix.MS_NOATIME)
	if err := unix.Mount(dev, mnt, "vfat", flags, "umask=0077,flush"); err != nil {
		return nil, fmt.Errorf("mount config partition %s: %w", dev, err)
	}
	dir := filepath.Join(mnt, SubDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("config partition: %w", err)
	}
	return &Partition{Dir: dir}, nil
}
