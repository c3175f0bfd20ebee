package caps

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// DropAndExec removes the capabilities drop from the bounding, inheritable
// and ambient sets of the calling thread and execs path. On success it does
// not return. After exec, even a uid-0 program has none of them in its
// permitted or effective sets and can never regain them.
func DropAndExec(drop []int, path string, argv, env []string) error {
	runtime.LockOSThread()
	// The thread stays locked: if exec fails, this thread has a reduced
	// bounding set and must not run other goroutines.
	for _, c := range drop {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from bounding set: %w", c, err)
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_LOWER, uintptr(c), 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("lower ambient capability %d: %w", c, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, c := range drop {
		data[c/32].Inheritable &^= 1 << uint(c%32)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Exec(path, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}
