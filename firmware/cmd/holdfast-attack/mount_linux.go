package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/disks"
)

// FIFREEZE = _IOWR('X', 119, int) and FITHAW = _IOWR('X', 120, int)
// (include/uapi/linux/fs.h).
const (
	fiFreeze = 0xc0045877
	fiThaw   = 0xc0045878
)

// readMounts lists this namespace's mounts (disks.Mounts).
func readMounts() ([]disks.MountEntry, error) { return disks.Mounts("/proc/self/mountinfo") }

// mountFor is the mount holding path (the longest mount point above it;
// the last one listed wins among equals, as it is on top).
func mountFor(path string, ms []disks.MountEntry) disks.MountEntry {
	var best disks.MountEntry
	for _, m := range ms {
		mp := m.Target
		if path == mp || mp == "/" || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") {
			if len(mp) >= len(best.Target) {
				best = m
			}
		}
	}
	return best
}

// mountFlags turns per-mount options into mount(2) flags.
func mountFlags(opts string) uintptr {
	var fl uintptr
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "ro":
			fl |= unix.MS_RDONLY
		case "nodev":
			fl |= unix.MS_NODEV
		case "nosuid":
			fl |= unix.MS_NOSUID
		case "noexec":
			fl |= unix.MS_NOEXEC
		case "noatime":
			fl |= unix.MS_NOATIME
		case "relatime":
			fl |= unix.MS_RELATIME
		}
	}
	return fl
}

// dataMount is the data disk's mount point (the store's parent when
// mountinfo says nothing useful).
func (e *env) dataMount() string {
	if e.mnt.Target != "" && e.mnt.Target != "/" {
		return e.mnt.Target
	}
	return filepath.Dir(e.cfg.store)
}

func (e *env) remountDataRO() result {
	mp := e.dataMount()
	err := unix.Mount("", mp, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	r := gate("remount "+mp+" read-only", err)
	if err == nil {
		r.detail += " (rw again: " + errOr(unix.Mount("", mp, "", unix.MS_REMOUNT|(mountFlags(e.mnt.Options)&^unix.MS_RDONLY), ""), "ok") + ")"
	}
	err2 := unix.Mount("", mp, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
	r2 := gate("bind-remount "+mp+" read-only", err2)
	if err2 == nil {
		r2.detail += " (rw again: " + errOr(unix.Mount("", mp, "", unix.MS_REMOUNT|unix.MS_BIND|(mountFlags(e.mnt.Options)&^unix.MS_RDONLY), ""), "ok") + ")"
	}
	return combine(r, r2)
}

func (e *env) remountConfigRW() result {
	dir := e.cfg.configDir
	ms, _ := readMounts()
	m := mountFor(dir, ms)
	flags := unix.MS_REMOUNT | (mountFlags(m.Options) &^ unix.MS_RDONLY)
	err := unix.Mount("", dir, "", flags, "")
	r := gate("remount "+dir+" read-write", err)
	if err == nil {
		r.detail += " (read-only again: " + errOr(unix.Mount("", dir, "", flags|unix.MS_RDONLY, ""), "ok") + ")"
	}
	return r
}

// remountData mounts the data disk again after an unmount that worked.
func (e *env) remountData() string {
	m := e.mnt
	if m.Source == "" {
		return "source unknown"
	}
	return errOr(unix.Mount(m.Source, m.Target, m.FSType, mountFlags(m.Options), ""), "ok")
}

func (e *env) umountResult(flags int, what string) result {
	mp := e.dataMount()
	err := unix.Unmount(mp, flags)
	r := gate(what+" "+mp, err)
	if err == nil {
		r.detail += " (mounted again: " + e.remountData() + ")"
	}
	return r
}

// mountOver mounts something over the store and takes it away again.
func (e *env) mountOver(source, fstype string, flags uintptr, data, what string) result {
	err := unix.Mount(source, e.cfg.store, fstype, flags, data)
	r := gate(what, err)
	if err == nil {
		r.detail += " (unmounted: " + errOr(unix.Unmount(e.cfg.store, unix.MNT_DETACH), "ok") + ")"
	}
	return r
}

// mountAt mounts a file system at a fresh directory in /tmp; look is given
// the directory when that worked.
func mountAt(fstype, dir string, look func(dir string) string) result {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return refusedf("mkdir %s: %v", dir, err)
	}
	defer os.Remove(dir)
	err := unix.Mount(fstype, dir, fstype, unix.MS_NOSUID|unix.MS_NOEXEC, "")
	r := gate("mount "+fstype+" at "+dir, err)
	if err == nil {
		if look != nil {
			r.detail += "; " + look(dir)
		}
		r.detail += " (unmounted: " + errOr(unix.Unmount(dir, unix.MNT_DETACH), "ok") + ")"
	}
	return r
}

func (e *env) devtmpfsResult() result {
	return mountAt("devtmpfs", "/tmp/hf-attack-devtmpfs", func(dir string) string {
		node := filepath.Join(dir, filepath.Base(e.cfg.dataDisks[0]))
		fd, err := unix.Open(node, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return "open " + node + " for write: " + errOr(err, "OPENED")
	})
}

func (e *env) fifreezeResult() result {
	mp := e.dataMount()
	fd, err := unix.Open(mp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return refusedf("open %s: %v", mp, err)
	}
	defer unix.Close(fd)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fiFreeze, 0)
	if errno == 0 {
		_, _, terr := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fiThaw, 0)
		if terr != 0 {
			_, _, terr = unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fiThaw, 0)
		}
		return succeededf("FIFREEZE %s returned success (thawed: %s)", mp, errOr(errnoErr(terr), "ok"))
	}
	return gate("FIFREEZE "+mp, errno)
}

