package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// hostileID is a snapshot ID no test snapshot has.
const hostileID = "20250101T000000Z-0badf00d"

// hostileEntries are entries the worker (uid 1000, owner of every store
// file) can plant in the store, each named like something the store reads.
var hostileEntries = []struct {
	name  string
	rel   string // path the entry is planted at, relative to the store
	plant func(path, store string) error
}{
	{"FIFO as a journal", wipDir + "/" + hostileID + ".journal", func(p, _ string) error { return unix.Mkfifo(p, 0o600) }},
	{"FIFO as the index cache", indexDir + "/index", func(p, _ string) error { return replaceWith(p, func() error { return unix.Mkfifo(p, 0o600) }) }},
	{"index cache as a symlink to /dev/zero", indexDir + "/index", func(p, _ string) error { return replaceWith(p, func() error { return os.Symlink("/dev/zero", p) }) }},
	{"sparse 1 TiB retention record", retentionDir + "/" + hostileID + ".1.ext", func(p, _ string) error { return sparse(p, 1<<40) }},
	{"symlink as a manifest", snapshotsDir + "/" + hostileID + ".snap", func(p, _ string) error { return os.Symlink("/dev/zero", p) }},
	{"FIFO as a manifest", snapshotsDir + "/" + hostileID + ".snap", func(p, _ string) error { return unix.Mkfifo(p, 0o600) }},
	{"garbage as a manifest", snapshotsDir + "/" + hostileID + ".snap", func(p, _ string) error {
		return os.WriteFile(p, []byte("HFSNAP01garbage garbage garbage garbage"), 0o600)
	}},
	{"sparse 1 TiB manifest", snapshotsDir + "/" + hostileID + ".snap", func(p, _ string) error { return sparse(p, 1<<40) }},
	{"hard link of the lock as a manifest", snapshotsDir + "/" + hostileID + ".snap", func(p, st string) error { return os.Link(filepath.Join(st, lockName), p) }},
	{"FIFO as a pack", packsDir + "/00/00" + strings.Repeat("0", 62), func(p, _ string) error { return mkdirFIFO(p) }},
	{"FIFO as a retention record", retentionDir + "/" + hostileID + ".2.ext", func(p, _ string) error { return unix.Mkfifo(p, 0o600) }},
	{"FIFO as a receipt", receiptsDir + "/" + hostileID + ".receipt", func(p, _ string) error { return unix.Mkfifo(p, 0o600) }},
	{"directory as a journal", wipDir + "/" + hostileID + ".journal", func(p, _ string) error { return os.Mkdir(p, 0o700) }},
	{"symlink as recovery/", recoveryDir, func(p, _ string) error { return os.Symlink(os.TempDir(), p) }},
	{"FIFO as state/clock.log's neighbour", stateDir + "/clock.log.junk", func(p, _ string) error { return unix.Mkfifo(p, 0o600) }},
}

func replaceWith(p string, mk func() error) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return mk()
}

func sparse(p string, n int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Truncate(n)
}

func mkdirFIFO(p string) error {
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return unix.Mkfifo(p, 0o600)
}

// withDeadline runs f and fails the test if it has not returned in d: a
// hang is a failure, not a stuck test run.
func withDeadline(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s hangs (still running after %s)", what, d)
	}
}

// Every entry the worker can plant leaves the writer's open, the reader's
// open, prune and verify working, every snapshot readable, and is named by
// verify.
func TestHostileEntriesNeverStopTheStore(t *testing.T) {
	for _, tc := range hostileEntries {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			clk := &fakeClock{t: t0}
			s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{Clock: clk})
			objs := map[string][]byte{"a": randBytes(1, 700<<10), "b": randBytes(2, 1<<10)}
			m := putObjects(t, s, "src", t0.Add(365*24*time.Hour), objs)
			dir := s.Dir()
			if err := tc.plant(filepath.Join(dir, tc.rel), dir); err != nil {
				t.Fatalf("plant: %v", err)
			}
			s.Close()
			var rw *Store
			withDeadline(t, 20*time.Second, "open as writer", func() (err error) {
				rw, err = Open(t.Context(), dir, testKey, Options{Clock: clk, Logger: testLogger(t)})
				return err
			})
			t.Cleanup(func() { rw.Close() })
			withDeadline(t, 20*time.Second, "read back", func() error {
				checkSnapshot(t, rw, m.ID, objs)
				return nil
			})
			withDeadline(t, 20*time.Second, "open read-only", func() error {
				ro, err := Open(t.Context(), dir, testKey, Options{ReadOnly: true, Logger: testLogger(t)})
				if err != nil {
					return err
				}
				defer ro.Close()
				_, err = ro.Snapshots()
				return err
			})
			withDeadline(t, 60*time.Second, "verify", func() error {
				r, err := rw.Verify(t.Context())
				if err != nil {
					return err
				}
				for _, p := range r.Problems {
					if p.Path == tc.rel {
						return nil
					}
				}
				return fmt.Errorf("verify does not name %s: %v", tc.rel, r.Problems)
			})
			withDeadline(t, 20*time.Second, "commit a snapshot (a pull)", func() error {
				sn, err := rw.Begin(t.Context(), BeginOptions{Source: "pull", RetainUntil: t0.Add(365 * 24 * time.Hour)})
				if err != nil {
					return err
				}
				if _, err := sn.Put(t.Context(), ObjectInfo{Key: []byte("new")}, bytes.NewReader(objs["b"])); err != nil {
					return err
				}
				_, err = sn.Commit(t.Context(), CommitOptions{})
				return err
			})
			clk.set(t0.Add(time.Hour))
			withDeadline(t, 20*time.Second, "prune", func() error {
				res, err := rw.Prune(t.Context(), PruneOptions{})
				if err != nil {
					return err
				}
				if len(res.Packs) != 0 || len(res.Expired) != 0 {
					return fmt.Errorf("prune removed packs %v, snapshots %v", res.Packs, res.Expired)
				}
				return nil
			})
			checkSnapshot(t, rw, m.ID, objs)
		})
	}
}

