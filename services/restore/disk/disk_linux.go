package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/disks"
)

// Where the kernel shows what Open checks.
const (
	mountInfoPath   = "/proc/self/mountinfo"
	sysBlockDir     = "/sys/block"
	sysDevBlockDir  = "/sys/dev/block"
	loopControlPath = "/dev/loop-control"
)

// Disk is a data disk opened read-only by Open. Close it.
type Disk struct {
	// Path is the image or block device as given to Open.
	Path string
	// Loop is the read-only loop device the file system is mounted from.
	Loop string
	// MountPoint is the temporary directory the file system is mounted on.
	MountPoint string
	// StoreDir is the store: MountPoint/store.
	StoreDir string
	// Superblock is what the disk's ext4 superblock said.
	Superblock Superblock

	log     hclog.Logger
	loop    *os.File // open while the loop device is attached
	mounted bool
	once    sync.Once
	err     error
}

// Open opens the data disk or image at path read-only and mounts its file
// system; see the package documentation for every step and refusal. The
// caller opens the store at Disk.StoreDir (read-only) and must Close the
// Disk, also after an error of its own.
func Open(ctx context.Context, path string, o Options) (_ *Disk, err error) {
	log := o.logger().With("disk", path)
	d := &Disk{Path: path, log: log}
	defer func() {
		if err != nil {
			if cerr := d.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
			}
		}
	}()

	// 1. What is it, and is anybody using it?
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	isBlock := st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0
	if !isBlock && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("disk %s is %s: %w", path, kind(st.Mode()), ErrNotDisk)
	}
	if err := checkNotInUse(path, st, isBlock); err != nil {
		return nil, err
	}

	// 2. The ext4 superblock, read from the backing file itself.
	backing, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("disk %s: %w: %w", path, ErrNeedRoot, err)
		}
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	defer backing.Close()
	head := make([]byte, 4096)
	n, err := io.ReadFull(backing, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("disk %s: read superblock: %w", path, err)
	}
	sb, err := ParseSuperblock(head[:n])
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	d.Superblock = sb
	if sb.Label != Label && sb.Label != disks.CopyLabel {
		log.Warn("the file system's label is not the Holdfast data disk's; looking for a store anyway", "label", sb.Label, "want", Label)
	}
	if sb.NeedsRecovery {
		log.Warn("the file system was not cleanly unmounted (the appliance lost power, or it is mounted read-write elsewhere); " +
			"its journal is not replayed, so changes of the last seconds before that may be missing")
	}
	if sb.Orphans {
		log.Warn("the file system lists orphan inodes from a crash; they are left as they are")
	}
	if sb.Errors {
		log.Warn("the kernel recorded errors on this file system; the store checks every chunk it reads")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}

	// 3. A read-only loop device over it.
	loop, name, err := attachLoop(backing, path, log)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	d.loop, d.Loop = loop, name
	ro, err := unix.IoctlGetInt(int(loop.Fd()), unix.BLKROGET)
	if err != nil {
		return nil, fmt.Errorf("disk %s: BLKROGET on %s: %w", path, name, err)
	}
	if ro != 1 {
		return nil, fmt.Errorf("disk %s: %s: %w", path, name, ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}

	// 4. Mount it read-only, without journal replay.
	mnt, err := os.MkdirTemp(o.TempDir, "holdfast-disk-")
	if err != nil {
		return nil, fmt.Errorf("disk %s: mount point: %w", path, err)
	}
	d.MountPoint = mnt
	const flags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount(name, mnt, "ext4", flags, "noload"); err != nil {
		switch {
		case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
			return nil, fmt.Errorf("disk %s: mount %s: %w: %w", path, name, ErrNeedRoot, err)
		case errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("disk %s: mount %s: %w: %w", path, name, ErrMounted, err)
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EUCLEAN) || errors.Is(err, unix.EIO):
			return nil, fmt.Errorf("disk %s: the kernel refused to mount its ext4 file system read-only without journal replay (damaged, or features this kernel lacks; see dmesg): %w: %w", path, ErrNotExt4, err)
		}
		return nil, fmt.Errorf("disk %s: mount %s on %s (ext4, ro, noload): %w", path, name, mnt, err)
	}
	d.mounted = true
	log.Info("mounted read-only, journal not replayed", "loop", name, "mountpoint", mnt, "label", sb.Label)

	// 5. Is there a store?
	d.StoreDir = filepath.Join(mnt, StoreDir)
	if err := checkStore(mnt); err != nil {
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	return d, nil
}

// checkStore reports whether the file system mounted at mnt holds a store
// in StoreDir, saying what it holds instead.
func checkStore(mnt string) error {
	st, err := os.Lstat(filepath.Join(mnt, StoreDir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no %s/ directory in the root of its file system (it holds %s): %w", StoreDir, listRoot(mnt), ErrNoStore)
	case err != nil:
		return fmt.Errorf("%s/: %w", StoreDir, err)
	case !st.IsDir():
		return fmt.Errorf("%s in the root of its file system is %s, not a directory: %w", StoreDir, kind(st.Mode()), ErrNoStore)
	}
	if _, err := os.Lstat(filepath.Join(mnt, StoreDir, storeConfig)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s/ has no %s file: %w", StoreDir, storeConfig, ErrNoStore)
		}
		return fmt.Errorf("%s/%s: %w", StoreDir, storeConfig, err)
	}
	return nil
}

