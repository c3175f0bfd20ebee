package store

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// forgeIndex replaces the store's index with one authentic run (the
// worker can derive the meta key) that lists packs and claims each holds
// one chunk nobody stored, plus the real entries of the packs in real.
func forgeIndex(t testing.TB, s *Store, packs []string, real []string) {
	t.Helper()
	ix := s.idx
	ix.mu.Lock()
	defer ix.mu.Unlock()
	all := map[*run]bool{}
	for _, r := range ix.runs {
		all[r] = true
	}
	ix.dropRuns(all)
	ix.mem, ix.memPacks, ix.memN = map[ChunkID][]location{}, map[string]bool{}, 0
	for _, name := range packs {
		var id ChunkID
		rand.Read(id[:])
		es := []packEntry{{id: id, offset: 8, length: sealOverhead + 1, plainLen: 1}}
		if slices.Contains(real, name) {
			var err error
			if es, _, err = s.packEntries(name); err != nil {
				t.Fatal(err)
			}
		}
		ix.addMem(name, es)
	}
	if err := ix.flushLocked(0); err != nil {
		t.Fatal(err)
	}
}

// indexRecords counts the records of the open index: runs and memory.
func indexRecords(t testing.TB, s *Store) int {
	t.Helper()
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	n := s.idx.memN
	for _, r := range s.idx.runs {
		n += int(r.n)
	}
	return n
}

// runFiles lists the run files in STORE/index.
func runFiles(t testing.TB, s *Store) []string {
	t.Helper()
	es, err := os.ReadDir(s.path(indexDir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if _, _, ok := parseRunName(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out
}

// Runs of every shape answer every lookup: empty, one record, page
// boundaries, many buckets, chunks claimed by several packs, merged runs.
func TestIndexRunLookup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		packs   int // packs of perPack entries each, flushed one run per pack
		perPack int
		shared  int // IDs every pack claims too
	}{
		{"one record", 1, 1, 0},
		{"a page less one", 1, recsPerPage - 1, 0},
		{"a page", 1, recsPerPage, 0},
		{"a page and one", 1, recsPerPage + 1, 0},
		{"many buckets", 1, 20000, 0},
		{"merged runs", 9, 700, 0},
		{"chunks claimed by every pack", 5, 300, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, InitOptions{}, Options{})
			shared := make([]ChunkID, tc.shared)
			for i := range shared {
				rand.Read(shared[i][:])
			}
			want := map[ChunkID][]location{}
			for p := range tc.packs {
				var pk [32]byte
				rand.Read(pk[:])
				name := hex.EncodeToString(pk[:])
				var es []packEntry
				for i := range tc.perPack {
					var e packEntry
					if i < tc.shared {
						e.id = shared[i]
					} else {
						rand.Read(e.id[:])
					}
					e.offset, e.length = uint32(8+i*100), uint32(100+p)
					es = append(es, e)
					want[e.id] = append(want[e.id], location{pack: pk, offset: e.offset, length: e.length})
				}
				s.idx.addPack(name, es)
				if err := s.idx.flush(); err != nil {
					t.Fatal(err)
				}
			}
			if len(s.idx.runs) > 4 {
				t.Errorf("%d runs after %d flushes: merging does not keep them few", len(s.idx.runs), tc.packs)
			}
			for id, locs := range want {
				got := s.idx.locations(id)
				slices.SortFunc(got, compareLocations)
				slices.SortFunc(locs, compareLocations)
				if !slices.Equal(got, locs) {
					t.Fatalf("chunk %s: locations %v, want %v", id, got, locs)
				}
			}
			for range 1000 {
				var id ChunkID
				rand.Read(id[:])
				if s.idx.has(id) {
					t.Fatalf("chunk %s nobody stored is indexed", id)
				}
			}
		})
	}
}