// CleanForeign removes every planted entry from the directories the worker
// writes freely, reports (and leaves) those of the append-only directories,
// and the store opens and reads back afterwards.
func TestCleanForeign(t *testing.T) {
	for _, tc := range hostileEntries {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
			objs := map[string][]byte{"a": randBytes(3, 10<<10)}
			m := putObjects(t, s, "src", time.Time{}, objs)
			dir := s.Dir()
			if err := tc.plant(filepath.Join(dir, tc.rel), dir); err != nil {
				t.Fatalf("plant: %v", err)
			}
			s = reopen(t, s, Options{})
			var rep *ForeignReport
			withDeadline(t, 20*time.Second, "clean", func() (err error) {
				rep, err = s.CleanForeign(t.Context())
				return err
			})
			top, _, _ := strings.Cut(tc.rel, "/")
			workDir := top == wipDir || top == indexDir || top == tmpDir || top == stateDir
			found := false
			for _, e := range rep.Entries {
				if e.Path == tc.rel {
					found = true
					if e.Removed != workDir {
						t.Errorf("%s: removed %v, want %v", e.Path, e.Removed, workDir)
					}
				}
			}
			// A FIFO or symlink as the index cache may already be replaced by
			// the cache the store wrote; then there is nothing left to find.
			if !found && !(top == indexDir && !exists(filepath.Join(dir, tc.rel))) {
				t.Fatalf("clean does not report %s: %+v", tc.rel, rep.Entries)
			}
			if workDir {
				if fi, err := os.Lstat(filepath.Join(dir, tc.rel)); err == nil && !fi.Mode().IsRegular() {
					t.Errorf("%s is still there", tc.rel)
				}
			}
			s = reopen(t, s, Options{})
			checkSnapshot(t, s, m.ID, objs)
		})
	}
}

