package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"
)

// BeginOptions describe a new snapshot.
type BeginOptions struct {
	Source      string
	RetainUntil time.Time
	LegalHold   bool
	// Sorted makes the snapshot sorted (manifest head key 5): objects must
	// be recorded in ascending byte order of their keys, and recording one
	// below the last fails with ErrOutOfOrder.
	Sorted bool
}

// ErrOutOfOrder is returned when an object recorded in a sorted snapshot
// has a key below the one recorded before it.
var ErrOutOfOrder = errors.New("object key out of order in a sorted snapshot")

// maxQueuedBytes bounds the records (estimated as journalObjects does)
// waiting for the packs holding their chunks to be sealed: past it the
// open pack is closed early (a pull that reuses many objects while it
// writes few new chunks does not hold their records until a pack fills),
// or the recorder waits for the packs being sealed. maxFinishing bounds
// the packs being sealed at once (each holds the records queued with it):
// a recorder waits past it.
const (
	maxQueuedBytes = 2 << 20
	maxFinishing   = 2
)

// Snapshot is a snapshot being written. Records are cut into metadata
// chunks (manifest.go, object-chunk frames), and a chunk's reference
// reaches the journal once the packs holding it and its records' chunks
// are sealed, in the order recorded;
// Commit makes the snapshot permanent. The snapshot keeps counts, not a
// list of what it recorded (memory does not grow with the object count):
// what is journaled is read back from the journal (Objects, WalkJournaled).
// Put, StoreBody, PutExisting and RecordError are safe for concurrent use;
// Commit and Abort must not race with them.
type Snapshot struct {
	s    *Store
	id   string
	head wireHead

	mu        sync.Mutex // guards everything below
	cond      *sync.Cond // signals a finished pack
	j         *journal
	pw        *packWriter
	finishing []*packWriter        // closed packs waiting for fsync, rename and seal, in order
	finisher  bool                 // the finishing goroutine runs
	ferr      error                // first error of the finishing goroutine
	pending   map[ChunkID]struct{} // chunks in the open pack or a finishing one
	meta      []wireObject         // records since the last metadata chunk cut
	metaSz    int                  // their estimated size
	metaData  int64                // the sum of their objects' sizes
	metaCut   bool                 // a cut falls after meta's last record (unless the next has its key)
	cutHash   hash.Hash            // decides cuts (keys.idHasher)
	// inlineFrames writes records in object frames of 1024, as stores did
	// before object-chunk frames (tests of readers of that format).
	inlineFrames bool
	queued       []journalItem // journal entries whose chunks are not all sealed yet
	queuedSz     int           // their estimated size
	lastKey      []byte        // key last recorded (sorted snapshots)
	recorded     bool          // an object was recorded (lastKey is set)
	errs         []string
	objects      int64
	bytes        int64
	closed       bool

	chunkers sync.Pool      // splitter (chunking.go), reused across Puts
	hashers  sync.Pool      // chunk ID hashers (keys.idHasher), reused across Puts
	bufs     chan *chunkBuf // free chunk buffers; bounds memory across all Puts
}

// newSnapshot returns a snapshot with its buffers; the journal is set by
// the caller.
func (s *Store) newSnapshot(id string) *Snapshot {
	sn := &Snapshot{s: s, id: id, pending: map[ChunkID]struct{}{}}
	sn.cond = sync.NewCond(&sn.mu)
	// Enough chunks in flight to keep every core hashing and sealing while
	// one chunk is being chunked and one written (twice as many measured 9%
	// faster and costs 2 x 8 MiB more at worst). A buffer is allocated at
	// MaxChunk on first use, chunks are encrypted in place, and buffers are
	// kept for the snapshot's life: n x MaxChunk in all (32 MiB on two
	// cores).
	n := runtime.GOMAXPROCS(0) + 2
	sn.bufs = make(chan *chunkBuf, n)
	for i := 0; i < n; i++ {
		sn.bufs <- &chunkBuf{}
	}
	return sn
}

// ErrSnapshotClosed is returned after Commit or Abort.
var ErrSnapshotClosed = errors.New("snapshot already committed or aborted")

