package store

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"slices"
)

// Verify's set of good chunks is exact (a false "good" would hide damage)
// and its memory does not grow with the chunk count: the IDs are sorted
// and de-duplicated outside RAM, into one unnamed temporary file (opened
// with O_TMPFILE, or created and unlinked at once: nothing is left after a
// crash), and looked up through a small directory in RAM.
//
// Building: IDs are added in any order to a buffer of runIDs IDs; a full
// buffer is sorted, de-duplicated and written as a run (an unnamed file).
// Runs are merged (a k-way merge on a heap, duplicates dropped) fanout at
// a time into a run of the next level, so no more than fanout-1 runs per
// level stay open; at the end the remaining runs are merged into the set's
// file. A set that never filled the buffer stays in RAM, sorted, and no
// file is made.
//
// The set's file and the directory in RAM:
//
//	| what                   | where | layout                                                   |
//	|------------------------|-------|----------------------------------------------------------|
//	| set file               | temp  | n IDs of 32 bytes, ascending (bytewise), no duplicates   |
//	| directory              | RAM   | 2^B+1 uint32: dir[b] = index of the first ID whose top    |
//	|                        |       | B bits are >= b; dir[2^B] = n                             |
//	| bucket b               | file  | IDs dir[b] to dir[b+1]-1, bytes 32*dir[b] to 32*dir[b+1]  |
//
// B is the largest with n/2^B >= idBucketTarget (0 for small sets), so a
// bucket holds 64 to 128 IDs on average (2 to 4 KiB: one pread) since the
// IDs are HMAC-SHA256 outputs, uniformly spread. A lookup reads its
// bucket into a reused buffer and binary-searches it; a bucket larger than
// the buffer (IDs ground to share their top bits) is binary-searched in
// the file one ID per pread instead, so a hostile bucket costs time, never
// memory.
//
// Memory and limits:
//
//	| part                 | bytes                              | at 1M IDs | at 100M IDs |
//	|----------------------|------------------------------------|-----------|-------------|
//	| run buffer (build)   | 32 * runIDs (default 128Ki IDs)    | 4 MiB     | 4 MiB       |
//	| merge readers        | at most idMergeBudget              | 512 KiB   | 4 MiB       |
//	| directory            | 4 * (2^B + 1), B = log2(n/64)      | 32 KiB    | 4 MiB       |
//	| lookup buffer        | 32 * idBucketBuf                   | 16 KiB    | 16 KiB      |
//	| sorted lookup window | 32 * idWindowIDs                   | 64 KiB    | 64 KiB      |
//	| open temporary files | fanout-1 per level, plus 2         | 10        | 75          |
//	| temporary disk, peak | 32 bytes per ID added, twice       | 64 MB     | 6.4 GB      |
//	| temporary disk, I/O  | each ID written once per level + 1 | 2 times   | 3 times     |
//
// The set holds at most 2^32-1 IDs (the directory's uint32 indexes; 128
// GiB of IDs); more is refused. Not safe for concurrent use.

const (
	idSize            = len(ChunkID{})
	defaultIDRun      = 128 << 10 // IDs sorted in RAM per run: 4 MiB
	defaultIDFanout   = 64        // runs merged at once
	idBucketTarget    = 64        // least average IDs per directory bucket
	idBucketBuf       = 512       // IDs a lookup reads at once
	idWindowIDs       = 2048      // IDs a sorted lookup reads at once: 64 KiB
	idMergeBudget     = 4 << 20   // bytes of read buffers over all runs being merged
	minIDMergeBuffer  = 4 << 10
	maxIDMergeBuffer  = 64 << 10
	idSetWriterBuffer = 64 << 10
	maxIDSetSize      = 1<<32 - 1
)

// idSetBuilder collects IDs into an idSet.
type idSetBuilder struct {
	dir    string // where temporary files go
	fanout int    // most runs merged at once
	runIDs int    // most IDs in run
	run    []ChunkID
	runs   []idRun // levels never increase along the slice
	added  uint64
}

// idRun is one sorted, de-duplicated run on disk, the merge of
// fanout^level runs of the buffer.
type idRun struct {
	f     *os.File
	n     uint64
	level int
}

