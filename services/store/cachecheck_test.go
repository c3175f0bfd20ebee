package store

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Verify names an index that disagrees with the sealed trailers (the
// worker can forge one that passes its tags: readers fall back to the
// trailers and prune never reads it, but the operator must learn of it);
// an honest index, and one that lacks a pack (the open indexes it from
// its trailer), are no problem.
func TestVerifyNamesForgedIndex(t *testing.T) {
	for _, tc := range []struct {
		name  string
		forge func(s *Store, packs []string)
		named bool
	}{
		{"honest index", func(*Store, []string) {}, false},
		{"index without a pack", func(s *Store, packs []string) {
			forgeIndex(t, s, packs[1:], packs[1:])
		}, false},
		{"forged: every pack holds one unreferenced chunk", func(s *Store, packs []string) {
			forgeIndex(t, s, packs, nil)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
			objs := map[string][]byte{"a": randBytes(1, 3<<20), "b": randBytes(2, 10<<10)}
			m := putObjects(t, s, "src", time.Time{}, objs)
			packs, err := s.listPacks()
			if err != nil || len(packs) < 2 {
				t.Fatalf("packs %v, %v: want two or more", packs, err)
			}
			tc.forge(s, packs)
			s = reopen(t, s, Options{ReadOnly: true})
			r, err := s.Verify(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			named := false
			for _, p := range r.Problems {
				if p.Kind == "index" && p.Path == indexDir && strings.Contains(p.Detail, "disagrees with the sealed trailer") {
					named = true
				}
			}
			if named != tc.named {
				t.Fatalf("index named %v, want %v: %v", named, tc.named, r.Problems)
			}
			if len(r.DamagedSnapshots) != 0 || len(r.DamagedObjects) != 0 {
				t.Errorf("damage reported: %v %v", r.DamagedSnapshots, r.DamagedObjects)
			}
			// Readers fall back to the trailers: every object reads back,
			// read-only and read-write.
			checkSnapshot(t, s, m.ID, objs)
			checkSnapshot(t, reopen(t, s, Options{}), m.ID, objs)
		})
	}
}

// Prune never reads the index; the whole-file cache of the old format
// (which the worker can still forge) is named among the entries prune did
// not use (the appliance alerts on those), removed, and never read. An
// index of runs is not named.
func TestPruneNamesOldIndexCache(t *testing.T) {
	for _, tc := range []struct {
		name string
		old  bool
	}{
		{"runs only", false},
		{"old whole-file cache", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
			objs := map[string][]byte{"a": randBytes(1, 3<<20), "b": randBytes(2, 10<<10)}
			m := putObjects(t, s, "src", time.Now().AddDate(1, 0, 0), objs)
			if tc.old {
				if err := os.WriteFile(s.path(indexDir, legacyIndex), []byte("HFINDEX1 forged or old"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s = reopen(t, s, Options{})
			res, err := s.Prune(t.Context(), PruneOptions{Now: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			named := false
			for _, p := range res.Skipped {
				if p.Kind == "index" && p.Path == indexDir+"/"+legacyIndex {
					named = true
				}
			}
			if named != tc.old {
				t.Fatalf("old index cache named by prune: %v, want %v (%v)", named, tc.old, res.Skipped)
			}
			if len(res.Packs) != 0 || len(res.Expired) != 0 {
				t.Fatalf("prune removed packs %v, snapshots %v", res.Packs, res.Expired)
			}
			if exists(s.path(indexDir, legacyIndex)) {
				t.Error("the old index cache is still there")
			}
			s = reopen(t, s, Options{ReadOnly: true})
			r, err := s.Verify(t.Context())
			if err != nil || !r.OK() {
				t.Fatalf("verify after prune: %v, %v", err, r.Problems)
			}
			checkSnapshot(t, s, m.ID, objs)
		})
	}
}