// Begin starts a snapshot. Its journal is in wip/ until Commit.
func (s *Store) Begin(ctx context.Context, o BeginOptions) (*Snapshot, error) {
	if s.ro {
		return nil, errors.New("begin snapshot: store opened read-only")
	}
	now, err := s.clock.Now()
	if err != nil {
		return nil, fmt.Errorf("begin snapshot: clock: %w", err)
	}
	sn := s.newSnapshot(newSnapshotID(now))
	sn.head = wireHead{Source: o.Source, Started: now.UnixNano(), LegalHold: o.LegalHold, Sorted: o.Sorted}
	if !o.RetainUntil.IsZero() {
		sn.head.RetainUntil = o.RetainUntil.UnixNano()
	}
	path := s.path(wipDir, sn.id+".journal")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, fileMode)
	if err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	sn.j = &journal{s: s, f: f, id: sn.id, path: path, off: int64(snapHdrLen)}
	if _, err := f.Write(append([]byte(snapMagic), sn.id...)); err != nil {
		f.Close()
		return nil, fmt.Errorf("write journal: %w", err)
	}
	head, err := s.codec.marshal(sn.head)
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := sn.j.writeFrame(frameHead, head); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(s.path(wipDir)); err != nil {
		f.Close()
		return nil, err
	}
	s.log.Info("snapshot started", "id", sn.id, "source", o.Source)
	return sn, nil
}

// Interrupted describes a snapshot a crash left in progress.
type Interrupted struct {
	ID      string
	Source  string
	Started time.Time
	Objects int
}

