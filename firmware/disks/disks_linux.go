package disks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Sysfs is where Scan reads block devices (a test may point it elsewhere).
const Sysfs = "/sys/class/block"

// Opener gives a reader on a disk's device node (its first and last MiB
// are read to classify it) and a function that releases it.
type Opener func(dev string) (io.ReaderAt, func() error, error)

// OpenNode is the Opener that opens the node read-only.
func OpenNode(dev string) (io.ReaderAt, func() error, error) {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

// Scan lists the whole-disk block devices whose kernel names match one of
// globs (e.g. "vd*", "sd*", "nvme*n*") and classifies each.
func Scan(globs []string) ([]Disk, error) { return ScanWith(globs, OpenNode) }

// ScanWith is Scan reading the disks through open: after lockdown the
// nodes are gone from /dev and PID 1 reads through the descriptors it
// kept.
func ScanWith(globs []string, open Opener) ([]Disk, error) {
	entries, err := os.ReadDir(Sysfs)
	if err != nil {
		return nil, fmt.Errorf("scan disks: %w", err)
	}
	var out []Disk
	for _, e := range entries {
		name := e.Name()
		if !matchAny(globs, name) {
			continue
		}
		if _, err := os.Stat(filepath.Join(Sysfs, name, "partition")); err == nil {
			continue // a partition, not a whole disk
		}
		d, err := InspectWith(name, open)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, name); ok {
			return true
		}
	}
	return false
}

// Inspect reads one disk's identity and classifies it.
func Inspect(name string) (Disk, error) { return InspectWith(name, OpenNode) }

// InspectWith is Inspect reading the disk through open.
func InspectWith(name string, open Opener) (Disk, error) {
	sys := filepath.Join(Sysfs, name)
	d := Disk{Name: name, Dev: "/dev/" + name}
	d.Serial = firstAttr(sys, "serial", "device/serial", "device/wwid")
	d.Model = firstAttr(sys, "device/model")
	sectors, err := strconv.ParseInt(firstAttr(sys, "size"), 10, 64)
	if err != nil {
		return d, fmt.Errorf("disk %s: size: %w", name, err)
	}
	d.Size = sectors * 512
	if holdsConfigPartition(name) {
		d.State = Boot
		return d, nil
	}
	if parts, _ := filepath.Glob(filepath.Join(sys, name+"*", "partition")); len(parts) > 0 {
		d.State, d.Detail = Foreign, fmt.Sprintf("%d partition(s)", len(parts))
		return d, nil
	}
	r, release, err := open(d.Dev)
	if err != nil {
		return d, fmt.Errorf("disk %s: %w", name, err)
	}
	defer release()
	d.State, d.Detail, d.UUID, err = Classify(r, d.Size)
	if err != nil {
		return d, fmt.Errorf("disk %s: %w", name, err)
	}
	return d, nil
}

func firstAttr(dir string, names ...string) string {
	for _, n := range names {
		if b, err := os.ReadFile(filepath.Join(dir, n)); err == nil {
			if s := strings.TrimSpace(string(b)); s != "" {
				return s
			}
		}
	}
	return ""
}

// holdsConfigPartition reports whether a partition of disk name is the
// Holdfast config partition (its uevent names PARTNAME=HOLDFAST-CONFIG).
func holdsConfigPartition(name string) bool {
	parts, _ := filepath.Glob(filepath.Join(Sysfs, name, name+"*", "uevent"))
	for _, p := range parts {
		if uevent(p)["PARTNAME"] == ConfigPartName {
			return true
		}
	}
	return false
}

