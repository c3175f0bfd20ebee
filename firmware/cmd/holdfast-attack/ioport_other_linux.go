//go:build linux && !amd64 && !386

package main

import "runtime"

// ioPortResult: iopl and ioperm exist on x86 only.
func ioPortResult() result {
	return naf("no iopl/ioperm on %s", runtime.GOARCH)
}
