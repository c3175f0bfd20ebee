package export

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// fakeViews serves views from memory and counts manifest reads.
type fakeViews struct {
	views map[string]*view
	reads map[string]int
}

func (f *fakeViews) view(_ context.Context, id string) (contents, error) {
	f.reads[id]++
	v, ok := f.views[id]
	if !ok {
		return nil, fmt.Errorf("no view %s", id)
	}
	return v, nil
}

func (f *fakeViews) cachedView(string) (contents, bool) { return nil, false }

func makeView(keys []string) *view {
	sort.Strings(keys)
	v := &view{keys: keys, objs: make([]store.Object, len(keys))}
	for i, k := range keys {
		v.objs[i] = store.Object{Key: []byte(k), Size: int64(len(k))}
	}
	return v
}

// refList is the obvious listing over the full sorted key list.
func refList(all []string, p listParams) listResult {
	var items []listItem
	for _, k := range all {
		if !strings.HasPrefix(k, p.prefix) {
			continue
		}
		if p.delimiter != "" {
			if j := strings.Index(k[len(p.prefix):], p.delimiter); j >= 0 {
				cp := k[:len(p.prefix)+j+len(p.delimiter)]
				if cp > p.marker && (len(items) == 0 || items[len(items)-1].key != cp) {
					items = append(items, listItem{key: cp, isDir: true})
				}
				continue
			}
		}
		if k > p.marker {
			items = append(items, listItem{key: k})
		}
	}
	res := listResult{items: items}
	if len(items) > p.maxKeys {
		res.truncated = true
		res.items = items[:p.maxKeys]
		res.next = p.marker
		if p.maxKeys > 0 {
			res.next = res.items[p.maxKeys-1].key
		}
	}
	return res
}

func itemKeys(items []listItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.key
		if it.isDir {
			out[i] += " (prefix)"
		}
	}
	return out
}

// TestListMatchesReference lists random key spaces with random prefixes,
// delimiters, markers and page sizes, page by page, and compares every
// page with the obvious algorithm.
func TestListMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	randKey := randKeyFunc(rng)
	for round := 0; round < 300; round++ {
		fv := &fakeViews{views: map[string]*view{}, reads: map[string]int{}}
		var segs []segment
		var all []string
		nsnap := 1 + rng.IntN(4)
		for s := 0; s < nsnap; s++ {
			id := fmt.Sprintf("2026010%dT000000Z-0000000%d", s+1, s)
			seen := map[string]bool{}
			var keys []string
			for i := rng.IntN(12); i > 0; i-- {
				k := randKey(1 + rng.IntN(5))
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
			fv.views[id] = makeView(keys)
			segs = append(segs, segment{name: id + "/", id: id, count: int64(len(keys))})
			for _, k := range keys {
				all = append(all, id+"/"+k)
			}
		}
		// latest/ shows the last snapshot.
		last := segs[len(segs)-1]
		segs = append(segs, segment{name: "latest/", id: last.id, count: last.count})
		for _, k := range fv.views[last.id].keys {
			all = append(all, "latest/"+k)
		}
		sort.Strings(all)

		checkRandomListing(t, fmt.Sprintf("round %d", round), rng, randKey, fv, segs, all)
	}
}

// listAlphabet makes keys with many shared prefixes and delimiters.
var listAlphabet = []string{"a", "b", "/", "-", "ü", "a/", "%", " "}

func randKeyFunc(rng *rand.Rand) func(n int) string {
	return func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(listAlphabet[rng.IntN(len(listAlphabet))])
		}
		return b.String()
	}
}

