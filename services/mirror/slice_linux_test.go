package mirror

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// fakeClock is a Clock whose time moves only when a sleeper waits: a
// SleepUntil(t) sets the time to t if that is later. Sleepers on several
// goroutines (one per disk) so share one timeline. cancelAt, if set,
// cancels the scrub at the n-th sleep, as a reboot would.
type fakeClock struct {
	mu       sync.Mutex
	t        time.Time
	sleeps   int
	cancelAt int
	cancel   context.CancelFunc
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	c.sleeps++
	if c.cancelAt > 0 && c.sleeps == c.cancelAt {
		c.cancel()
	}
	if err := ctx.Err(); err != nil {
		c.mu.Unlock()
		return err
	}
	if t.After(c.t) {
		c.t = t
	}
	c.mu.Unlock()
	return nil
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// unsyncedPair is the primary with three snapshots and a mirror disk B
// that never got a Sync: every file a scrub checks is missing on B, so
// the Fixes of each report name exactly the files that scrub checked. It
// returns those files in scrub order.
func unsyncedPair(t *testing.T) (*env, []store.SealedFile) {
	t.Helper()
	e := newEnv(t, "")
	files, err := store.ListSealed(e.a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(files, compareFiles)
	// store.InitMirror gave B the recovery blob: a file on both disks
	// makes no Fix, so it is left out of what the tests can observe.
	files = slices.DeleteFunc(files, func(f store.SealedFile) bool { return sizeOn(e.bDir, f.Rel) > 0 })
	if len(files) < 10 {
		t.Fatalf("only %d files; the test wants more slices", len(files))
	}
	return e, files
}

func checkedFiles(rep *ScrubReport) []string {
	var rels []string
	for _, f := range rep.Fixes {
		rels = append(rels, f.Rel)
	}
	return rels
}

func maxFileSize(dir string, files []store.SealedFile) int64 {
	var n int64
	for _, f := range files {
		n = max(n, sizeOn(dir, f.Rel))
	}
	return n
}

// storeBytes is the bytes of every sealed file of the store at dir.
func storeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	files, err := store.ListSealed(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		n += sizeOn(dir, f.Rel)
	}
	return n
}

// TestScrubberResumesAndChecksEachFileOncePerPeriod: a slice cancelled
// half-way (a reboot) and started again resumes at its cursor, not from
// zero; daily slices of a third of the store check every file exactly
// once; then nothing until the next period (7 days after the first
// began), which checks every file once again. Scrub (one go) had no
// cursor: an interrupted scrub began again at the first file.
func TestScrubberResumesAndChecksEachFileOncePerPeriod(t *testing.T) {
	e, files := unsyncedPair(t)
	total := storeBytes(t, e.a.Dir())
	clock := newFakeClock()
	statePath := filepath.Join(t.TempDir(), "scrub.state")
	var handled []string
	s, err := NewScrubber(ScrubberConfig{
		Disks: e.disks(), Options: e.opts, StatePath: statePath,
		Period: 7 * day, Rate: 64 << 20, Clock: clock, BatchFiles: 1,
		Share: func(total int64) int64 { return (total + 2) / 3 },
		Handle: func(_ context.Context, r *ScrubReport) error {
			handled = append(handled, checkedFiles(r)...)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Next().Equal(clock.Now()) {
		t.Errorf("a scrubber that never ran is due at %s, want now", s.Next())
	}

	// The first slice is cut short: the context is cancelled before the
	// second read of disk A (B lacks every file: nothing to pace), as a
	// reboot would.
	ctx, cancel := context.WithCancel(context.Background())
	clock.cancel, clock.cancelAt = cancel, 2
	rep, err := s.Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled slice: %v", err)
	}
	var seen []string
	seen = append(seen, checkedFiles(rep)...)
	st, err := ReadScrubState(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files == 0 || st.Cursor == "" || int(st.Files) != len(seen) {
		t.Fatalf("after the cut: state %+v, %d files reported; want the cursor past the batches done", st, len(seen))
	}
	if st.SliceLeft == 0 || !s.Next().Equal(clock.Now()) {
		t.Errorf("a slice cut short is due again at once: slice_left %d, next %s", st.SliceLeft, s.Next())
	}
	clock.cancelAt = 0

	// Resume: the rest of the day's share, from the cursor.
	rep, err = s.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := checkedFiles(rep); len(got) == 0 || got[0] == files[0].Rel || slices.Contains(seen, got[0]) {
		t.Fatalf("the resumed slice began at %v; want the file after %s", got, st.Cursor)
	}
	seen = append(seen, checkedFiles(rep)...)
	day1, _ := ReadScrubState(statePath)
	share := (total + 2) / 3
	if maxFile := maxFileSize(e.a.Dir(), files); day1.Bytes < share || day1.Bytes > share+maxFile {
		t.Errorf("day 1 read %d bytes; want the share %d (store %d / 3) plus at most one file (%d)", day1.Bytes, share, total, maxFile)
	}

	// Daily slices until the pass is complete.
	slicesRun := 1
	for {
		if next := s.Next(); !next.Equal(day1.LastRun.Add(time.Duration(slicesRun) * day)) {
			t.Fatalf("slice %d due at %s, want a day after the last", slicesRun, next)
		}
		clock.advance(s.Next().Sub(clock.Now()))
		rep, err := s.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		slicesRun++
		seen = append(seen, checkedFiles(rep)...)
		if s.Progress().Waiting {
			break
		}
		if slicesRun > 4 {
			t.Fatalf("no complete pass after %d daily slices of a third of the store", slicesRun)
		}
	}
	want := make([]string, len(files))
	for i, f := range files {
		want[i] = f.Rel
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("the period checked\n%q\nwant every file once, in order\n%q", seen, want)
	}
	if !slices.Equal(handled, want) {
		t.Errorf("Handle got %d findings, want one per file (%d)", len(handled), len(want))
	}
	p := s.Progress()
	if p.Passes != 1 || !p.PeriodStart.Equal(newFakeClock().t.Add(7*day)) || p.TotalFiles != int64(len(files))+1 /* the recovery blob */ {
		t.Errorf("after the pass: %+v", p)
	}
	t.Logf("%d slices; %s", slicesRun, p)

	// Until the next period nothing is read.
	clock.advance(s.Next().Sub(clock.Now()) - time.Hour)
	rep, err = s.Run(context.Background())
	if err != nil || len(rep.Fixes) != 0 {
		t.Fatalf("a slice before the next period: %v %+v", err, rep)
	}
	// The next period checks every file again.
	seen = nil
	for range 8 {
		clock.advance(max(s.Next().Sub(clock.Now()), 0))
		rep, err := s.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, checkedFiles(rep)...)
		if s.Progress().Waiting {
			break
		}
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("the second period checked %d files, want all %d once", len(seen), len(want))
	}
}

// TestScrubberCatchesUp: with days missed (the box off), the slices left
// read more, so the pass still ends within its period.
func TestScrubberCatchesUp(t *testing.T) {
	e, files := unsyncedPair(t)
	clock := newFakeClock()
	s, err := NewScrubber(ScrubberConfig{Disks: e.disks(), Options: e.opts, StatePath: filepath.Join(t.TempDir(), "st"),
		Period: 7 * day, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The default share: the store / 7 days, plus at most one file.
	total := storeBytes(t, e.a.Dir())
	share := (total + 6) / 7
	if p := s.Progress(); p.Bytes < share || p.Bytes > share+maxFileSize(e.a.Dir(), files) || p.TotalBytes != total {
		t.Errorf("day 1 read %d of %d bytes; want the share %d (a seventh) plus at most one file", p.Bytes, p.TotalBytes, share)
	}
	clock.advance(5 * day) // off for four days
	n := 0
	for !s.Progress().Waiting {
		clock.advance(max(s.Next().Sub(clock.Now()), 0))
		if _, err := s.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if p := s.Progress(); p.LastPassEnd.After(newFakeClock().t.Add(7*day)) || n > 2 {
		t.Errorf("pass ended %s after %d more slices; want within the period (%d files)", p.LastPassEnd, n, len(files))
	}
}

// TestScrubberRateLimit: each disk's reads stay under Rate on the fake
// clock (bytes by time t <= Rate*t + one second's bytes), the disks are
// limited each on its own, and the limit does not slow a scrub more than
// it must. Without a limit the fake clock does not move.
func TestScrubberRateLimit(t *testing.T) {
	e, _ := unsyncedPair(t)
	e.sync(t)
	files, err := store.ListSealed(e.a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	total := storeBytes(t, e.a.Dir())
	for _, tt := range []struct {
		name string
		rate int64
	}{{"unlimited", 0}, {"1MiB/s", 1 << 20}, {"4MiB/s", 4 << 20}} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			start := clock.Now()
			s, err := NewScrubber(ScrubberConfig{Disks: e.disks(), Options: e.opts, StatePath: filepath.Join(t.TempDir(), "st"),
				Period: 7 * day, Rate: tt.rate, Clock: clock, Share: func(int64) int64 { return 1 << 40 }})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := s.Run(context.Background())
			if err != nil || !rep.OK() || rep.Files != len(files) {
				t.Fatalf("scrub: %v %s", err, rep.Summary())
			}
			elapsed := clock.Now().Sub(start).Seconds()
			for _, d := range rep.Disks {
				if d.Bytes != total {
					t.Errorf("disk %s read %d bytes, want %d", d.Name, d.Bytes, total)
				}
			}
			if tt.rate == 0 {
				if elapsed != 0 {
					t.Errorf("unlimited scrub slept %.1fs", elapsed)
				}
				return
			}
			r := float64(tt.rate)
			if float64(total) > r*elapsed+r {
				t.Errorf("each disk read %d bytes in %.1fs: over %d bytes/s", total, elapsed, tt.rate)
			}
			// The disks share the fake timeline, so one disk's sleep looks
			// to the other like time it spent reading, and a token bucket
			// credits at most a second of that: the scrub may take a little
			// longer than total/rate (TestByteLimiterBound checks the
			// limiter alone to the hundredth of a second), but with one
			// limit for both disks it would take twice as long.
			if elapsed > 1.5*float64(total)/r+1 {
				t.Errorf("%d bytes per disk took %.1fs at %d bytes/s; the disks are limited one by one, want about %.1fs", total, elapsed, tt.rate, float64(total)/r)
			}
			t.Logf("%d bytes per disk, two disks, %.1fs on the fake clock at %s", total, elapsed, tt.name)
		})
	}
}

// TestByteLimiterBound: at every point the bytes let through by time t
// are at most rate*t + one second's bytes, whatever the read sizes (files
// larger than the bucket too), and the limiter is not slower than it must
// be.
func TestByteLimiterBound(t *testing.T) {
	const r = 1 << 20
	for _, tt := range []struct {
		name  string
		sizes []int64
	}{
		{"small reads", slices.Repeat([]int64{4096}, 1000)},
		{"packs larger than the bucket", []int64{16 << 20, 16 << 20, 1, 3 << 20}},
		{"mixed", []int64{0, 10, 5 << 20, 100, 1 << 20, 0, 7 << 20}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			start := clock.Now()
			l := newByteLimiter(r, clock)
			var sum int64
			for _, n := range tt.sizes {
				if err := l.wait(context.Background(), n); err != nil {
					t.Fatal(err)
				}
				sum += n // read now, at clock.Now()
				el := clock.Now().Sub(start).Seconds()
				if float64(sum) > r*el+r {
					t.Fatalf("%d bytes by %.2fs: over %d bytes/s", sum, el, r)
				}
			}
			if el := clock.Now().Sub(start).Seconds(); el > float64(sum)/r+0.01 {
				t.Errorf("%d bytes took %.2fs at %d bytes/s", sum, el, r)
			}
		})
	}
}

// TestScrubStateHostile: a state file that is a symlink, a FIFO (must not
// block), too large, or not what a Scrubber writes is refused; the
// Scrubber then starts its period again from the first file, so a bad
// file makes it check more, never less.
func TestScrubStateHostile(t *testing.T) {
	dir := t.TempDir()
	good := ScrubState{Version: 1, PeriodStart: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Cursor: "snapshots/x.snap"}
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte(`{"version":1}`), 0o600)
	tests := []struct {
		name string
		make func(p string) error
	}{
		{"symlink", func(p string) error { return os.Symlink(target, p) }},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }},
		{"too large", func(p string) error { return os.WriteFile(p, []byte(strings.Repeat(" ", maxScrubState+1)), 0o600) }},
		{"not json", func(p string) error { return os.WriteFile(p, []byte("cursor=packs/00"), 0o600) }},
		{"unknown field", func(p string) error {
			return os.WriteFile(p, []byte(`{"version":1,"period_start":"2026-12-01T00:00:00Z","skip":true}`), 0o600)
		}},
		{"two objects", func(p string) error {
			return os.WriteFile(p, []byte(`{"version":1,"period_start":"2026-12-01T00:00:00Z"}{}`), 0o600)
		}},
		{"version", func(p string) error {
			return os.WriteFile(p, []byte(`{"version":2,"period_start":"2026-12-01T00:00:00Z"}`), 0o600)
		}},
		{"no period", func(p string) error { return os.WriteFile(p, []byte(`{"version":1}`), 0o600) }},
		{"negative", func(p string) error {
			return os.WriteFile(p, []byte(`{"version":1,"period_start":"2026-12-01T00:00:00Z","files":-1}`), 0o600)
		}},
		{"cursor outside the layout", func(p string) error {
			return os.WriteFile(p, []byte(`{"version":1,"period_start":"2026-12-01T00:00:00Z","cursor":"../../etc/passwd"}`), 0o600)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "scrub.state")
			if err := tt.make(p); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { _, err := ReadScrubState(p); done <- err }()
			select {
			case err := <-done:
				if !errors.Is(err, ErrBadScrubState) {
					t.Errorf("read: %v; want ErrBadScrubState", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("reading the state file blocked")
			}
		})
	}
	// What WriteScrubState writes reads back.
	p := filepath.Join(dir, "scrub.state")
	good.Cursor = "packs/ab/ab" + strings.Repeat("0", 62)
	if err := WriteScrubState(p, good); err != nil {
		t.Fatal(err)
	}
	got, err := ReadScrubState(p)
	if err != nil || !got.PeriodStart.Equal(good.PeriodStart) || got.Cursor != good.Cursor {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// A symlink planted where the state goes is replaced, never written
	// through.
	p2 := filepath.Join(dir, "linked.state")
	os.Symlink(target, p2)
	if err := WriteScrubState(p2, good); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != `{"version":1}` {
		t.Errorf("the symlink's target was written: %q", b)
	}
}

// TestScrubberBadStateRestartsPeriod: with a damaged state file the
// Scrubber begins at the first file (checks more, never less).
func TestScrubberBadStateRestartsPeriod(t *testing.T) {
	e, files := unsyncedPair(t)
	clock := newFakeClock()
	p := filepath.Join(t.TempDir(), "scrub.state")
	os.WriteFile(p, []byte(`{"version":1,"period_start":"2026-11-30T00:00:00Z","cursor":"packs/zz","files":5}`), 0o600)
	s, err := NewScrubber(ScrubberConfig{Disks: e.disks(), Options: e.opts, StatePath: p, Period: 7 * day, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := checkedFiles(rep); len(got) == 0 || got[0] != files[0].Rel {
		t.Fatalf("after a bad state the slice checked %v; want it to begin at %s", got, files[0].Rel)
	}
	if st, _ := ReadScrubState(p); !st.PeriodStart.Equal(clock.Now()) {
		t.Errorf("period start %s, want now", st.PeriodStart)
	}
}

// TestScrubberForgedState: a well-formed cursor forged far ahead skips
// files for one period at most: the pass ends at once and the next
// period, one period later, checks every file. A period start forged far
// in the future does not stop the scrub.
func TestScrubberForgedState(t *testing.T) {
	e, files := unsyncedPair(t)
	clock := newFakeClock()
	p := filepath.Join(t.TempDir(), "scrub.state")
	cfg := ScrubberConfig{Disks: e.disks(), Options: e.opts, StatePath: p, Period: 7 * day, Clock: clock}
	s, err := NewScrubber(cfg)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("cursor far ahead", func(t *testing.T) {
		if err := WriteScrubState(p, ScrubState{Version: 1, PeriodStart: clock.Now(), Cursor: "recovery/wrapped-key"}); err != nil {
			t.Fatal(err)
		}
		forged := clock.Now()
		var seen []string
		for clock.Now().Before(forged.Add(2 * 7 * day)) {
			rep, err := s.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			seen = append(seen, checkedFiles(rep)...)
			clock.advance(day)
		}
		for _, f := range files {
			if !slices.Contains(seen, f.Rel) {
				t.Errorf("%s not checked within two periods of the forged cursor", f.Rel)
			}
		}
		if t.Failed() {
			t.Logf("checked %q; now %s", seen, s.Progress())
		}
	})

	t.Run("period start in the future", func(t *testing.T) {
		if err := WriteScrubState(p, ScrubState{Version: 1, PeriodStart: clock.Now().AddDate(70, 0, 0), LastRun: clock.Now().AddDate(70, 0, 0)}); err != nil {
			t.Fatal(err)
		}
		if next := s.Next(); next.After(clock.Now()) {
			t.Errorf("next slice %s; want now", next)
		}
		rep, err := s.Run(context.Background())
		if err != nil || len(checkedFiles(rep)) == 0 {
			t.Fatalf("a slice after a forged future period start checked nothing: %v", err)
		}
	})
}

// TestScrubberHandleError: findings not handed over stop the slice before
// the cursor passes them; the next slice checks them again.
func TestScrubberHandleError(t *testing.T) {
	e, files := unsyncedPair(t)
	clock := newFakeClock()
	fail := true
	var got []string
	s, err := NewScrubber(ScrubberConfig{Disks: e.disks(), Options: e.opts, StatePath: filepath.Join(t.TempDir(), "st"),
		Period: 7 * day, Clock: clock, BatchFiles: 2,
		Handle: func(_ context.Context, r *ScrubReport) error {
			if fail {
				return errors.New("PID 1 did not answer")
			}
			got = append(got, checkedFiles(r)...)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "PID 1 did not answer") {
		t.Fatalf("run: %v", err)
	}
	if p := s.Progress(); p.Files != 0 || p.Cursor != "" {
		t.Fatalf("the cursor moved past findings not handed over: %+v", p)
	}
	fail = false
	if _, err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0] != files[0].Rel {
		t.Errorf("the findings of the first batch were not handed over again: %v", got)
	}
}

func TestScrubProgressString(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		p    ScrubProgress
		want []string
	}{
		{"never", ScrubProgress{PeriodStart: t0, PeriodEnd: t0.Add(7 * day)}, []string{"not started"}},
		{"running", ScrubProgress{PeriodStart: t0, PeriodEnd: t0.Add(7 * day), LastRun: t0.Add(2 * day), Cursor: "packs/ab/abc",
			Files: 250, TotalFiles: 1000, Bytes: 3 << 40, TotalBytes: 12 << 40, EstimatedEnd: t0.Add(6 * day)},
			[]string{"25.0%", "250 of 1000 files", "3.0 TiB of 12.0 TiB", "since 2026-12-01 00:00Z", "due 2026-12-08", "expected 2026-12-07", "at packs/ab/abc"}},
		{"behind", ScrubProgress{PeriodStart: t0, PeriodEnd: t0.Add(7 * day), LastRun: t0, TotalBytes: 1, EstimatedEnd: t0.Add(9 * day)},
			[]string{"BEHIND", "scrub_rate"}},
		{"waiting", ScrubProgress{PeriodStart: t0.Add(7 * day), Waiting: true, Passes: 3, LastPassEnd: t0.Add(5 * day), TotalFiles: 9, TotalBytes: 1536},
			[]string{"pass 3 complete 2026-12-06", "9 files, 1.5 KiB", "next period begins 2026-12-08"}},
	}
	for _, tt := range tests {
		s := tt.p.String()
		if strings.Contains(s, "\n") {
			t.Errorf("%s: %q is more than one line", tt.name, s)
		}
		for _, w := range tt.want {
			if !strings.Contains(s, w) {
				t.Errorf("%s: %q lacks %q", tt.name, s, w)
			}
		}
	}
}

// TestDocScrubStateTable: the state file tables of docs/mirror.md and
// scrubstate.go are the same and name ScrubState's JSON fields, in order.
func TestDocScrubStateTable(t *testing.T) {
	var want []string
	rt := reflect.TypeFor[ScrubState]()
	for i := range rt.NumField() {
		want = append(want, rt.Field(i).Tag.Get("json"))
	}
	fields := func(text, header string) ([]string, string) {
		i := strings.Index(text, header)
		if i < 0 {
			t.Fatalf("no table with header %q", header)
		}
		var names []string
		var rows []string
		for _, line := range strings.Split(text[i:], "\n")[2:] {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "//"))
			if !strings.HasPrefix(line, "|") {
				break
			}
			rows = append(rows, line)
			if name := strings.TrimSpace(strings.Split(line, "|")[1]); name != "" {
				names = append(names, name)
			}
		}
		return names, strings.Join(rows, "\n")
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "mirror.md"))
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile("scrubstate.go")
	if err != nil {
		t.Fatal(err)
	}
	const header = "| field         | type          | meaning"
	docNames, docRows := fields(string(doc), header)
	_, codeRows := fields(string(code), header)
	if !slices.Equal(docNames, want) {
		t.Errorf("docs/mirror.md's state table names %q; ScrubState has %q", docNames, want)
	}
	if docRows != codeRows {
		t.Errorf("the state tables of docs/mirror.md and scrubstate.go differ:\n%s\n---\n%s", docRows, codeRows)
	}
}

// TestScrubberLoop: the loop the worker runs checks every file once per
// period, period after period, on the fake clock, and never spins (each
// slice is a day apart, or waits for the next period).
func TestScrubberLoop(t *testing.T) {
	e, files := unsyncedPair(t)
	clock := newFakeClock()
	start := clock.Now()
	s, err := NewScrubber(ScrubberConfig{Disks: e.disks(), Options: e.opts, StatePath: filepath.Join(t.TempDir(), "st"),
		Period: 7 * day, Rate: 8 << 20, Clock: clock, Share: func(total int64) int64 { return (total + 1) / 2 }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	count := map[string]int{}
	runs := 0
	err = s.Loop(ctx, func(rep *ScrubReport, err error) {
		if err != nil {
			t.Errorf("slice: %v", err)
		}
		runs++
		for _, rel := range checkedFiles(rep) {
			count[rel]++
		}
		if s.Progress().Passes == 3 || runs > 20 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("loop: %v", err)
	}
	for _, f := range files {
		if count[f.Rel] != 3 {
			t.Errorf("%s checked %d times in three periods", f.Rel, count[f.Rel])
		}
	}
	// Two slices a period (half the store each), three periods: the third
	// pass ends in the third period's second day.
	if el := clock.Now().Sub(start); runs != 6 || el < 15*day || el > 16*day {
		t.Errorf("%d slices over %s; want 6 over 15 days", runs, el)
	}
}

// TestScrubberFilesSealedMidPeriod: files sealed while a pass is under
// way are checked this period when they sort after the cursor, and in the
// next period otherwise; none is checked twice in a period or lost.
func TestScrubberFilesSealedMidPeriod(t *testing.T) {
	e, files := unsyncedPair(t)
	clock := newFakeClock()
	s, err := NewScrubber(ScrubberConfig{Disks: e.disks(), Options: e.opts, StatePath: filepath.Join(t.TempDir(), "st"),
		Period: 7 * day, Clock: clock, BatchFiles: 1, Share: func(total int64) int64 { return (total + 3) / 4 }})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	run := func() {
		t.Helper()
		clock.advance(max(s.Next().Sub(clock.Now()), 0))
		rep, err := s.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, rel := range checkedFiles(rep) {
			count[rel]++
		}
	}
	run()
	cursor := s.Progress().Cursor
	e.put(t, 3) // new packs, a manifest, a receipt
	all, err := store.ListSealed(e.a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var added []store.SealedFile
	for _, f := range all {
		if !slices.ContainsFunc(files, func(g store.SealedFile) bool { return g.Rel == f.Rel }) && sizeOn(e.bDir, f.Rel) == 0 {
			added = append(added, f)
		}
	}
	if len(added) < 3 {
		t.Fatalf("the new snapshot added %d files", len(added))
	}
	for !s.Progress().Waiting {
		run()
	}
	k, _ := store.KindOf(cursor)
	behind := 0
	for _, f := range added {
		want := 1
		if compareFiles(f, store.SealedFile{Rel: cursor, Kind: k}) <= 0 {
			want = 0 // behind the cursor: next period
			behind++
		}
		if count[f.Rel] != want {
			t.Errorf("%s (cursor was %s) checked %d times in the first period, want %d", f.Rel, cursor, count[f.Rel], want)
		}
	}
	for _, f := range files {
		if count[f.Rel] != 1 {
			t.Errorf("%s checked %d times in the first period", f.Rel, count[f.Rel])
		}
	}
	clear(count)
	run()
	for !s.Progress().Waiting {
		run()
	}
	for _, f := range append(files, added...) {
		if count[f.Rel] != 1 {
			t.Errorf("%s checked %d times in the second period", f.Rel, count[f.Rel])
		}
	}
	t.Logf("%d files added mid-period, %d of them behind the cursor", len(added), behind)
}
