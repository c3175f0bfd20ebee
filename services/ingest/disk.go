package ingest

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/config"
)

// Alert kinds raised by pulls (services/alertkind).
const (
	// KindMassChange: a pull found the source emptied, or more than its
	// threshold of objects gone or changed.
	KindMassChange = alertkind.MassChange
	// KindDiskFull: the store's disk ran out of space during a pull, or is
	// fuller than the Puller's DiskFullThreshold after one.
	KindDiskFull = alertkind.DiskFull
)

// DefaultDiskFullThreshold is the share of the store's file system in use
// above which a pull raises a disk-full alert.
const DefaultDiskFullThreshold = 0.85

// isDiskFull reports whether err comes from a full file system or quota.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// checkDisk raises a disk-full alert when the pull ended with ENOSPC, or
// when the store's file system is fuller than the threshold after it. It
// runs after every pull, whatever its outcome.
func (p *Puller) checkDisk(ctx context.Context, src config.Source, res *Result, pullErr error) {
	log := p.log().With("source", src.Name)
	full := isDiskFull(pullErr)
	thr := p.DiskFullThreshold
	if thr == 0 {
		thr = DefaultDiskFullThreshold
	}
	if !full && thr < 0 {
		return
	}
	dir := p.Store.Dir()
	used, total, err := diskUsage(dir)
	if err != nil {
		log.Warn("store disk usage unknown", "error", err)
		if !full {
			return
		}
	}
	over := thr > 0 && total > 0 && float64(used) > thr*float64(total)
	if !full && !over {
		return
	}
	a := Alert{Kind: KindDiskFull, Source: src.Name}
	if res != nil {
		a.Snapshot = res.Snapshot
	}
	usage := "usage unknown"
	if total > 0 {
		usage = fmt.Sprintf("%.1f%% used, %d of %d bytes", 100*float64(used)/float64(total), used, total)
	}
	if full {
		a.Message = fmt.Sprintf("the store's disk (%s) is full (%s): the pull of source %q stopped with no space left on device; committed snapshots are unchanged; later pulls fail until prune frees space or capacity is added", dir, usage, src.Name)
	} else {
		a.Message = fmt.Sprintf("the store's disk (%s) is %s after the pull of source %q (alert above %.0f%%); pulls will fail when it is full", dir, usage, src.Name, 100*thr)
	}
	p.alert(ctx, a, log)
}
