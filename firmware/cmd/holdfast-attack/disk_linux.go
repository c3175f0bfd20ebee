package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
	"unicode"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Constants golang.org/x/sys/unix does not export.
const (
	// SG_IO (include/scsi/sg.h).
	sgIO = 0x2285
	// SG_DXFER_NONE and SG_DXFER_TO_DEV (include/scsi/sg.h).
	sgDxferNone  = -1
	sgDxferToDev = -2
	// NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct nvme_admin_cmd), the
	// struct (nvme_passthru_cmd) being 72 bytes (include/uapi/linux/nvme_ioctl.h).
	nvmeIoctlAdminCmd = 0xc0484e41
	// nvme_admin_format_nvm (include/linux/nvme.h).
	nvmeAdminFormatNVM = 0x80
)

// sgIOHdr is struct sg_io_hdr of include/scsi/sg.h (88 bytes on 64-bit).
type sgIOHdr struct {
	InterfaceID    int32
	DxferDirection int32
	CmdLen         uint8
	MxSbLen        uint8
	IovecCount     uint16
	DxferLen       uint32
	Dxferp         uintptr
	Cmdp           uintptr
	Sbp            uintptr
	Timeout        uint32
	Flags          uint32
	PackID         int32
	UsrPtr         uintptr
	Status         uint8
	MaskedStatus   uint8
	MsgStatus      uint8
	SbLenWr        uint8
	HostStatus     uint16
	DriverStatus   uint16
	Resid          int32
	Duration       uint32
	Info           uint32
}

// nvmeAdminCmd is struct nvme_passthru_cmd of include/uapi/linux/nvme_ioctl.h.
type nvmeAdminCmd struct {
	Opcode      uint8
	Flags       uint8
	Rsvd1       uint16
	Nsid        uint32
	Cdw2, Cdw3  uint32
	Metadata    uint64
	Addr        uint64
	MetadataLen uint32
	DataLen     uint32
	Cdw10       uint32
	Cdw11       uint32
	Cdw12       uint32
	Cdw13       uint32
	Cdw14       uint32
	Cdw15       uint32
	TimeoutMs   uint32
	Result      uint32
}

// kexecSegment is struct kexec_segment of include/uapi/linux/kexec.h.
type kexecSegment struct {
	Buf, Bufsz, Mem, Memsz uintptr
}

