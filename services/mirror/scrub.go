package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// ScrubReport is what Scrub found. It is plain data (it encodes to JSON),
// so the firmware can keep it until the maintenance window of the next
// boot and pass Fixes to Repair there.
type ScrubReport struct {
	Disks []DiskReport
	Files int // distinct files checked
	// Fixes can be made from a good copy on another disk: a missing file
	// (copied without any privilege) or a damaged one (replaced in the
	// maintenance window).
	Fixes []Fix
	// Unrepairable files have no good copy on any disk that could be read:
	// damaged everywhere, or damaged on one and missing on the others.
	// They are reported and never deleted.
	Unrepairable []Problem
	// Conflicts are files whose readable copies differ: receipts and the
	// recovery blob, which the store cannot authenticate (or, for the
	// others, two copies that both authenticate yet differ). Reported, not
	// repaired.
	Conflicts []Problem
	// Unsealed files are good but not sealed yet (a crash or a commit in
	// progress): the store's recovery seals them at its next read-write
	// open. Not damage.
	Unsealed []Problem
}

// DiskReport is one disk's part of a scrub.
type DiskReport struct {
	Name, Dir string
	Available bool
	Error     string // why it was not available
	Good      int    // files that passed their check
	Damaged   int
	Missing   int
	Bytes     int64 // bytes read from good files
}

// Fix repairs one file on one disk from a good copy on another.
type Fix struct {
	Rel     string // the file, relative to the store root
	Kind    store.FileKind
	From    string // name of the disk holding a good copy
	To      string // name of the disk to repair
	Missing bool   // To lacks the file; otherwise To's copy is damaged
	Detail  string // what is wrong with To's copy
}

// Problem is a file Scrub cannot fix.
type Problem struct {
	Rel    string
	Kind   store.FileKind
	Detail string // per disk, what was found
}

// OK reports whether every disk was read and every file is good on all.
func (r *ScrubReport) OK() bool {
	for _, d := range r.Disks {
		if !d.Available {
			return false
		}
	}
	return len(r.Fixes) == 0 && len(r.Unrepairable) == 0 && len(r.Conflicts) == 0
}

// Summary is one line for logs and alerts.
func (r *ScrubReport) Summary() string {
	damaged, missing := 0, 0
	for _, f := range r.Fixes {
		if f.Missing {
			missing++
		} else {
			damaged++
		}
	}
	var down []string
	for _, d := range r.Disks {
		if !d.Available {
			down = append(down, d.Name)
		}
	}
	s := fmt.Sprintf("%d files: %d damaged and %d missing on one disk with a good copy on another, %d with no good copy, %d conflicting",
		r.Files, damaged, missing, len(r.Unrepairable), len(r.Conflicts))
	if len(down) > 0 {
		s += "; disks not read: " + strings.Join(down, ", ")
	}
	return s
}

// state is one file on one disk.
type state struct {
	present bool
	good    bool // passed its check (opaque kinds: could be read)
	sealed  bool
	digest  [32]byte
	size    int64
	detail  string
}