// Interrupted lists snapshots left in progress by a crash.
func (s *Store) Interrupted() ([]Interrupted, error) {
	var out []Interrupted
	err := scanDir(s.path(wipDir), func(name string, typ fs.FileMode) error {
		id, ok := journalID(name)
		if !ok || !typ.IsRegular() {
			return nil
		}
		f, _, err := openStoreFile(s.path(wipDir, name), os.O_RDONLY, maxManifestFile)
		if err != nil {
			s.log.Warn("unreadable journal", "id", id, "error", err)
			return nil
		}
		defer f.Close()
		m, _, err := s.manifestSelf(f, true)
		if err != nil {
			s.log.Warn("unreadable journal", "id", id, "error", err)
			return nil
		}
		out = append(out, Interrupted{ID: id, Source: m.Source, Started: m.Started, Objects: int(m.Count)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read wip: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func journalID(name string) (string, bool) {
	const ext = ".journal"
	if len(name) != snapIDLen+len(ext) || name[snapIDLen:] != ext || !ValidSnapshotID(name[:snapIDLen]) {
		return "", false
	}
	return name[:snapIDLen], true
}

func (s *Store) readJournal(id string) (*Manifest, frameStats, error) {
	f, _, err := openStoreFile(s.path(wipDir, id+".journal"), os.O_RDONLY, maxManifestFile)
	if err != nil {
		return nil, frameStats{}, err
	}
	defer f.Close()
	return s.readManifestFrames(f, true, false)
}

// Resume reopens a snapshot left in progress. A torn last frame is cut off;
// Objects (or WalkJournaled) returns what it already holds, so the caller
// can skip those. The journal is streamed one frame at a time: memory does
// not grow with what it holds.
func (s *Store) Resume(ctx context.Context, id string) (*Snapshot, error) {
	if !ValidSnapshotID(id) {
		return nil, fmt.Errorf("resume: bad snapshot id %q", id)
	}
	jf, _, err := openStoreFile(s.path(wipDir, id+".journal"), os.O_RDONLY, maxManifestFile)
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", id, err)
	}
	var lastKey []byte
	recorded, inOrder := false, true
	m, st, err := s.walkManifestFrames(jf, true, false, nil, func(o Object) error {
		for _, c := range o.Chunks {
			if !s.idx.has(c) {
				return fmt.Errorf("journal names chunk %s that no pack holds: %w", c, ErrCorrupt)
			}
		}
		if recorded && bytes.Compare(o.Key, lastKey) < 0 {
			inOrder = false
		}
		lastKey, recorded = append(lastKey[:0], o.Key...), true
		return nil
	})
	jf.Close()
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", id, err)
	}
	if st.tail {
		return nil, fmt.Errorf("resume %s: journal is complete; reopening the store commits it", id)
	}
	if m.Sorted && !inOrder {
		return nil, fmt.Errorf("resume %s: sorted journal holds keys out of order: %w", id, ErrCorrupt)
	}
	path := s.path(wipDir, id+".journal")
	f, _, err := openStoreFile(path, os.O_WRONLY|os.O_APPEND, maxManifestFile)
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	if err := f.Truncate(st.validLen); err != nil {
		f.Close()
		return nil, fmt.Errorf("resume: cut torn frame: %w", err)
	}
	sn := s.newSnapshot(id)
	sn.objects, sn.bytes, sn.lastKey, sn.recorded = m.Count, m.Bytes, lastKey, recorded
	sn.head = wireHead{Source: m.Source, Started: m.Started.UnixNano(), LegalHold: m.LegalHold, Sorted: m.Sorted}
	if !m.RetainUntil.IsZero() {
		sn.head.RetainUntil = m.RetainUntil.UnixNano()
	}
	sn.j = &journal{s: s, f: f, id: id, seq: st.frames, off: st.validLen, v1: st.v1, path: path}
	s.log.Info("snapshot resumed", "id", id, "source", m.Source, "objects", m.Count)
	return sn, nil
}

// Discard removes the journal of an interrupted snapshot. Packs it wrote stay
// until prune finds them unreferenced.
func (s *Store) Discard(id string) error {
	if !ValidSnapshotID(id) {
		return fmt.Errorf("discard: bad snapshot id %q", id)
	}
	if err := os.Remove(s.path(wipDir, id+".journal")); err != nil {
		return fmt.Errorf("discard %s: %w", id, err)
	}
	s.log.Info("interrupted snapshot discarded", "id", id)
	return syncDir(s.path(wipDir))
}

// ID returns the snapshot ID.
func (sn *Snapshot) ID() string { return sn.id }

// Objects returns the objects already in the journal (after Resume), read
// back from it: memory grows with their count. WalkJournaled streams them.
func (sn *Snapshot) Objects() ([]Object, error) {
	var out []Object
	err := sn.WalkJournaled(func(o Object) error {
		out = append(out, o)
		return nil
	})
	return out, err
}

// Count returns the number of objects recorded so far.
func (sn *Snapshot) Count() int64 {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	return sn.objects
}

// WalkJournaled hands the objects already in the journal to fn in the
// order recorded, reading the journal one frame at a time; an error from
// fn stops the walk and is returned. Objects recorded but still waiting
// for their pack, or for the cut of their metadata chunk, are not in the
// journal yet; right after Resume, every object is.
func (sn *Snapshot) WalkJournaled(fn func(Object) error) error {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.closed {
		return ErrSnapshotClosed
	}
	f, _, err := openStoreFile(sn.j.path, os.O_RDONLY, maxManifestFile)
	if err != nil {
		return fmt.Errorf("read journal %s: %w", sn.id, err)
	}
	defer f.Close()
	var fnErr error
	_, _, err = sn.s.walkManifestFrames(io.LimitReader(f, sn.j.off), true, false, nil, func(o Object) error {
		fnErr = fn(o)
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("read journal %s: %w", sn.id, err)
	}
	return nil
}

// RecordError notes an error in the snapshot record.
func (sn *Snapshot) RecordError(msg string) {
	sn.mu.Lock()
	sn.errs = append(sn.errs, msg)
	sn.mu.Unlock()
}

// Errors returns the errors recorded so far.
func (sn *Snapshot) Errors() []string {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	return slices.Clone(sn.errs)
}

// ObjectInfo is what the caller knows about an object before reading it.
type ObjectInfo struct {
	Key         []byte
	ModTime     time.Time
	ETag        string
	VersionID   string
	ContentType string
	Checksums   map[string]string
	UserMeta    map[string]string
	// Finish, if set, is called once the body has been read, with its size.
	// The checksums it returns are added to the object; an error (a body
	// that fails the source's checksum, say) keeps the object out of the
	// snapshot, and Put returns that error.
	Finish func(size int64) (map[string]string, error)
}

// chunkBuf holds one chunk; it is encrypted in place, so buf holds the
// plaintext and then the ciphertext and tag. Reused across Puts.
type chunkBuf struct {
	buf   []byte
	nonce [12]byte
	ct    []byte
}

type chunkJob struct {
	cb       *chunkBuf
	data     []byte // plaintext in cb.buf until a worker seals it in place
	plainLen int
	id       ChunkID
	done     chan struct{}
}

// Put streams r through the chunker into the snapshot. The returned object
// is recorded; its Size is what was read.
func (sn *Snapshot) Put(ctx context.Context, info ObjectInfo, r io.Reader) (Object, error) {
	obj, err := sn.StoreBody(ctx, info, r)
	if err != nil {
		return Object{}, err
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.closed {
		return Object{}, ErrSnapshotClosed
	}
	if err := sn.record(obj); err != nil {
		return Object{}, err
	}
	return obj, nil
}

// StoreBody streams r through the chunker into the snapshot's packs and
// returns the object, without recording it: PutExisting records it, so a
// caller that stores several bodies at once can record them in an order of
// its choosing (a sorted snapshot). Its chunks stay referenced only once
// it is recorded: an object stored and never recorded leaves chunks that
// prune removes.
func (sn *Snapshot) StoreBody(ctx context.Context, info ObjectInfo, r io.Reader) (Object, error) {
	sn.mu.Lock()
	closed := sn.closed
	sn.mu.Unlock()
	if closed {
		return Object{}, ErrSnapshotClosed
	}
	obj := Object{
		Key: append([]byte{}, info.Key...), ModTime: info.ModTime, ETag: info.ETag, VersionID: info.VersionID,
		ContentType: info.ContentType, Checksums: info.Checksums, UserMeta: info.UserMeta,
	}
	chunks, size, err := sn.store(ctx, r)
	if err != nil {
		return Object{}, err
	}
	obj.Chunks, obj.Size = chunks, size
	if info.Finish != nil {
		sums, err := info.Finish(size)
		if err != nil {
			return Object{}, fmt.Errorf("object %q: %w", info.Key, err)
		}
		for k, v := range sums {
			if obj.Checksums == nil {
				obj.Checksums = map[string]string{}
			}
			obj.Checksums[k] = v
		}
	}
	return obj, nil
}

// PutExisting records an object whose chunks are already stored (an
// unchanged object from an earlier snapshot) without reading it again.
func (sn *Snapshot) PutExisting(obj Object) error {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.closed {
		return ErrSnapshotClosed
	}
	for _, c := range obj.Chunks {
		if _, ok := sn.pending[c]; !ok && !sn.s.idx.has(c) {
			return fmt.Errorf("reuse object %q: chunk %s is not stored", obj.Key, c)
		}
	}
	return sn.record(obj)
}

// record queues obj for the journal; sn.mu is held.
func (sn *Snapshot) record(obj Object) error {
	if sn.ferr != nil {
		return sn.ferr
	}
	if sn.head.Sorted {
		if sn.recorded && bytes.Compare(obj.Key, sn.lastKey) < 0 {
			return fmt.Errorf("record %q after %q: %w", obj.Key, sn.lastKey, ErrOutOfOrder)
		}
		sn.lastKey, sn.recorded = append(sn.lastKey[:0], obj.Key...), true
	}
	if err := sn.addRecord(toWire(obj)); err != nil {
		return err
	}
	sn.objects++
	sn.bytes += obj.Size
	if sn.pw == nil && len(sn.finishing) == 0 && len(sn.queued) >= 64 {
		// Every chunk is already in a sealed pack.
		return sn.flushQueued()
	}
	// Memory must not grow with what a pull records: bound the records
	// waiting for packs, and the packs being sealed.
	for sn.queuedSz >= maxQueuedBytes && sn.ferr == nil {
		switch {
		case sn.pw != nil:
			sn.closePack() // takes the queued records along
		case len(sn.finishing) == 0 && !sn.finisher:
			return sn.flushQueued()
		default:
			sn.cond.Wait()
		}
	}
	for len(sn.finishing) > maxFinishing && sn.ferr == nil {
		sn.cond.Wait()
	}
	return sn.ferr
}

// journalItem is one entry waiting for the journal: a reference to a
// metadata chunk, or records written in an object frame (a format 1
// journal, or records too large for a metadata chunk).
type journalItem struct {
	ref    *wireRef
	inline []wireObject
}

// metaMax is the largest metadata chunk: metaChunkMax, and never past the
// store's largest chunk, which readers bound blobs by.
func (sn *Snapshot) metaMax() int {
	return min(metaChunkMax, int(sn.s.cfg.MaxChunk))
}

// isCut reports whether a metadata chunk cut falls after a record of key
// (format above walkFrames' frameRefs: HMAC under the chunk-ID key).
func (sn *Snapshot) isCut(key []byte) bool {
	h := sn.cutHasher()
	h.Reset()
	h.Write([]byte("HFMB"))
	h.Write(key)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum[0]&(1<<metaCutBits-1) == 0
}

// addRecord adds w to the records of the metadata chunk being cut,
// cutting first when a cut falls before it. sn.mu is held.
func (sn *Snapshot) addRecord(w wireObject) error {
	sz := recordSize(w)
	if sn.inlineFrames {
		if len(sn.meta) >= 1024 {
			if err := sn.cutMeta(); err != nil {
				return err
			}
		}
		sn.meta = append(sn.meta, w)
		sn.metaSz += sz
		return nil
	}
	if len(sn.meta) > 0 && (sn.metaCut && !bytes.Equal(w.Key, sn.meta[len(sn.meta)-1].Key) || sn.metaSz+sz > sn.metaMax()) {
		if err := sn.cutMeta(); err != nil {
			return err
		}
	}
	sn.meta = append(sn.meta, w)
	sn.metaSz += sz
	sn.metaData += w.Size
	sn.metaCut = sn.isCut(w.Key)
	if sn.metaData >= int64(sn.s.cfg.PackSize) {
		// Records reach the journal only with their chunk: bound what a
		// crash makes a resumed pull fetch again to about a pack of data.
		return sn.cutMeta()
	}
	return nil
}

// cutMeta stores the records since the last cut as one metadata chunk
// (unless the store has it already: an unchanged stretch of a bucket) and
// queues the reference to it. A format 1 journal, or records whose
// encoding is larger than a chunk may be, are queued to be written inline
// in an object frame instead. sn.mu is held.
func (sn *Snapshot) cutMeta() error {
	recs, sz := sn.meta, sn.metaSz
	sn.meta, sn.metaSz, sn.metaData, sn.metaCut = nil, 0, 0, false
	if len(recs) == 0 {
		return nil
	}
	inline := func() {
		sn.queued = append(sn.queued, journalItem{inline: recs})
		sn.queuedSz += sz
	}
	if sn.j.v1 || sn.inlineFrames {
		inline()
		return nil
	}
	plain, err := sn.s.codec.marshal(recs)
	if err != nil {
		return fmt.Errorf("metadata chunk: %w", err)
	}
	if len(plain) > sn.metaMax() {
		inline()
		return nil
	}
	id := sumID(sn.cutHasher(), plain)
	if _, ok := sn.pending[id]; !ok && !sn.s.idx.has(id) {
		ct := make([]byte, len(plain), len(plain)+sealOverhead)
		copy(ct, plain)
		var nonce [12]byte
		ct = sealInPlace(sn.s.keys.data, &nonce, id[:], ct)
		if err := sn.addChunk(id, &nonce, ct, len(plain)); err != nil {
			return err
		}
	}
	ref := &wireRef{Chunk: id[:], Count: int64(len(recs)), First: recs[0].Key, Last: recs[len(recs)-1].Key}
	for _, w := range recs {
		ref.Bytes += w.Size
	}
	sn.queued = append(sn.queued, journalItem{ref: ref})
	sn.queuedSz += 64 + len(ref.First) + len(ref.Last)
	return nil
}

// cutHasher returns the snapshot's chunk-ID hasher, set up once. sn.mu is
// held.
func (sn *Snapshot) cutHasher() hash.Hash {
	if sn.cutHash == nil {
		sn.cutHash = sn.s.keys.idHasher()
	}
	return sn.cutHash
}

// recordSize estimates the bytes of an object record in a frame.
func recordSize(w wireObject) int {
	return len(w.Key) + len(w.Chunks) + len(w.ETag) + len(w.VersionID) + len(w.ContentType) + mapBytes(w.UserMeta) + mapBytes(w.Checksums) + 64
}

// store chunks r and writes new chunks to packs. Hashing and sealing run on
// all cores; chunk order is kept by a queue of jobs in order.
func (sn *Snapshot) store(ctx context.Context, r io.Reader) ([]ChunkID, int64, error) {
	s := sn.s
	ch, _ := sn.chunkers.Get().(splitter)
	if ch == nil {
		var err error
		if ch, err = s.newSplitter(r); err != nil {
			return nil, 0, err
		}
	} else {
		ch.reset(r)
	}
	defer sn.chunkers.Put(ch)
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan *chunkJob)
	order := make(chan *chunkJob, cap(sn.bufs))
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A new HMAC hashes its key twice (inner and outer pad):
			// per worker per object, that added up over a bucket of
			// small objects.
			h, _ := sn.hashers.Get().(hash.Hash)
			if h == nil {
				h = s.keys.idHasher()
			}
			defer sn.hashers.Put(h)
			for j := range jobs {
				j.id = sumID(h, j.data)
				j.plainLen = len(j.data)
				j.cb.ct = sealInPlace(s.keys.data, &j.cb.nonce, j.id[:], j.data)
				close(j.done)
			}
		}()
	}
	type result struct {
		ids []ChunkID
		err error
	}
	resc := make(chan result, 1)
	go func() {
		var ids []ChunkID
		var err error
		for j := range order {
			<-j.done
			if err == nil {
				ids = append(ids, j.id)
				sn.mu.Lock()
				err = sn.addChunk(j.id, &j.cb.nonce, j.cb.ct, j.plainLen)
				sn.mu.Unlock()
			}
			sn.bufs <- j.cb
		}
		resc <- result{ids, err}
	}()
	var size int64
	var rerr error
	for {
		if err := ctx.Err(); err != nil {
			rerr = err
			break
		}
		var cb *chunkBuf
		select {
		case cb = <-sn.bufs:
		case <-ctx.Done():
			rerr = ctx.Err()
		}
		if cb == nil {
			break
		}
		if cb.buf == nil {
			// Full size once, for the snapshot's life: growing by append
			// would leave garbage behind at every larger chunk. The tag
			// needs room after the largest chunk.
			cb.buf = make([]byte, 0, int(s.cfg.MaxChunk)+sealOverhead)
		}
		data, err := ch.next(cb.buf[:0])
		if err != nil {
			sn.bufs <- cb
			if !errors.Is(err, io.EOF) {
				rerr = fmt.Errorf("read object: %w", err)
			}
			break
		}
		size += int64(len(data))
		j := &chunkJob{cb: cb, data: data, done: make(chan struct{})}
		order <- j
		jobs <- j
	}
	close(jobs)
	close(order)
	wg.Wait()
	res := <-resc
	if rerr != nil {
		return nil, 0, rerr
	}
	if res.err != nil {
		return nil, 0, res.err
	}
	return res.ids, size, nil
}

// addChunk writes a sealed chunk unless the store already has it, and
// closes the pack when it reaches the target size. sn.mu is held.
func (sn *Snapshot) addChunk(id ChunkID, nonce *[12]byte, ct []byte, plainLen int) error {
	if sn.ferr != nil {
		return sn.ferr
	}
	if _, ok := sn.pending[id]; ok || sn.s.idx.has(id) {
		return nil
	}
	if sn.pw == nil {
		pw, err := sn.s.newPackWriter()
		if err != nil {
			return err
		}
		sn.pw = pw
	}
	if err := sn.pw.add(id, nonce, ct, plainLen); err != nil {
		return err
	}
	sn.pending[id] = struct{}{}
	sn.s.at("chunk-written")
	if sn.pw.size >= int64(sn.s.cfg.PackSize) {
		sn.closePack()
	}
	return nil
}

// closePack hands the open pack to the finishing goroutine, together with
// every object queued so far: their chunks are all in this pack or an
// earlier one, so they are durable once this pack is sealed. sn.mu is held.
func (sn *Snapshot) closePack() {
	if sn.pw == nil {
		return
	}
	pw := sn.pw
	sn.pw = nil
	pw.objects, sn.queued, sn.queuedSz = sn.queued, nil, 0
	sn.finishing = append(sn.finishing, pw)
	if !sn.finisher {
		sn.finisher = true
		go sn.finishLoop()
	}
	sn.cond.Broadcast()
}

// finishLoop fsyncs, renames and seals closed packs in order, then journals
// the objects that became durable. It stops when nothing is left to finish.
func (sn *Snapshot) finishLoop() {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	for len(sn.finishing) > 0 {
		pw := sn.finishing[0]
		var name string
		var err error
		if sn.ferr != nil {
			pw.abort()
			err = sn.ferr
		} else {
			sn.mu.Unlock()
			name, err = sn.s.finishPack(pw)
			sn.mu.Lock()
		}
		sn.finishing = sn.finishing[1:]
		if err == nil {
			sn.s.idx.addPack(name, pw.entries)
			for _, e := range pw.entries {
				delete(sn.pending, e.id)
			}
			err = sn.journalObjects(pw.objects)
		}
		if err != nil && sn.ferr == nil {
			sn.ferr = err
		}
		sn.cond.Broadcast()
	}
	sn.finisher = false
	sn.cond.Broadcast()
}

// waitFinished closes the open pack and waits until every pack is sealed.
// sn.mu is held.
func (sn *Snapshot) waitFinished() error {
	sn.closePack()
	for len(sn.finishing) > 0 || sn.finisher {
		sn.cond.Wait()
	}
	return sn.ferr
}

// flushQueued writes queued entries to the journal; their chunks must all
// be in sealed packs. sn.mu is held.
func (sn *Snapshot) flushQueued() error {
	items := sn.queued
	sn.queued, sn.queuedSz = nil, 0
	return sn.journalObjects(items)
}

// journalObjects writes entries whose chunks are sealed to the journal, in
// order: runs of references as object-chunk frames of at most metaRefs,
// inline records as object frames well under maxFrame. sn.mu is held.
func (sn *Snapshot) journalObjects(items []journalItem) error {
	for len(items) > 0 {
		if items[0].ref != nil {
			var refs []*wireRef
			for len(items) > 0 && items[0].ref != nil && len(refs) < metaRefs {
				refs = append(refs, items[0].ref)
				items = items[1:]
			}
			plain, err := sn.s.codec.marshal(refs)
			if err != nil {
				return fmt.Errorf("journal object chunks: %w", err)
			}
			if err := sn.j.writeFrame(frameRefs, plain); err != nil {
				return err
			}
			continue
		}
		objs := items[0].inline
		items = items[1:]
		for len(objs) > 0 {
			size, n := 0, 0
			for _, w := range objs {
				sz := recordSize(w)
				if n > 0 && size+sz > 4<<20 {
					break
				}
				size += sz
				n++
			}
			plain, err := sn.s.codec.marshal(objs[:n])
			if err != nil {
				return fmt.Errorf("journal objects: %w", err)
			}
			if err := sn.j.writeFrame(frameObjects, plain); err != nil {
				return err
			}
			objs = objs[n:]
		}
	}
	return nil
}

func mapBytes(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v) + 4
	}
	return n
}