// newIDSetBuilder returns a builder whose temporary files go to dir, which
// sorts runIDs IDs at a time in RAM (0 means defaultIDRun) and merges at
// most fanout runs at once (0 means defaultIDFanout). hint, the number of
// IDs expected, sizes the first buffer; it grows up to runIDs if more come.
func newIDSetBuilder(dir string, runIDs, fanout int, hint uint64) *idSetBuilder {
	if runIDs <= 0 {
		runIDs = defaultIDRun
	}
	if fanout < 2 {
		fanout = defaultIDFanout
	}
	return &idSetBuilder{dir: dir, fanout: fanout, runIDs: runIDs, run: make([]ChunkID, 0, min(hint, uint64(runIDs)))}
}

// add puts id in the set.
func (b *idSetBuilder) add(id ChunkID) error {
	if b.added >= maxIDSetSize {
		return fmt.Errorf("chunk ID set: more than %d IDs", uint64(maxIDSetSize))
	}
	b.added++
	if len(b.run) == cap(b.run) {
		// Grow by doubling, never past runIDs.
		b.run = append(make([]ChunkID, 0, min(max(2*cap(b.run), 1024), b.runIDs)), b.run...)
	}
	b.run = append(b.run, id)
	if len(b.run) == b.runIDs {
		return b.flush()
	}
	return nil
}

// compareIDs orders IDs bytewise.
func compareIDs(a, b ChunkID) int {
	if x, y := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8]); x != y {
		return cmp.Compare(x, y)
	}
	return bytes.Compare(a[8:], b[8:])
}

// sortRun sorts and de-duplicates the buffer in place.
func (b *idSetBuilder) sortRun() {
	slices.SortFunc(b.run, compareIDs)
	b.run = slices.Compact(b.run)
}

// flush writes the buffer as a run, then merges the last runs while
// fanout of them share a level: no more than fanout-1 runs per level are
// open, and each ID is written once per level.
func (b *idSetBuilder) flush() error {
	b.sortRun()
	f, err := openUnnamedTemp(b.dir)
	if err != nil {
		return fmt.Errorf("chunk ID set: %w", err)
	}
	w := bufio.NewWriterSize(f, idSetWriterBuffer)
	for i := range b.run {
		w.Write(b.run[i][:]) // a bufio.Writer keeps its first error
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("chunk ID set: write run: %w", err)
	}
	b.runs = append(b.runs, idRun{f: f, n: uint64(len(b.run))})
	b.run = b.run[:0]
	for len(b.runs) >= b.fanout {
		last := b.runs[len(b.runs)-b.fanout:]
		if last[0].level != last[len(last)-1].level {
			break
		}
		if err := b.mergeLast(b.fanout); err != nil {
			return err
		}
	}
	return nil
}

// mergeLast merges the last k runs into one run a level above them.
func (b *idSetBuilder) mergeLast(k int) error {
	in := b.runs[len(b.runs)-k:]
	level := in[0].level + 1
	f, err := openUnnamedTemp(b.dir)
	if err != nil {
		return fmt.Errorf("chunk ID set: %w", err)
	}
	w := bufio.NewWriterSize(f, idSetWriterBuffer)
	var n uint64
	err = mergeIDRuns(in, func(id ChunkID) {
		w.Write(id[:])
		n++
	})
	if err == nil {
		err = w.Flush()
	}
	for _, r := range in {
		r.f.Close()
	}
	b.runs = b.runs[:len(b.runs)-k]
	if err != nil {
		f.Close()
		return fmt.Errorf("chunk ID set: merge runs: %w", err)
	}
	b.runs = append(b.runs, idRun{f: f, n: n, level: level})
	return nil
}

// discard drops whatever the builder holds. It is safe after finish.
func (b *idSetBuilder) discard() {
	for _, r := range b.runs {
		r.f.Close()
	}
	b.runs, b.run = nil, nil
}