// kind names a file type for error messages.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "of type " + m.Type().String()
}

// listRoot names up to 8 entries of dir, for error messages.
func listRoot(dir string) string {
	f, err := os.Open(dir)
	if err != nil {
		return "?"
	}
	defer f.Close()
	names, _ := f.Readdirnames(9)
	if len(names) == 0 {
		return "nothing"
	}
	more := ""
	if len(names) > 8 {
		names, more = names[:8], ", ..."
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ") + more
}

// Close unmounts the file system, removes the mount point and detaches the
// loop device. It is safe to call more than once; later calls return the
// first call's result.
func (d *Disk) Close() error {
	d.once.Do(func() { d.err = d.close() })
	return d.err
}

func (d *Disk) close() error {
	var errs []error
	if d.mounted {
		if err := unmount(d.MountPoint, d.log); err != nil {
			errs = append(errs, err)
		} else {
			d.mounted = false
		}
	}
	if d.MountPoint != "" && !d.mounted {
		if err := os.Remove(d.MountPoint); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove mount point: %w", err))
		}
	}
	if d.loop != nil {
		// The device was attached with LO_FLAGS_AUTOCLEAR; LOOP_CLR_FD
		// asks for the same explicitly. Either way the kernel detaches it
		// when this, the last open file, is closed (or, after a lazy
		// unmount, when the file system lets go of it).
		if err := unix.IoctlSetInt(int(d.loop.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
			d.log.Debug("LOOP_CLR_FD", "loop", d.Loop, "error", err)
		}
		if err := d.loop.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", d.Loop, err))
		}
		d.loop = nil
		d.log.Debug("loop device released", "loop", d.Loop)
	}
	if len(errs) > 0 {
		return fmt.Errorf("disk %s: %w", d.Path, errors.Join(errs...))
	}
	return nil
}

// unmount unmounts mnt, retrying while it is busy; if it stays busy it is
// detached lazily (the kernel finishes once the last file is closed) and
// an error says so.
func unmount(mnt string, log hclog.Logger) error {
	var err error
	for i := 0; i < 50; i++ {
		err = unix.Unmount(mnt, unix.UMOUNT_NOFOLLOW)
		if err == nil {
			log.Debug("unmounted", "mountpoint", mnt)
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("unmount %s: %w", mnt, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lerr := unix.Unmount(mnt, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH); lerr != nil {
		return fmt.Errorf("unmount %s: %w; lazy unmount: %v", mnt, err, lerr)
	}
	return fmt.Errorf("unmount %s: still busy after 5 s, detached lazily (it goes once nothing uses it): %w", mnt, err)
}

// attachLoop attaches a free loop device to backing (opened O_RDONLY) with
// LO_FLAGS_READ_ONLY and LO_FLAGS_AUTOCLEAR, and returns it opened
// read-only with its path.
func attachLoop(backing *os.File, name string, log hclog.Logger) (*os.File, string, error) {
	ctl, err := os.OpenFile(loopControlPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, "", fmt.Errorf("%w: %w", ErrNeedRoot, err)
		}
		return nil, "", fmt.Errorf("open %s (is the loop module loaded?): %w", loopControlPath, err)
	}
	defer ctl.Close()
	var lastErr error
	// Another process may take the free device between GET_FREE and
	// CONFIGURE (EBUSY): ask again.
	for attempt := 0; attempt < 20; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				return nil, "", fmt.Errorf("LOOP_CTL_GET_FREE: %w: %w", ErrNeedRoot, err)
			}
			return nil, "", fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		f, err := openLoopDevice(dev)
		if err != nil {
			return nil, "", err
		}
		cfg := unix.LoopConfig{
			Fd:   uint32(backing.Fd()),
			Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR},
		}
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], name)
		err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
			// Kernels before 5.8 lack LOOP_CONFIGURE: set the file, then
			// the flags (READ_ONLY follows from the O_RDONLY backing file).
			err = setFDAndStatus(f, backing, cfg.Info)
		}
		switch {
		case err == nil:
			log.Debug("attached read-only loop device", "loop", dev)
			return f, dev, nil
		case errors.Is(err, unix.EBUSY):
			f.Close()
			lastErr = err
			time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
			continue
		case errors.Is(err, unix.EPERM):
			f.Close()
			return nil, "", fmt.Errorf("attach %s: %w: %w", dev, ErrNeedRoot, err)
		default:
			f.Close()
			return nil, "", fmt.Errorf("attach %s: %w", dev, err)
		}
	}
	return nil, "", fmt.Errorf("no free loop device after 20 attempts: %w", lastErr)
}