// The store opens with what a crash or a prune leaves in STORE/index: a
// pack no run lists is indexed from its trailer, a run that lists a pack
// no longer there is dropped (so no lookup finds a removed chunk), a run
// being written is removed, and the inputs of a merge left beside its
// output are dropped.
func TestIndexCatchUp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		crash func(t *testing.T, s *Store, packs []string) (gone string)
	}{
		{"packs sealed after the last run", func(t *testing.T, s *Store, packs []string) string {
			forgeIndex(t, s, packs[:2], packs[:2])
			return ""
		}},
		{"a pack removed", func(t *testing.T, s *Store, packs []string) string {
			// As prune removes it: the shard's append-only flag cleared.
			if err := fsflag.Clear(s.path(packsDir, packs[1][:2]), fsflag.Append); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(s.packPath(packs[1])); err != nil {
				t.Fatal(err)
			}
			return packs[1]
		}},
		{"a run being written", func(t *testing.T, s *Store, _ []string) string {
			if err := os.WriteFile(s.path(indexDir, runTmpPrefix+"123"), []byte("HFIXRUN1 cut short"), 0o600); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
		{"merge inputs beside the output", func(t *testing.T, s *Store, packs []string) string {
			s.idx.mu.Lock()
			defer s.idx.mu.Unlock()
			all := map[*run]bool{}
			for _, r := range s.idx.runs {
				all[r] = true
			}
			s.idx.dropRuns(all)
			var keep [][]byte
			var names []string
			for _, p := range packs {
				es, _, err := s.packEntries(p)
				if err != nil {
					t.Fatal(err)
				}
				s.idx.addMem(p, es)
				if err := s.idx.flushLocked(len(s.idx.runs) + 1); err != nil {
					t.Fatal(err)
				}
				r := s.idx.runs[len(s.idx.runs)-1]
				b, err := os.ReadFile(s.path(indexDir, r.name))
				if err != nil {
					t.Fatal(err)
				}
				keep, names = append(keep, b), append(names, r.name)
			}
			for len(s.idx.runs) > 1 {
				if err := s.idx.mergeLast(); err != nil {
					t.Fatal(err)
				}
			}
			if len(s.idx.runs) != 1 {
				t.Fatalf("%d runs after merging, want 1", len(s.idx.runs))
			}
			for i, n := range names {
				if err := os.WriteFile(s.path(indexDir, n), keep[i], 0o600); err != nil {
					t.Fatal(err)
				}
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, InitOptions{}, Options{Logger: hclog.NewNullLogger()})
			plantSyntheticPacks(t, s, 3000, 700, 7)
			s = reopen(t, s, Options{Logger: hclog.NewNullLogger()})
			packs, err := s.listPacks()
			if err != nil || len(packs) != 5 {
				t.Fatalf("packs %v, %v", packs, err)
			}
			entries := map[string][]packEntry{}
			for _, p := range packs {
				if entries[p], _, err = s.packEntries(p); err != nil {
					t.Fatal(err)
				}
			}
			gone := tc.crash(t, s, packs)
			s = reopen(t, s, Options{})
			for _, p := range packs {
				for _, e := range entries[p] {
					found := slices.ContainsFunc(s.idx.locations(e.id), func(l location) bool { return l.packName() == p && l.offset == e.offset })
					if p == gone && found {
						t.Fatalf("chunk %s of the removed pack %s is still found", e.id, p)
					}
					if p != gone && !found {
						t.Fatalf("chunk %s of pack %s is not indexed", e.id, p)
					}
				}
			}
			want := 3000
			if gone != "" {
				// The removed pack's records stay in its run until a merge
				// leaves them out; lookups skip them meanwhile. A second
				// run (of one empty pack) makes a merge.
				s.idx.mu.Lock()
				s.idx.addMem(strings.Repeat("ab", 32), nil)
				if err := s.idx.flushLocked(len(s.idx.runs) + 1); err != nil {
					t.Fatal(err)
				}
				for len(s.idx.runs) > 1 {
					if err := s.idx.mergeLast(); err != nil {
						t.Fatal(err)
					}
				}
				s.idx.mu.Unlock()
				// Packs sort by their random names: the removed one may
				// be the last, shorter one.
				want -= len(entries[gone])
			}
			if n := indexRecords(t, s); n != want {
				t.Errorf("%d records indexed, want %d", n, want)
			}
			for _, f := range runFiles(t, s) {
				if strings.HasPrefix(f, runTmpPrefix) {
					t.Errorf("%s left in index/", f)
				}
			}
			if len(runFiles(t, s)) != len(s.idx.runs) {
				t.Errorf("index/ holds %v, the index uses %d runs", runFiles(t, s), len(s.idx.runs))
			}
			if es, _ := os.ReadDir(s.path(indexDir)); len(es) != len(s.idx.runs) {
				t.Errorf("index/ holds %d entries, want %d runs", len(es), len(s.idx.runs))
			}
		})
	}
}

// The heap of an open store does not grow with its chunk count: the index
// is on disk. (BenchmarkIndexScale measures it at larger sizes.)
func TestIndexHeapBounded(t *testing.T) {
	const n = 300_000 // about 45 MiB of heap with the index in memory
	s := newStore(t, InitOptions{}, Options{Logger: hclog.NewNullLogger()})
	sample := plantSyntheticPacks(t, s, n, 16384, 99)
	s.Close()
	before := heapNow()
	open, err := Open(t.Context(), s.Dir(), testKey, Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	grew := int64(heapNow()) - int64(before)
	t.Logf("open store with %d chunks: heap grew %d KiB", n, grew>>10)
	if grew > 8<<20 {
		t.Errorf("heap grew %d MiB for %d chunks; want a bound that does not grow with the store (8 MiB)", grew>>20, n)
	}
	start := time.Now()
	for _, id := range sample {
		if !open.idx.has(id) {
			t.Fatalf("chunk %s not indexed", id)
		}
	}
	t.Logf("%d lookups, %v each", len(sample), time.Since(start)/time.Duration(len(sample)))
	runtime.KeepAlive(open)
}

// indexRuns is the number of runs the open index reads.
func indexRuns(s *Store) int {
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	return len(s.idx.runs)
}

// After prune removes a pack, its chunks are not in the index: the same
// content stored again is written again (a lookup that still found the
// removed pack would make the writer skip it, and the new snapshot would
// name chunks no pack holds). In this process and in the next.
func TestIndexForgetsPrunedPacks(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0}
	s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{Clock: clk})
	x := map[string][]byte{"x": randBytes(90, 3<<20)}
	putObjects(t, s, "src", t0.Add(time.Hour), x)
	clk.set(t0.Add(time.Second))
	putObjects(t, s, "src", t0.Add(time.Hour), map[string][]byte{"y": randBytes(91, 1<<20)})
	for _, same := range []bool{true, false} {
		clk.set(clk.t.Add(48 * time.Hour))
		res, err := s.Prune(t.Context(), PruneOptions{Now: clk.t})
		if err != nil || len(res.Packs) == 0 {
			t.Fatalf("prune removed %v, %v: want the packs of x", res, err)
		}
		if !same {
			s = reopen(t, s, Options{Clock: clk})
		}
		m := putObjects(t, s, "src", clk.t.Add(time.Hour), x)
		checkSnapshot(t, s, m.ID, x)
		s = reopen(t, s, Options{Clock: clk})
		checkSnapshot(t, s, m.ID, x)
		clk.set(clk.t.Add(time.Second))
		putObjects(t, s, "src", clk.t.Add(time.Hour), map[string][]byte{"y": randBytes(92, 1<<20)})
	}
	r, err := s.Verify(t.Context())
	if err != nil || !r.OK() {
		t.Fatalf("verify: %v, %v", err, r.Problems)
	}
}

// A read-only open (to read the ID, list snapshots) walks no pack: the walk,
// and on a store whose runs lag its packs the entries it keeps in RAM, wait
// for the first lookup.
func TestReadOnlyOpenWalksAtFirstLookup(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{Logger: hclog.NewNullLogger()})
	sample := plantSyntheticPacks(t, s, 20000, 4000, 3) // no run lists them
	s = reopen(t, s, Options{ReadOnly: true, Logger: hclog.NewNullLogger()})
	if n := indexRecords(t, s); n != 0 {
		t.Fatalf("read-only open indexed %d entries before any lookup", n)
	}
	if _, err := s.Snapshots(); err != nil {
		t.Fatal(err)
	}
	if !s.idx.has(sample[0]) {
		t.Fatal("first lookup does not find a stored chunk")
	}
	if n := indexRecords(t, s); n != 20000 {
		t.Fatalf("after the first lookup %d entries indexed, want 20000", n)
	}
	if len(runFiles(t, s)) != 0 {
		t.Error("a read-only store wrote index runs")
	}
}
