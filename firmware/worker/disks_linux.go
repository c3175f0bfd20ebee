package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/services/ingest"
	"github.com/holdfast-appliance/holdfast/services/mirror"
	"github.com/holdfast-appliance/holdfast/services/sealer"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// The worker's side of the mirror (see the table in mirror_linux.go): the
// data disks holding the store, each with its own sealer; pulls go to the
// primary, a background Sync copies to the others after each pull, a disk
// that fails with an I/O error is left out and the next one becomes the
// primary, and a scheduled scrub reads every file on every disk.

// maxDisks bounds the sealer sockets a worker takes over (fd 4 onwards).
const maxDisks = 8

// wdisk is one data disk as the worker sees it.
type wdisk struct {
	ref    control.Disk
	conn   *os.File // the socket to this disk's sealer
	sealer *sealer.Client
	// mu is held while anything writes this disk's store: a pull, an
	// extend, a Sync or Repair into it.
	mu sync.Mutex
	// failed says why the disk is out of use until the next boot; "" if
	// it is usable. Guarded by worker.dmu.
	failed string
}

// sealerSockets takes over the sealer sockets PID 1 passed from fd 4 on,
// one per data disk (init checks that the count matches its disks).
func sealerSockets() ([]*os.File, error) {
	var out []*os.File
	for fd := roles.FDSealer; fd < roles.FDSealer+maxDisks; fd++ {
		// The sockets come in a row; the descriptor after them may be
		// anything the runtime opened.
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			break
		}
		f, err := roles.MoveFD(fd, "sealer")
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no sealer socket at descriptor %d", roles.FDSealer)
	}
	return out, nil
}

// setDisks pairs the disks PID 1 named with the sealer sockets, in order.
func (w *worker) setDisks(refs []control.Disk, storeDir string) error {
	if len(refs) == 0 {
		refs = []control.Disk{{Name: "data", Dir: storeDir}}
	}
	if len(refs) != len(w.sealerConns) {
		return fmt.Errorf("%d data disks but %d sealer sockets", len(refs), len(w.sealerConns))
	}
	for i, r := range refs {
		w.disks = append(w.disks, &wdisk{ref: r, conn: w.sealerConns[i], sealer: sealer.NewClient(w.sealerConns[i], r.Dir)})
	}
	return nil
}

// writer is the disk pulls go to now: the first usable one.
func (w *worker) writer() *wdisk {
	w.dmu.Lock()
	defer w.dmu.Unlock()
	for _, d := range w.disks {
		if d.failed == "" {
			return d
		}
	}
	return nil
}

// usable lists the disks not failed, the writer first.
func (w *worker) usable() []*wdisk {
	w.dmu.Lock()
	defer w.dmu.Unlock()
	var out []*wdisk
	for _, d := range w.disks {
		if d.failed == "" {
			out = append(out, d)
		}
	}
	return out
}

// primaryDir is the store directory of the disk pulls go to now ("" when
// every disk failed).
func (w *worker) primaryDir() string {
	if d := w.writer(); d != nil {
		return d.ref.Dir
	}
	return ""
}

func (w *worker) storeOptions(d *wdisk) store.Options {
	return store.Options{Logger: w.log.Named("store"), Sealer: diagSealer{d.sealer, d.conn, w.log}, Signer: peerSigner{w.peer}, PruneClock: noPruneClock{}}
}

// diskFailed tells whether err is the disk failing (an I/O error, or the
// file system remounted read-only after one) rather than the source or the
// data. Errors that crossed a %v are recognised by their text.
func diskFailed(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, syscall.EIO.Error()) || strings.Contains(msg, syscall.EROFS.Error())
}

// fail leaves d out until the next boot: it raises a disk-error alert and
// tells PID 1 which disk leads now. It reports whether a usable disk is
// left.
func (w *worker) fail(ctx context.Context, d *wdisk, cause error) bool {
	w.dmu.Lock()
	first := d.failed == ""
	if first {
		d.failed = cause.Error()
	}
	var next *wdisk
	for _, o := range w.disks {
		if o.failed == "" {
			next = o
			break
		}
	}
	w.dmu.Unlock()
	if !first {
		return next != nil
	}
	msg := fmt.Sprintf("disk %s (serial %s) failed: %v; it is left out until the next boot", d.ref.Name, d.ref.Serial, cause)
	if next != nil {
		msg += fmt.Sprintf("; backups go on on disk %s (serial %s)", next.ref.Name, next.ref.Serial)
	} else {
		msg += "; no data disk is left: pulls stop"
	}
	_ = w.alerter().Alert(ctx, ingest.Alert{Kind: mirror.AlertDiskError, Source: d.ref.Name, Message: msg})
	if next != nil {
		_ = w.peer.Notify(&control.PrimaryNotice{Disk: next.ref})
	}
	return next != nil
}

func (w *worker) alerter() ingest.Alerter { return peerAlerter{w.peer, w.log, w.out} }

