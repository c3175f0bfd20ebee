package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// ForeignEntry is one entry CleanForeign found that the layout does not
// allow where it stands.
type ForeignEntry struct {
	Path    string // relative to the store
	Detail  string
	Removed bool // false in an append-only directory: it is skipped, never read
}

// ForeignReport is what CleanForeign found and did.
type ForeignReport struct {
	// Entries names at most maxForeignReported entries: first those named
	// like a store file or of another type than a regular file (a FIFO
	// journal, a symlinked cache, a hard link under a manifest's name),
	// then plain junk (a regular file with a name the layout never uses),
	// each group in scan order, so that thousands of junk files never hide
	// the dangerous few from an alert.
	Entries []ForeignEntry
	Count   int // every foreign entry found
	Removed int
	junk    []ForeignEntry // plain junk, added to Entries at the end
	logged  int            // entries logged one by one (maxForeignLogged)
}

// plainJunk reports whether a reason CleanForeign gives is only "a name the
// layout never uses": the entry claims to be nothing.
func plainJunk(detail string) bool {
	return strings.HasPrefix(detail, "not a journal") || strings.HasPrefix(detail, "not an index run") ||
		strings.HasPrefix(detail, "not the clock log") || strings.HasPrefix(detail, "left in tmp/")
}

func (r *ForeignReport) add(rel, detail string, removed bool) {
	r.Count++
	if removed {
		r.Removed++
	}
	e := ForeignEntry{Path: rel, Detail: detail, Removed: removed}
	switch {
	case plainJunk(detail):
		if len(r.junk) < maxForeignReported {
			r.junk = append(r.junk, e)
		}
	case len(r.Entries) < maxForeignReported:
		r.Entries = append(r.Entries, e)
	}
}

// finish puts the junk after the others, up to maxForeignReported.
func (r *ForeignReport) finish() {
	for _, e := range r.junk {
		if len(r.Entries) == maxForeignReported {
			break
		}
		r.Entries = append(r.Entries, e)
	}
	r.junk = nil
}

// logOne logs one entry while fewer than maxForeignLogged were: PID 1's
// log goes to a 115200-baud console, where a line per entry of 18,000
// planted junk files took minutes of every boot. The rest are counted in
// CleanForeign's last line.
func (r *ForeignReport) logOne(log func(msg string, args ...any), msg string, args ...any) {
	if r.logged < maxForeignLogged {
		r.logged++
		log(msg, args...)
	}
}

// CleanForeign is for the boot maintenance window (PID 1, store opened as
// writer, before prune). In the directories the worker writes freely it
// removes every entry the layout does not allow there:
//
//	| dir     | allowed                                             | removed                       |
//	|---------|-----------------------------------------------------|-------------------------------|
//	| wip/    | regular <id>.journal whose head frame reads         | everything else               |
//	| index/  | regular run-<lo>-<hi> files; a regular "index" (the | everything else               |
//	|         | old format's cache: prune removes and names it)     |                               |
//	| tmp/    | nothing (the store holds the lock)                  | everything                    |
//	| state/  | regular "clock.log"                                 | everything else               |
//
// In the append-only directories (the root, packs/ and its shards,
// snapshots/, retention/, receipts/, recovery/) nothing is removed: a
// foreign entry there is reported, and every reader skips it by type and
// name. Junk appended to the clock log is reported too (clockjunk_linux.go).
// Nothing it removes can hold data: a journal whose head frame does
// not read records no object. Every entry found is reported (the first
// maxForeignReported by name), so the appliance can alert.
func (s *Store) CleanForeign(ctx context.Context) (*ForeignReport, error) {
	if s.ro {
		return nil, errors.New("clean: store opened read-only")
	}
	rep := &ForeignReport{}
	remove := func(dir, name, detail string) {
		rel := dir + "/" + name
		if err := os.RemoveAll(s.path(dir, name)); err != nil {
			rep.logOne(s.log.Warn, "foreign entry not removed", "path", rel, "error", err)
			rep.add(rel, detail+"; not removed: "+err.Error(), false)
			return
		}
		rep.logOne(s.log.Warn, "foreign entry removed", "path", rel, "detail", detail)
		rep.add(rel, detail, true)
	}
	work := []struct {
		dir  string
		keep func(name string, typ fs.FileMode) string // "" keeps the entry; else why it goes
	}{
		{wipDir, func(name string, typ fs.FileMode) string {
			id, ok := journalID(name)
			if !ok {
				return "not a journal"
			}
			if !typ.IsRegular() {
				return "named like a journal but not a regular file (" + typ.String() + ")"
			}
			if _, st, err := s.readJournal(id); err != nil && st.frames == 0 {
				return "journal whose head frame does not read: " + err.Error()
			}
			return ""
		}},
		{indexDir, func(name string, typ fs.FileMode) string {
			_, _, run := parseRunName(name)
			if !run && name != legacyIndex {
				return "not an index run"
			}
			if !typ.IsRegular() {
				return "named like an index file but not a regular file (" + typ.String() + ")"
			}
			bound := int64(maxRunFile)
			if !run {
				bound = maxIndexCache
			}
			f, _, err := openStoreFile(s.path(indexDir, name), os.O_RDONLY, bound)
			if err != nil {
				return err.Error()
			}
			f.Close()
			return ""
		}},
		{tmpDir, func(string, fs.FileMode) string { return "left in tmp/" }},
		{stateDir, func(name string, typ fs.FileMode) string {
			if name != clockLogName && name != scrubStateName && name != ScrubPassName {
				return "not the clock log, the scrub state or the scrub pass"
			}
			if !typ.IsRegular() {
				return name + " is not a regular file (" + typ.String() + ")"
			}
			return ""
		}},
	}
	for _, w := range work {
		// Names are collected in batches and removed after each scan, so
		// millions of entries cost one batch of memory per pass.
		for {
			var gone []string
			var why []string
			err := scanDir(s.path(w.dir), func(name string, typ fs.FileMode) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				if d := w.keep(name, typ); d != "" && len(gone) < 4096 {
					gone, why = append(gone, name), append(why, d)
				}
				return nil
			})
			if err != nil {
				return rep, fmt.Errorf("clean %s: %w", w.dir, err)
			}
			removed := 0
			for i, name := range gone {
				before := rep.Removed
				remove(w.dir, name, why[i])
				removed += rep.Removed - before
			}
			if len(gone) < 4096 || removed == 0 {
				break
			}
		}
	}
	s.reportClockJunk(rep) // clockjunk_linux.go
	if err := s.reportAppendOnly(ctx, rep); err != nil {
		return rep, err
	}
	rep.finish()
	if rep.Count > 0 {
		s.log.Warn("foreign entries found in the store", "count", rep.Count, "removed", rep.Removed, "logged_one_by_one", rep.logged)
	}
	return rep, nil
}

