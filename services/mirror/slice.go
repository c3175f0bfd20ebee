package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// A Scrubber scrubs the store in slices: each Run checks the next share of
// the sealed files (in compareFiles order: kind, then path), so every file
// is read and checked once per scrub period however large the store, with
// each disk's reads held under a byte rate, and a reboot resumes where the
// last slice stopped. The resume point lives in a small state file
// (ScrubState, scrubstate.go).
//
// The period and the share (docs/mirror.md, "Scrub in slices"):
//
//   - A period begins with the cursor empty. Each Run checks the files
//     after the cursor, batch by batch, until it has read its budget or
//     reached the end of the list. At the end the pass is complete and the
//     next period begins Period after this one began (or now, if that has
//     passed): until then Run checks nothing, so each file is checked once
//     per period, not more.
//   - The budget of a Run is the day's share scaled to Every: Share(total)
//     when set, else total / days of the period, rounded up; but never less
//     than what is left divided by the Runs left before the period ends, so
//     days the box was off are caught up by the period's end.
//   - A file sealed during a period behind the cursor is checked in the
//     next one; a file gone since the listing is just not there.
//
// Run is safe to cancel at any time: the cursor moves only after a batch
// was checked on every disk and its findings handed to Handle, and the
// state file is replaced atomically. A Run cut short by a crash re-reads
// at most one batch; one cut short by a cancelled context (a reboot), with
// budget left, makes Next return now, so the slice is finished right after
// the next start.
type Scrubber struct {
	c  ScrubberConfig
	mu sync.Mutex // one Run at a time
}

// ScrubberConfig configures a Scrubber.
type ScrubberConfig struct {
	// Disks and Options are as for Scrub.
	Disks   []Disk
	Options Options
	// StatePath is the state file (ScrubState); its directory must exist
	// and be writable. See docs/mirror.md for where the appliance keeps it.
	StatePath string
	// Period is the scrub period (config Appliance.Scrub.Every).
	Period time.Duration
	// Every is how often Run is meant to be called: the share is per day,
	// scaled to Every. 0 means a day.
	Every time.Duration
	// Rate bounds each disk's reads, bytes per second; 0 means no limit
	// (config Appliance.ScrubRate).
	Rate int64
	// Share returns the least a day's slice reads of a store of total
	// bytes; nil, or 0 returned, means total / days of the period, rounded
	// up (config Appliance.ScrubShare.Of).
	Share func(total int64) int64
	// Handle, if set, gets the findings of each batch (a ScrubReport with
	// Fixes, Unrepairable or Conflicts) before the cursor passes them; an
	// error stops the Run there and the batch is checked again next time.
	// The findings are also in Run's report and alerted as Scrub does.
	Handle func(ctx context.Context, rep *ScrubReport) error
	// Clock is the time source and sleeper; nil means the real clock.
	Clock Clock
	// BatchBytes and BatchFiles bound a batch: the state file is written
	// after each. 0 means DefaultBatchBytes and DefaultBatchFiles.
	BatchBytes int64
	BatchFiles int
}

// Defaults of a Scrubber.
const (
	// DefaultBatchBytes and DefaultBatchFiles bound the work a crash can
	// make a Scrubber do again, and how often it writes its state file.
	DefaultBatchBytes = 256 << 20
	DefaultBatchFiles = 1024
	day               = 24 * time.Hour
)