// finish returns the set of every ID added; the builder is then empty.
func (b *idSetBuilder) finish() (*idSet, error) {
	defer b.discard()
	if len(b.runs) == 0 {
		b.sortRun()
		s := &idSet{mem: b.run}
		b.run = nil
		return s, nil
	}
	if len(b.run) > 0 {
		if err := b.flush(); err != nil {
			return nil, err
		}
	}
	b.run = nil // the merges do not need it: let it go
	for len(b.runs) > b.fanout {
		if err := b.mergeLast(b.fanout); err != nil {
			return nil, err
		}
	}
	var total uint64
	for _, r := range b.runs {
		total += r.n
	}
	// total may count IDs found in several runs; the directory's B is
	// chosen from it, so buckets can only come out smaller than planned.
	shift := uint(64)
	if total >= 2*idBucketTarget {
		shift = 64 - uint(bits.Len64(total/idBucketTarget)-1)
	}
	buckets := uint64(1) << (64 - shift)
	out, err := openUnnamedTemp(b.dir)
	if err != nil {
		return nil, fmt.Errorf("chunk ID set: %w", err)
	}
	s := &idSet{f: out, dir: make([]uint32, buckets+1), shift: shift, buf: make([]byte, idBucketBuf*idSize)}
	w := bufio.NewWriterSize(out, idSetWriterBuffer)
	var n uint64
	next := uint64(0)
	err = mergeIDRuns(b.runs, func(id ChunkID) {
		for bk := s.bucket(id); next <= bk; next++ {
			s.dir[next] = uint32(n)
		}
		w.Write(id[:])
		n++
	})
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("chunk ID set: merge runs: %w", err)
	}
	for ; next <= buckets; next++ {
		s.dir[next] = uint32(n)
	}
	s.n = n
	return s, nil
}

// mergeIDRuns reads runs from their start and calls emit with each
// distinct ID of them all, in order.
func mergeIDRuns(runs []idRun, emit func(ChunkID)) error {
	bufSize := min(max(idMergeBudget/len(runs), minIDMergeBuffer), maxIDMergeBuffer)
	h := make(idMergeHeap, 0, len(runs))
	for _, r := range runs {
		if _, err := r.f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("rewind run: %w", err)
		}
		c := &idCursor{r: bufio.NewReaderSize(r.f, bufSize), left: r.n}
		ok, err := c.next()
		if err != nil {
			return err
		}
		if ok {
			h = append(h, c)
		}
	}
	heap.Init(&h)
	var last ChunkID
	first := true
	for len(h) > 0 {
		c := h[0]
		if first || c.id != last {
			emit(c.id)
			last, first = c.id, false
		}
		ok, err := c.next()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
	}
	return nil
}

// idCursor reads one run in order.
type idCursor struct {
	r    *bufio.Reader
	left uint64
	id   ChunkID
}

func (c *idCursor) next() (bool, error) {
	if c.left == 0 {
		return false, nil
	}
	if _, err := io.ReadFull(c.r, c.id[:]); err != nil {
		return false, fmt.Errorf("read run: %w", err)
	}
	c.left--
	return true, nil
}

// idMergeHeap orders cursors by their current ID.
type idMergeHeap []*idCursor