// Scrub reads every pack, manifest, retention record, receipt and recovery
// blob on every disk (the union of what any disk holds) and checks it
// (store.CheckFile: hashes, tags, every chunk), the disks in parallel. It
// changes nothing: each disk is opened read-only, without a lock, so Scrub
// may run while a pull or Sync writes. A file damaged or missing on one
// disk and good on another becomes a Fix for Repair; a file with no good
// copy anywhere is Unrepairable, and nothing is ever deleted. A disk that
// cannot be opened (missing, another store, a damaged config) is reported
// and raises a disk-error alert; any damage raises a scrub-damage alert.
// Outside the maintenance window that is all: Repair runs at the next boot.
//
// Scrub compares what the disks hold at one moment; a file sealed on the
// primary after the secondary's last Sync shows as missing there until
// the next Sync, so the scheduler runs Scrub right after a Sync.
func Scrub(ctx context.Context, disks []Disk, o Options) (*ScrubReport, error) {
	log := o.logger()
	if err := checkNames(disks); err != nil {
		return nil, err
	}
	rep := &ScrubReport{Disks: make([]DiskReport, len(disks))}
	stores := make([]*store.Store, len(disks))
	id := ""
	for i, d := range disks {
		rep.Disks[i] = DiskReport{Name: d.Name, Dir: d.Dir}
		s, closeFn, err := o.open(ctx, d, true)
		if err == nil && id != "" && s.ID() != id {
			closeFn()
			err = fmt.Errorf("disk %s holds store %s, not %s", d.Name, s.ID(), id)
		}
		if err != nil {
			rep.Disks[i].Error = err.Error()
			log.Error("scrub: disk not available", "disk", d.Name, "error", err)
			o.alert(ctx, AlertDiskError, d.Name, "scrub: "+err.Error())
			continue
		}
		defer closeFn()
		id = s.ID()
		stores[i] = s
		rep.Disks[i].Available = true
	}
	// The union of every disk's files, in copy order (packs first).
	var files []store.SealedFile
	seen := map[string]bool{}
	for i, s := range stores {
		if s == nil {
			continue
		}
		listed, err := store.ListSealed(disks[i].Dir)
		if err != nil {
			rep.Disks[i].Available = false
			rep.Disks[i].Error = err.Error()
			stores[i] = nil
			o.alert(ctx, AlertDiskError, disks[i].Name, "scrub: "+err.Error())
			continue
		}
		for _, f := range listed {
			if !seen[f.Rel] {
				seen[f.Rel] = true
				files = append(files, f)
			}
		}
	}
	order := map[store.FileKind]int{store.KindPack: 0, store.KindManifest: 1, store.KindRetention: 2, store.KindReceipt: 3, store.KindRecovery: 4}
	slices.SortFunc(files, func(a, b store.SealedFile) int {
		if d := order[a.Kind] - order[b.Kind]; d != 0 {
			return d
		}
		return strings.Compare(a.Rel, b.Rel)
	})
	rep.Files = len(files)

	// Each disk is read by its own goroutine: the disks work in parallel.
	states := make([][]state, len(disks))
	errs := make([]error, len(disks))
	var wg sync.WaitGroup
	for i, s := range stores {
		if s == nil {
			continue
		}
		states[i] = make([]state, len(files))
		wg.Go(func() {
			for j, f := range files {
				c, err := s.CheckFile(ctx, disks[i].Dir, f.Rel)
				if ctx.Err() != nil {
					errs[i] = ctx.Err()
					return
				}
				st := &states[i][j]
				switch {
				case err == nil:
					*st = state{present: true, good: true, sealed: c.Sealed, digest: c.Digest, size: c.Size}
				case errors.Is(err, fs.ErrNotExist):
					*st = state{detail: "missing"}
				default:
					*st = state{present: true, detail: err.Error()}
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}

	for j, f := range files {
		var good, bad, missing []int
		for i := range disks {
			if stores[i] == nil {
				continue
			}
			st := states[i][j]
			dr := &rep.Disks[i]
			switch {
			case st.good:
				good = append(good, i)
				dr.Good++
				dr.Bytes += st.size
			case st.present:
				bad = append(bad, i)
				dr.Damaged++
			default:
				missing = append(missing, i)
				dr.Missing++
			}
		}
		detail := func() string {
			var b []string
			for i := range disks {
				if stores[i] == nil {
					continue
				}
				st := states[i][j]
				switch {
				case st.good:
					b = append(b, disks[i].Name+": good")
				default:
					b = append(b, disks[i].Name+": "+st.detail)
				}
			}
			return strings.Join(b, "; ")
		}
		if len(good) == 0 {
			rep.Unrepairable = append(rep.Unrepairable, Problem{Rel: f.Rel, Kind: f.Kind, Detail: detail()})
			continue
		}
		conflict := false
		for _, i := range good[1:] {
			if states[i][j].digest != states[good[0]][j].digest {
				conflict = true
			}
		}
		if conflict {
			rep.Conflicts = append(rep.Conflicts, Problem{Rel: f.Rel, Kind: f.Kind, Detail: "the readable copies differ; " + detail()})
			continue
		}
		// The good copy to repair from: a sealed one if there is one.
		from := good[0]
		for _, i := range good {
			if states[i][j].sealed {
				from = i
				break
			}
		}
		for _, i := range good {
			if !states[i][j].sealed {
				rep.Unsealed = append(rep.Unsealed, Problem{Rel: f.Rel, Kind: f.Kind, Detail: disks[i].Name + ": good but not sealed"})
			}
		}
		for _, i := range bad {
			rep.Fixes = append(rep.Fixes, Fix{Rel: f.Rel, Kind: f.Kind, From: disks[from].Name, To: disks[i].Name, Detail: states[i][j].detail})
		}
		for _, i := range missing {
			rep.Fixes = append(rep.Fixes, Fix{Rel: f.Rel, Kind: f.Kind, From: disks[from].Name, To: disks[i].Name, Missing: true, Detail: "missing"})
		}
	}
	for _, p := range rep.Unrepairable {
		log.Error("scrub: no good copy on any disk", "path", p.Rel, "detail", p.Detail)
	}
	for _, p := range rep.Conflicts {
		log.Error("scrub: copies differ", "path", p.Rel, "detail", p.Detail)
	}
	for _, f := range rep.Fixes {
		log.Warn("scrub: repairable", "path", f.Rel, "disk", f.To, "from", f.From, "missing", f.Missing, "detail", f.Detail)
	}
	if len(rep.Fixes) > 0 || len(rep.Unrepairable) > 0 || len(rep.Conflicts) > 0 {
		var paths []string
		for _, p := range rep.Unrepairable {
			paths = append(paths, p.Rel+" (no good copy)")
		}
		for _, p := range rep.Conflicts {
			paths = append(paths, p.Rel+" (copies differ)")
		}
		for _, f := range rep.Fixes {
			paths = append(paths, f.Rel+" on "+f.To)
		}
		msg := "scrub: " + rep.Summary() + ": " + list(paths)
		if len(rep.Fixes) > 0 {
			msg += "; repairable files are repaired from the good copy in the maintenance window of the next boot"
		}
		o.alert(ctx, AlertScrubDamage, "", msg)
	}
	log.Info("scrub done", "summary", rep.Summary())
	return rep, nil
}

func checkNames(disks []Disk) error {
	if len(disks) == 0 {
		return errors.New("mirror: no disks")
	}
	names := map[string]bool{}
	for _, d := range disks {
		if d.Name == "" || names[d.Name] {
			return fmt.Errorf("mirror: disk names must be set and distinct (%q)", d.Name)
		}
		names[d.Name] = true
	}
	return nil
}