// Clock is what a Scrubber needs of time; tests pass a fake one.
type Clock interface {
	Now() time.Time
	// SleepUntil waits until t or until ctx is done (then returns
	// ctx.Err()).
	SleepUntil(ctx context.Context, t time.Time) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) SleepUntil(ctx context.Context, until time.Time) error {
	d := time.Until(until)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// NewScrubber checks c and returns its Scrubber.
func NewScrubber(c ScrubberConfig) (*Scrubber, error) {
	if err := checkNames(c.Disks); err != nil {
		return nil, err
	}
	if c.StatePath == "" {
		return nil, errors.New("mirror: scrubber: no state file")
	}
	if c.Period < time.Hour {
		return nil, fmt.Errorf("mirror: scrubber: period %s is shorter than an hour", c.Period)
	}
	if c.Every <= 0 {
		c.Every = day
	}
	if c.Every > c.Period {
		c.Every = c.Period
	}
	if c.Rate < 0 {
		return nil, fmt.Errorf("mirror: scrubber: negative rate %d", c.Rate)
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.BatchFiles <= 0 {
		c.BatchFiles = DefaultBatchFiles
	}
	return &Scrubber{c: c}, nil
}

// load reads the state file and makes it sane against now: a missing
// file starts a period; a damaged one, or one whose cursor is not a
// sealed file's path, restarts the period (files are checked again, never
// skipped); times in the future (a clock set back, or a forged file) are
// pulled back to now, keeping the cursor, and the next slice is due at once.
func (s *Scrubber) load(now time.Time) ScrubState {
	log := s.c.Options.logger()
	st, err := ReadScrubState(s.c.StatePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ScrubState{Version: scrubStateVersion, PeriodStart: now}
	case err != nil:
		log.Warn("scrub: state file unusable; starting the period again", "path", s.c.StatePath, "error", err)
		return ScrubState{Version: scrubStateVersion, PeriodStart: now}
	}
	// A period may begin at most one Period ahead (the pass is done and
	// the next period waits); anything later is a clock set back.
	if st.PeriodStart.After(now.Add(s.c.Period)) || (st.Cursor != "" && st.PeriodStart.After(now)) {
		log.Warn("scrub: period start in the future; starting it now", "period_start", st.PeriodStart, "now", now)
		st.PeriodStart = now
	}
	if st.LastRun.After(now) {
		st.LastRun = time.Time{} // due now
	}
	return st
}

// Next returns when Run should next be called: now if a slice was cut
// short with budget left (or none ever ran), else Every after the last
// slice began, and not before the next period when this one's pass is
// done.
func (s *Scrubber) Next() time.Time {
	now := s.c.Clock.Now()
	st := s.load(now)
	switch {
	case st.PeriodStart.After(now) && st.Cursor == "":
		return st.PeriodStart // this period's pass is done
	case st.LastRun.IsZero() || st.SliceLeft > 0:
		return now
	}
	return st.LastRun.Add(s.c.Every)
}

// RetryAfter is how long Loop waits after a slice failed (no disk could
// be read, the state file could not be written, Handle refused).
const RetryAfter = time.Hour

// Loop runs a slice whenever one is due (Next) until ctx is done, and
// returns ctx's error. done, if set, gets each slice's report and error
// (the report of a slice that failed covers the batches it finished). A
// failed slice is tried again after RetryAfter.
func (s *Scrubber) Loop(ctx context.Context, done func(*ScrubReport, error)) error {
	for {
		if err := s.c.Clock.SleepUntil(ctx, s.Next()); err != nil {
			return err
		}
		rep, err := s.Run(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if done != nil {
			done(rep, err)
		}
		if err != nil {
			if err := s.c.Clock.SleepUntil(ctx, s.c.Clock.Now().Add(RetryAfter)); err != nil {
				return err
			}
		}
	}
}

// Progress returns where the scrub stands, from the state file alone (no
// disk is read beyond it).
func (s *Scrubber) Progress() ScrubProgress {
	now := s.c.Clock.Now()
	return s.progress(s.load(now), now)
}

func (s *Scrubber) progress(st ScrubState, now time.Time) ScrubProgress {
	p := ScrubProgress{
		PeriodStart: st.PeriodStart, PeriodEnd: st.PeriodStart.Add(s.c.Period),
		Cursor: st.Cursor, Files: st.Files, Bytes: st.Bytes,
		TotalFiles: st.TotalFiles, TotalBytes: st.TotalBytes,
		LastRun: st.LastRun, Passes: st.Passes, LastPassEnd: st.LastPassEnd,
		Waiting: st.PeriodStart.After(now) && st.Cursor == "",
	}
	if p.Waiting {
		p.EstimatedEnd = st.LastPassEnd
		return p
	}
	left := max(st.TotalBytes-st.Bytes, 0)
	from := st.LastRun
	if from.IsZero() {
		from = now
	}
	per := s.budget(st, st.TotalBytes, left, from)
	runs := int64(1)
	if per > 0 {
		runs = max((left+per-1)/per, 1)
	}
	p.EstimatedEnd = from.Add(time.Duration(runs-1) * s.c.Every)
	if s.c.Rate > 0 {
		p.EstimatedEnd = p.EstimatedEnd.Add(time.Duration(float64(min(per, left)) / float64(s.c.Rate) * float64(time.Second)))
	}
	return p
}

// budget is how many bytes a slice starting at now reads: the day's share
// scaled to Every, or more when the period would otherwise end before
// every file left was checked.
func (s *Scrubber) budget(st ScrubState, total, left int64, now time.Time) int64 {
	share := int64(0)
	if s.c.Share != nil {
		share = s.c.Share(total)
	}
	if share <= 0 {
		share = ceilDiv(total, float64(s.c.Period)/float64(day))
	}
	share = ceilDiv(share, float64(day)/float64(s.c.Every))
	runsLeft := math.Ceil(float64(st.PeriodStart.Add(s.c.Period).Sub(now)) / float64(s.c.Every))
	need := ceilDiv(left, max(runsLeft, 1))
	return max(share, need, 1)
}

// ceilDiv returns n / d rounded up, for d > 0.
func ceilDiv(n int64, d float64) int64 {
	return int64(math.Ceil(float64(n) / d))
}

// sized is a sealed file and its size on the first disk that holds it.
type sized struct {
	store.SealedFile
	size int64
}

// Run scrubs one slice: the files after the cursor, up to the slice's
// budget, on every disk, and returns what it found (a ScrubReport as Scrub
// returns, covering the files of this slice; Files counts them). Findings
// are alerted as Scrub alerts them, once per slice. Run returns an empty
// report when this period's pass is already done. A cancelled ctx ends
// Run with the report of the batches done and ctx's error.
func (s *Scrubber) Run(ctx context.Context) (rep *ScrubReport, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	log := s.c.Options.logger()
	clock := s.c.Clock
	now := clock.Now()
	st := s.load(now)
	if st.PeriodStart.After(now) && st.Cursor == "" {
		log.Debug("scrub: this period's pass is done", "next_period", st.PeriodStart)
		return &ScrubReport{}, nil
	}
	sr := openScrub(ctx, s.c.Disks, s.c.Options)
	defer sr.close()
	dirs := sr.dirs(ctx)
	rep = &ScrubReport{Disks: slices.Clone(sr.base)}
	// One alert for the slice's findings, however it ends (they were
	// handed to Handle batch by batch already).
	defer func() {
		for i, b := range sr.base { // a disk may have failed mid-slice
			rep.Disks[i].Available, rep.Disks[i].Error = b.Available, b.Error
		}
		if rep.found() {
			sr.announce(context.WithoutCancel(ctx), rep)
		}
	}()
	if !sr.available() {
		return rep, errors.New("scrub: no disk could be read")
	}
	// The slice begins past the cursor it loaded (st.Cursor moves on).
	from := st.Cursor
	cur := store.SealedFile{Rel: from}
	cur.Kind, _ = store.KindOf(from) // load checked it
	curDir := path.Dir(from)
	// after returns the files of dir past the cursor, with their sizes;
	// nil for a directory wholly before it. One directory at a time: a
	// slice holds one shard's names, not the store's.
	after := func(dir string) []sized {
		if from != "" && compareDirs(dir, curDir) < 0 {
			return nil
		}
		var out []sized
		for _, f := range sr.listDir(ctx, dir) {
			if from == "" || compareFiles(f, cur) > 0 {
				out = append(out, sized{f, sr.size(f.Rel)})
			}
		}
		return out
	}
	// The sizes: the whole store, and what is left past the cursor.
	var total, left, leftFiles int64
	for _, d := range dirs {
		for _, f := range sr.listDir(ctx, d) {
			n := sr.size(f.Rel)
			total += n
			if from == "" || compareFiles(f, cur) > 0 {
				left += n
				leftFiles++
			}
		}
	}
	st.TotalFiles, st.TotalBytes = st.Files+leftFiles, st.Bytes+left
	budget := st.SliceLeft
	if budget <= 0 {
		budget = s.budget(st, total, left, now)
		st.LastRun = now
	}
	st.SliceLeft = budget
	log.Info("scrub slice", "cursor", st.Cursor, "files_left", leftFiles, "bytes_left", left, "budget", budget, "rate", s.c.Rate)

	var limits []*byteLimiter
	pace := func(context.Context, int, string) error { return nil }
	if s.c.Rate > 0 {
		limits = make([]*byteLimiter, len(s.c.Disks))
		for i := range limits {
			limits[i] = newByteLimiter(s.c.Rate, clock)
		}
		pace = func(ctx context.Context, i int, rel string) error {
			return limits[i].wait(ctx, sizeOn(s.c.Disks[i].Dir, rel))
		}
	}

	finished := true
walk:
	for _, d := range dirs {
		files := after(d)
		for j := 0; j < len(files); {
			if st.SliceLeft <= 0 {
				finished = false
				break walk
			}
			// A batch: at least one file, up to the bounds and the budget.
			end, n := j, int64(0)
			for end < len(files) && (end == j || (end-j < s.c.BatchFiles && n+files[end].size <= min(s.c.BatchBytes, st.SliceLeft))) {
				n += files[end].size
				end++
			}
			batch := make([]store.SealedFile, end-j)
			for k := range batch {
				batch[k] = files[j+k].SealedFile
			}
			br, err := sr.check(ctx, batch, pace)
			if err != nil {
				s.save(st)
				return rep, fmt.Errorf("scrub slice: %w", err)
			}
			if br.found() && s.c.Handle != nil {
				if err := s.c.Handle(ctx, br); err != nil {
					s.save(st)
					return rep, fmt.Errorf("scrub slice: findings not handed over: %w", err)
				}
			}
			rep.merge(br)
			st.Cursor = files[end-1].Rel
			st.Files += int64(end - j)
			st.Bytes += n
			st.SliceLeft = max(st.SliceLeft-n, 0)
			j = end
			if err := s.save(st); err != nil {
				return rep, err
			}
		}
	}
	if finished {
		// The pass is complete: the next period begins Period after this
		// one began, or now if that has passed.
		end := clock.Now()
		st.Passes++
		st.LastPassEnd = end
		next := st.PeriodStart.Add(s.c.Period)
		if next.Before(end) {
			next = end
		}
		log.Info("scrub: pass complete", "files", st.Files, "bytes", st.Bytes, "period_start", st.PeriodStart, "next_period", next)
		st.TotalFiles, st.TotalBytes = st.Files, st.Bytes
		st.PeriodStart, st.Cursor, st.Files, st.Bytes, st.SliceLeft = next, "", 0, 0, 0
	}
	st.SliceLeft = 0
	if err := s.save(st); err != nil {
		return rep, err
	}
	log.Info("scrub slice done", "summary", rep.Summary(), "progress", s.progress(st, clock.Now()).String())
	return rep, nil
}

// save writes the state file; a failure is returned and logged (the next
// Run repeats work, never skips it).
func (s *Scrubber) save(st ScrubState) error {
	if err := WriteScrubState(s.c.StatePath, st); err != nil {
		s.c.Options.logger().Error("scrub: state not saved", "path", s.c.StatePath, "error", err)
		return fmt.Errorf("scrub: %w", err)
	}
	return nil
}

// dirs returns the union of the available disks' directories of sealed
// files (store.SealedDirs), in compareDirs order. A disk whose listing
// fails is marked unavailable, with an alert.
func (sr *scrubRun) dirs(ctx context.Context) []string {
	var out []string
	for i, s := range sr.stores {
		if s == nil {
			continue
		}
		ds, err := store.SealedDirs(sr.disks[i].Dir)
		if err != nil {
			sr.fail(ctx, i, err)
			continue
		}
		for _, d := range ds {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	slices.SortFunc(out, compareDirs)
	return out
}

// listDir returns the union of the sealed files of dir on the available
// disks, in compareFiles order. A disk whose listing fails is marked
// unavailable, with an alert.
func (sr *scrubRun) listDir(ctx context.Context, dir string) []store.SealedFile {
	var out []store.SealedFile
	for i, s := range sr.stores {
		if s == nil {
			continue
		}
		fs, err := store.ListSealedDir(sr.disks[i].Dir, dir)
		if err != nil {
			sr.fail(ctx, i, err)
			continue
		}
		out = append(out, fs...)
	}
	slices.SortFunc(out, compareFiles)
	return slices.CompactFunc(out, func(a, b store.SealedFile) bool { return a.Rel == b.Rel })
}

// fail marks disk i unavailable for the rest of the run.
func (sr *scrubRun) fail(ctx context.Context, i int, err error) {
	sr.base[i].Available = false
	sr.base[i].Error = err.Error()
	sr.stores[i] = nil
	sr.o.logger().Error("scrub: disk not available", "disk", sr.disks[i].Name, "error", err)
	sr.o.alert(ctx, AlertDiskError, sr.disks[i].Name, "scrub: "+err.Error())
}

// compareDirs orders directories of sealed files as compareFiles orders
// their files.
func compareDirs(a, b string) int {
	if d := dirRank(a) - dirRank(b); d != 0 {
		return d
	}
	return strings.Compare(a, b)
}

// dirRank is kindRank of the files a directory of store.SealedDirs holds.
func dirRank(d string) int {
	switch top, _, _ := strings.Cut(d, "/"); top {
	case "packs":
		return kindRank(store.KindPack)
	case "snapshots":
		return kindRank(store.KindManifest)
	case "retention":
		return kindRank(store.KindRetention)
	case "receipts":
		return kindRank(store.KindReceipt)
	}
	return kindRank(store.KindRecovery)
}

// size is rel's size on the first available disk that holds it.
func (sr *scrubRun) size(rel string) int64 {
	for i, s := range sr.stores {
		if s == nil {
			continue
		}
		if n := sizeOn(sr.disks[i].Dir, rel); n > 0 {
			return n
		}
	}
	return 0
}

// sizeOn is the size of the regular file rel under dir, 0 if it is not one.
func sizeOn(dir, rel string) int64 {
	fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil || !fi.Mode().IsRegular() {
		return 0
	}
	return fi.Size()
}

// merge adds a batch's report to r.
func (r *ScrubReport) merge(b *ScrubReport) {
	r.Files += b.Files
	for i := range b.Disks {
		if i >= len(r.Disks) {
			r.Disks = append(r.Disks, b.Disks[i])
			continue
		}
		d := &r.Disks[i]
		d.Good += b.Disks[i].Good
		d.Damaged += b.Disks[i].Damaged
		d.Missing += b.Disks[i].Missing
		d.Bytes += b.Disks[i].Bytes
	}
	r.Fixes = append(r.Fixes, b.Fixes...)
	r.Unrepairable = append(r.Unrepairable, b.Unrepairable...)
	r.Conflicts = append(r.Conflicts, b.Conflicts...)
	r.Unsealed = append(r.Unsealed, b.Unsealed...)
}

// byteLimiter holds one disk's reads under a rate: before a file is read
// its size is reserved from a token bucket of one second's bytes, and the
// reader sleeps (on the Clock) until the reservation is due. So the bytes
// read by time t since the start are at most rate * t + rate.
type byteLimiter struct {
	lim   *rate.Limiter
	clock Clock
	burst int64
}

func newByteLimiter(bytesPerSec int64, c Clock) *byteLimiter {
	burst := int64(min(bytesPerSec, math.MaxInt32))
	l := rate.NewLimiter(rate.Limit(bytesPerSec), int(burst))
	// Start empty: the first second's bytes wait like the rest, so the
	// bound holds from the first byte.
	l.ReserveN(c.Now(), int(burst))
	return &byteLimiter{lim: l, clock: c, burst: burst}
}

// wait reserves n bytes, in pieces no larger than the bucket, sleeping
// until each is due.
func (l *byteLimiter) wait(ctx context.Context, n int64) error {
	for n > 0 {
		k := min(n, l.burst)
		now := l.clock.Now()
		r := l.lim.ReserveN(now, int(k))
		if !r.OK() {
			return fmt.Errorf("rate limiter refused %d bytes", k)
		}
		if err := l.clock.SleepUntil(ctx, now.Add(r.DelayFrom(now))); err != nil {
			r.CancelAt(l.clock.Now())
			return err
		}
		n -= k
	}
	return nil
}

// ScrubProgress is where a Scrubber stands in its period: what the worker
// sends PID 1 for status.
type ScrubProgress struct {
	PeriodStart time.Time // when this period began (or, Waiting, when the next begins)
	PeriodEnd   time.Time // PeriodStart + period: every file is due by then
	Cursor      string    // the last file checked this period ("" none yet)
	Files       int64     // files checked this period
	Bytes       int64     // bytes checked this period
	TotalFiles  int64     // files in the store at the last slice
	TotalBytes  int64     // their bytes
	LastRun     time.Time // when the last slice began
	Passes      int64     // complete passes so far
	LastPassEnd time.Time // when the last complete pass ended
	// EstimatedEnd is when this period's pass should be complete at the
	// share and rate configured (Waiting: when the last one was).
	EstimatedEnd time.Time
	// Waiting: this period's pass is complete; the next period begins at
	// PeriodStart.
	Waiting bool
}

// Percent is the share of this period's bytes checked so far.
func (p ScrubProgress) Percent() float64 {
	if p.Waiting {
		return 100
	}
	if p.TotalBytes <= 0 {
		return 0
	}
	return 100 * float64(p.Bytes) / float64(p.TotalBytes)
}

// Behind reports whether the pass is expected to end after its period.
func (p ScrubProgress) Behind() bool {
	return !p.Waiting && !p.EstimatedEnd.IsZero() && p.EstimatedEnd.After(p.PeriodEnd)
}

// String is one line for status.
func (p ScrubProgress) String() string {
	const ts = "2006-01-02 15:04Z"
	if p.Waiting {
		return fmt.Sprintf("scrub: pass %d complete %s (%d files, %s); next period begins %s",
			p.Passes, p.LastPassEnd.UTC().Format(ts), p.TotalFiles, bytesString(p.TotalBytes), p.PeriodStart.UTC().Format(ts))
	}
	if p.LastRun.IsZero() {
		return "scrub: not started yet"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "scrub: %.1f%% of this period's pass (%d of %d files, %s of %s) since %s, due %s, expected %s",
		p.Percent(), p.Files, p.TotalFiles, bytesString(p.Bytes), bytesString(p.TotalBytes),
		p.PeriodStart.UTC().Format(ts), p.PeriodEnd.UTC().Format(ts), p.EstimatedEnd.UTC().Format(ts))
	if p.Behind() {
		b.WriteString(" (BEHIND: raise scrub_rate or scrub_share)")
	}
	if p.Cursor != "" {
		fmt.Fprintf(&b, "; at %s", p.Cursor)
	}
	return b.String()
}

// bytesString is n in binary units, e.g. "1.5 GiB".
func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n), 0
	for f >= unit && u < 5 {
		f /= unit
		u++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[u-1])
}