func (w *worker) mirrorOptions() mirror.Options {
	return mirror.Options{Keys: w.keys, Logger: w.log, Alerter: w.alerter()}
}

// kickSync asks the sync loop for a Sync; it never blocks.
func (w *worker) kickSync() {
	select {
	case w.syncKick <- struct{}{}:
	default:
	}
}

// syncLoop copies the primary's new sealed files to the other disks after
// every kick, one Sync at a time, so that a pull never waits for it.
func (w *worker) syncLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.syncKick:
		}
		w.syncAll(ctx)
	}
}

// syncAll runs one Sync from the primary to each other usable disk and
// tells PID 1 how the mirror stands.
func (w *worker) syncAll(ctx context.Context) {
	ds := w.usable()
	if len(w.disks) < 2 {
		return
	}
	var parts []string
	if len(ds) > 0 {
		p := ds[0]
		prim, err := store.Open(ctx, p.ref.Dir, w.keys, store.Options{ReadOnly: true, Logger: w.log.Named("reader")})
		if err != nil {
			if diskFailed(err) {
				w.fail(ctx, p, err)
			}
			w.log.Error("mirror: primary store not readable; no sync", "disk", p.ref.Name, "error", err)
			return
		}
		for _, d := range ds[1:] {
			d.mu.Lock()
			res, err := mirror.Sync(ctx, prim, mirror.Disk{Name: d.ref.Name, Dir: d.ref.Dir, Sealer: diagSealer{d.sealer, d.conn, w.log}}, w.mirrorOptions())
			d.mu.Unlock()
			switch {
			case err != nil && diskFailed(err):
				w.fail(ctx, d, err)
			case err != nil:
				parts = append(parts, fmt.Sprintf("%s degraded: %v", d.ref.Name, err))
			default:
				parts = append(parts, fmt.Sprintf("%s in sync with %s at %s (%d files copied)", d.ref.Name, p.ref.Name, time.Now().UTC().Format(time.RFC3339), len(res.Copied)))
			}
		}
		prim.Close()
	}
	w.dmu.Lock()
	for _, d := range w.disks {
		if d.failed != "" {
			parts = append(parts, fmt.Sprintf("%s failed: %s", d.ref.Name, d.failed))
		}
	}
	w.dmu.Unlock()
	_ = w.peer.Notify(&control.MirrorNotice{Text: control.Clip(strings.Join(parts, "; "))})
}

// scrubLoop runs the scheduled scrub in slices (services/mirror.Scrubber):
// each day it reads the config's share of every usable disk (by default
// the store's size over the days of the scrub period) at no more than
// scrub_rate, and resumes from the cursor in the primary disk's
// state/scrub-pass after a reboot, so a store of any size is read once per
// period. The first slice of a boot waits scrubSettle, so the boot's pulls
// and the catch-up Sync go first. Its progress goes to PID 1 for status.
func (w *worker) scrubLoop(ctx context.Context) {
	if err := sleepUntil(ctx, time.Now().Add(scrubSettle)); err != nil {
		return
	}
	ds := w.usable()
	if len(ds) == 0 {
		w.log.Error("scheduled scrub: no usable data disk")
		return
	}
	sc, err := mirror.NewScrubber(mirror.ScrubberConfig{
		Disks: w.mirrorDisks(ds), Options: w.mirrorOptions(),
		StatePath: store.ScrubPassPath(ds[0].ref.Dir),
		Period:    w.cfg.Appliance.Scrub.Every,
		Rate:      w.cfg.Appliance.ScrubRate,
		Share:     w.cfg.Appliance.ScrubShare.Of,
		Handle:    func(ctx context.Context, rep *mirror.ScrubReport) error { return w.scrubFindings(ctx, ds, rep) },
	})
	if err != nil {
		w.log.Error("scheduled scrub cannot start", "error", err)
		return
	}
	progress := func() {
		_ = w.peer.Notify(&control.ScrubProgressNotice{Text: control.Clip("scrub: " + sc.Progress().String())})
	}
	progress()
	for {
		if err := sleepUntil(ctx, sc.Next()); err != nil {
			return
		}
		// One scrub at a time: the console's scrub waits for the slice.
		w.scrubMu.Lock()
		start := time.Now()
		rep, err := sc.Run(ctx)
		w.scrubMu.Unlock()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			w.log.Error("scheduled scrub slice failed; tried again later", "error", err, "retry_in", mirror.RetryAfter)
		case rep != nil:
			w.log.Info("scheduled scrub slice done", "summary", rep.Summary(), "took", time.Since(start).Round(time.Millisecond))
		}
		progress()
		if err != nil {
			if sleepUntil(ctx, time.Now().Add(mirror.RetryAfter)) != nil {
				return
			}
		}
	}
}

// scrubSettle is how long after the worker starts the first scheduled
// slice waits: the boot's pulls and the catch-up Sync go first.
const scrubSettle = 10 * time.Minute