// openLoopDevice opens a loop device node read-only; devtmpfs may take a
// moment to create a new one.
func openLoopDevice(dev string) (*os.File, error) {
	var err error
	for i := 0; i < 50; i++ {
		var f *os.File
		f, err = os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			return f, nil
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%w: %w", ErrNeedRoot, err)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("open loop device: %w", err)
}

// setFDAndStatus is the pre-LOOP_CONFIGURE way to attach a loop device.
func setFDAndStatus(f, backing *os.File, info unix.LoopInfo64) error {
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(int(f.Fd()), &info); err != nil {
		unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
		return err
	}
	return nil
}

// checkNotInUse refuses a disk that is mounted or held: the device and its
// partitions, and every loop device backed by the same image or device and
// its partitions.
func checkNotInUse(path string, st os.FileInfo, isBlock bool) error {
	mounted, err := disks.MountedDevices(mountInfoPath)
	if err != nil {
		return err
	}
	type blk struct{ name, dev string }
	var devs []blk
	if isBlock {
		sys := st.Sys().(*syscall.Stat_t)
		dev := fmt.Sprintf("%d:%d", unix.Major(uint64(sys.Rdev)), unix.Minor(uint64(sys.Rdev)))
		name, parts, err := sysfsDevAndParts(dev)
		if err != nil {
			return fmt.Errorf("disk %s: %w", path, err)
		}
		devs = append(devs, blk{name, dev})
		for n, pd := range parts {
			devs = append(devs, blk{n, pd})
		}
	}
	loops, err := loopsBackedBy(st, isBlock)
	if err != nil {
		return fmt.Errorf("disk %s: %w", path, err)
	}
	for _, l := range loops {
		name, parts, err := sysfsDevAndParts(l)
		if err != nil {
			return fmt.Errorf("disk %s: %w", path, err)
		}
		devs = append(devs, blk{name, l})
		for n, pd := range parts {
			devs = append(devs, blk{n, pd})
		}
	}
	for _, b := range devs {
		if mp, ok := mounted[b.dev]; ok {
			return fmt.Errorf("disk %s: /dev/%s (%s) is mounted on %s: %w", path, b.name, b.dev, mp, ErrMounted)
		}
		holders, _ := os.ReadDir(filepath.Join(sysDevBlockDir, b.dev, "holders"))
		if len(holders) > 0 {
			return fmt.Errorf("disk %s: /dev/%s is used by %s (device mapper, LVM or RAID): %w", path, b.name, holders[0].Name(), ErrMounted)
		}
		// O_EXCL on a block device fails with EBUSY while a file system
		// (in any mount namespace) or anything else claims it.
		f, err := os.OpenFile("/dev/"+b.name, os.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		switch {
		case err == nil:
			f.Close()
		case errors.Is(err, unix.EBUSY):
			return fmt.Errorf("disk %s: /dev/%s is in use (mounted, possibly in another mount namespace, or claimed by another driver): %w", path, b.name, ErrMounted)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("disk %s: open /dev/%s: %w: %w", path, b.name, ErrNeedRoot, err)
		}
		// Another error (no node under /dev) leaves mountinfo and holders
		// as the check.
	}
	return nil
}

// sysfsDevAndParts returns the kernel name of block device dev
// ("major:minor") and its partitions (kernel name -> "major:minor").
func sysfsDevAndParts(dev string) (string, map[string]string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join(sysDevBlockDir, dev))
	if err != nil {
		return "", nil, fmt.Errorf("sysfs entry of block device %s: %w", dev, err)
	}
	parts := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range entries {
		pdir := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(pdir, "partition")); err != nil {
			continue
		}
		pdev, err := os.ReadFile(filepath.Join(pdir, "dev"))
		if err != nil {
			return "", nil, fmt.Errorf("partition %s: %w", e.Name(), err)
		}
		parts[e.Name()] = strings.TrimSpace(string(pdev))
	}
	return filepath.Base(dir), parts, nil
}

// loopsBackedBy returns the device numbers ("major:minor") of the loop
// devices whose backing file is st: the same inode for an image, the same
// device for a block device.
func loopsBackedBy(st os.FileInfo, isBlock bool) ([]string, error) {
	entries, err := os.ReadDir(sysBlockDir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", sysBlockDir, err)
	}
	var rdev uint64
	if isBlock {
		rdev = st.Sys().(*syscall.Stat_t).Rdev
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sysBlockDir, e.Name(), "loop", "backing_file"))
		if err != nil {
			continue // not attached
		}
		bf := strings.TrimSuffix(string(b), "\n")
		bst, err := os.Stat(bf)
		if err != nil {
			continue // "(deleted)", or in another mount namespace
		}
		same := os.SameFile(st, bst)
		if isBlock && bst.Mode()&fs.ModeDevice != 0 {
			same = bst.Sys().(*syscall.Stat_t).Rdev == rdev
		}
		if !same {
			continue
		}
		dev, err := os.ReadFile(filepath.Join(sysBlockDir, e.Name(), "dev"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		out = append(out, strings.TrimSpace(string(dev)))
	}
	return out, nil
}