// partitions lists the partition nodes of a whole-disk node.
func partitions(disk string) []string {
	name := filepath.Base(disk)
	ents, err := os.ReadDir(filepath.Join("/sys/class/block", name))
	if err != nil {
		return nil
	}
	var out []string
	for _, de := range ents {
		if _, err := os.Stat(filepath.Join("/sys/class/block", name, de.Name(), "partition")); err == nil {
			out = append(out, filepath.Join(filepath.Dir(disk), de.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// partNode is the node of partition n of a whole-disk node (vda -> vda1,
// nvme0n1 -> nvme0n1p1).
func partNode(disk string, n int) string {
	if last := disk[len(disk)-1]; unicode.IsDigit(rune(last)) {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// dataTargets are the data disks and their partitions.
func (e *env) dataTargets() []string {
	var out []string
	for _, d := range e.cfg.dataDisks {
		out = append(out, d)
		out = append(out, partitions(d)...)
	}
	return out
}

// devFD is a descriptor on a device node and how it was obtained.
type devFD struct {
	fd    int
	how   string
	write bool
}

// openChain gets a descriptor for an ioctl: writeFlag (O_WRONLY or
// O_RDWR), then O_RDONLY, then O_PATH reopened for writing through
// /proc/self/fd. fd is -1 when all failed; notes say why.
func openChain(dev string, writeFlag int) (devFD, []string) {
	wname := "O_WRONLY"
	if writeFlag == unix.O_RDWR {
		wname = "O_RDWR"
	}
	var notes []string
	fd, err := unix.Open(dev, writeFlag|unix.O_CLOEXEC, 0)
	if err == nil {
		return devFD{fd, wname, true}, nil
	}
	notes = append(notes, fmt.Sprintf("open %s %s: %v", dev, wname, err))
	if fd, err = unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		return devFD{fd, "O_RDONLY", false}, notes
	}
	notes = append(notes, fmt.Sprintf("O_RDONLY: %v", err))
	pfd, err := unix.Open(dev, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return devFD{fd: -1}, append(notes, fmt.Sprintf("O_PATH: %v", err))
	}
	defer unix.Close(pfd)
	if fd, err = unix.Open(fmt.Sprintf("/proc/self/fd/%d", pfd), writeFlag|unix.O_CLOEXEC, 0); err == nil {
		return devFD{fd, "O_PATH reopened " + wname, true}, notes
	}
	return devFD{fd: -1}, append(notes, fmt.Sprintf("O_PATH reopened via /proc/self/fd: %v", err))
}

// ioctlOnDev runs one ioctl on dev through openChain. An open for writing
// is already a success; a read-only descriptor whose ioctl fails is a
// refusal.
func ioctlOnDev(dev string, writeFlag int, name string, do func(fd int) (string, error)) result {
	d, notes := openChain(dev, writeFlag)
	if d.fd < 0 {
		return refusedf("%s", strings.Join(notes, "; "))
	}
	defer unix.Close(d.fd)
	note, err := do(d.fd)
	switch {
	case err == nil:
		return succeededf("%s on %s (opened %s): returned 0 %s", name, dev, d.how, note)
	case d.write:
		return succeededf("opened %s %s (node writable); %s: %v", dev, d.how, name, err)
	default:
		return refusedf("%s; opened %s read-only; %s: %v", strings.Join(notes, "; "), dev, name, err)
	}
}

func blkRangeResult(dev, name string, req uintptr) result {
	return ioctlOnDev(dev, unix.O_WRONLY, name, func(fd int) (string, error) {
		rng := [2]uint64{0, 1 << 20}
		return "(first MiB)", ioctlPtr(fd, req, unsafe.Pointer(&rng[0]))
	})
}

// writeDevResult opens dev for writing and writes 4 KiB of zeros at each
// offset.
func writeDevResult(dev string, flags int, offsets ...int64) result {
	fd, err := unix.Open(dev, unix.O_WRONLY|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return refusedf("open %s for write: %v", dev, err)
	}
	defer unix.Close(fd)
	buf, merr := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE) // page aligned for O_DIRECT
	if merr != nil {
		buf = make([]byte, 4096)
	} else {
		defer unix.Munmap(buf)
	}
	var parts []string
	for _, off := range offsets {
		_, err := unix.Pwrite(fd, buf, off)
		parts = append(parts, fmt.Sprintf("pwrite@%d: %s", off, errOr(err, "ok")))
	}
	return succeededf("OPENED %s for write; %s", dev, strings.Join(parts, ", "))
}

func (e *env) writeDataDisks() result {
	var rs []result
	for _, d := range e.dataTargets() {
		rs = append(rs, writeDevResult(d, 0, 0, 1024))
	}
	return combine(rs...)
}

func (e *env) mke2fsResult() result {
	var rs []result
	for _, d := range e.dataTargets() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, e.cfg.mke2fs, "-F", "-F", "-q", d)
		cmd.Env = []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}
		out, err := cmd.CombinedOutput()
		cancel()
		first := lastLine(string(out))
		var ee *exec.ExitError
		switch {
		case err == nil:
			rs = append(rs, succeededf("mke2fs -F -F %s exited 0: %s", d, first))
		case errors.As(err, &ee):
			rs = append(rs, refusedf("mke2fs -F -F %s: %v: %s", d, err, first))
		default:
			// mke2fs could not run: try what it would need, an open for writing.
			r := writeDevResult(d, 0)
			if r.outcome == outRefused {
				r.detail = fmt.Sprintf("mke2fs did not run (%v); %s", err, r.detail)
			}
			rs = append(rs, r)
		}
	}
	return combine(rs...)
}

// ataSecureErase sends SECURITY ERASE PREPARE and SECURITY ERASE UNIT as
// ATA PASS-THROUGH(16) CDBs over SG_IO.
func ataSecureErase(fd int) (string, error) {
	send := func(cdb []byte, dir int32, data []byte) (sgIOHdr, error) {
		sense := make([]byte, 32)
		h := sgIOHdr{
			InterfaceID: 'S', DxferDirection: dir, CmdLen: uint8(len(cdb)), MxSbLen: uint8(len(sense)),
			Cmdp: uintptr(unsafe.Pointer(&cdb[0])), Sbp: uintptr(unsafe.Pointer(&sense[0])), Timeout: 10000,
		}
		if len(data) > 0 {
			h.DxferLen, h.Dxferp = uint32(len(data)), uintptr(unsafe.Pointer(&data[0]))
		}
		err := ioctlPtr(fd, sgIO, unsafe.Pointer(&h))
		runtime.KeepAlive(cdb)
		runtime.KeepAlive(sense)
		runtime.KeepAlive(data)
		return h, err
	}
	prepare := make([]byte, 16)
	prepare[0], prepare[1], prepare[2], prepare[14] = 0x85, 3<<1, 0x20, 0xf3 // non-data, CK_COND
	h1, err := send(prepare, sgDxferNone, nil)
	if err != nil {
		return "", fmt.Errorf("SECURITY ERASE PREPARE: %w", err)
	}
	erase := make([]byte, 16)
	erase[0], erase[1], erase[2], erase[6], erase[14] = 0x85, 5<<1, 0x06, 1, 0xf4 // PIO data-out, 1 sector
	h2, err := send(erase, sgDxferToDev, make([]byte, 512))
	if err != nil {
		return "", fmt.Errorf("SECURITY ERASE UNIT: %w", err)
	}
	return fmt.Sprintf("(prepare status %#x host %#x driver %#x; erase status %#x host %#x driver %#x)",
		h1.Status, h1.HostStatus, h1.DriverStatus, h2.Status, h2.HostStatus, h2.DriverStatus), nil
}

func (e *env) nvmeFormatResult() result {
	dev := "/dev/nvme0"
	if _, err := os.Lstat(dev); err != nil {
		dev = e.cfg.dataDisks[0]
	}
	return ioctlOnDev(dev, unix.O_RDWR, "NVMe admin Format NVM", func(fd int) (string, error) {
		cmd := nvmeAdminCmd{Opcode: nvmeAdminFormatNVM, Nsid: 1, TimeoutMs: 60000}
		return "", ioctlPtr(fd, nvmeIoctlAdminCmd, unsafe.Pointer(&cmd))
	})
}

func (e *env) blkpgResult() result {
	return ioctlOnDev(e.cfg.bootDisk, unix.O_WRONLY, "BLKPG delete partition 1", func(fd int) (string, error) {
		part := unix.BlkpgPartition{Pno: 1}
		arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_DEL_PARTITION, Datalen: int32(unsafe.Sizeof(part)), Data: (*byte)(unsafe.Pointer(&part))}
		return "", ioctlPtr(fd, unix.BLKPG, unsafe.Pointer(&arg))
	})
}

func (e *env) blkrrpartResult() result {
	var rs []result
	for _, d := range []string{e.cfg.dataDisks[0], e.cfg.bootDisk} {
		rs = append(rs, ioctlOnDev(d, unix.O_WRONLY, "BLKRRPART", func(fd int) (string, error) {
			_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKRRPART, 0)
			if errno != 0 {
				return "", errno
			}
			return "", nil
		}))
	}
	return combine(rs...)
}

