package store

import (
	"crypto/rand"
	"fmt"

	"github.com/bits-and-blooms/bloom/v3"
)

// Prune's set of live chunks (the chunks a kept snapshot or a journal
// references) is a Bloom filter, so that its memory does not outgrow the
// appliance at a mail archive's chunk counts:
//
//	| set                 | bytes per chunk | 1M chunks | 10M chunks | 100M chunks |
//	|---------------------|-----------------|-----------|------------|-------------|
//	| map[ChunkID]struct{} | ~100 (with GC)  | ~100 MB   | ~1 GB      | ~10 GB      |
//	| this filter          | ~3 (24 bits)    | 3 MB      | 30 MB      | 300 MB      |
//
// A Bloom filter has no false negatives: every chunk added tests present,
// so no pack that holds a live chunk is ever judged dead. A false positive
// (at most about 1 in 100,000 lookups while the store holds no more chunks
// than the filter was sized for: the index's entry count) can only make
// prune keep a dead pack: the safe direction, as everything prune is
// unsure of. Each prune salts the filter with fresh random bytes, so a
// pack kept by chance is judged again, independently, at the next prune.

// liveFalsePositive is the filter's false-positive rate at its sized count.
const liveFalsePositive = 1e-5

// minLiveSized is the least count the filter is sized for (an empty or
// new index).
const minLiveSized = 1 << 16

// liveSet is prune's set of live chunks. Not safe for concurrent use.
type liveSet struct {
	f    *bloom.BloomFilter
	salt [16]byte
	buf  []byte
}

// newLiveSet returns an empty set sized for n chunks (bits forces the
// filter's size in bits, for tests; 0 sizes it from n).
func newLiveSet(n uint64, bits uint) (*liveSet, error) {
	ls := &liveSet{buf: make([]byte, 0, 16+len(ChunkID{}))}
	if _, err := rand.Read(ls.salt[:]); err != nil {
		return nil, fmt.Errorf("live set: %w", err)
	}
	if bits > 0 {
		ls.f = bloom.New(bits, 4)
		return ls, nil
	}
	ls.f = bloom.NewWithEstimates(uint(max(n, minLiveSized)), liveFalsePositive)
	return ls, nil
}

func (ls *liveSet) key(c ChunkID) []byte {
	ls.buf = append(append(ls.buf[:0], ls.salt[:]...), c[:]...)
	return ls.buf
}

// add marks c live.
func (ls *liveSet) add(c ChunkID) { ls.f.Add(ls.key(c)) }

// mayHave says whether c may be live: true for every chunk added, and for
// a few others.
func (ls *liveSet) mayHave(c ChunkID) bool { return ls.f.Test(ls.key(c)) }

// bytes is the filter's size.
func (ls *liveSet) bytes() uint { return ls.f.Cap() / 8 }
