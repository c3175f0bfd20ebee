package store

import (
	"cmp"
	"encoding/binary"
	"os"
	"slices"
	"testing"
)

// idsFrom returns n pseudo-random IDs; the first prefix bytes of each are
// zero (IDs sharing their top bits).
func idsFrom(seed uint64, n, prefix int) []ChunkID {
	raw := randBytes(seed, n*idSize)
	ids := make([]ChunkID, n)
	for i := range ids {
		copy(ids[i][:], raw[i*idSize:])
		clear(ids[i][:prefix])
	}
	return ids
}

// lastByteOnly returns the n (at most 256) IDs that differ only in their
// last byte, in descending order.
func lastByteOnly(n int) []ChunkID {
	ids := make([]ChunkID, n)
	for i := range ids {
		ids[i][31] = byte(n - 1 - i)
	}
	return ids
}

// TestIDSet: membership is exact for every ID added and for IDs that were
// not (including neighbours in the same bucket), whether the set stayed
// in RAM or was merged from several runs, with duplicates, when empty, and
// when many IDs share their top bits (one bucket larger than a lookup's
// buffer).
func TestIDSet(t *testing.T) {
	dup := idsFrom(1, 300, 0)
	dup = append(dup, dup[:150]...)
	dup = append(dup, dup[7], dup[7], dup[7])
	tests := []struct {
		name   string
		ids    []ChunkID
		runIDs int
		fanout int
		hint   uint64
		inFile bool
	}{
		{"empty", nil, 0, 0, 0, false},
		{"empty with small runs", nil, 4, 0, 0, false},
		{"one ID", idsFrom(2, 1, 0), 0, 0, 0, false},
		{"one run in RAM", idsFrom(3, 5000, 0), 0, 0, 0, false},
		{"one run in RAM, hint too small", idsFrom(3, 5000, 0), 0, 0, 10, false},
		{"many runs, hint too large", idsFrom(5, 5000, 0), 1000, 0, 1 << 40, true},
		{"exactly one full run", idsFrom(4, 64, 0), 64, 0, 0, true},
		{"many runs", idsFrom(5, 20000, 0), 1000, 0, 0, true},
		{"many runs merged in levels", idsFrom(11, 20000, 0), 100, 3, 0, true},
		{"runs of one ID merged in pairs", idsFrom(12, 300, 0), 1, 2, 0, true},
		{"runs of one ID", idsFrom(6, 50, 0), 1, 0, 0, true},
		{"duplicates in RAM", dup, 0, 0, 0, false},
		{"duplicates across runs", dup, 37, 0, 0, true},
		{"duplicates across runs merged in levels", dup, 37, 2, 0, true},
		{"all one ID", append(make([]ChunkID, 0, 100), idsFrom(7, 1, 0)[0], idsFrom(7, 1, 0)[0], idsFrom(7, 1, 0)[0]), 2, 0, 0, true},
		{"top 2 bytes shared", idsFrom(8, 3000, 2), 500, 0, 0, true},
		{"top 8 bytes shared (bucket over the buffer)", idsFrom(9, 4000, 8), 700, 0, 0, true},
		{"top 31 bytes shared", lastByteOnly(256), 30, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := newIDSetBuilder(dir, tc.runIDs, tc.fanout, tc.hint)
			for _, id := range tc.ids {
				if err := b.add(id); err != nil {
					t.Fatal(err)
				}
			}
			s, err := b.finish()
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			if got := s.f != nil; got != tc.inFile {
				t.Errorf("set in a file: %v, want %v", got, tc.inFile)
			}
			if es, err := os.ReadDir(dir); err != nil || len(es) != 0 {
				t.Errorf("temporary dir holds %d named entries (%v), want none", len(es), err)
			}
			in := map[ChunkID]bool{}
			for _, id := range tc.ids {
				in[id] = true
			}
			if s.len() != uint64(len(in)) {
				t.Errorf("set holds %d IDs, want %d", s.len(), len(in))
			}
			check := func(id ChunkID) {
				t.Helper()
				got, err := s.has(id)
				if err != nil {
					t.Fatal(err)
				}
				if got != in[id] {
					t.Fatalf("has(%s) = %v, want %v", id, got, in[id])
				}
			}
			var asked []ChunkID
			for _, id := range tc.ids {
				asked = append(asked, id, id) // twice: the cache of the last lookup
				// Neighbours: same top bits, absent.
				for _, d := range []byte{1, 0xff} {
					n := id
					n[31] += d
					asked = append(asked, n)
				}
				n := id
				binary.BigEndian.PutUint64(n[24:], binary.BigEndian.Uint64(n[24:])^1<<40)
				asked = append(asked, n)
			}
			asked = append(asked, idsFrom(99, 2000, 0)...)
			var top ChunkID
			for i := range top {
				top[i] = 0xff
			}
			asked = append(asked, ChunkID{}, top)
			for _, id := range asked {
				check(id)
			}
			// The same, many at once, sorted (in one call and in small
			// batches) and not.
			for _, sorted := range []bool{true, false} {
				for _, batch := range []int{len(asked), 3} {
					for first := 0; first < len(asked); first += batch {
						ids := asked[first:min(len(asked), first+batch)]
						refs := make([]idRef, len(ids))
						for i, id := range ids {
							refs[i] = newIDRef(id, i)
						}
						if sorted {
							slices.SortFunc(refs, func(a, b idRef) int { return cmp.Compare(a.top, b.top) })
						}
						found := make([]bool, len(ids))
						if err := s.hasSorted(ids, refs, found); err != nil {
							t.Fatal(err)
						}
						for i, id := range ids {
							if found[i] != in[id] {
								t.Fatalf("hasSorted (sorted %v, batches of %d): %s found %v, want %v", sorted, batch, id, found[i], in[id])
							}
						}
					}
				}
			}
		})
	}
}