// checkRandomListing lists segs (whose keys are all, sorted) with a random
// prefix, delimiter, marker and page size, page by page, and compares
// every page with the obvious algorithm.
func checkRandomListing(t *testing.T, round string, rng *rand.Rand, randKey func(int) string, vs viewSource, segs []segment, all []string) {
	t.Helper()
	p := listParams{maxKeys: 1 + rng.IntN(6)}
	switch rng.IntN(4) {
	case 1:
		p.prefix = segs[rng.IntN(len(segs))].name
	case 2:
		p.prefix = segs[rng.IntN(len(segs))].name + randKey(rng.IntN(2))
	case 3:
		if len(all) > 0 {
			k := all[rng.IntN(len(all))]
			p.prefix = k[:rng.IntN(len(k)+1)]
		}
	}
	p.delimiter = []string{"", "", "/", "-", "a/", "Z", "T"}[rng.IntN(7)]
	if rng.IntN(3) == 0 && len(all) > 0 {
		p.marker = all[rng.IntN(len(all))]
	}
	desc := fmt.Sprintf("%s: prefix %q delimiter %q marker %q max %d", round, p.prefix, p.delimiter, p.marker, p.maxKeys)
	for page := 0; ; page++ {
		got, err := list(context.Background(), vs, segs, nil, p)
		if err != nil {
			t.Fatalf("%s: %v", desc, err)
		}
		want := refList(all, p)
		if fmt.Sprint(itemKeys(got.items)) != fmt.Sprint(itemKeys(want.items)) || got.truncated != want.truncated || got.next != want.next {
			t.Fatalf("%s page %d:\n got %q truncated %v next %q\nwant %q truncated %v next %q",
				desc, page, itemKeys(got.items), got.truncated, got.next, itemKeys(want.items), want.truncated, want.next)
		}
		if !got.truncated {
			break
		}
		if page > len(all)+2 {
			t.Fatalf("%s: listing does not end", desc)
		}
		p.marker = got.next
	}
}

// TestListTopLevelReadsNoManifest: a "delimiter /" listing of a bucket's
// top level rolls each snapshot up into ID/ without reading it.
func TestListTopLevelReadsNoManifest(t *testing.T) {
	fv := &fakeViews{views: map[string]*view{}, reads: map[string]int{}}
	var segs []segment
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("2026010%dT000000Z-aaaaaaa%d", i+1, i)
		fv.views[id] = makeView([]string{"x", "y/z"})
		segs = append(segs, segment{name: id + "/", id: id, count: 2})
	}
	segs = append(segs, segment{name: "empty/", id: "none", count: 0}, segment{name: "latest/", id: segs[4].id, count: 2})
	got, err := list(context.Background(), fv, segs, nil, listParams{delimiter: "/", maxKeys: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, s := range segs {
		if s.count > 0 {
			want = append(want, s.name+" (prefix)")
		}
	}
	if fmt.Sprint(itemKeys(got.items)) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", itemKeys(got.items), want)
	}
	if len(fv.reads) != 0 {
		t.Errorf("manifests read: %v", fv.reads)
	}
}

