package store

import (
	"encoding/hex"
	"fmt"
	"os"
)

// checkCachedEntries is Verify's check of the index against a pack's sealed
// trailer: every entry of the trailer must be found in the index at the
// place the trailer gives. An index that lacks them is forged (the worker
// can derive the meta key that authenticates its pages) or damaged, or
// lags the packs; readers then fall back to the trailers, prune never
// reads it, and RebuildIndex replaces it, so nothing is lost: the problem
// is named once, for the operator.
func (s *Store) checkCachedEntries(r *Report, name string, trailer []packEntry) {
	var pk [32]byte
	if _, err := hex.Decode(pk[:], []byte(name)); err != nil {
		return
	}
	missing := 0
	for _, e := range trailer {
		found := false
		for _, l := range s.idx.locations(e.id) {
			if l.pack == pk && l.offset == e.offset && l.length == e.length {
				found = true
				break
			}
		}
		if !found {
			missing++
		}
	}
	if missing == 0 {
		return
	}
	for _, p := range r.Problems {
		if p.Kind == "index" && p.Path == indexDir {
			return
		}
	}
	s.problem(r, Problem{Kind: "index", Path: indexDir, Detail: fmt.Sprintf(
		"the index disagrees with the sealed trailer of pack %s (%d of %d entries not found): forged or damaged; readers fall back to the trailers, prune never reads it, and RebuildIndex replaces it", name, missing, len(trailer))})
}

// legacyIndexProblem names STORE/index/index, the whole-file cache of the
// format before index runs, when it is there: nothing reads it (it may have
// been forged), prune removes it.
func (s *Store) legacyIndexProblem() (Problem, bool) {
	if _, err := os.Lstat(s.path(indexDir, legacyIndex)); err != nil {
		return Problem{}, false
	}
	return Problem{Kind: "index", Path: indexDir + "/" + legacyIndex, Detail: "a whole-file index cache (the format before index runs, or forged): never read; prune removes it"}, true
}