// Many empty files in wip/ are removed in bounded batches and counted;
// only the first maxForeignReported are named.
func TestCleanForeignManyEntries(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	const n = 6000
	for i := range n {
		name := fmt.Sprintf("20250101T000000Z-%08x.journal", i)
		if err := os.WriteFile(s.path(wipDir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := s.CleanForeign(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count != n || rep.Removed != n || len(rep.Entries) != maxForeignReported {
		t.Fatalf("count %d removed %d named %d; want %d, %d, %d", rep.Count, rep.Removed, len(rep.Entries), n, n, maxForeignReported)
	}
	left, _ := os.ReadDir(s.path(wipDir))
	if len(left) != 0 {
		t.Fatalf("%d entries left in wip/", len(left))
	}
}

// Junk the worker appends to the clock log (an append-only file it may
// write) changes nothing: opens work, only the log's last MiB is ever read,
// and prune decides with the trusted time it is given, never with the log.
func TestClockLogJunkTail(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0}
	s := newStore(t, InitOptions{}, Options{Clock: clk})
	objs := map[string][]byte{"a": randBytes(5, 1000)}
	var kept *Manifest
	// Prune keeps the newest snapshot of each source: a second, newer one
	// lets the first expire.
	expired := putObjects(t, s, "kept", t0.Add(time.Hour), map[string][]byte{"b": randBytes(6, 1000)})
	clk.set(t0.Add(time.Minute))
	kept = putObjects(t, s, "kept", t0.Add(1000*24*time.Hour), objs)
	f, err := os.OpenFile(s.clockLogPath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 2<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s = reopen(t, s, Options{Clock: clk})
	if _, err := s.HighWater(); !errors.Is(err, ErrClockUntrusted) {
		t.Fatalf("high-water mark behind 2 MiB of junk: %v, want ErrClockUntrusted", err)
	}
	res, err := s.Prune(t.Context(), PruneOptions{Now: t0.Add(100 * 24 * time.Hour)})
	if err != nil {
		t.Fatalf("prune with junk in the clock log: %v", err)
	}
	if len(res.Expired) != 1 || res.Expired[0] != expired.ID {
		t.Fatalf("prune expired %v, want only %s", res.Expired, expired.ID)
	}
	checkSnapshot(t, s, kept.ID, objs)
}

// Many junk files in the directories the worker writes freely cost an open,
// a prune and a verify a bounded amount of memory: directories are read in
// batches and junk is counted, not kept.
func TestManyJunkEntriesBoundedMemory(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0}
	s := newStore(t, InitOptions{}, Options{Clock: clk})
	objs := map[string][]byte{"a": randBytes(6, 1000)}
	m := putObjects(t, s, "src", t0.Add(time.Hour), objs)
	const n = 30_000
	for _, d := range []string{wipDir, stateDir, indexDir} {
		for i := range n {
			f, err := os.Create(s.path(d, fmt.Sprintf("junk-%06d-%s", i, strings.Repeat("x", 100))))
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	s.Close()
	for _, step := range []struct {
		name string
		f    func() error
	}{
		{"open", func() (err error) {
			s, err = Open(t.Context(), s.Dir(), testKey, Options{Clock: clk, Logger: testLogger(t)})
			return err
		}},
		{"prune", func() error { _, err := s.Prune(t.Context(), PruneOptions{}); return err }},
		{"verify", func() error {
			r, err := s.Verify(t.Context())
			if err == nil && r.Foreign != 3*n {
				err = fmt.Errorf("verify counts %d foreign entries, want %d", r.Foreign, 3*n)
			}
			return err
		}},
	} {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var err error
		peak := peakHeap(func() { err = step.f() })
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		grew := int64(peak) - int64(before.HeapInuse)
		t.Logf("%s with %d junk entries in each of wip/, state/, index/: heap grew %d KiB", step.name, n, grew>>10)
		// The collector lets the heap reach 4 MiB before it runs at all;
		// the 90,000 names alone would take about 11 MiB.
		if grew > 8<<20 {
			t.Errorf("%s: heap grew %d KiB, more than 8 MiB", step.name, grew>>10)
		}
	}
	defer s.Close()
	checkSnapshot(t, s, m.ID, objs)
	rep, err := s.CleanForeign(t.Context())
	if err != nil || rep.Removed != 3*n {
		t.Fatalf("clean: removed %v, %v", rep, err)
	}
}

// Thousands of junk files (what the worker adversary planted in the VM,
// 3,000 per directory) neither flood the log nor hide the dangerous
// entries from the report an alert is made of: a FIFO named like a
// journal and a symlink in place of the index cache are named first, and
// the log holds at most maxForeignLogged lines of entries.
func TestCleanForeignNamesDangerFirst(t *testing.T) {
	var logBuf strings.Builder
	s := newStore(t, InitOptions{}, Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Warn})})
	for i := range 3000 {
		if err := os.WriteFile(s.path(wipDir, fmt.Sprintf("junk-%05d", i)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fifo := wipDir + "/20260101T000000Z-0badf00d.journal"
	if err := unix.Mkfifo(s.path(fifo), 0o600); err != nil {
		t.Fatal(err)
	}
	cache := indexDir + "/index"
	_ = os.Remove(s.path(cache))
	if err := os.Symlink("/dev/zero", s.path(cache)); err != nil {
		t.Fatal(err)
	}
	logBuf.Reset()
	rep, err := s.CleanForeign(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count != 3002 || len(rep.Entries) != maxForeignReported {
		t.Fatalf("count %d, named %d; want 3002 and %d", rep.Count, len(rep.Entries), maxForeignReported)
	}
	first := map[string]bool{rep.Entries[0].Path: true, rep.Entries[1].Path: true}
	if !first[fifo] || !first[cache] {
		t.Errorf("the first entries named are %q and %q, want the FIFO journal and the symlinked cache", rep.Entries[0].Path, rep.Entries[1].Path)
	}
	if n := strings.Count(logBuf.String(), "foreign entry removed"); n > maxForeignLogged {
		t.Errorf("%d log lines, one per entry; want at most %d", n, maxForeignLogged)
	}
	if !strings.Contains(logBuf.String(), "logged_one_by_one=") {
		t.Errorf("no summary line:\n%s", logBuf.String())
	}
}