// sleepUntil waits until t or until ctx is done (its error).
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// mirrorDisks are ds as services/mirror takes them.
func (w *worker) mirrorDisks(ds []*wdisk) []mirror.Disk {
	md := make([]mirror.Disk, len(ds))
	for i, d := range ds {
		md[i] = mirror.Disk{Name: d.ref.Name, Dir: d.ref.Dir, Sealer: diagSealer{d.sealer, d.conn, w.log}}
	}
	return md
}

// scrubFindings handles what one batch of a scheduled slice found, as the
// console's scrub does: missing copies are made now, damaged ones are
// added to each disk's state/scrub for the next maintenance window. An
// error keeps the batch for the next slice.
func (w *worker) scrubFindings(ctx context.Context, ds []*wdisk, rep *mirror.ScrubReport) error {
	boot := 0
	for _, f := range rep.Fixes {
		if !f.Missing {
			boot++
		}
	}
	if boot < len(rep.Fixes) {
		for _, d := range ds {
			d.mu.Lock()
		}
		res, err := mirror.Repair(ctx, rep.Fixes, w.mirrorDisks(ds), w.mirrorOptions())
		for _, d := range ds {
			d.mu.Unlock()
		}
		if res != nil {
			boot += len(res.Failed)
		}
		if err != nil {
			w.log.Error("scrub: repair of missing files failed", "error", err)
		}
	}
	if boot == 0 {
		return nil
	}
	for _, d := range ds {
		st, err := store.ReadScrubState(d.ref.Dir)
		if err != nil {
			w.log.Warn("scrub state unreadable; replaced", "disk", d.ref.Name, "error", err)
		}
		st.Damaged += boot
		if err := store.WriteScrubState(d.ref.Dir, st); err != nil {
			return fmt.Errorf("record %d damaged files for the maintenance window on %s: %w", boot, d.ref.Name, err)
		}
	}
	w.log.Warn("scrub: damaged files are replaced from a good copy at the next boot", "files", boot)
	return nil
}

// scrub reads and checks every sealed file on every usable disk, copies
// files one disk lacks from another (no privilege needed), and leaves
// damaged files to the maintenance window of the next boot, which PID 1
// is told about. It returns a summary for the console.
func (w *worker) scrub(ctx context.Context) (string, error) {
	w.scrubMu.Lock()
	defer w.scrubMu.Unlock()
	ds := w.usable()
	if len(ds) == 0 {
		return "", errors.New("no usable data disk")
	}
	md := make([]mirror.Disk, len(ds))
	for i, d := range ds {
		md[i] = mirror.Disk{Name: d.ref.Name, Dir: d.ref.Dir, Sealer: diagSealer{d.sealer, d.conn, w.log}}
	}
	start := time.Now()
	opts := w.mirrorOptions()
	rep, err := mirror.Scrub(ctx, md, opts)
	if err != nil {
		return "", fmt.Errorf("scrub: %w", err)
	}
	summary := rep.Summary()
	w.log.Info("scrub done", "summary", summary, "took", time.Since(start).Round(time.Millisecond))
	boot := 0 // fixes left for the maintenance window
	for _, f := range rep.Fixes {
		if !f.Missing {
			boot++
		}
	}
	if boot < len(rep.Fixes) {
		// Missing files are copied now; each target disk is locked
		// against pulls and Syncs while Repair writes it.
		for _, d := range ds {
			d.mu.Lock()
		}
		res, err := mirror.Repair(ctx, rep.Fixes, md, opts)
		for _, d := range ds {
			d.mu.Unlock()
		}
		if res != nil {
			summary += fmt.Sprintf("; %d missing files copied from another disk", len(res.Repaired))
			boot += len(res.Failed)
		}
		if err != nil {
			w.log.Error("scrub: repair of missing files failed", "error", err)
		}
	}
	repair := boot > 0
	if repair {
		summary += fmt.Sprintf("; %d damaged files are replaced from a good copy at the next boot (power off and on again)", boot)
	}
	if len(rep.Unrepairable) > 0 {
		summary += fmt.Sprintf("; %d files have no good copy on any disk", len(rep.Unrepairable))
	}
	// The result stays in each disk's store (state/scrub): the next
	// maintenance window repairs what it names, and the next boot's
	// worker schedules its scrub from it. Nothing goes to PID 1.
	for _, d := range ds {
		if err := store.WriteScrubState(d.ref.Dir, store.ScrubState{Last: time.Now(), Damaged: boot}); err != nil {
			w.log.Error("scrub result not recorded; the next boot may not repair", "disk", d.ref.Name, "error", err)
		}
	}
	return summary, nil
}

// noPruneClock is the worker's prune clock: the worker never prunes (only
// PID 1 does, at boot, with the trusted time), and a separate prune clock
// keeps its commits from writing the store's high-water log.
type noPruneClock struct{}

func (noPruneClock) Now() (time.Time, error) {
	return time.Time{}, errors.New("prune runs only in PID 1's maintenance window")
}
