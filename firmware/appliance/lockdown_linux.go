package appliance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
	"github.com/holdfast-appliance/holdfast/firmware/disks"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// The doors lockdown closes (phase 7), in the order it closes them. Each
// row names what an intruder with uid 0 on the running box could otherwise
// do; docs/lockdown.md has the attack suite's results against them.
//
//	| step            | what                                        | stops                                  |
//	|-----------------|---------------------------------------------|----------------------------------------|
//	| sysctls         | lockdownSysctls below                       | kexec, modules, ptrace, user namespaces|
//	| helpers         | kernel.usermodehelper bset and inheritable  | core_pattern, modprobe, uevent helpers |
//	|                 | emptied                                     | running as full root                   |
//	| devices         | PID 1 holds the disks, TPM and console open;| raw writes, discard, secure erase, TPM |
//	|                 | /dev becomes a read-only tmpfs with null,   | commands, serial lines, the RTC, for   |
//	|                 | zero, full, random, urandom only            | every uid (a removed node has no owner |
//	|                 | (devfs_linux.go); fallback: lockedDevices   | to become)                             |
//	|                 | owner 65534, mode 0000, with an alert       |                                        |
//	| data disk roots | FS_IMMUTABLE_FL on each data disk's root    | new files, renames in the disk root    |
//	| roles           | each started as root, dropping to its uid   | (firmware/roles)                       |
//	|                 | and caps itself (caps.BecomeAndExec)        |                                        |
//	| mounts          | hardenMounts: /, /sys, /proc/sys,           | sysctl and sysfs writes, EFI variables |
//	|                 | /proc/sysrq-trigger and the config          | (BootNext), rewriting the firmware's   |
//	|                 | partition read-only; efivarfs, debugfs,     | own files, deleting the sealed key     |
//	|                 | securityfs, tracefs unmounted               |                                        |
//	| PID 1           | limitPID1, once the last role runs: empty   | a uid-0 program started later holding  |
//	|                 | bounding set (pid1Bounding), permitted to   | any capability at all: no setuid,      |
//	|                 | pid1Permitted, not dumpable; no role starts | setgid or setpcap, so no uid but its   |
//	|                 | after it (spawnWith refuses, with an alert) | own; /proc/1/fd, /proc/1/mem           |
//	| check           | setidBounding: no process but kernel        | a forgotten child that could still     |
//	|                 | threads has SETUID/SETGID/SETPCAP in its    | change its uid                         |
//	|                 | bounding set, else an alert                 |                                        |
//
// The kernel command line adds lockdown=integrity and module.sig_enforce=1
// (boards.KernelCmdline), which close /dev/mem, iopl and unsigned kexec
// even for a process that somehow kept CAP_SYS_RAWIO or CAP_SYS_BOOT.

// lockdownSysctls are written once; the first five cannot be undone until
// reboot, whatever capabilities a process holds.
var lockdownSysctls = []struct{ path, value string }{
	{"/proc/sys/kernel/kexec_load_disabled", "1"},
	{"/proc/sys/kernel/modules_disabled", "1"},
	{"/proc/sys/kernel/yama/ptrace_scope", "3"},
	{"/proc/sys/kernel/unprivileged_bpf_disabled", "1"},
	{"/proc/sys/kernel/usermodehelper/bset", "0 0"},
	{"/proc/sys/kernel/usermodehelper/inheritable", "0 0"},
	{"/proc/sys/kernel/dmesg_restrict", "1"},
	{"/proc/sys/kernel/kptr_restrict", "2"},
	{"/proc/sys/fs/suid_dumpable", "0"},
	{"/proc/sys/fs/protected_hardlinks", "1"},
	{"/proc/sys/fs/protected_symlinks", "1"},
	{"/proc/sys/kernel/perf_event_paranoid", "3"},
	{"/proc/sys/user/max_user_namespaces", "0"},
	{"/proc/sys/vm/unprivileged_userfaultfd", "0"},
	{"/proc/sys/kernel/sysrq", "0"},
	{"/proc/sys/net/core/bpf_jit_harden", "2"},
}

// lockedDevices are the /dev globs of the dangerous nodes: disks and their
// generic SCSI/NVMe doors, the TPM, raw memory and ports, the console and
// other serial lines (PID 1 keeps its open descriptor), the RTC, watchdogs
// and the hibernation image; the board's data_disks globs are added. They
// are what lockdown reports as removed from /dev, and what closeDevices
// makes unopenable if /dev cannot be replaced.
var lockedDevices = []string{
	"sd*", "vd*", "hd*", "xvd*", "nvme*", "ng*", "mmcblk*", "sr*", "loop*", "loop-control",
	"sg*", "bsg", "bsg/*", "dm-*", "md*", "mapper/*", "nbd*", "zram*", "ublk*", "mtd*",
	"tpm*", "tpmrm*", "mem", "kmem", "port", "nvram", "cpu/*/msr", "cpu/*/cpuid",
	"ttyS*", "ttyAMA*", "hvc*", "ttyhvc*", "console", "rtc*", "watchdog*", "snapshot",
	"btrfs-control", "vhost-*", "kvm", "uinput", "fuse", "userfaultfd",
}

