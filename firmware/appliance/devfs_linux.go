package appliance

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/disks"
)

// After lockdown /dev is a small read-only tmpfs that holds only the
// harmless nodes below (lockdown step "devices", lockdown_linux.go):
//
//	| entry                        | what                                        |
//	|------------------------------|---------------------------------------------|
//	| null zero full random urandom| character nodes 1:3 1:5 1:7 1:8 1:9, 0666   |
//	| fd stdin stdout stderr       | symlinks into /proc/self/fd                 |
//	| shm                          | the tmpfs that was mounted there, moved     |
//
// The devtmpfs that the kernel fills (every disk and partition, the TPM,
// the serial lines, the RTC, /dev/mem, ...) is detached, and no process
// can mount one again (that needs CAP_SYS_ADMIN, which only PID 1 keeps).
// A node that is not there cannot be opened, whoever owns it would have
// been: before this, the nodes were owned by uid 65534 with mode 0000, and
// anyone who could setuid(65534) could chmod them back. The kernel creates
// no node in a plain tmpfs, so a disk attached later gets none either.
// What PID 1 needs keeps working through descriptors it opened before:
// the console, the TPM (tpm.OpenDevice at phase 3) and a read-only
// descriptor on each data disk, through which the console's copy-disk and
// mirror-disk still read a disk's first and last MiB (heldDisks).

// minimalDevNodes are the character nodes /dev keeps.
var minimalDevNodes = []struct {
	name         string
	major, minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9},
}

// minimalDevLinks are the symlinks /dev keeps.
var minimalDevLinks = []struct{ name, target string }{
	{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
}

// movedDevMounts are the mounts under /dev that survive the switch (moved
// into the new /dev); every other mount under it (devpts, mqueue, ...) is
// detached.
var movedDevMounts = map[string]bool{"shm": true}

// populateDev creates the minimal /dev in dir (an empty directory).
func populateDev(dir string) error {
	for _, n := range minimalDevNodes {
		p := filepath.Join(dir, n.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
		// mknod's mode is cut by the umask.
		if err := os.Chmod(p, 0o666); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	for _, l := range minimalDevLinks {
		if err := os.Symlink(l.target, filepath.Join(dir, l.name)); err != nil {
			return fmt.Errorf("symlink %s: %w", l.name, err)
		}
	}
	return nil
}

// devNodes lists the device nodes under dir (relative names, sorted),
// not descending into other mounts.
func devNodes(dir string) ([]string, error) {
	var root unix.Stat_t
	if err := unix.Lstat(dir, &root); err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a node that went away meanwhile
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		if st.Dev != root.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if t := st.Mode & unix.S_IFMT; t == unix.S_IFBLK || t == unix.S_IFCHR {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// replaceDev puts a read-only tmpfs holding only populateDev's entries at
// devDir instead of what is mounted there, keeping the mounts in
// movedDevMounts; stage is an empty directory to build it in, on a
// private mount (a mount cannot be moved from under a shared one). It
// returns the device nodes that were under devDir and are gone.
func replaceDev(devDir, stage string) ([]string, error) {
	before, err := devNodes(devDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return nil, fmt.Errorf("new /dev: %w", err)
	}
	if err := unix.Mount("tmpfs", stage, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k,nr_inodes=256"); err != nil {
		return nil, fmt.Errorf("new /dev: mount tmpfs: %w", err)
	}
	cleanup := func() { _ = unix.Unmount(stage, unix.MNT_DETACH) }
	if err := populateDev(stage); err != nil {
		cleanup()
		return nil, fmt.Errorf("new /dev: %w", err)
	}
	mounts, err := disks.Mounts("/proc/self/mountinfo")
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("new /dev: %w", err)
	}
	var errs []error
	// Deepest first.
	for i := len(mounts) - 1; i >= 0; i-- {
		rel, ok := strings.CutPrefix(mounts[i].Target, devDir+"/")
		if !ok || rel == "" {
			continue
		}
		if movedDevMounts[rel] {
			to := filepath.Join(stage, rel)
			if err := os.MkdirAll(to, 0o755); err != nil {
				errs = append(errs, fmt.Errorf("new /dev: %w", err))
				continue
			}
			if err := unix.Mount(mounts[i].Target, to, "", unix.MS_MOVE, ""); err != nil {
				errs = append(errs, fmt.Errorf("new /dev: move %s: %w", mounts[i].Target, err))
			}
			continue
		}
		if err := unix.Unmount(mounts[i].Target, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("new /dev: detach %s: %w", mounts[i].Target, err))
		}
	}
	if err := unix.Unmount(devDir, unix.MNT_DETACH); err != nil {
		cleanup()
		return nil, errors.Join(append(errs, fmt.Errorf("new /dev: detach the old one: %w", err))...)
	}
	if err := unix.Mount(stage, devDir, "", unix.MS_MOVE, ""); err != nil {
		cleanup()
		return nil, errors.Join(append(errs, fmt.Errorf("new /dev: move it to %s: %w", devDir, err))...)
	}
	_ = os.Remove(stage)
	// Read-only as a file system (no remount without CAP_SYS_ADMIN) and
	// as a mount.
	if err := unix.Mount("", devDir, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		errs = append(errs, fmt.Errorf("new /dev read-only: %w", err))
	}
	if err := unix.Mount("", devDir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		errs = append(errs, fmt.Errorf("new /dev read-only mount: %w", err))
	}
	after, err := devNodes(devDir)
	if err != nil {
		errs = append(errs, err)
	}
	kept := map[string]bool{}
	for _, n := range after {
		kept[n] = true
	}
	var gone []string
	for _, n := range before {
		if !kept[n] {
			gone = append(gone, n)
		}
	}
	return gone, errors.Join(errs...)
}

// heldDisks are read-only descriptors PID 1 opens on the whole data disks
// before /dev is replaced, by kernel name.
type heldDisks map[string]*os.File

// holdDisks opens every whole disk matching globs read-only.
func holdDisks(globs []string) (heldDisks, error) {
	h := heldDisks{}
	ents, err := os.ReadDir(disks.Sysfs)
	if err != nil {
		return h, fmt.Errorf("hold disks: %w", err)
	}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !matchGlobs(globs, name) {
			continue
		}
		if _, err := os.Stat(filepath.Join(disks.Sysfs, name, "partition")); err == nil {
			continue
		}
		f, err := os.OpenFile("/dev/"+name, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("hold disk %s: %w", name, err))
			continue
		}
		h[name] = f
	}
	return h, errors.Join(errs...)
}

func matchGlobs(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, name); ok {
			return true
		}
	}
	return false
}

// open is a disks.Opener reading through the held descriptors.
func (h heldDisks) open(dev string) (io.ReaderAt, func() error, error) {
	f, ok := h[filepath.Base(dev)]
	if !ok {
		return nil, nil, fmt.Errorf("%s was attached after lockdown: it has no node in /dev and PID 1 holds no descriptor on it; power off, attach it and boot again", dev)
	}
	return f, func() error { return nil }, nil
}