// makeSwapFile writes a 16-page swap area with a version 1 header
// (include/linux/swap.h: union swap_header).
func makeSwapFile(p string) error {
	ps := os.Getpagesize()
	const pages = 16
	buf := make([]byte, ps*pages)
	binary.NativeEndian.PutUint32(buf[1024:], 1)       // version
	binary.NativeEndian.PutUint32(buf[1028:], pages-1) // last_page
	copy(buf[ps-10:], "SWAPSPACE2")
	return os.WriteFile(p, buf, 0o600)
}

func (e *env) swaponResult() result {
	var where []string
	p := ""
	for _, dir := range []string{e.dataMount(), "/tmp"} {
		cand := filepath.Join(dir, "hf-attack-swap")
		if err := makeSwapFile(cand); err != nil {
			where = append(where, fmt.Sprintf("%s: %v", dir, unwrapPath(err)))
			continue
		}
		p = cand
		break
	}
	if p == "" {
		// Swap needs a file; try the call on the store's path anyway.
		p = e.abs(e.t.pack)
	} else {
		defer os.Remove(p)
	}
	bp, _ := unix.BytePtrFromString(p)
	_, _, errno := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(bp)), 0, 0)
	if errno == 0 {
		_, _, serr := unix.Syscall(unix.SYS_SWAPOFF, uintptr(unsafe.Pointer(bp)), 0, 0)
		return succeededf("swapon %s returned success (swapoff: %s)", p, errOr(errnoErr(serr), "ok"))
	}
	r := gate("swapon "+p, errno)
	if len(where) > 0 {
		r.detail += " (swap file: " + strings.Join(where, "; ") + ")"
	}
	return r
}

const efiGlobalGUID = "8be4df61-93ca-11d2-aa0d-00e0caca0e3e"

// efiBootNextResult writes BootNext and BootOrder through efivarfs,
// mounting it first when it is not mounted.
func (e *env) efiBootNextResult() result {
	if _, err := os.Stat("/sys/firmware/efi"); err != nil {
		return naf("no EFI runtime (/sys/firmware/efi: %v)", unwrapPath(err))
	}
	dir := "/sys/firmware/efi/efivars"
	ms, _ := readMounts()
	var rs []result
	if m := mountFor(dir, ms); m.Target != dir || m.FSType != "efivarfs" {
		dir = "/tmp/hf-attack-efivars"
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return refusedf("efivarfs not mounted; mkdir %s: %v", dir, err)
		}
		defer os.Remove(dir)
		err := unix.Mount("efivarfs", dir, "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		if err != nil {
			return gate("efivarfs not mounted; mount efivarfs", err)
		}
		defer unix.Unmount(dir, unix.MNT_DETACH)
		rs = append(rs, succeededf("efivarfs was not mounted; mounting it returned success"))
	}
	attrs := []byte{7, 0, 0, 0} // NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS
	next := filepath.Join(dir, "BootNext-"+efiGlobalGUID)
	oldNext, nerr := os.ReadFile(next)
	if err := writeEFIVar(next, append(append([]byte{}, attrs...), 0xff, 0xff)); err == nil {
		undo := "removed"
		if nerr == nil {
			undo = "restored: " + errOr(writeEFIVar(next, oldNext), "ok")
		} else if rerr := os.Remove(next); rerr != nil {
			undo = "not removed: " + rerr.Error()
		}
		rs = append(rs, succeededf("wrote BootNext=0xFFFF (%s)", undo))
	} else {
		rs = append(rs, refusedf("write BootNext: %v", err))
	}
	order := filepath.Join(dir, "BootOrder-"+efiGlobalGUID)
	oldOrder, oerr := os.ReadFile(order)
	forged := append([]byte{}, attrs...)
	if oerr == nil && len(oldOrder) >= 4 {
		forged = append([]byte{}, oldOrder[:4]...)
		for i := len(oldOrder) - 2; i >= 4; i -= 2 { // reversed
			forged = append(forged, oldOrder[i:i+2]...)
		}
	}
	forged = append(forged, 0xff, 0xff)
	if err := writeEFIVar(order, forged); err == nil {
		undo := "removed: " + errOr(os.Remove(order), "ok")
		if oerr == nil {
			undo = "restored: " + errOr(writeEFIVar(order, oldOrder), "ok")
		}
		rs = append(rs, succeededf("rewrote BootOrder (%s)", undo))
	} else {
		rs = append(rs, refusedf("write BootOrder: %v", err))
	}
	return combine(rs...)
}

// writeEFIVar writes attributes and data in the single write efivarfs wants.
func writeEFIVar(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return unwrapPath(err)
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if werr != nil {
		return unwrapPath(werr)
	}
	if cerr != nil && !errors.Is(cerr, fs.ErrClosed) {
		return unwrapPath(cerr)
	}
	return nil
}
