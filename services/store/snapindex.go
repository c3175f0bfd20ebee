package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
)

// ErrNotSorted means a snapshot's objects are not recorded in key order
// (format 1, or format 2 written before sorted snapshots), so it cannot be
// indexed by IndexSnapshot; read it whole (ReadManifest, WalkCurrent).
var ErrNotSorted = errors.New("snapshot is not sorted")

// indexFrameCache is how many decoded object frames a SnapshotIndex keeps.
const indexFrameCache = 2

// SnapshotIndex reads a committed sorted snapshot by key without holding
// its objects: it keeps where each object frame lies in the manifest, or
// which metadata chunk an object-chunk frame names, and the first and
// last key of its records, and decodes one only when a lookup or an
// iterator reaches it. Every frame read is checked as a full read checks
// it (header bounds, AES-GCM under the frame number, record checks), every
// metadata chunk against its ID and tag, and each must match what the
// index pass saw (for a chunk: its reference's count, bytes, first and
// last key) and be in key order. A metadata chunk that does not read
// fails the lookups and iterators that reach it (a MetaChunkError), not
// the index or its other chunks: one damaged chunk on disk costs the
// records in it, not the snapshot.
//
// Limits: memory is O(entries), not O(objects): about 100 bytes plus the
// first and last key per entry. A pull cuts metadata chunks of about 256
// records (at most 1 MiB), so a million-object snapshot takes about 4,600
// entries (about 1 MiB with maildir-shaped keys); older stores wrote
// object frames of 1024 records or up to 4 MiB; a snapshot written one
// record per frame degenerates to one entry per record. On top of that it
// keeps the last indexFrameCache decoded entries (each up to 4 MiB of
// records, a few times that decoded) and each iterator holds one decoded
// entry. The manifest or pack is reopened (as hostile input) for each
// entry decoded, so an index holds no file open and needs no Close.
// Building the index reads and authenticates the whole manifest, not the
// metadata chunks. Safe for concurrent use; an iterator is not.
type SnapshotIndex struct {
	s      *Store
	id     string
	head   *Manifest // summary, Objects empty
	size   int64     // manifest size when indexed
	v1     bool
	frames []indexFrame

	mu    sync.Mutex
	cache []decodedFrame // most recently used first
}

// indexFrame is one object frame of an indexed manifest that holds
// records, or one metadata chunk an object-chunk frame references.
type indexFrame struct {
	loc         frameLoc
	chunk       *ChunkID // the metadata chunk; nil for an object frame
	count       int
	bytes       int64 // a metadata chunk's object bytes, from its reference
	first, last []byte
}

type decodedFrame struct {
	i    int
	objs []Object
}