// mknodResult makes a block node with a data disk's numbers in /tmp.
func (e *env) mknodResult() result {
	var st unix.Stat_t
	dev := e.cfg.dataDisks[0]
	if err := unix.Stat(dev, &st); err != nil {
		// Lockdown removed the node: the numbers are in sysfs.
		maj, min, serr := sysDev("block", filepath.Base(dev))
		if serr != nil {
			return refusedf("stat %s: %v; its numbers not in sysfs either: %v", dev, err, serr)
		}
		st.Rdev = unix.Mkdev(maj, min)
	}
	node := "/tmp/hf-attack-node"
	_ = unix.Unlink(node)
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		return refusedf("mknod %s b %d:%d: %v", node, unix.Major(st.Rdev), unix.Minor(st.Rdev), err)
	}
	defer unix.Unlink(node)
	fd, err := unix.Open(node, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return succeededf("mknod %s b %d:%d returned success; open for write: %s", node, unix.Major(st.Rdev), unix.Minor(st.Rdev), errOr(err, "ok"))
}

// chmodChownNodes tries to make the disk nodes usable again, and undoes
// what worked.
func (e *env) chmodChownNodes() result {
	var rs []result
	for _, dev := range append(append([]string{}, e.cfg.dataDisks...), e.cfg.bootDisk) {
		var before, after unix.Stat_t
		if err := unix.Stat(dev, &before); err != nil {
			rs = append(rs, refusedf("stat %s: %v", dev, err))
			continue
		}
		cerr := unix.Chmod(dev, 0o666)
		oerr := unix.Chown(dev, 0, 0)
		_ = unix.Stat(dev, &after)
		changed := after.Mode != before.Mode || after.Uid != before.Uid || after.Gid != before.Gid
		if cerr == nil || oerr == nil || changed {
			_ = unix.Chmod(dev, before.Mode&0o7777)
			_ = unix.Chown(dev, int(before.Uid), int(before.Gid))
			rs = append(rs, succeededf("%s: chmod 0666: %s; chown 0:0: %s (mode %o uid %d -> mode %o uid %d)", dev, errOr(cerr, "ok"), errOr(oerr, "ok"), before.Mode&0o7777, before.Uid, after.Mode&0o7777, after.Uid))
			continue
		}
		rs = append(rs, refusedf("%s: chmod 0666: %v; chown 0:0: %v", dev, cerr, oerr))
	}
	return combine(rs...)
}

func rawMemoryResult() result {
	var rs []result
	for _, dev := range []string{"/dev/mem", "/dev/kmem", "/dev/port"} {
		if _, err := os.Lstat(dev); errors.Is(err, os.ErrNotExist) {
			rs = append(rs, absentNode(dev, "mem"))
			continue
		}
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
			rs = append(rs, succeededf("opened %s for write", dev))
			continue
		}
		rs = append(rs, refusedf("open %s for write: %v", dev, err))
	}
	return combine(rs...)
}

// absentNode judges a device node that is not in /dev: refused when the
// kernel has the device (lockdown removed its node), n/a when it has not.
func absentNode(dev, class string) result {
	sys := filepath.Join("/sys/class", class, filepath.Base(dev))
	if _, err := os.Stat(sys); err == nil {
		return refusedf("%s: no such node (removed from /dev; the device is there: %s)", dev, sys)
	}
	return naf("%s absent", dev)
}