// pid1Bounding is all a program PID 1 starts after lockdown can ever hold:
// nothing. Every role runs before PID 1 limits itself, so none needs a
// capability to drop to its uid afterwards, and a uid-0 program started
// later (the intruder's) cannot setuid, setgid or setpcap: no uid on the
// box but its own can be assumed.
var pid1Bounding = []int{}

// pid1Permitted is what PID 1 itself keeps: reading the store for the
// console (DAC), the console commands' config-partition writes (remount)
// and ordered power-off (umount, reboot), killing children. A test image
// adds testOnlyPermitted (attack_suite_linux.go).
func pid1Permitted() []int {
	return append([]int{
		unix.CAP_KILL, unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH, unix.CAP_SYS_ADMIN, unix.CAP_SYS_BOOT,
	}, testOnlyPermitted()...)
}

// setidCaps are the capabilities that change a process's identity.
var setidCaps = []int{unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SETPCAP}

// setidBounding lists the processes under procDir (/proc) whose bounding
// set still holds a setidCaps capability ("PID name"), kernel threads
// (kthreadd and its children) aside.
func setidBounding(procDir string) ([]string, error) {
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var bad []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 2 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "status"))
		if err != nil {
			continue // gone meanwhile
		}
		var name string
		var ppid int
		var bnd caps.Set
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			v = strings.TrimSpace(v)
			switch k {
			case "Name":
				name = v
			case "PPid":
				ppid, _ = strconv.Atoi(v)
			case "CapBnd":
				n, _ := strconv.ParseUint(v, 16, 64)
				bnd = caps.Set(n)
			}
		}
		if ppid == 2 {
			continue
		}
		for _, c := range setidCaps {
			if bnd.Has(c) {
				bad = append(bad, fmt.Sprintf("%d:%s", pid, name))
				break
			}
		}
	}
	return bad, nil
}

// closeKernelDoors writes lockdownSysctls. A sysctl the kernel lacks is
// logged, not fatal.
func closeKernelDoors(log hclog.Logger) {
	for _, s := range lockdownSysctls {
		if err := os.WriteFile(s.path, []byte(s.value), 0); err != nil {
			log.Warn("sysctl not set", "sysctl", s.path, "error", err)
		}
	}
}

// removeDevices replaces /dev (replaceDev) and returns the removed nodes
// that match lockedDevices or the board's disk globs. If /dev cannot be
// replaced, the nodes are made unopenable where they are instead
// (closeDevices), and the error says so.
func (a *appliance) removeDevices() ([]string, error) {
	// A mount cannot be moved from under a shared one; PID 1's namespace
	// is the only one yet (the export's is made later, from this one).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return closeDevices(a.o.Board.DataDisks), fmt.Errorf("private mounts: %w; device nodes made unopenable instead", err)
	}
	gone, err := replaceDev("/dev", filepath.Join(a.o.RunDir, ".dev"))
	if gone == nil && err != nil {
		return closeDevices(a.o.Board.DataDisks), fmt.Errorf("%w; device nodes made unopenable instead", err)
	}
	var locked []string
	for _, n := range gone {
		if matchGlobs(lockedDevices, n) || matchGlobs(a.o.Board.DataDisks, n) {
			locked = append(locked, n)
		}
	}
	return locked, err
}

// closeDevices makes the nodes matching lockedDevices and globs owned by
// nobody with mode 0000: root without CAP_DAC_OVERRIDE and CAP_FOWNER can
// neither open nor chmod them. It is the fallback when /dev cannot be
// replaced: it holds only while nothing can setuid(65534), which the empty
// bounding set of every process after lockdown ensures.
func closeDevices(globs []string) []string {
	var closed []string
	seen := map[string]bool{}
	for _, p := range append(append([]string(nil), lockedDevices...), globs...) {
		nodes, _ := filepath.Glob(filepath.Join("/dev", p))
		for _, n := range nodes {
			if seen[n] {
				continue
			}
			seen[n] = true
			fi, err := os.Lstat(n)
			if err != nil || fi.Mode()&(os.ModeDevice|os.ModeCharDevice) == 0 {
				continue
			}
			if err := os.Chown(n, 65534, 65534); err != nil {
				continue
			}
			if err := os.Chmod(n, 0); err != nil {
				continue
			}
			rel, _ := filepath.Rel("/dev", n)
			closed = append(closed, rel)
		}
	}
	return closed
}