func (h idMergeHeap) Len() int           { return len(h) }
func (h idMergeHeap) Less(i, j int) bool { return compareIDs(h[i].id, h[j].id) < 0 }
func (h idMergeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idMergeHeap) Push(x any)        { *h = append(*h, x.(*idCursor)) }
func (h *idMergeHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// idSet is a sorted, de-duplicated set of chunk IDs: in RAM (mem) when it
// fit in one run, else in a file with a directory in RAM.
type idSet struct {
	mem []ChunkID // sorted, when f is nil

	f     *os.File
	n     uint64
	dir   []uint32
	shift uint   // bucket(id) = top 64-shift bits of id; 64 means one bucket
	buf   []byte // has's bucket
	win   []byte // hasSorted's window, made on its first call
}

func (s *idSet) bucket(id ChunkID) uint64 {
	if s.shift >= 64 {
		return 0
	}
	return binary.BigEndian.Uint64(id[:8]) >> s.shift
}

// len returns how many distinct IDs the set holds.
func (s *idSet) len() uint64 {
	if s.f == nil {
		return uint64(len(s.mem))
	}
	return s.n
}

// has reports whether id is in the set (one pread). Errors are the
// temporary file's. Verify asks hasSorted instead, many IDs at once.
func (s *idSet) has(id ChunkID) (bool, error) {
	if s.f == nil {
		_, ok := slices.BinarySearchFunc(s.mem, id, compareIDs)
		return ok, nil
	}
	return s.fileHas(id)
}

func (s *idSet) fileHas(id ChunkID) (bool, error) {
	b := s.bucket(id)
	lo, hi := int64(s.dir[b]), int64(s.dir[b+1])
	if lo >= hi {
		return false, nil
	}
	if hi-lo <= idBucketBuf {
		buf := s.buf[:(hi-lo)*int64(idSize)]
		if _, err := s.f.ReadAt(buf, lo*int64(idSize)); err != nil {
			return false, fmt.Errorf("chunk ID set: read: %w", err)
		}
		return searchIDs(buf, id), nil
	}
	// A bucket larger than the buffer: search the file itself.
	one := s.buf[:idSize]
	for lo < hi {
		m := int64(uint64(lo+hi) >> 1)
		if _, err := s.f.ReadAt(one, m*int64(idSize)); err != nil {
			return false, fmt.Errorf("chunk ID set: read: %w", err)
		}
		switch c := bytes.Compare(one, id[:]); {
		case c == 0:
			return true, nil
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return false, nil
}

// idRef names ids[i] in a hasSorted call; top is its first 8 bytes, big
// endian, the key refs are sorted by.
type idRef struct {
	top uint64
	i   uint32
}

// newIDRef returns the idRef of id, the ith ID.
func newIDRef(id ChunkID, i int) idRef {
	return idRef{top: binary.BigEndian.Uint64(id[:8]), i: uint32(i)}
}

// hasSorted sets found[r.i] to whether ids[r.i] is in the set for each r
// of refs, which must be sorted by top (any order is correct, only
// slower). Where the IDs are dense it reads the set file in windows of
// idWindowIDs IDs, each bucket at most once; where they are sparse, one
// bucket per pread.
func (s *idSet) hasSorted(ids []ChunkID, refs []idRef, found []bool) error {
	if s.f == nil {
		for _, r := range refs {
			_, found[r.i] = slices.BinarySearchFunc(s.mem, ids[r.i], compareIDs)
		}
		return nil
	}
	if len(s.win) == 0 {
		s.win = make([]byte, idWindowIDs*idSize)
	}
	var wlo, whi int64 // IDs of the file in s.win[:(whi-wlo)*idSize]
	for k, r := range refs {
		id := ids[r.i]
		b := s.bucket(id)
		lo, hi := int64(s.dir[b]), int64(s.dir[b+1])
		switch {
		case lo >= hi:
			found[r.i] = false
			continue
		case hi-lo > idWindowIDs:
			ok, err := s.fileHas(id)
			if err != nil {
				return err
			}
			found[r.i] = ok
			continue
		case lo < wlo || hi > whi:
			// Read from this bucket to the end of the last bucket that
			// later IDs need and the window holds.
			end := hi
			for _, next := range refs[k+1:] {
				e := int64(s.dir[s.bucket(ids[next.i])+1])
				if e-lo > idWindowIDs {
					break
				}
				end = max(end, e)
			}
			buf := s.win[:(end-lo)*int64(idSize)]
			if _, err := s.f.ReadAt(buf, lo*int64(idSize)); err != nil {
				return fmt.Errorf("chunk ID set: read: %w", err)
			}
			wlo, whi = lo, end
		}
		found[r.i] = searchIDs(s.win[(lo-wlo)*int64(idSize):(hi-wlo)*int64(idSize)], id)
	}
	return nil
}

// searchIDs reports whether sorted packed IDs buf hold id.
func searchIDs(buf []byte, id ChunkID) bool {
	for l, h := 0, len(buf)/idSize; l < h; {
		m := int(uint(l+h) >> 1)
		switch c := bytes.Compare(buf[m*idSize:(m+1)*idSize], id[:]); {
		case c == 0:
			return true
		case c < 0:
			l = m + 1
		default:
			h = m
		}
	}
	return false
}

// close drops the set and its file.
func (s *idSet) close() error {
	s.mem, s.dir, s.buf, s.win = nil, nil, nil, nil
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("chunk ID set: %w", err)
	}
	return nil
}