// TestIDSetDirectory: the directory's buckets hold 64 to 128 IDs on
// average and cover the file exactly.
func TestIDSetDirectory(t *testing.T) {
	for _, n := range []int{10, 127, 128, 1000, 100_000} {
		b := newIDSetBuilder(t.TempDir(), min(64, n/2), 8, 0)
		for _, id := range idsFrom(uint64(n), n, 0) {
			if err := b.add(id); err != nil {
				t.Fatal(err)
			}
		}
		s, err := b.finish()
		if err != nil {
			t.Fatal(err)
		}
		buckets := len(s.dir) - 1
		if avg := n / buckets; buckets > 1 && (avg < idBucketTarget || avg >= 2*idBucketTarget) {
			t.Errorf("%d IDs: %d buckets, %d IDs each on average", n, buckets, avg)
		}
		if s.dir[0] != 0 || s.dir[buckets] != uint32(n) {
			t.Errorf("%d IDs: directory runs from %d to %d", n, s.dir[0], s.dir[buckets])
		}
		s.close()
	}
}

// BenchmarkIDSetHas measures one lookup in a set of a million IDs held in
// a file, half of them present.
func BenchmarkIDSetHas(b *testing.B) {
	const n = 1 << 20
	ids := idsFrom(1, n, 0)
	bd := newIDSetBuilder(b.TempDir(), 0, 0, n)
	for _, id := range ids {
		if err := bd.add(id); err != nil {
			b.Fatal(err)
		}
	}
	s, err := bd.finish()
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	absent := idsFrom(2, 1024, 0)
	asked := func(i int) ChunkID {
		if i%2 == 1 {
			return absent[i%len(absent)]
		}
		return ids[(i*7919)%n]
	}
	b.Run("one", func(b *testing.B) {
		for i := range b.N {
			if _, err := s.has(asked(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Batches of 64Ki sorted IDs, as Verify asks.
	b.Run("sorted", func(b *testing.B) {
		const batch = 64 << 10
		buf := make([]ChunkID, 0, batch)
		refs := make([]idRef, 0, batch)
		found := make([]bool, batch)
		for i := 0; i < b.N; i += batch {
			buf, refs = buf[:0], refs[:0]
			for j := i; j < min(b.N, i+batch); j++ {
				buf = append(buf, asked(j))
				refs = append(refs, newIDRef(buf[len(buf)-1], len(buf)-1))
			}
			slices.SortFunc(refs, func(a, b idRef) int { return cmp.Compare(a.top, b.top) })
			if err := s.hasSorted(buf, refs, found); err != nil {
				b.Fatal(err)
			}
		}
	})
}