// sealDiskRoots sets FS_IMMUTABLE_FL on the root directory of each mounted
// data disk: nothing can then be created, renamed or removed beside the
// store directory (which is append-only itself).
func sealDiskRoots(mounts []string, log hclog.Logger) {
	for _, m := range mounts {
		if err := fsflag.Set(m, fsflag.Immutable); err != nil {
			log.Warn("data disk root not made immutable", "at", m, "error", err)
		}
	}
}

// unmountedAtLockdown are file systems no one needs after boot and that an
// intruder could use: EFI variables (BootNext, BootOrder), debugfs,
// tracefs, securityfs, bpffs, configfs, pstore.
var unmountedAtLockdown = map[string]bool{
	"efivarfs": true, "debugfs": true, "tracefs": true, "securityfs": true,
	"bpf": true, "configfs": true, "pstore": true,
}

// hardenMounts unmounts unmountedAtLockdown and makes read-only what root
// could otherwise write: the initramfs root, sysfs, /proc/sys,
// /proc/sysrq-trigger and the config partition (remounted writable only
// for the instant PID 1 writes it, see withConfigWritable). /tmp, /dev/shm
// and /etc (tmpfs) stay writable: nothing there outlives a reboot.
func hardenMounts(configMount string, log hclog.Logger) error {
	mounts, err := disks.Mounts("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	// Deepest first, so that a mount under another goes before it.
	for i := len(mounts) - 1; i >= 0; i-- {
		if unmountedAtLockdown[mounts[i].FSType] {
			if err := unix.Unmount(mounts[i].Target, unix.MNT_DETACH); err != nil {
				log.Warn("not unmounted", "at", mounts[i].Target, "type", mounts[i].FSType, "error", err)
			}
		}
	}
	var errs []error
	// /proc/sys and /proc/sysrq-trigger are not mounts of their own: bind
	// them onto themselves first.
	for _, p := range []string{"/proc/sys", "/proc/sysrq-trigger"} {
		if err := unix.Mount(p, p, "", unix.MS_BIND, ""); err != nil {
			errs = append(errs, fmt.Errorf("bind %s: %w", p, err))
		}
	}
	for _, p := range []string{"/", "/sys", "/proc/sys", "/proc/sysrq-trigger"} {
		if err := unix.Mount("", p, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			errs = append(errs, fmt.Errorf("read-only %s: %w", p, err))
		}
	}
	if configMount != "" {
		if err := remountConfig(configMount, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// remountConfig makes the config partition read-only or writable again.
func remountConfig(mnt string, ro bool) error {
	flags := uintptr(unix.MS_REMOUNT | unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_SYNCHRONOUS | unix.MS_NOATIME)
	if ro {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", mnt, "vfat", flags, "umask=0077,flush"); err != nil {
		return fmt.Errorf("remount config partition (read-only %v): %w", ro, err)
	}
	return nil
}

// withConfigWritable runs fn with the config partition writable. Before
// lockdown it is writable anyway; after, PID 1 (which alone keeps
// CAP_SYS_ADMIN) remounts it for the instant fn writes. Calls are
// serialised (the hourly trusted-time advance and a console command must
// not remount read-only under each other's write).
func (a *appliance) withConfigWritable(fn func() error) error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	a.mu.Lock()
	locked := a.locked
	a.mu.Unlock()
	if !locked {
		return fn()
	}
	mnt := filepath.Join(a.o.RunDir, "config")
	if err := remountConfig(mnt, false); err != nil {
		return err
	}
	ferr := fn()
	if err := remountConfig(mnt, true); err != nil {
		a.alert(alertkind.Appliance, "config partition left writable", "error", err)
	}
	return ferr
}

// limitPID1 is lockdown's last step: PID 1 keeps pid1Permitted, anything
// started from now on at most pid1Bounding (nothing), and PID 1 becomes
// non-dumpable, so /proc/1/fd, /proc/1/mem and ptrace need CAP_SYS_PTRACE,
// which no process has any more.
func limitPID1() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("not dumpable: %w", err)
	}
	if err := caps.LimitProcess(pid1Bounding, pid1Permitted()); err != nil {
		return fmt.Errorf("limit PID 1 capabilities: %w", err)
	}
	return nil
}

// capMask is caps as /proc/PID/status shows them (CapBnd: 00000000000000c0).
func capMask(cs []int) string {
	var m uint64
	for _, c := range cs {
		m |= 1 << uint(c)
	}
	return fmt.Sprintf("%016x", m)
}