// reportAppendOnly reports foreign entries of the append-only directories,
// which cannot lose an entry once sealed: every reader skips them.
func (s *Store) reportAppendOnly(ctx context.Context, rep *ForeignReport) error {
	snapName := func(n string) bool { id, ok := strings.CutSuffix(n, ".snap"); return ok && ValidSnapshotID(id) }
	dirs := []struct {
		dir string
		ok  func(string) bool
	}{
		{snapshotsDir, snapName},
		{retentionDir, func(n string) bool {
			id, _, ok := strings.Cut(n, ".")
			return ok && ValidSnapshotID(id) && strings.HasSuffix(n, ".ext")
		}},
		{receiptsDir, isReceiptName},
		{recoveryDir, func(n string) bool { return n == recoveryName }},
	}
	var shards []string
	err := scanDir(s.path(packsDir), func(name string, typ fs.FileMode) error {
		if typ.IsDir() && isShard(name) {
			shards = append(shards, name)
		} else {
			rep.add(packsDir+"/"+name, "not a pack shard; skipped", false)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("clean: read packs: %w", err)
	}
	for _, sh := range shards {
		dirs = append(dirs, struct {
			dir string
			ok  func(string) bool
		}{packsDir + "/" + sh, func(n string) bool { return isPackName(n) && strings.HasPrefix(n, sh) }})
	}
	for _, d := range dirs {
		err := scanDir(s.path(d.dir), func(name string, typ fs.FileMode) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			switch {
			case !d.ok(name):
				rep.add(d.dir+"/"+name, "not part of the store layout; append-only, so skipped, not removed", false)
			case !typ.IsRegular():
				rep.add(d.dir+"/"+name, "not a regular file ("+typ.String()+"); append-only, so skipped, not removed", false)
			default:
				var st unix.Stat_t
				if err := unix.Lstat(s.path(d.dir, name), &st); err == nil && st.Nlink != 1 {
					rep.add(d.dir+"/"+name, fmt.Sprintf("has %d names (a hard link); never sealed, skipped, not removed", st.Nlink), false)
					return nil
				}
				// Recovery seals every file here that passes its check, so
				// one left unsealed failed it: nothing trusts it.
				if sealed, err := fsflag.Has(s.path(d.dir, name), fsflag.Immutable); err == nil && !sealed {
					rep.add(d.dir+"/"+name, "not sealed: it failed its check at open; skipped, not removed", false)
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.add(d.dir, "cannot be read as a directory: "+err.Error()+"; skipped, not removed", false)
		}
	}
	return scanDir(s.dir, func(name string, typ fs.FileMode) error {
		want, known := rootLayout(name)
		if !known || want != typ.Type() {
			rep.add(name, "not part of the store layout; append-only, so skipped, not removed", false)
		}
		return nil
	})
}
