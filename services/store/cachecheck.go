package store

import (
	"fmt"
	"slices"
)

// checkCachedEntries is Verify's check of the index cache against a pack's
// sealed trailer: when this store's index came from the cache and the
// cache's entries for the pack differ from its trailer, the cache is forged
// (the worker can derive the meta key that authenticates it) or damaged.
// Readers then rebuild from the trailers and prune never reads the cache,
// so nothing is lost; the problem is named once, for the operator. A pack
// the cache lacks is no problem (it was read from its trailer).
func (s *Store) checkCachedEntries(r *Report, name string, trailer []packEntry) {
	if !s.idx.cached {
		return
	}
	cached, ok := s.idx.entries[name]
	if !ok || slices.Equal(cached, trailer) {
		return
	}
	for _, p := range r.Problems {
		if p.Kind == "index" {
			return
		}
	}
	s.problem(r, Problem{Kind: "index", Path: indexDir + "/index", Detail: fmt.Sprintf(
		"the index cache disagrees with the sealed trailer of pack %s (%d entries cached, %d in the trailer): forged or damaged; readers rebuild from the trailers, prune never reads it", name, len(cached), len(trailer))})
}

// cacheDisagreement is prune's check of the index it loaded against the
// one it built from the sealed trailers: when the loaded one came from the
// cache and some pack's entries differ, it returns the problem to report
// (prune then writes the cache anew from the trailers).
func cacheDisagreement(loaded, fromTrailers *index) (Problem, bool) {
	if loaded == nil || !loaded.cached {
		return Problem{}, false
	}
	for _, name := range fromTrailers.packs {
		cached, ok := loaded.entries[name]
		if ok && !slices.Equal(cached, fromTrailers.entries[name]) {
			return Problem{Kind: "index", Path: indexDir + "/index", Detail: fmt.Sprintf(
				"the index cache disagrees with the sealed trailer of pack %s (%d entries cached, %d in the trailer): forged or damaged; prune never reads it and replaced it with one built from the trailers", name, len(cached), len(fromTrailers.entries[name]))}, true
		}
	}
	return Problem{}, false
}
