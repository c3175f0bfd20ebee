package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// indexFixture commits a sorted snapshot of about 3,300 records with
// versioned keys and delete markers. With inline set the store writes them
// in object frames of 1024 records, as stores did before object-chunk
// frames, and keys whose versions straddle frame boundaries; otherwise in
// metadata chunks (about 26). It returns the snapshot's ID and every key
// it records, sorted.
func indexFixture(t *testing.T, s *Store, inline bool) (string, [][]byte) {
	t.Helper()
	ctx := context.Background()
	sn, err := s.Begin(ctx, BeginOptions{Source: "body"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := sn.Put(ctx, ObjectInfo{Key: []byte("x")}, bytes.NewReader([]byte("content")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Commit(ctx, CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	sn, err = s.Begin(ctx, BeginOptions{Source: "idx", Sorted: true})
	if err != nil {
		t.Fatal(err)
	}
	sn.inlineFrames = inline
	var keys [][]byte
	n := 0
	put := func(key []byte, version string, del bool) {
		o := body
		o.Key, o.VersionID, o.DeleteMarker = key, version, del
		if del {
			o.Chunks, o.Size = nil, 0
		}
		if err := sn.PutExisting(o); err != nil {
			t.Fatal(err)
		}
		n++
	}
	for i := 0; n < 3300; i++ {
		key := fmt.Appendf(nil, "k/%05d", i)
		if i == 0 {
			key = []byte{} // the empty key sorts first
		}
		keys = append(keys, key)
		versions := 1
		switch {
		case n >= 1022 && n <= 1024, n >= 2046 && n <= 2047:
			versions = 3 // straddles the boundary after record 1024 or 2048
		case i%7 == 3:
			versions = 2
		}
		for v := range versions {
			put(key, fmt.Sprintf("%d.%d", i, v), i%5 == 1 && v == 0 || i%11 == 2 && v == 1)
		}
	}
	m, err := sn.Commit(ctx, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.ID, keys
}

// indexedFixture makes a store holding indexFixture's snapshot and
// indexes it.
func indexedFixture(t *testing.T, inline bool) (*Store, string, [][]byte, *SnapshotIndex) {
	t.Helper()
	s := newStore(t, InitOptions{}, Options{})
	id, keys := indexFixture(t, s, inline)
	x, err := s.IndexSnapshot(id)
	if err != nil {
		t.Fatal(err)
	}
	return s, id, keys, x
}

// eachFormat runs test on a snapshot written in metadata chunks and on
// one written in object frames.
func eachFormat(t *testing.T, test func(t *testing.T, inline bool)) {
	for _, inline := range []bool{false, true} {
		name := "metadata chunks"
		if inline {
			name = "object frames"
		}
		t.Run(name, func(t *testing.T) { test(t, inline) })
	}
}

// currentRecords returns the current record of every key of snapshot id as
// WalkCurrent (restore, cat) sees them.
func currentRecords(t *testing.T, s *Store, id string) []Object {
	t.Helper()
	var cur []Object
	if _, err := s.WalkCurrent(id, nil, func(o Object) error { cur = append(cur, o); return nil }); err != nil {
		t.Fatal(err)
	}
	return cur
}

func recordName(o Object) string {
	return fmt.Sprintf("%q@%s del=%v", o.Key, o.VersionID, o.DeleteMarker)
}

// TestSnapshotIndexFind: Find returns the current record WalkCurrent hands
// over for every key (versioned, deleted, on either side of a frame
// boundary), nothing for keys the snapshot lacks, and decodes at most one
// frame per lookup.
func TestSnapshotIndexFind(t *testing.T) { eachFormat(t, testSnapshotIndexFind) }

func testSnapshotIndexFind(t *testing.T, inline bool) {
	s, id, keys, x := indexedFixture(t, inline)
	if len(x.frames) < 3 {
		t.Fatalf("%d object frames; the test needs several", len(x.frames))
	}
	straddles := 0
	for i := 1; i < len(x.frames); i++ {
		if bytes.Equal(x.frames[i-1].last, x.frames[i].first) {
			straddles++
		}
	}
	if inline && straddles < 2 {
		t.Fatalf("%d keys straddle a frame boundary; the test needs 2", straddles)
	}
	for i, f := range x.frames {
		if (f.chunk == nil) != inline {
			t.Fatalf("entry %d: metadata chunk %v; the test wants object frames %v", i, f.chunk, inline)
		}
	}
	cur := currentRecords(t, s, id)
	if len(cur) != len(keys) {
		t.Fatalf("%d current records of %d keys", len(cur), len(keys))
	}
	if x.Summary().Count != 3300 || !x.Summary().Sorted {
		t.Errorf("summary %+v", x.Summary())
	}
	// The index pass reads the manifest, not the metadata chunks.
	reads0 := s.metaReads.Load()
	if _, err := s.IndexSnapshot(id); err != nil {
		t.Fatal(err)
	}
	if n := s.metaReads.Load() - reads0; n != 0 {
		t.Errorf("indexing read %d metadata chunks, want none", n)
	}
	if empty, err := x.Empty(); empty || err != nil {
		t.Errorf("Empty() = %v, %v; the snapshot has live keys", empty, err)
	}
	for _, want := range cur {
		got, ok, err := x.Find(want.Key)
		if err != nil || !ok || recordName(got) != recordName(want) {
			t.Fatalf("Find(%q) = %s, %v, %v; want %s", want.Key, recordName(got), ok, err, recordName(want))
		}
	}
	for _, k := range []string{"\x00", "a", "k/", "k/00000", "k/00001\x00", "k/0100", "k/99999", "l", "\xff"} {
		if o, ok, err := x.Find([]byte(k)); ok || err != nil {
			t.Errorf("Find(%q) = %s, %v, %v; want absent", k, recordName(o), ok, err)
		}
	}
	// Lookups in key order decode each frame once.
	reads := 0
	x2, err := s.IndexSnapshot(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cur {
		before := x2.cachedFrames()
		if _, _, err := x2.Find(o.Key); err != nil {
			t.Fatal(err)
		}
		if x2.cachedFrames() != before {
			reads++
		}
	}
	if reads > len(x2.frames) {
		t.Errorf("%d frames decoded for %d lookups in key order over %d frames", reads, len(cur), len(x2.frames))
	}

	if _, err := s.IndexSnapshot("20260101T000000Z-00000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("index of a missing snapshot: %v", err)
	}
	un := putObjects(t, s, "unsorted", time.Time{}, map[string][]byte{"a": []byte("a")})
	if _, err := s.IndexSnapshot(un.ID); !errors.Is(err, ErrNotSorted) {
		t.Errorf("index of an unsorted snapshot: %v, want ErrNotSorted", err)
	}

	// A snapshot whose every key is deleted is empty.
	sn, err := s.Begin(context.Background(), BeginOptions{Source: "gone", Sorted: true})
	if err != nil {
		t.Fatal(err)
	}
	sn.inlineFrames = inline
	for _, k := range []string{"a", "b", "b"} {
		if err := sn.PutExisting(Object{Key: []byte(k), DeleteMarker: true}); err != nil {
			t.Fatal(err)
		}
	}
	gone, err := sn.Commit(context.Background(), CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	xg, err := s.IndexSnapshot(gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	if empty, err := xg.Empty(); !empty || err != nil {
		t.Errorf("Empty() of a snapshot of delete markers = %v, %v", empty, err)
	}
}

// cachedFrames lists the decoded frames cached, for tests.
func (x *SnapshotIndex) cachedFrames() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var ids []int
	for _, c := range x.cache {
		ids = append(ids, c.i)
	}
	return fmt.Sprint(ids)
}

// TestSnapshotIndexSeek: an iterator started at any key, or between keys,
// hands over the current records from there in order, and one moved with
// Seek (forwards and back, within its frame or not) does too.
func TestSnapshotIndexSeek(t *testing.T) { eachFormat(t, testSnapshotIndexSeek) }

func testSnapshotIndexSeek(t *testing.T, inline bool) {
	s, id, _, x := indexedFixture(t, inline)
	cur := currentRecords(t, s, id)
	names := make([]string, len(cur))
	for i, o := range cur {
		names[i] = recordName(o)
	}
	take := func(it *SnapshotIter, n int) []string {
		var out []string
		for len(out) < n {
			o, ok := it.Next()
			if !ok {
				break
			}
			out = append(out, recordName(o))
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	check := func(desc string, got []string, from, n int) {
		t.Helper()
		want := names[from:min(from+n, len(names))]
		if !slices.Equal(got, want) {
			t.Fatalf("%s: got %q, want %q", desc, got, want)
		}
	}
	// From every key, and from just after it (between keys).
	for i, o := range cur {
		check(fmt.Sprintf("seek %q", o.Key), take(x.Seek(o.Key), 4), i, 4)
		after := append(slices.Clip(o.Key), 0)
		check(fmt.Sprintf("seek %q", after), take(x.Seek(after), 4), i+1, 4)
	}
	// The whole walk, from the start and from a few places.
	for _, from := range []int{0, 1, 1000, len(cur) / 2, len(cur) - 1} {
		check(fmt.Sprintf("walk from %d", from), take(x.Seek(cur[from].Key), len(cur)), from, len(cur))
	}
	check("seek past the end", take(x.Seek([]byte("\xff")), 10), len(cur), 10)
	// One iterator moved around.
	it := x.Seek(nil)
	pos := 0
	for _, to := range []int{5, 6, 3, 900, 1200, 20, len(cur) - 2, 1, len(cur) / 3} {
		check(fmt.Sprintf("from %d", pos), take(it, 3), pos, 3)
		it.Seek(cur[to].Key)
		pos = to
	}
	check(fmt.Sprintf("from %d", pos), take(it, len(cur)), pos, len(cur))
}

// TestSnapshotIndexRefusesDamage: a flipped bit in an object frame fails
// the index pass; one in a metadata chunk fails only the lookups in that
// chunk, whenever the index was built; one made after the index was built
// fails the lookup and the iterator that read that frame, not the others.
func TestSnapshotIndexRefusesDamage(t *testing.T) { eachFormat(t, testSnapshotIndexRefusesDamage) }

func testSnapshotIndexRefusesDamage(t *testing.T, inline bool) {
	s, id, _, x := indexedFixture(t, inline)
	// The bit flips in the manifest's object frame, or in the pack that
	// holds the metadata chunk.
	f := x.frames[1]
	p, off := s.path(snapshotsDir, id+".snap"), f.loc.off+f.loc.n/2
	if !inline {
		locs := s.idx.locations(*f.chunk)
		if len(locs) != 1 {
			t.Fatalf("metadata chunk in %d places", len(locs))
		}
		p, off = s.packPath(locs[0].packName()), int64(locs[0].offset)+int64(locs[0].length)/2
	}
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(good)
	bad[off] ^= 1
	unsealAll(t, s.Dir())
	if err := os.WriteFile(p, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if inline {
		if _, err := s.IndexSnapshot(id); !errors.Is(err, ErrCorrupt) {
			t.Errorf("index of a damaged manifest: %v, want ErrCorrupt", err)
		}
	} else {
		// The manifest is whole: the index builds, and only lookups in
		// the damaged chunk fail.
		x2, err := s.IndexSnapshot(id)
		if err != nil {
			t.Fatalf("index of a snapshot with one damaged metadata chunk: %v", err)
		}
		for i, g := range x2.frames {
			_, ok, err := x2.Find(g.first)
			var mc *MetaChunkError
			if i == 1 && (!errors.As(err, &mc) || mc.Chunk != *f.chunk || ok) {
				t.Errorf("Find in the damaged metadata chunk: %v, %v; want a MetaChunkError naming it", ok, err)
			}
			if i != 1 && (err != nil || !ok) {
				t.Errorf("Find in good metadata chunk %d: %v, %v", i, ok, err)
			}
		}
		if _, err := x2.Empty(); err != nil {
			t.Errorf("Empty() with the first chunk whole: %v", err)
		}
	}
	if _, ok, err := x.Find(x.frames[1].last); !errors.Is(err, ErrCorrupt) || ok {
		t.Errorf("Find in the damaged frame: %v, %v; want ErrCorrupt", ok, err)
	}
	if _, ok, err := x.Find(x.frames[0].first); err != nil || !ok {
		t.Errorf("Find in a good frame: %v, %v", ok, err)
	}
	it := x.Seek(x.frames[0].first)
	n := 0
	for _, ok := it.Next(); ok; _, ok = it.Next() {
		n++
	}
	if !errors.Is(it.Err(), ErrCorrupt) || n == 0 || n > x.frames[0].count {
		t.Errorf("iterator over the damaged frame: %d records, then %v", n, it.Err())
	}
	if !inline {
		var mc *MetaChunkError
		if _, _, err := x.Find(x.frames[1].last); !errors.As(err, &mc) || mc.Chunk != *x.frames[1].chunk {
			t.Errorf("Find in the damaged metadata chunk: %v, want a MetaChunkError naming it", err)
		}
		return // the manifest itself is read only by the index pass
	}
	// A manifest of another size than the one indexed is refused.
	if err := os.WriteFile(p, append(slices.Clone(good), 0), 0o600); err != nil {
		t.Fatal(err)
	}
	x.mu.Lock()
	x.cache = nil
	x.mu.Unlock()
	if _, _, err := x.Find(x.frames[0].first); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Find in a grown manifest: %v, want ErrCorrupt", err)
	}
}

// TestSnapshotIndexConcurrent: lookups and iterators from several
// goroutines share one index and its frame cache (run with -race).
func TestSnapshotIndexConcurrent(t *testing.T) { eachFormat(t, testSnapshotIndexConcurrent) }

func testSnapshotIndexConcurrent(t *testing.T, inline bool) {
	s, id, _, x := indexedFixture(t, inline)
	cur := currentRecords(t, s, id)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(cur); i += 97 {
				o, ok, err := x.Find(cur[i].Key)
				if err != nil || !ok || recordName(o) != recordName(cur[i]) {
					t.Errorf("Find(%q) = %s, %v, %v", cur[i].Key, recordName(o), ok, err)
					return
				}
				it := x.Seek(cur[i].Key)
				for j := i; j < min(i+3, len(cur)); j++ {
					if o, ok := it.Next(); !ok || recordName(o) != recordName(cur[j]) {
						t.Errorf("seek %q, record %d: %s, %v, %v", cur[i].Key, j-i, recordName(o), ok, it.Err())
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
