package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// SyncResult says what one Sync did.
type SyncResult struct {
	Copied []string // files copied to the secondary, in order
	Bytes  int64    // their size
	// Unsealed lists files of the primary that are not sealed yet (a
	// commit in progress, or left for the primary's recovery): not
	// copied now, copied by a later Sync once sealed.
	Unsealed []string
	// SourceDamaged lists files of the primary that fail their check:
	// not copied (an alert was raised; Scrub and Repair deal with them).
	SourceDamaged []string
	// OnlySecondary counts files the secondary has and the primary lacks
	// (pruned on the primary first, or lost from it: Scrub tells).
	OnlySecondary int
	// Degraded is set when the secondary could not be brought up to date;
	// Reason says why. The primary is never affected.
	Degraded bool
	Reason   string
}

// Sync copies to the secondary disk every sealed file the primary store has
// and the secondary lacks (store.ListSealed: packs first, then manifests,
// retention records, receipts and the recovery blob, so the secondary never
// holds a manifest whose packs it lacks), each checked before and after the
// copy and installed with the store's own discipline (store.InstallCopy:
// tmp/, fsync, read back from the disk, RENAME_NOREPLACE, fsync, xattrs,
// seal), then carries over the clock high-water mark and saves the
// secondary's index cache. It never removes or replaces anything on the
// secondary, and never creates a store there: a blank disk is made a mirror
// by store.InitMirror, at the operator's request.
//
// Sync only reads the primary's sealed files and its clock log, so it may
// run while a pull writes to the primary, and a pull never waits for it.
// When the secondary is missing (not mounted), holds another store, or
// fails, Sync raises a disk-error alert and returns the result with
// Degraded set and an error wrapping ErrDegraded; the next Sync catches up.
// A file of the primary that fails its check is not copied and raises a
// scrub-damage alert.
func Sync(ctx context.Context, primary *store.Store, secondary Disk, o Options) (*SyncResult, error) {
	log := o.logger()
	res := &SyncResult{}
	degrade := func(format string, args ...any) (*SyncResult, error) {
		res.Degraded = true
		res.Reason = fmt.Sprintf(format, args...)
		log.Error("mirror degraded", "disk", secondary.Name, "reason", res.Reason)
		o.alert(ctx, AlertDiskError, secondary.Name, "mirror degraded: "+res.Reason+"; backups go on on the primary disk, the next sync catches up")
		return res, fmt.Errorf("%w: %s", ErrDegraded, res.Reason)
	}
	if secondary.Store == nil {
		// Another store is never opened read-write (recovery would write).
		if _, err := os.Stat(secondary.Dir); err == nil {
			if id, err := store.PeekID(secondary.Dir); err == nil && id != primary.ID() {
				return degrade("disk %s holds store %s, not %s; nothing was written to it", secondary.Name, id, primary.ID())
			}
		}
	}
	sec, closeSec, err := o.open(ctx, secondary, false)
	if err != nil {
		return degrade("%v", err)
	}
	defer closeSec()
	defer func() { // runs before closeSec: packs copied so far join the cache
		if err := sec.SaveIndex(); err != nil {
			log.Warn("secondary index cache not saved; it will be rebuilt", "error", err)
		}
	}()
	if sec.ID() != primary.ID() {
		return degrade("disk %s holds store %s, not %s; nothing was written to it", secondary.Name, sec.ID(), primary.ID())
	}
	mine, err := store.ListSealed(primary.Dir())
	if err != nil {
		o.alert(ctx, AlertDiskError, "", "mirror: the primary disk cannot be listed: "+err.Error())
		return nil, fmt.Errorf("mirror: list primary: %w", err)
	}
	theirs, err := store.ListSealed(sec.Dir())
	if err != nil {
		return degrade("disk %s: %v", secondary.Name, err)
	}
	have := make(map[string]bool, len(theirs))
	for _, f := range theirs {
		have[f.Rel] = true
	}
	for _, f := range mine {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if have[f.Rel] {
			delete(have, f.Rel)
			continue
		}
		sealed, err := fsflag.Has(filepath.Join(primary.Dir(), filepath.FromSlash(f.Rel)), fsflag.Immutable)
		if errors.Is(err, fs.ErrNotExist) {
			continue // gone since the listing
		}
		if err != nil || !sealed {
			res.Unsealed = append(res.Unsealed, f.Rel)
			continue
		}
		n, err := sec.InstallCopy(ctx, primary.Dir(), f.Rel)
		switch {
		case err == nil:
			res.Copied = append(res.Copied, f.Rel)
			res.Bytes += n
		case errors.Is(err, store.ErrSourceDamaged):
			log.Error("primary file fails its check; not mirrored", "path", f.Rel, "error", err)
			res.SourceDamaged = append(res.SourceDamaged, f.Rel)
		case errors.Is(err, fs.ErrExist):
			// Appeared since the listing: nothing to do.
		case ctx.Err() != nil:
			return res, ctx.Err()
		default:
			return degrade("disk %s: copying %s: %v", secondary.Name, f.Rel, err)
		}
	}
	res.OnlySecondary = len(have)
	hw, err := primary.HighWater()
	if err != nil {
		log.Warn("primary clock high-water mark unreadable; not carried over", "error", err)
	} else if err := sec.AdvanceHighWater(hw); err != nil {
		return degrade("disk %s: clock high-water mark: %v", secondary.Name, err)
	}
	if len(res.SourceDamaged) > 0 {
		o.alert(ctx, AlertScrubDamage, "", fmt.Sprintf("%d files on the primary disk fail their check and were not mirrored: %s", len(res.SourceDamaged), list(res.SourceDamaged)))
	}
	log.Info("mirror synced", "disk", secondary.Name, "copied", len(res.Copied), "bytes", res.Bytes,
		"unsealed", len(res.Unsealed), "only_secondary", res.OnlySecondary)
	return res, nil
}

// Runner runs Sync in the background, one at a time, so that a pull never
// waits for the secondary disk: the scheduler calls Kick after each pull,
// Kick returns at once, and kicks that arrive while a Sync runs fold into
// one more Sync.
type Runner struct {
	Primary   *store.Store
	Secondary Disk
	Options   Options

	once sync.Once
	kick chan struct{}
	mu   sync.Mutex
	last *SyncResult
	err  error
	runs int
}

func (r *Runner) init() { r.once.Do(func() { r.kick = make(chan struct{}, 1) }) }

// Kick asks for a Sync. It never blocks.
func (r *Runner) Kick() {
	r.init()
	select {
	case r.kick <- struct{}{}:
	default: // one is pending already
	}
}

// Run syncs after every Kick until ctx is done, and returns ctx's error.
func (r *Runner) Run(ctx context.Context) error {
	r.init()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.kick:
		}
		res, err := Sync(ctx, r.Primary, r.Secondary, r.Options)
		r.mu.Lock()
		r.last, r.err = res, err
		r.runs++
		r.mu.Unlock()
	}
}

// RunnerStatus is what the latest Sync of a Runner returned.
type RunnerStatus struct {
	Result *SyncResult // nil before the first Sync
	Err    error
	Runs   int // Syncs so far
}

// Status returns the result of the latest Sync.
func (r *Runner) Status() RunnerStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RunnerStatus{Result: r.last, Err: r.err, Runs: r.runs}
}
