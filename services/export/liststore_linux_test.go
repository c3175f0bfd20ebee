package export

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// storeViews serves the contents of a real store's snapshots as the
// server does (an index for a sorted snapshot, a view otherwise).
type storeViews struct {
	st *store.Store
	c  map[string]contents
}

func (s *storeViews) view(_ context.Context, id string) (contents, error) {
	if c, ok := s.c[id]; ok {
		return c, nil
	}
	c, err := readContents(s.st, id)
	if err == nil {
		s.c[id] = c
	}
	return c, err
}

func (s *storeViews) cachedView(id string) (contents, bool) {
	c, ok := s.c[id]
	return c, ok
}

// TestListStoreMatchesReference lists real snapshots, sorted and not, with
// versions and delete markers, one sorted snapshot big enough for several
// manifest frames, with random prefixes, delimiters, markers and page
// sizes, and compares every page with the obvious algorithm over the live
// keys by the store's current-record rule. GET (find) agrees.
func TestListStoreMatchesReference(t *testing.T) {
	ctx := context.Background()
	st, err := store.Init(ctx, storetest.Dir(t), testKey, store.InitOptions{}, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(3, 5))
	randKey := randKeyFunc(rng)
	type rec struct {
		key  string
		del  bool
		size int64
	}
	var segs []segment
	var all []string
	live := map[string]map[string]int64{} // snapshot -> live key -> size of its current record
	sortedIDs := map[string]bool{}
	for i, n := range []int{2000, 0, 15, 40, 200} {
		sorted := i != 3
		seen := map[string]bool{}
		var keys []string
		for len(keys) < n {
			k := randKey(1 + rng.IntN(6))
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		if sorted {
			sort.Strings(keys)
		}
		var recs []rec
		for _, k := range keys {
			for v := 1 + rng.IntN(3); v > 0; v-- {
				recs = append(recs, rec{key: k, del: rng.IntN(4) == 0, size: int64(len(recs))})
			}
		}
		sn, err := st.Begin(ctx, store.BeginOptions{Source: "s", Sorted: sorted})
		if err != nil {
			t.Fatal(err)
		}
		cur := map[string]rec{}
		for _, r := range recs {
			size := r.size
			if r.del {
				size = 0
			}
			if err := sn.PutExisting(store.Object{Key: []byte(r.key), Size: size, DeleteMarker: r.del}); err != nil {
				t.Fatal(err)
			}
			if _, ok := cur[r.key]; !ok || !sorted {
				cur[r.key] = r // the first record of a sorted snapshot, else the last
			}
		}
		m, err := sn.Commit(ctx, store.CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		live[m.ID], sortedIDs[m.ID] = map[string]int64{}, sorted
		for k, r := range cur {
			if !r.del {
				live[m.ID][k] = r.size
				all = append(all, m.ID+"/"+k)
			}
		}
		segs = append(segs, segment{name: m.ID + "/", id: m.ID, count: m.Count})
	}
	last := segs[len(segs)-1]
	segs = append(segs, segment{name: "latest/", id: last.id, count: last.count})
	for k := range live[last.id] {
		all = append(all, "latest/"+k)
	}
	sort.Strings(all)
	slices.SortFunc(segs, func(a, b segment) int { return strings.Compare(a.name, b.name) })

	vs := &storeViews{st: st, c: map[string]contents{}}
	for round := 0; round < 200; round++ {
		checkRandomListing(t, fmt.Sprintf("round %d", round), rng, randKey, vs, segs, all)
	}
	for id, keys := range live {
		c, err := vs.view(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if _, indexed := c.(sortedContents); indexed != sortedIDs[id] {
			t.Errorf("snapshot %s (sorted %v) served from an index: %v", id, sortedIDs[id], indexed)
		}
		for k, size := range keys {
			if o, ok, err := c.find(k); !ok || err != nil || o.Size != size {
				t.Fatalf("find %q in %s: %v, %v, %+v; want size %d", k, id, ok, err, o, size)
			}
			if _, ok, err := c.find(k + "\x00"); ok || err != nil {
				t.Fatalf("find %q in %s: %v, %v", k+"\x00", id, ok, err)
			}
		}
	}
}