// IndexSnapshot indexes committed sorted snapshot id in one streaming pass
// over its manifest. A snapshot that is not sorted is ErrNotSorted.
func (s *Store) IndexSnapshot(id string) (*SnapshotIndex, error) {
	head, err := s.SnapshotHead(id)
	if err != nil {
		return nil, err
	}
	if !head.Sorted {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotSorted)
	}
	f, size, err := s.openCommitted(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	x := &SnapshotIndex{s: s, id: id, size: size}
	// add appends an entry; entries must follow each other in key order
	// (records within one are checked when it is decoded).
	add := func(e indexFrame) error {
		if bytes.Compare(e.first, e.last) > 0 {
			return fmt.Errorf("sorted manifest frame %d runs from %q back to %q: %w", e.loc.seq, e.first, e.last, ErrCorrupt)
		}
		if n := len(x.frames); n > 0 && bytes.Compare(e.first, x.frames[n-1].last) < 0 {
			return fmt.Errorf("sorted manifest records %q after %q: %w", e.first, x.frames[n-1].last, ErrCorrupt)
		}
		x.frames = append(x.frames, e)
		return nil
	}
	m, st, err := s.walkFrames(f, false, false, walkHooks{
		onFrame: func(loc frameLoc, _ *ChunkID, objs []Object) error {
			if len(objs) == 0 {
				return nil
			}
			if err := checkSorted(objs); err != nil {
				return err
			}
			return add(indexFrame{loc: loc, count: len(objs),
				first: bytes.Clone(objs[0].Key), last: bytes.Clone(objs[len(objs)-1].Key)})
		},
		laterRef: func(loc frameLoc, id ChunkID, r wireRef) error {
			if r.Count > math.MaxInt32 {
				return fmt.Errorf("object-chunk reference of %d records: %w", r.Count, ErrCorrupt)
			}
			return add(indexFrame{loc: loc, chunk: &id, count: int(r.Count), bytes: r.Bytes,
				first: bytes.Clone(r.First), last: bytes.Clone(r.Last)})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("manifest %s holds snapshot %s: %w", id, m.ID, ErrCorrupt)
	}
	if !m.Sorted {
		return nil, fmt.Errorf("manifest %s: its head said sorted, its full read not: %w", id, ErrCorrupt)
	}
	x.head, x.v1 = m, st.v1
	return x, nil
}

// checkSorted checks that objs are in key order (a key's versions next to
// each other).
func checkSorted(objs []Object) error {
	for i := 1; i < len(objs); i++ {
		if bytes.Compare(objs[i].Key, objs[i-1].Key) < 0 {
			return fmt.Errorf("sorted manifest records %q after %q: %w", objs[i].Key, objs[i-1].Key, ErrCorrupt)
		}
	}
	return nil
}

// Summary returns the snapshot's summary (Objects empty); do not modify it.
func (x *SnapshotIndex) Summary() *Manifest { return x.head }

// Empty reports whether no key's current record is an object (every one
// is a delete marker, or there are none). It decodes entries from the
// first until it finds an object, usually one.
func (x *SnapshotIndex) Empty() (bool, error) {
	it := x.Seek(nil)
	for o, ok := it.Next(); ok; o, ok = it.Next() {
		if !o.DeleteMarker {
			return false, nil
		}
	}
	return it.Err() == nil, it.Err()
}

// frameFor returns the first frame whose last key is at least key: the
// frame that holds the first record at or after key.
func (x *SnapshotIndex) frameFor(key []byte) int {
	return sort.Search(len(x.frames), func(i int) bool { return bytes.Compare(x.frames[i].last, key) >= 0 })
}

// Find returns the current record of key (the first, in a sorted
// snapshot; it may be a delete marker) and whether the snapshot records
// key. It decodes at most one frame. The record shares memory with the
// index's cache: do not modify it.
func (x *SnapshotIndex) Find(key []byte) (Object, bool, error) {
	i := x.frameFor(key)
	if i == len(x.frames) {
		return Object{}, false, nil
	}
	objs, err := x.frame(i)
	if err != nil {
		return Object{}, false, err
	}
	j := searchObjects(objs, key)
	if j < len(objs) && bytes.Equal(objs[j].Key, key) {
		return objs[j], true, nil
	}
	return Object{}, false, nil
}

// searchObjects returns the index of the first record at or after key.
func searchObjects(objs []Object, key []byte) int {
	return sort.Search(len(objs), func(j int) bool { return bytes.Compare(objs[j].Key, key) >= 0 })
}

// frame returns the records of frame i, from the cache or decoded.
func (x *SnapshotIndex) frame(i int) ([]Object, error) {
	x.mu.Lock()
	for n, c := range x.cache {
		if c.i == i {
			copy(x.cache[1:n+1], x.cache[:n])
			x.cache[0] = c
			x.mu.Unlock()
			return c.objs, nil
		}
	}
	x.mu.Unlock()
	objs, err := x.readFrame(i)
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, c := range x.cache {
		if c.i == i {
			return c.objs, nil // decoded meanwhile by another caller
		}
	}
	if len(x.cache) < indexFrameCache {
		x.cache = append(x.cache, decodedFrame{})
	}
	copy(x.cache[1:], x.cache[:len(x.cache)-1])
	x.cache[0] = decodedFrame{i: i, objs: objs}
	return objs, nil
}

// readFrame reads and checks frame i from the manifest, as walkFrames
// does, and checks that it holds what the index pass saw.
func (x *SnapshotIndex) readFrame(i int) ([]Object, error) {
	e := x.frames[i]
	if e.chunk != nil {
		return x.readChunk(e)
	}
	f, size, err := x.s.openCommitted(x.id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size != x.size {
		return nil, fmt.Errorf("manifest %s changed since it was indexed (%d bytes, then %d): %w", x.id, size, x.size, ErrCorrupt)
	}
	fr := &frameReader{s: x.s, r: bufio.NewReaderSize(io.NewSectionReader(f, e.loc.off, e.loc.n), 64<<10),
		id: x.id, seq: e.loc.seq, v1: x.v1, off: e.loc.off}
	kind, plain, err := fr.next()
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", x.id, err)
	}
	if kind != frameObjects || fr.off != e.loc.off+e.loc.n {
		return nil, fmt.Errorf("manifest %s frame %d: not the object frame indexed: %w", x.id, e.loc.seq, ErrCorrupt)
	}
	return x.checkRecords(e, plain)
}

// readChunk reads the metadata chunk of entry e. The chunk is checked
// against its ID (which the index pass read from the authenticated
// manifest) and must hold what its reference says.
func (x *SnapshotIndex) readChunk(e indexFrame) ([]Object, error) {
	cr := x.s.NewChunkReader()
	defer cr.Close()
	x.s.metaReads.Add(1)
	plain, err := cr.Read(*e.chunk)
	if err != nil {
		return nil, x.entryErr(e, err)
	}
	return x.checkRecords(e, plain)
}

// checkRecords decodes the records of entry e and checks them against
// what the index pass saw: count, first and last key, key order, and for
// a metadata chunk the bytes its reference says.
func (x *SnapshotIndex) checkRecords(e indexFrame, plain []byte) ([]Object, error) {
	var ws []wireObject
	if err := x.s.codec.unmarshal(plain, &ws); err != nil {
		return nil, x.entryErr(e, fmt.Errorf("objects: %w", err))
	}
	objs := make([]Object, len(ws))
	var size int64
	for j, w := range ws {
		var err error
		if objs[j], err = fromWire(w); err != nil {
			return nil, x.entryErr(e, err)
		}
		if objs[j].Size > math.MaxInt64-size {
			return nil, x.entryErr(e, fmt.Errorf("object sizes overflow: %w", ErrCorrupt))
		}
		size += objs[j].Size
	}
	if len(objs) != e.count || len(objs) == 0 || !bytes.Equal(objs[0].Key, e.first) || !bytes.Equal(objs[len(objs)-1].Key, e.last) ||
		e.chunk != nil && size != e.bytes {
		return nil, x.entryErr(e, fmt.Errorf("not the records indexed: %w", ErrCorrupt))
	}
	if err := checkSorted(objs); err != nil {
		return nil, x.entryErr(e, err)
	}
	return objs, nil
}

// entryErr says which entry of the index err is about: a metadata chunk
// as a MetaChunkError, an object frame by its number.
func (x *SnapshotIndex) entryErr(e indexFrame, err error) error {
	if e.chunk != nil {
		return fmt.Errorf("manifest %s: %w", x.id, &MetaChunkError{Chunk: *e.chunk, Err: err})
	}
	return fmt.Errorf("manifest %s frame %d: %w", x.id, e.loc.seq, err)
}

// SnapshotIter walks the current records of an indexed snapshot in key
// order, one decoded frame at a time. Not safe for concurrent use.
type SnapshotIter struct {
	x       *SnapshotIndex
	fi      int      // frame
	objs    []Object // its records, nil until read
	pos     int      // next record in objs
	seekKey []byte   // with seeking: where to start in frame fi once read
	seeking bool
	prev    []byte // key of the record last returned
	started bool
	err     error
}

// Seek returns an iterator over the current records (delete markers
// included) whose keys are at least key, in key order.
func (x *SnapshotIndex) Seek(key []byte) *SnapshotIter {
	it := &SnapshotIter{x: x}
	it.Seek(key)
	return it
}

// Seek moves the iterator to the first key at least key (before or after
// where it is). Within the frame it holds it decodes nothing.
func (it *SnapshotIter) Seek(key []byte) {
	i := it.x.frameFor(key)
	if it.objs != nil && i == it.fi {
		it.pos = searchObjects(it.objs, key)
	} else {
		it.fi, it.objs, it.pos = i, nil, 0
		it.seekKey, it.seeking = append(it.seekKey[:0], key...), true
	}
	it.started = false
}

// Next returns the next current record; false at the end or on an error
// (see Err). The record shares memory with the index's cache: do not
// modify it.
func (it *SnapshotIter) Next() (Object, bool) {
	for it.err == nil && it.fi < len(it.x.frames) {
		if it.objs == nil {
			objs, err := it.x.frame(it.fi)
			if err != nil {
				it.err = err
				return Object{}, false
			}
			it.objs, it.pos = objs, 0
			if it.seeking {
				it.pos = searchObjects(objs, it.seekKey)
				it.seeking = false
			}
		}
		if it.pos >= len(it.objs) {
			it.fi, it.objs = it.fi+1, nil
			continue
		}
		o := it.objs[it.pos]
		it.pos++
		if it.started && bytes.Equal(o.Key, it.prev) {
			continue // an older version: the first record is current
		}
		it.prev, it.started = append(it.prev[:0], o.Key...), true
		return o, true
	}
	return Object{}, false
}

// Err returns the error that ended the iteration, if any.
func (it *SnapshotIter) Err() error { return it.err }

// MetadataSize is what a committed snapshot's metadata takes on disk.
type MetadataSize struct {
	Manifest   int64 // the manifest file
	Chunks     int   // metadata chunks it references (shared ones too)
	ChunkBytes int64 // their sealed size in packs
}

// SnapshotMetadata returns the size of snapshot id's manifest and of the
// metadata chunks it references, as the chunk index places them (a chunk
// the index does not know counts as 0 bytes). It reads the manifest
// once, not the chunks.
func (s *Store) SnapshotMetadata(id string) (MetadataSize, error) {
	f, size, err := s.openCommitted(id)
	if err != nil {
		return MetadataSize{}, err
	}
	defer f.Close()
	ms := MetadataSize{Manifest: size}
	_, _, err = s.walkFrames(f, false, false, walkHooks{refsOnly: true, onRef: func(c ChunkID) {
		ms.Chunks++
		if locs := s.idx.locations(c); len(locs) > 0 {
			ms.ChunkBytes += int64(locs[0].length)
		}
	}})
	if err != nil {
		return MetadataSize{}, fmt.Errorf("manifest %s: %w", id, err)
	}
	return ms, nil
}
