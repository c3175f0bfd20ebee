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
	if err := checkNames(disks); err != nil {
		return nil, err
	}
	sr := openScrub(ctx, disks, o)
	defer sr.close()
	files := sr.list(ctx)
	rep, err := sr.check(ctx, files, nil)
	if err != nil {
		return nil, err
	}
	sr.announce(ctx, rep)
	return rep, nil
}

// scrubRun is the disks of one Scrub or one slice of a Scrubber, opened
// read-only.
type scrubRun struct {
	disks   []Disk
	o       Options
	stores  []*store.Store // nil: the disk is not available
	base    []DiskReport   // each disk's name, availability and error
	closers []func()
}

// openScrub opens every disk read-only, without a lock; a disk that
// cannot be opened, or holds another store than the first that could, is
// reported and raises a disk-error alert.
func openScrub(ctx context.Context, disks []Disk, o Options) *scrubRun {
	log := o.logger()
	sr := &scrubRun{disks: disks, o: o, stores: make([]*store.Store, len(disks)), base: make([]DiskReport, len(disks))}
	id := ""
	for i, d := range disks {
		sr.base[i] = DiskReport{Name: d.Name, Dir: d.Dir}
		s, closeFn, err := o.open(ctx, d, true)
		if err == nil && id != "" && s.ID() != id {
			closeFn()
			err = fmt.Errorf("disk %s holds store %s, not %s", d.Name, s.ID(), id)
		}
		if err != nil {
			sr.base[i].Error = err.Error()
			log.Error("scrub: disk not available", "disk", d.Name, "error", err)
			o.alert(ctx, AlertDiskError, d.Name, "scrub: "+err.Error())
			continue
		}
		sr.closers = append(sr.closers, closeFn)
		id = s.ID()
		sr.stores[i] = s
		sr.base[i].Available = true
	}
	return sr
}

func (sr *scrubRun) close() {
	for _, c := range sr.closers {
		c()
	}
}

// kindRank is the place of a kind in a scrub: store.ListSealed's copy
// order, packs first.
func kindRank(k store.FileKind) int {
	switch k {
	case store.KindPack:
		return 0
	case store.KindManifest:
		return 1
	case store.KindRetention:
		return 2
	case store.KindReceipt:
		return 3
	}
	return 4
}

// compareFiles orders sealed files by kind (kindRank), then by path.
func compareFiles(a, b store.SealedFile) int {
	if d := kindRank(a.Kind) - kindRank(b.Kind); d != 0 {
		return d
	}
	return strings.Compare(a.Rel, b.Rel)
}

// list returns the union of every available disk's sealed files, in
// compareFiles order. A disk whose listing fails is marked unavailable.
func (sr *scrubRun) list(ctx context.Context) []store.SealedFile {
	var files []store.SealedFile
	seen := map[string]bool{}
	for i, s := range sr.stores {
		if s == nil {
			continue
		}
		listed, err := store.ListSealed(sr.disks[i].Dir)
		if err != nil {
			sr.base[i].Available = false
			sr.base[i].Error = err.Error()
			sr.stores[i] = nil
			sr.o.alert(ctx, AlertDiskError, sr.disks[i].Name, "scrub: "+err.Error())
			continue
		}
		for _, f := range listed {
			if !seen[f.Rel] {
				seen[f.Rel] = true
				files = append(files, f)
			}
		}
	}
	slices.SortFunc(files, compareFiles)
	return files
}

// available reports whether any disk could be opened and listed.
func (sr *scrubRun) available() bool {
	return slices.ContainsFunc(sr.stores, func(s *store.Store) bool { return s != nil })
}

// check reads files on every available disk, the disks in parallel, and
// judges each file across the disks. pace, if set, is called by disk i's
// reader before it reads rel (the rate limit); an error from it ends the
// check. check raises no alert (announce does).
func (sr *scrubRun) check(ctx context.Context, files []store.SealedFile, pace func(ctx context.Context, disk int, rel string) error) (*ScrubReport, error) {
	disks, stores := sr.disks, sr.stores
	rep := &ScrubReport{Disks: slices.Clone(sr.base), Files: len(files)}

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
				if pace != nil {
					if err := pace(ctx, i, f.Rel); err != nil {
						errs[i] = err
						return
					}
				}
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
	return rep, nil
}

// found reports whether rep holds anything to act on or alert about.
func (r *ScrubReport) found() bool {
	return len(r.Fixes) > 0 || len(r.Unrepairable) > 0 || len(r.Conflicts) > 0
}

// announce logs what rep found and raises a scrub-damage alert for it.
func (sr *scrubRun) announce(ctx context.Context, rep *ScrubReport) {
	log := sr.o.logger()
	for _, p := range rep.Unrepairable {
		log.Error("scrub: no good copy on any disk", "path", p.Rel, "detail", p.Detail)
	}
	for _, p := range rep.Conflicts {
		log.Error("scrub: copies differ", "path", p.Rel, "detail", p.Detail)
	}
	for _, f := range rep.Fixes {
		log.Warn("scrub: repairable", "path", f.Rel, "disk", f.To, "from", f.From, "missing", f.Missing, "detail", f.Detail)
	}
	if rep.found() {
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
		sr.o.alert(ctx, AlertScrubDamage, "", msg)
	}
	log.Info("scrub done", "summary", rep.Summary())
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
