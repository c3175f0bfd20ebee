package store

import (
	"encoding/binary"
	"os"
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
		inFile bool
	}{
		{"empty", nil, 0, 0, false},
		{"empty with small runs", nil, 4, 0, false},
		{"one ID", idsFrom(2, 1, 0), 0, 0, false},
		{"one run in RAM", idsFrom(3, 5000, 0), 0, 0, false},
		{"exactly one full run", idsFrom(4, 64, 0), 64, 0, true},
		{"many runs", idsFrom(5, 20000, 0), 1000, 0, true},
		{"many runs merged in levels", idsFrom(11, 20000, 0), 100, 3, true},
		{"runs of one ID merged in pairs", idsFrom(12, 300, 0), 1, 2, true},
		{"runs of one ID", idsFrom(6, 50, 0), 1, 0, true},
		{"duplicates in RAM", dup, 0, 0, false},
		{"duplicates across runs", dup, 37, 0, true},
		{"duplicates across runs merged in levels", dup, 37, 2, true},
		{"all one ID", append(make([]ChunkID, 0, 100), idsFrom(7, 1, 0)[0], idsFrom(7, 1, 0)[0], idsFrom(7, 1, 0)[0]), 2, 0, true},
		{"top 2 bytes shared", idsFrom(8, 3000, 2), 500, 0, true},
		{"top 8 bytes shared (bucket over the buffer)", idsFrom(9, 4000, 8), 700, 0, true},
		{"top 31 bytes shared", lastByteOnly(256), 30, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := newIDSetBuilder(dir, tc.runIDs, tc.fanout)
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
			for _, id := range tc.ids {
				check(id)
				check(id) // the cache of the last lookup
				// Neighbours: same top bits, absent.
				for _, d := range []byte{1, 0xff} {
					n := id
					n[31] += d
					check(n)
				}
				n := id
				binary.BigEndian.PutUint64(n[24:], binary.BigEndian.Uint64(n[24:])^1<<40)
				check(n)
			}
			for _, id := range idsFrom(99, 2000, 0) {
				check(id)
			}
			for _, id := range []ChunkID{{}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
				check(id)
			}
		})
	}
}

// TestIDSetDirectory: the directory's buckets hold 64 to 128 IDs on
// average and cover the file exactly.
func TestIDSetDirectory(t *testing.T) {
	for _, n := range []int{10, 127, 128, 1000, 100_000} {
		b := newIDSetBuilder(t.TempDir(), min(64, n/2), 8)
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