// TestNewViewPicksCurrentRecord: a snapshot read whole serves each key's
// current record by the store's rule, as restore does: the last recorded
// in a snapshot that is not sorted (whatever the modification times), the
// first in a sorted one; a key whose current record is a delete marker is
// absent.
func TestNewViewPicksCurrentRecord(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	unsorted := []store.Object{
		{Key: []byte("v"), ModTime: t0.Add(2 * time.Second), Size: 2},           // newer modification time ...
		{Key: []byte("v"), ModTime: t0, Size: 1},                                // ... but this one is recorded last
		{Key: []byte("gone"), ModTime: t0, Size: 3},                             // content ...
		{Key: []byte("gone"), ModTime: t0.Add(time.Second), DeleteMarker: true}, // ... then deleted
		{Key: []byte("back"), ModTime: t0, DeleteMarker: true},                  // deleted ...
		{Key: []byte("back"), ModTime: t0.Add(time.Second), Size: 4},            // ... then written again
		{Key: []byte("tie"), ModTime: t0, Size: 5},
		{Key: []byte("tie"), ModTime: t0, Size: 6},
		{Key: []byte("old"), ModTime: t0.Add(time.Second), DeleteMarker: true}, // a delete marker ...
		{Key: []byte("old"), ModTime: t0, Size: 7},                             // ... then an older write, recorded last
	}
	sorted := []store.Object{
		{Key: []byte("a"), Size: 1, ModTime: t0.Add(time.Second)}, // newest version first
		{Key: []byte("a"), Size: 2, ModTime: t0},
		{Key: []byte("b"), DeleteMarker: true, ModTime: t0.Add(time.Second)},
		{Key: []byte("b"), Size: 3, ModTime: t0},
		{Key: []byte("c"), Size: 4},
	}
	for _, tc := range []struct {
		name   string
		m      *store.Manifest
		keys   string
		sizes  map[string]int64
		absent []string
	}{
		{"not sorted: the last recorded", &store.Manifest{Objects: unsorted}, "[back old tie v]",
			map[string]int64{"v": 1, "back": 4, "tie": 6, "old": 7}, []string{"gone", "x"}},
		{"sorted: the first", &store.Manifest{Objects: sorted, Sorted: true}, "[a c]",
			map[string]int64{"a": 1, "c": 4}, []string{"b", "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newView(tc.m)
			if fmt.Sprint(v.keys) != tc.keys {
				t.Fatalf("keys %q, want %s", v.keys, tc.keys)
			}
			for k, size := range tc.sizes {
				o, ok, err := v.find(k)
				if !ok || err != nil || o.Size != size {
					t.Errorf("%s: %v %v %+v, want size %d", k, ok, err, o, size)
				}
			}
			for _, k := range tc.absent {
				if _, ok, _ := v.find(k); ok {
					t.Errorf("%s is served", k)
				}
			}
		})
	}
}

func TestContinuationToken(t *testing.T) {
	for _, tt := range []struct{ pin, marker string }{
		{"", ""}, {"20260101T000000Z-0011aabb", "latest/a\x00b"}, {"", "ü/\xff"},
	} {
		pin, marker, err := decodeToken(encodeToken(tt.pin, tt.marker))
		if err != nil || pin != tt.pin || marker != tt.marker {
			t.Errorf("round trip of %q %q: %q %q %v", tt.pin, tt.marker, pin, marker, err)
		}
	}
	for _, bad := range []string{"", "!!", encodeToken("x", "")[:3], "djI"} {
		if _, _, err := decodeToken(bad); err == nil {
			t.Errorf("token %q accepted", bad)
		}
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		hdr        string
		size       int64
		start, end int64
		partial    bool
		invalid    bool
	}{
		{"", 100, 0, 99, false, false},
		{"bytes=0-9", 100, 0, 9, true, false},
		{"bytes=90-", 100, 90, 99, true, false},
		{"bytes=90-1000", 100, 90, 99, true, false},
		{"bytes=-10", 100, 90, 99, true, false},
		{"bytes=-1000", 100, 0, 99, true, false},
		{"bytes=99-99", 100, 99, 99, true, false},
		{"bytes=100-", 100, 0, 0, false, true},
		{"bytes=-0", 100, 0, 0, false, true},
		{"bytes=0-0", 0, 0, 0, false, true},
		{"bytes=5-1", 100, 0, 99, false, false},     // not a range: whole object
		{"bytes=0-1,5-6", 100, 0, 99, false, false}, // several: whole object
		{"items=0-1", 100, 0, 99, false, false},     // other unit: whole object
		{"bytes=x-1", 100, 0, 99, false, false},
	}
	for _, tt := range tests {
		s, e, p, serr := parseRange(tt.hdr, tt.size)
		if (serr != nil) != tt.invalid || serr == nil && (s != tt.start || e != tt.end || p != tt.partial) {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v, %v; want %d, %d, %v, invalid %v", tt.hdr, tt.size, s, e, p, serr, tt.start, tt.end, tt.partial, tt.invalid)
		}
	}
}

func TestXMLSafe(t *testing.T) {
	for s, want := range map[string]bool{
		"plain": true, "ünï 🙂": true, "tab\tnewline\ncr\r": true,
		"bad\xff": false, "ctrl\x01": false, "nul\x00": false, "\uFFFE": false,
	} {
		if got := xmlSafe(s); got != want {
			t.Errorf("xmlSafe(%q) = %v", s, got)
		}
	}
}
