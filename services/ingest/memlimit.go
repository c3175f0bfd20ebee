package ingest

import "github.com/holdfast-appliance/holdfast/services/config"

// MemoryLimit is the soft memory limit (for debug.SetMemoryLimit) of a
// process that pulls on procs cores with at most parallel GETs at once
// (0: the default). It covers the store's chunk buffers (procs+2 of 4 MiB,
// services/store newSnapshot), one FastCDC scan buffer of 6 MiB per GET in
// flight, and 32 MiB for the rest (listing window, index, HTTP, runtime)
// and GC headroom: 72 MiB on a 2-core appliance with the default 4 GETs,
// which keeps peak RSS under its 96 MiB budget. A pull whose working set
// is larger still runs (the GC runs more often near the limit, and Go
// caps the CPU it gives the GC there), so the limit only trims headroom;
// it never fails a pull.
func MemoryLimit(procs, parallel int) int64 {
	const mib = 1 << 20
	if parallel <= 0 {
		parallel = config.DefaultParallel
	}
	return 32*mib + int64(max(procs, 1)+2)*4*mib + int64(parallel)*6*mib
}
