package store

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

// Verify names an index cache that disagrees with the sealed trailers (the
// worker can forge one that passes its tag: readers rebuild from the
// trailers and prune never reads it, but the operator must learn of it);
// an honest cache, and one that lacks a pack, are no problem.
func TestVerifyNamesForgedIndexCache(t *testing.T) {
	for _, tc := range []struct {
		name  string
		forge func(s *Store, packs []string)
		named bool
	}{
		{"honest cache", func(*Store, []string) {}, false},
		{"cache without a pack", func(s *Store, packs []string) {
			s.idx = s.idx.withoutPacks(map[string]bool{packs[0]: true})
		}, false},
		{"forged: every pack holds one unreferenced chunk", func(s *Store, packs []string) {
			forged := newIndex()
			for _, name := range packs {
				var id ChunkID
				rand.Read(id[:])
				forged.addPack(name, []packEntry{{id: id, offset: 8, length: sealOverhead + 1, plainLen: 1}})
			}
			s.idx = forged
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
			objs := map[string][]byte{"a": randBytes(1, 3<<20), "b": randBytes(2, 10<<10)}
			putObjects(t, s, "src", time.Time{}, objs)
			packs, err := s.listPacks()
			if err != nil || len(packs) < 2 {
				t.Fatalf("packs %v, %v: want two or more", packs, err)
			}
			tc.forge(s, packs)
			s.idx.dirty = true
			if err := s.saveIndex(); err != nil {
				t.Fatal(err)
			}
			s = reopen(t, s, Options{ReadOnly: true})
			r, err := s.Verify(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			named := false
			for _, p := range r.Problems {
				if p.Kind == "index" && p.Path == indexDir+"/index" && strings.Contains(p.Detail, "disagrees with the sealed trailer") {
					named = true
				}
			}
			if named != tc.named {
				t.Fatalf("index cache named %v, want %v: %v", named, tc.named, r.Problems)
			}
			if len(r.DamagedSnapshots) != 0 || len(r.DamagedObjects) != 0 {
				t.Errorf("damage reported: %v %v", r.DamagedSnapshots, r.DamagedObjects)
			}
		})
	}
}

// Prune, which reads every pack's sealed trailer anyway, names an index
// cache that disagrees with them among the entries it did not use (the
// appliance alerts on those), and replaces it; an honest cache is not
// named.
func TestPruneNamesForgedIndexCache(t *testing.T) {
	for _, tc := range []struct {
		name   string
		forged bool
	}{
		{"honest cache", false},
		{"forged cache", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
			objs := map[string][]byte{"a": randBytes(1, 3<<20), "b": randBytes(2, 10<<10)}
			m := putObjects(t, s, "src", time.Now().AddDate(1, 0, 0), objs)
			packs, err := s.listPacks()
			if err != nil {
				t.Fatal(err)
			}
			if tc.forged {
				forged := newIndex()
				for _, name := range packs {
					var id ChunkID
					rand.Read(id[:])
					forged.addPack(name, []packEntry{{id: id, offset: 8, length: sealOverhead + 1, plainLen: 1}})
				}
				s.idx = forged
				if err := s.saveIndex(); err != nil {
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
				if p.Kind == "index" && p.Path == indexDir+"/index" {
					named = true
				}
			}
			if named != tc.forged {
				t.Fatalf("index cache named by prune: %v, want %v (%v)", named, tc.forged, res.Skipped)
			}
			if len(res.Packs) != 0 || len(res.Expired) != 0 {
				t.Fatalf("prune removed packs %v, snapshots %v", res.Packs, res.Expired)
			}
			// The cache prune wrote is honest: a new open reads it, and
			// verify finds nothing wrong with it.
			s = reopen(t, s, Options{ReadOnly: true})
			r, err := s.Verify(t.Context())
			if err != nil || !r.OK() {
				t.Fatalf("verify after prune: %v, %v", err, r.Problems)
			}
			checkSnapshot(t, s, m.ID, objs)
		})
	}
}
