package caps

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

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

// BecomeAndExec turns the calling process into uid:gid (no supplementary
// groups) holding exactly the capabilities keep, and execs path. Every other
// capability leaves the bounding set first, so neither the new program nor
// anything it starts can regain it; keep is raised into the ambient set so
// it survives the exec of an ordinary binary under a non-root uid; and
// no_new_privs is set, so no setuid or file-capability binary can add any.
// The caller must be root with CAP_SETPCAP, CAP_SETUID and CAP_SETGID. On
// success it does not return.
func BecomeAndExec(uid, gid int, keep []int, path string, argv, env []string) error {
	return BecomeIdentityAndExec(Identity{UID: uid, GID: gid}, keep, path, argv, env)
}

// RoleUmask is the umask of every role: its group may read, others get
// nothing.
const RoleUmask = 0o027

// Identity is a uid, a gid and the supplementary groups of a process.
type Identity struct {
	UID, GID int
	Groups   []int // supplementary groups; none when empty
}

// BecomeIdentityAndExec is BecomeAndExec with supplementary groups: a role
// that reads another role's files through their group (the sealer and the
// export read the store through the worker's group) gets that group here
// and nothing else. The umask becomes RoleUmask, so what a role creates
// is never open to others, whatever umask its parent had.
func BecomeIdentityAndExec(id Identity, keep []int, path string, argv, env []string) error {
	uid, gid := id.UID, id.GID
	unix.Umask(RoleUmask)
	runtime.LockOSThread()
	// The thread stays locked: on failure it is in a half-changed state
	// and must not run other goroutines.
	kept := map[int]bool{}
	for _, c := range keep {
		kept[c] = true
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if kept[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from bounding set: %w", c, err)
		}
	}
	// Keep the permitted set through setuid on this thread.
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keepcaps: %w", err)
	}
	if err := unix.Setgroups(id.Groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid %d: %w", gid, err)
	}
	if err := unix.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid %d: %w", uid, err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for _, c := range keep {
		m := uint32(1) << uint(c%32)
		data[c/32].Permitted |= m
		data[c/32].Effective |= m
		data[c/32].Inheritable |= m
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	for _, c := range keep {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("raise ambient capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if err := unix.Exec(path, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// LimitProcess shrinks the capabilities of every thread of the calling
// process: the bounding set to bounding (what any program it starts later
// can ever hold, even as root), the permitted and effective sets to
// permitted, and the inheritable and ambient sets to nothing. It is how
// PID 1 gives up, after lockdown, what it no longer needs: a uid-0 program
// started afterwards holds at most bounding.
//
// It uses syscall.AllThreadsSyscall, so the binary must be built without
// cgo (it returns ENOTSUP otherwise). permitted must be a subset of the
// current permitted set.
func LimitProcess(bounding, permitted []int) error {
	keep := map[int]bool{}
	for _, c := range bounding {
		keep[c] = true
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if keep[c] {
			continue
		}
		if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 && e != unix.EINVAL {
			return fmt.Errorf("drop capability %d from bounding set: %w", c, e)
		}
	}
	if _, _, e := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); e != 0 && e != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for _, c := range permitted {
		m := uint32(1) << uint(c%32)
		data[c/32].Permitted |= m
		data[c/32].Effective |= m
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}