// CommitOptions finish a snapshot.
type CommitOptions struct {
	// Incomplete marks a snapshot whose pull hit errors or bounds: it is
	// kept, but never passed off as a complete copy of the source.
	Incomplete bool
}

// Commit seals the last pack, writes the tail, moves the manifest into
// snapshots/ (the commit point), sets its retention xattrs and seals it.
// The Manifest returned is the summary (Objects empty; Count and Bytes):
// ReadManifest or WalkObjects read the objects back.
func (sn *Snapshot) Commit(ctx context.Context, o CommitOptions) (*Manifest, error) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.closed {
		return nil, ErrSnapshotClosed
	}
	s := sn.s
	if err := sn.cutMeta(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if err := sn.waitFinished(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if err := sn.flushQueued(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	now, err := s.clock.Now()
	if err != nil {
		return nil, fmt.Errorf("commit: clock: %w", err)
	}
	tail := wireTail{Finished: now.UnixNano(), Complete: !o.Incomplete && len(sn.errs) == 0, Errors: sn.errs, Objects: sn.objects, Bytes: sn.bytes}
	if err := sn.j.writeTail(tail); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if err := sn.j.f.Close(); err != nil {
		return nil, fmt.Errorf("commit: close journal: %w", err)
	}
	sn.closed = true
	if err := s.publishManifest(sn.id); err != nil {
		return nil, err
	}
	m := &Manifest{
		ID: sn.id, Source: sn.head.Source, Started: unixOrZero(sn.head.Started), Finished: unixOrZero(tail.Finished),
		RetainUntil: unixOrZero(sn.head.RetainUntil), LegalHold: sn.head.LegalHold, Complete: tail.Complete,
		Sorted: sn.head.Sorted, Errors: sn.errs, Count: sn.objects, Bytes: sn.bytes,
	}
	if err := s.sealManifest(s.path(snapshotsDir, sn.id+".snap"), m); err != nil {
		return nil, err
	}
	if err := s.issueReceipt(ctx, sn.id); err != nil {
		// The snapshot is committed; only its receipt is missing.
		s.log.Error("snapshot committed without a receipt", "id", sn.id, "error", err)
	}
	if err := s.saveIndex(); err != nil {
		s.log.Warn("index run not written; the next open indexes its packs from their trailers", "error", err)
	}
	s.at("commit-done")
	if !s.ownPC {
		if err := s.recordClock(s.clock); err != nil {
			s.log.Warn("clock high-water mark not recorded", "error", err)
		}
	}
	s.log.Info("snapshot committed", "id", sn.id, "source", m.Source, "objects", sn.objects, "bytes", sn.bytes, "complete", m.Complete)
	return m, nil
}

// Abort discards the snapshot: the open pack is dropped and the journal
// removed. Sealed packs stay until prune finds them unreferenced.
func (sn *Snapshot) Abort() error {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.closed {
		return nil
	}
	sn.closed = true
	if sn.pw != nil {
		sn.pw.abort()
		sn.pw = nil
	}
	for sn.finisher {
		sn.cond.Wait()
	}
	sn.j.f.Close()
	return sn.s.Discard(sn.id)
}

// publishManifest moves a finished journal into snapshots/: the commit
// point. The rename never replaces an existing manifest.
func (s *Store) publishManifest(id string) error {
	final := s.path(snapshotsDir, id+".snap")
	s.at("commit-before-rename")
	if err := renameNoReplace(s.path(wipDir, id+".journal"), final); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.at("commit-after-rename")
	if err := syncDir(s.path(snapshotsDir)); err != nil {
		return err
	}
	return syncDir(s.path(wipDir))
}

// finishManifestSeal is recovery's check for a manifest that a crash left
// renamed but unsealed: it must decode whole; then its xattrs are set.
func (s *Store) finishManifestSeal(path string) error {
	f, _, err := openStoreFile(path, os.O_RDONLY, maxManifestFile)
	if err != nil {
		return err
	}
	defer f.Close()
	m, _, err := s.readManifestFrames(f, false, true)
	if err != nil {
		return err
	}
	if filepath.Base(path) != m.ID+".snap" {
		return fmt.Errorf("manifest %s holds snapshot %s: %w", path, m.ID, ErrCorrupt)
	}
	return s.setRetentionXattrs(f.Name(), m.RetainUntil, m.LegalHold)
}

// sealManifest sets retention xattrs, then FS_IMMUTABLE_FL.
func (s *Store) sealManifest(path string, m *Manifest) error {
	s.at("commit-before-xattr")
	if err := s.setRetentionXattrs(path, m.RetainUntil, m.LegalHold); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.at("commit-before-seal")
	if err := s.sealer.SealFile(path); err != nil {
		return fmt.Errorf("commit: seal manifest: %w", err)
	}
	s.at("commit-after-seal")
	return nil
}
