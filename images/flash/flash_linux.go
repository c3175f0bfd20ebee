package flash

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/disks"
)

// blockPart is a block device or one of its partitions, as sysfs sees it.
type blockPart struct {
	name  string // kernel name, e.g. sdb1
	dev   string // "major:minor"
	start int64  // byte offset on the whole device (0 for the device)
	size  int64  // bytes
}

// checkBlockDevice applies every refusal for a block device target and
// returns the device's size.
func checkBlockDevice(path string, st os.FileInfo, imgSize int64, log hclog.Logger) (int64, error) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no device number", path)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(uint64(sys.Rdev)), unix.Minor(uint64(sys.Rdev)))
	parts, err := sysfsParts(dev)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	mounted, err := disks.MountedDevices("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	for _, p := range parts {
		if mp, ok := mounted[p.dev]; ok {
			return 0, fmt.Errorf("%s: /dev/%s (%s) is mounted on %s; unmount it first: %w", path, p.name, p.dev, mp, ErrMounted)
		}
		holders, _ := os.ReadDir(filepath.Join("/sys/dev/block", p.dev, "holders"))
		if len(holders) > 0 {
			return 0, fmt.Errorf("%s: /dev/%s is used by %s (device mapper, LVM or RAID): %w", path, p.name, holders[0].Name(), ErrMounted)
		}
	}

	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	devSize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	if devSize < imgSize {
		return 0, fmt.Errorf("%s: %d bytes, image needs %d: %w", path, devSize, imgSize, ErrTooSmall)
	}
	for _, p := range parts {
		found, err := containsMagic(f, p.start, p.size)
		if err != nil {
			return 0, fmt.Errorf("scan /dev/%s: %w", p.name, err)
		}
		if found {
			return 0, fmt.Errorf("%s: the first MiB of /dev/%s contains %q, the magic of a Holdfast store's config; "+
				"refusing to overwrite what may be a data disk (wipe it deliberately first if it is not): %w",
				path, p.name, storeMagic, ErrHoldsStore)
		}
	}
	log.Debug("block device checked", "device", path, "dev", dev, "size", devSize, "partitions", len(parts)-1)
	return devSize, nil
}

// openBlockDevice opens a block device for writing with O_EXCL, which the
// kernel refuses (EBUSY) while a file system or another claimant holds it.
func openBlockDevice(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_EXCL, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("open %s exclusively: %w (%w)", path, ErrMounted, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// sysfsParts returns the device dev ("major:minor") followed by its
// partitions. A partition given as target is returned alone.
func sysfsParts(dev string) ([]blockPart, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join("/sys/dev/block", dev))
	if err != nil {
		return nil, fmt.Errorf("sysfs entry of %s: %w", dev, err)
	}
	size, err := readInt(filepath.Join(dir, "size"))
	if err != nil {
		return nil, err
	}
	parts := []blockPart{{name: filepath.Base(dir), dev: dev, size: size * 512}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range entries {
		pdir := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(pdir, "partition")); err != nil {
			continue
		}
		pdev, err := os.ReadFile(filepath.Join(pdir, "dev"))
		if err != nil {
			return nil, fmt.Errorf("partition %s: %w", e.Name(), err)
		}
		start, err := readInt(filepath.Join(pdir, "start"))
		if err != nil {
			return nil, err
		}
		psize, err := readInt(filepath.Join(pdir, "size"))
		if err != nil {
			return nil, err
		}
		parts = append(parts, blockPart{name: e.Name(), dev: strings.TrimSpace(string(pdev)), start: start * 512, size: psize * 512})
	}
	return parts, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return n, nil
}

// dropCache asks the kernel to drop the cached pages of the written range,
// so the read-back comes from the device. Failure only costs accuracy.
func dropCache(f *os.File, size int64, log hclog.Logger) {
	if err := unix.Fadvise(int(f.Fd()), 0, size, unix.FADV_DONTNEED); err != nil {
		log.Debug("posix_fadvise DONTNEED failed; read-back may come from the page cache", "error", err)
	}
}
