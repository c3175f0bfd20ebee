package caps

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ReadOnlyMounts makes every mount of the calling process's mount
// namespace read-only, except the directories in writable, each of which
// becomes a writable bind mount of itself. It must run as root in a mount
// namespace of the caller's own (clone with CLONE_NEWNS), before the
// capabilities are dropped; mount events do not propagate back (every
// mount is made private first). Read-only is a per-mount flag set with
// mount_setattr(2) (Linux 5.12), recursively and without touching the
// other flags (nosuid, nodev, noexec stay as they were).
//
// So a role that may change nothing (the export) sees every data disk and
// every other file system read-only, and one that may change only its
// store (the sealer) can reach nothing else with its capabilities, however
// it is subverted: the kernel refuses every write and every inode flag
// change on a read-only mount (EROFS), and a process without
// CAP_SYS_ADMIN cannot remount.
func ReadOnlyMounts(writable ...string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("private mounts: %w", err)
	}
	for _, dir := range writable {
		if dir == "" {
			return errors.New("writable mount: empty path")
		}
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", dir, err)
		}
	}
	if err := unix.MountSetattr(-1, "/", unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fmt.Errorf("every mount read-only: %w", err)
	}
	for _, dir := range writable {
		if err := unix.MountSetattr(-1, dir, 0, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("%s writable: %w", dir, err)
		}
	}
	return nil
}
