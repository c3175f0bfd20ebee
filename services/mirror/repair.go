package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// RepairResult says what Repair did with each fix.
type RepairResult struct {
	Repaired []Fix
	Bytes    int64
	// Left are fixes not made now, and why: the file is good (or present)
	// already, or it is damaged and this is not the maintenance window.
	Left []Outcome
	// Failed are fixes refused or failed, and why: the good copy did not
	// verify, the disk failed or is not available.
	Failed []Outcome
}

// Outcome is a fix and why it was not made.
type Outcome struct {
	Fix
	Reason string
}

// Repair makes the fixes a Scrub proposed, trusting none of them: every fix
// is checked again when it is made, so a stale or forged list can do no
// harm.
//
//   - A missing file is copied from the good disk as Sync copies
//     (store.InstallCopy): checked before and after, never replacing
//     anything, sealed. That needs no privilege, so it is done whenever
//     Repair runs.
//   - A damaged file is replaced only when o.Maintenance is set (PID 1 in
//     the boot maintenance window, holding CAP_LINUX_IMMUTABLE), by
//     store.ReplaceDamaged: it refuses when the target passes its check
//     (a file good on both disks is never touched) and when the good copy
//     does not verify; then it clears the flag of exactly the damaged file,
//     renames the verified copy over it and seals it again. Outside the
//     window the fix is left for the next boot.
//
// A target disk is opened read-write (taking its lock) unless its Disk has
// Store set; the source disk is only read. Failures raise a scrub-damage
// alert and make Repair return an error; the result lists every outcome.
func Repair(ctx context.Context, fixes []Fix, disks []Disk, o Options) (*RepairResult, error) {
	log := o.logger()
	if err := checkNames(disks); err != nil {
		return nil, err
	}
	byName := map[string]Disk{}
	for _, d := range disks {
		byName[d.Name] = d
	}
	res := &RepairResult{}
	opened := map[string]*store.Store{}
	broken := map[string]string{}
	defer func() {
		for name, s := range opened {
			if err := s.SaveIndex(); err != nil {
				log.Warn("index cache not saved; it will be rebuilt", "disk", name, "error", err)
			}
			if byName[name].Store == nil {
				s.Close()
			}
		}
	}()
	target := func(name string) (*store.Store, error) {
		if s, ok := opened[name]; ok {
			return s, nil
		}
		if why, ok := broken[name]; ok {
			return nil, errors.New(why)
		}
		s, _, err := o.open(ctx, byName[name], false)
		if err != nil {
			broken[name] = err.Error()
			return nil, err
		}
		opened[name] = s
		return s, nil
	}
	fail := func(f Fix, format string, args ...any) {
		r := fmt.Sprintf(format, args...)
		log.Error("repair failed", "path", f.Rel, "disk", f.To, "from", f.From, "reason", r)
		res.Failed = append(res.Failed, Outcome{Fix: f, Reason: r})
	}
	leave := func(f Fix, r string) {
		log.Info("repair not needed now", "path", f.Rel, "disk", f.To, "reason", r)
		res.Left = append(res.Left, Outcome{Fix: f, Reason: r})
	}
	for _, f := range fixes {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		from, okFrom := byName[f.From]
		_, okTo := byName[f.To]
		if !okFrom || !okTo || f.From == f.To {
			fail(f, "fix names unknown disks %q -> %q", f.From, f.To)
			continue
		}
		if _, ok := store.KindOf(f.Rel); !ok {
			fail(f, "%q is not a sealed store file", f.Rel)
			continue
		}
		to, err := target(f.To)
		if err != nil {
			fail(f, "%v", err)
			continue
		}
		n, err := to.InstallCopy(ctx, from.Dir, f.Rel)
		if errors.Is(err, fs.ErrExist) {
			// Present on the target: damaged, or good (a later Sync or an
			// earlier repair brought it).
			if !o.Maintenance {
				if _, cerr := to.CheckFile(ctx, to.Dir(), f.Rel); cerr == nil {
					leave(f, "present and passes its check")
				} else {
					leave(f, "damaged; replaced in the maintenance window of the next boot")
				}
				continue
			}
			n, err = to.ReplaceDamaged(ctx, from.Dir, f.Rel)
		}
		switch {
		case err == nil:
			log.Info("repaired", "path", f.Rel, "disk", f.To, "from", f.From, "bytes", n)
			res.Repaired = append(res.Repaired, f)
			res.Bytes += n
		case errors.Is(err, store.ErrNotDamaged):
			leave(f, "good on this disk; not touched")
		case errors.Is(err, store.ErrSourceDamaged):
			fail(f, "the copy on %s does not verify; refused: %v", f.From, err)
		case ctx.Err() != nil:
			return res, ctx.Err()
		default:
			fail(f, "%v", err)
		}
	}
	if len(res.Failed) > 0 {
		var paths []string
		for _, f := range res.Failed {
			paths = append(paths, f.Rel+" on "+f.To+" ("+f.Reason+")")
		}
		o.alert(ctx, AlertScrubDamage, "", fmt.Sprintf("repair: %d of %d fixes failed: %s", len(res.Failed), len(fixes), list(paths)))
		return res, fmt.Errorf("mirror: %d of %d repairs failed", len(res.Failed), len(fixes))
	}
	return res, nil
}
