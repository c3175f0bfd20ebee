//go:build linux && (amd64 || 386)

package main

import "golang.org/x/sys/unix"

// ioPortResult asks for raw I/O port access (iopl exists on x86 only).
func ioPortResult() result {
	err := unix.Iopl(3)
	r1 := gate("iopl(3)", err)
	if err == nil {
		r1.detail += " (iopl(0): " + errOr(unix.Iopl(0), "ok") + ")"
	}
	err = unix.Ioperm(0x70, 2, 1)
	r2 := gate("ioperm(0x70, 2) (CMOS/RTC ports)", err)
	if err == nil {
		r2.detail += " (released: " + errOr(unix.Ioperm(0x70, 2, 0), "ok") + ")"
	}
	return combine(r1, r2)
}