// FindConfigPartition returns the device node of the boot medium's config
// partition.
func FindConfigPartition() (string, error) {
	entries, err := os.ReadDir(Sysfs)
	if err != nil {
		return "", fmt.Errorf("find config partition: %w", err)
	}
	var found []string
	for _, e := range entries {
		if uevent(filepath.Join(Sysfs, e.Name(), "uevent"))["PARTNAME"] == ConfigPartName {
			found = append(found, "/dev/"+e.Name())
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("find config partition: no partition named %s", ConfigPartName)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("find config partition: %d partitions named %s (%s): remove the extra Holdfast stick", len(found), ConfigPartName, strings.Join(found, ", "))
}

func uevent(path string) map[string]string {
	m := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}

// ErrNotBlank means Format found the disk no longer blank.
var ErrNotBlank = errors.New("disk is not blank")

// ErrSerialMismatch means the typed serial does not name the disk.
var ErrSerialMismatch = errors.New("the typed serial number does not match the disk")

// Format makes a Holdfast data disk of a blank disk: ext4 labelled
// holdfast-data over the whole device. typed is what the operator typed at
// the console; it must equal the disk's serial number. The disk is
// re-inspected first and must still be blank. mke2fs is the path of the
// mke2fs binary.
//
// run runs the mke2fs command (PID 1 passes its reaper's Run); nil means
// (*exec.Cmd).Run.
func Format(ctx context.Context, name, typed, mke2fs string, run func(*exec.Cmd) error) (Disk, error) {
	return FormatAs(ctx, name, typed, Label, mke2fs, run)
}

// FormatAs is Format with another label (CopyLabel for an offline copy).
// It checks the label that mke2fs wrote.
func FormatAs(ctx context.Context, name, typed, label, mke2fs string, run func(*exec.Cmd) error) (Disk, error) {
	if run == nil {
		run = (*exec.Cmd).Run
	}
	d, err := Inspect(name)
	if err != nil {
		return d, fmt.Errorf("format: %w", err)
	}
	if !SerialMatches(d, typed) {
		return d, fmt.Errorf("format %s: %w (disk serial %q, typed %q)", name, ErrSerialMismatch, d.Serial, typed)
	}
	if d.State != Blank {
		return d, fmt.Errorf("format %s: %w: it is %s %s", name, ErrNotBlank, d.State, d.Detail)
	}
	// -F is not given: mke2fs keeps its own checks (mounted, in use). Lazy
	// inode table init keeps formatting fast; the kernel zeroes the rest in
	// the background.
	cmd := exec.CommandContext(ctx, mke2fs, "-q", "-t", "ext4", "-L", label, "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", d.Dev)
	cmd.Env = []string{"MKE2FS_CONFIG=/etc/mke2fs.conf", "PATH=/bin:/sbin"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := run(cmd); err != nil {
		return d, fmt.Errorf("format %s: mke2fs: %w: %s", name, err, strings.TrimSpace(out.String()))
	}
	unix.Sync()
	d2, err := Inspect(name)
	if err != nil {
		return d2, fmt.Errorf("format %s: %w", name, err)
	}
	ok := d2.State == Holdfast
	if label != Label {
		ok = strings.Contains(d2.Detail, fmt.Sprintf("labelled %q", label))
	}
	if !ok {
		return d2, fmt.Errorf("format %s: after mke2fs the disk reads as %s %s", name, d2.State, d2.Detail)
	}
	return d2, nil
}

// MountFlags are the flags every data disk is mounted with.
const MountFlags = unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NOATIME

// Mount mounts a holdfast disk's file system at dir (created if needed).
func Mount(d Disk, dir string) error {
	if d.State != Holdfast {
		return fmt.Errorf("mount %s: it is %s, not a Holdfast data disk", d.Name, d.State)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("mount %s: %w", d.Name, err)
	}
	if err := unix.Mount(d.Dev, dir, "ext4", MountFlags, "errors=remount-ro"); err != nil {
		return fmt.Errorf("mount %s on %s: %w", d.Dev, dir, err)
	}
	return nil
}

// MountReadOnly mounts a holdfast disk read-only at dir, for a disk whose
// read-write mount failed (a disk that fails writes cannot load its
// journal): first plainly read-only, which still replays a journal that
// needs it, then with noload, which skips the journal and shows the file
// system as of its last checkpoint. Whatever is read from it is checked
// against the store's own hashes and tags before it is copied anywhere.
func MountReadOnly(d Disk, dir string) (opts string, err error) {
	if d.State != Holdfast {
		return "", fmt.Errorf("mount %s: it is %s, not a Holdfast data disk", d.Name, d.State)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("mount %s: %w", d.Name, err)
	}
	var errs []error
	for _, o := range []string{"errors=continue", "errors=continue,noload"} {
		err := unix.Mount(d.Dev, dir, "ext4", MountFlags|unix.MS_RDONLY, o)
		if err == nil {
			return "ro," + o, nil
		}
		errs = append(errs, fmt.Errorf("ro,%s: %w", o, err))
	}
	return "", fmt.Errorf("mount %s read-only on %s: %w", d.Dev, dir, errors.Join(errs...))
}
