package store

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"
)

// Manifest file layout (STORE/snapshots/<id>.snap; while the snapshot is in
// progress the same bytes grow in STORE/wip/<id>.journal):
//
//	| size | field                                                          |
//	|------|----------------------------------------------------------------|
//	| 8    | magic "HFSNAP02" (format 2; "HFSNAP01": format 1, read only)   |
//	| 25   | snapshot ID, ASCII "YYYYMMDDTHHMMSSZ-xxxxxxxx"                  |
//	| ...  | frames, each:                                                  |
//	|      |   1  kind: 1 head, 2 objects, 3 tail, 4 errors (format 2),     |
//	|      |      5 object chunks (format 2)                                |
//	|      |   4  L, big endian (at most 64 MiB)                            |
//	|      |   L  nonce(12) || AES-GCM(meta key, AD = "HFSF" || ID ||       |
//	|      |      frame number u64 BE || kind) of the body || tag(16)       |
//
// Frame 0 is the head (CBOR map, below); object frames (CBOR arrays of
// objects) and object-chunk frames (below) follow, in the order their
// records were recorded; a committed manifest ends with exactly one tail
// frame. The
// frame number in the AD stops frames from being dropped, reordered or
// moved between snapshots. A journal without a tail is a snapshot in
// progress; a torn last frame is cut off when it is resumed. The head, a CBOR map with integer keys (a reader ignores keys
// it does not know, so an older reader reads a newer head):
//
//	| key | field                                                       |
//	|-----|-------------------------------------------------------------|
//	| 1   | source name (text)                                          |
//	| 2   | started, Unix ns                                            |
//	| 3   | retain until, Unix ns (0: none)                             |
//	| 4   | legal hold (bool)                                           |
//	| 5   | sorted (bool): objects are recorded in ascending byte order |
//	|     | of their keys (equal keys adjacent), as S3 lists them       |
//
// A sorted snapshot is written so by the store: recording a key below the
// one before fails (ErrOutOfOrder), so the flag is never a promise a
// writer could break. Readers may then merge its objects with a listing
// in one pass; snapshots without it (format 1, and format 2 written
// before the flag) are in whatever order they were recorded.
//
// Format 1 ends with a CBOR tail (end time, completeness, errors, totals),
// so its summary is found only by walking every frame. Format 2 makes the
// summary a snapshot head that costs O(1) to read: frame 0 at the start
// and a tail of fixed size (tailFrameLen bytes) at the very end, whose AD
// carries the frame number tailSeqAD (the reader from the end cannot know
// the real one; the tail holds it and a full read checks it). When the
// snapshot recorded errors they are one errors frame (CBOR array of text)
// just before the tail, which points at it. The format 2 tail body, 41
// bytes, big endian:
//
//	| size | field                                                     |
//	|------|-----------------------------------------------------------|
//	| 8    | finished, Unix ns                                         |
//	| 8    | object count                                              |
//	| 8    | byte count (sum of object sizes)                          |
//	| 8    | frame number of the tail (= frames before it)             |
//	| 8    | offset of the errors frame in the file, 0 when none       |
//	| 1    | flags: bit 0 complete; other bits zero                    |
//
// Object-chunk frames (kind 5) keep a snapshot's records out of the
// manifest: the records are cut into metadata chunks, each a CBOR array of
// objects exactly like an object frame's body, stored in packs like data
// (chunk ID = HMAC of the plaintext under the chunk-ID key, sealed under
// the data key), so a stretch of a bucket that did not change is the same
// chunk in the next snapshot and is stored once. A cut falls after a
// record whose key hashes (HMAC under the chunk-ID key, "HFMB" || key) to
// a value whose low metaCutBits bits are zero, unless the next record has
// the same key; it also falls before a record that would take the chunk
// past metaChunkMax bytes, and after a record that brings the sizes of
// the chunk's objects to the store's pack size (a crash loses only the
// records since the last cut, so this bounds what a resumed pull fetches
// again). Each rule depends only on the records, so an unchanged stretch
// is cut the same way again. The frame body is a CBOR array of references,
// each a map (metaRefs references at most per frame):
//
//	| key | field                                                       |
//	|-----|-------------------------------------------------------------|
//	| 1   | chunk ID (32 bytes)                                         |
//	| 2   | record count (at least 1)                                   |
//	| 3   | byte count (sum of the records' sizes)                      |
//	| 4   | key of the first record (bytes)                             |
//	| 5   | key of the last record (bytes)                              |
//
// A reader resolves each reference through the chunk index (every read of
// the chunk is checked against its ID and tag) and checks that the chunk
// holds what the reference says. A reference is journaled only once its
// chunk and every chunk its records name are in sealed packs.
const (
	snapMagic   = "HFSNAP02"
	snapMagicV1 = "HFSNAP01"
	snapIDLen   = 25
	snapHdrLen  = len(snapMagic) + snapIDLen
	frameHdrLen = 5
	maxFrame    = 64 << 20

	frameHead    byte = 1
	frameObjects byte = 2
	frameTail    byte = 3
	frameErrors  byte = 4
	frameRefs    byte = 5

	// Metadata chunks: a cut after about one record in 2^metaCutBits
	// (256: about 40 KiB of records shaped like a pull's), none past
	// metaChunkMax bytes (nor past the store's largest chunk), and at most
	// metaRefs references per object-chunk frame.
	metaCutBits  = 8
	metaChunkMax = 1 << 20
	metaRefs     = 1024

	tailBodyLen  = 41
	tailFrameLen = frameHdrLen + tailBodyLen + sealOverhead
	tailSeqAD    = math.MaxUint64
)

// Object is one stored object: its key (any bytes), what the source said
// about it, and the IDs of its chunks in order.
type Object struct {
	Key         []byte
	Size        int64
	ModTime     time.Time
	ETag        string
	VersionID   string
	ContentType string
	Checksums   map[string]string // algorithm -> hex digest, as the source declared or as computed while reading
	UserMeta    map[string]string
	// DeleteMarker records that the source had deleted this key (an S3
	// delete marker in a versioned bucket); such an object has no content.
	DeleteMarker bool
	Chunks       []ChunkID
}

// Manifest describes one snapshot.
type Manifest struct {
	ID          string
	Source      string
	Started     time.Time
	Finished    time.Time
	RetainUntil time.Time // as recorded at creation; see Retention for the effective value
	LegalHold   bool
	Complete    bool     // false when the pull hit errors or bounds
	Sorted      bool     // objects are in ascending key order (head key 5)
	Errors      []string // every error the pull recorded
	Objects     []Object // empty when only the summary was read
	Count       int64    // number of objects
	Bytes       int64    // sum of object sizes
}

type wireHead struct {
	Source      string `cbor:"1,keyasint"`
	Started     int64  `cbor:"2,keyasint"`
	RetainUntil int64  `cbor:"3,keyasint"`
	LegalHold   bool   `cbor:"4,keyasint"`
	Sorted      bool   `cbor:"5,keyasint,omitempty"`
}

type wireObject struct {
	Key         []byte            `cbor:"1,keyasint"`
	Size        int64             `cbor:"2,keyasint"`
	ModTime     int64             `cbor:"3,keyasint,omitempty"`
	ETag        string            `cbor:"4,keyasint,omitempty"`
	VersionID   string            `cbor:"5,keyasint,omitempty"`
	ContentType string            `cbor:"6,keyasint,omitempty"`
	Checksums   map[string]string `cbor:"7,keyasint,omitempty"`
	UserMeta    map[string]string `cbor:"8,keyasint,omitempty"`
	Chunks      []byte            `cbor:"9,keyasint"` // 32 bytes per chunk ID
	Deleted     bool              `cbor:"10,keyasint,omitempty"`
}

// wireRef is one reference of an object-chunk frame (layout above).
type wireRef struct {
	Chunk []byte `cbor:"1,keyasint"`
	Count int64  `cbor:"2,keyasint"`
	Bytes int64  `cbor:"3,keyasint"`
	First []byte `cbor:"4,keyasint"`
	Last  []byte `cbor:"5,keyasint"`
}

// id checks the reference's fields and returns its chunk ID.
func (r wireRef) id() (ChunkID, error) {
	if len(r.Chunk) != 32 || r.Count < 1 || r.Bytes < 0 {
		return ChunkID{}, fmt.Errorf("object chunk reference: %w", ErrCorrupt)
	}
	return ChunkID(r.Chunk), nil
}

// MetaChunkError says a metadata chunk a manifest references could not be
// read or does not hold what the reference says: the snapshot's records
// in it are unknown (prune then removes no pack).
type MetaChunkError struct {
	Chunk ChunkID
	Err   error
}

func (e *MetaChunkError) Error() string {
	return fmt.Sprintf("metadata chunk %s: %v", e.Chunk, e.Err)
}

func (e *MetaChunkError) Unwrap() error { return e.Err }

type wireTail struct {
	Finished int64    `cbor:"1,keyasint"`
	Complete bool     `cbor:"2,keyasint"`
	Errors   []string `cbor:"3,keyasint,omitempty"`
	Objects  int64    `cbor:"4,keyasint"`
	Bytes    int64    `cbor:"5,keyasint"`
}

func toWire(o Object) wireObject {
	w := wireObject{
		Key: o.Key, Size: o.Size, ETag: o.ETag, VersionID: o.VersionID,
		ContentType: o.ContentType, Checksums: o.Checksums, UserMeta: o.UserMeta,
		Chunks: make([]byte, 0, 32*len(o.Chunks)), Deleted: o.DeleteMarker,
	}
	if !o.ModTime.IsZero() {
		w.ModTime = o.ModTime.UnixNano()
	}
	for _, c := range o.Chunks {
		w.Chunks = append(w.Chunks, c[:]...)
	}
	return w
}

func fromWire(w wireObject) (Object, error) {
	if len(w.Chunks)%32 != 0 || w.Size < 0 || w.Deleted && (w.Size != 0 || len(w.Chunks) != 0) {
		return Object{}, fmt.Errorf("object record: %w", ErrCorrupt)
	}
	o := Object{
		Key: w.Key, Size: w.Size, ETag: w.ETag, VersionID: w.VersionID,
		ContentType: w.ContentType, Checksums: w.Checksums, UserMeta: w.UserMeta,
		Chunks: make([]ChunkID, len(w.Chunks)/32), DeleteMarker: w.Deleted,
	}
	if o.Key == nil {
		o.Key = []byte{}
	}
	if w.ModTime != 0 {
		o.ModTime = time.Unix(0, w.ModTime).UTC()
	}
	for i := range o.Chunks {
		copy(o.Chunks[i][:], w.Chunks[32*i:])
	}
	return o, nil
}

func unixOrZero(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// newSnapshotID returns a sortable ID: UTC start time and 32 random bits.
func newSnapshotID(t time.Time) string {
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:])
}

// ValidSnapshotID reports whether id has the form of a snapshot ID; only
// such IDs are ever joined into a path.
func ValidSnapshotID(id string) bool {
	if len(id) != snapIDLen || id[16] != '-' {
		return false
	}
	if _, err := time.Parse("20060102T150405Z", id[:16]); err != nil {
		return false
	}
	for _, c := range []byte(id[17:]) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func frameAD(id string, seq uint64, kind byte) []byte {
	ad := make([]byte, 0, 4+snapIDLen+9)
	ad = append(ad, "HFSF"...)
	ad = append(ad, id...)
	ad = binary.BigEndian.AppendUint64(ad, seq)
	return append(ad, kind)
}

// frameReader walks the frames of a manifest or journal.
type frameReader struct {
	s    *Store
	r    *bufio.Reader
	id   string
	seq  uint64
	v1   bool  // format 1 (HFSNAP01)
	off  int64 // offset just past the last complete frame
	skip bool  // skip decrypting object frames
	// buf holds one frame at a time and is reused, so streaming a large
	// manifest makes no garbage per frame; a frame's plaintext is valid
	// until the next call of next.
	buf bytes.Buffer
}

func (s *Store) newFrameReader(r io.Reader) (*frameReader, error) {
	br := bufio.NewReaderSize(r, 64<<10) // frames above this size bypass the buffer
	hdr := make([]byte, snapHdrLen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return nil, fmt.Errorf("manifest header: %w", io.ErrUnexpectedEOF)
	}
	if magic := string(hdr[:8]); magic != snapMagic && magic != snapMagicV1 || !ValidSnapshotID(string(hdr[8:])) {
		return nil, fmt.Errorf("manifest magic: %w", ErrCorrupt)
	}
	return &frameReader{s: s, r: br, id: string(hdr[8:]), off: int64(snapHdrLen), v1: string(hdr[:8]) == snapMagicV1}, nil
}

// next returns the next frame. io.EOF means a clean end; an error wrapping
// io.ErrUnexpectedEOF means a torn last frame.
func (fr *frameReader) next() (kind byte, plain []byte, err error) {
	var h [frameHdrLen]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		return 0, nil, fmt.Errorf("frame header: %w", io.ErrUnexpectedEOF)
	}
	kind = h[0]
	n := binary.BigEndian.Uint32(h[1:])
	last := frameRefs
	if fr.v1 {
		last = frameTail
	}
	if kind < frameHead || kind > last || n > maxFrame || n < sealOverhead ||
		!fr.v1 && kind == frameTail && n != tailBodyLen+sealOverhead {
		return 0, nil, fmt.Errorf("frame %d header: %w", fr.seq, ErrCorrupt)
	}
	if fr.skip && (kind == frameObjects || kind == frameRefs) {
		if _, err := fr.r.Discard(int(n)); err != nil {
			return 0, nil, fmt.Errorf("frame %d body: %w", fr.seq, io.ErrUnexpectedEOF)
		}
		fr.seq++
		fr.off += int64(frameHdrLen) + int64(n)
		return kind, nil, nil
	}
	// Grow the body as bytes arrive: a header claiming 64 MiB at the end
	// of a short (torn or hostile) file must not allocate 64 MiB.
	fr.buf.Reset()
	fr.buf.Grow(int(min(n, 64<<10)))
	if _, err := fr.buf.ReadFrom(io.LimitReader(fr.r, int64(n))); err != nil || fr.buf.Len() != int(n) {
		return 0, nil, fmt.Errorf("frame %d body: %w", fr.seq, io.ErrUnexpectedEOF)
	}
	body := fr.buf.Bytes()
	seqAD := fr.seq
	if !fr.v1 && kind == frameTail {
		seqAD = tailSeqAD
	}
	plain, err = openInPlace(fr.s.keys.meta, frameAD(fr.id, seqAD, kind), body)
	if err != nil {
		return 0, nil, fmt.Errorf("frame %d: %w", fr.seq, err)
	}
	fr.seq++
	fr.off += int64(frameHdrLen) + int64(n)
	return kind, plain, nil
}

// frameStats says how much of a journal is valid.
type frameStats struct {
	validLen int64  // bytes up to the end of the last good frame (an errors frame without a tail after it does not count)
	frames   uint64 // good frames (likewise)
	tail     bool   // the journal ends with a tail: only the rename is missing
	v1       bool   // format 1 (HFSNAP01)
}

// readManifestFrames decodes a manifest or journal. With partial set it
// accepts a missing tail and a torn last frame (a journal) and reports how
// much is valid; otherwise any defect is an error. With skipObjects, object
// frames are not decrypted (listing).
func (s *Store) readManifestFrames(r io.Reader, partial, skipObjects bool) (m *Manifest, st frameStats, err error) {
	return s.walkManifestFrames(r, partial, skipObjects, nil, nil)
}

// wireChunks is the part of an object record prune needs: decoding into it
// skips keys and metadata without keeping them.
type wireChunks struct {
	Size    int64  `cbor:"2,keyasint"`
	Chunks  []byte `cbor:"9,keyasint"`
	Deleted bool   `cbor:"10,keyasint,omitempty"`
}

// manifestSelf checks a manifest or journal on its own: every frame is
// authenticated and the counts add up (an object-chunk frame's references
// are summed), but no metadata chunk is read, so it needs no chunk index
// (recovery runs before the index is opened; the mirror checks packs as
// files of their own).
func (s *Store) manifestSelf(r io.Reader, partial bool) (*Manifest, frameStats, error) {
	return s.walkFrames(r, partial, false, walkHooks{refsOnly: true})
}

// walkManifestFrames decodes a manifest or journal; with onChunk set it
// decodes only sizes and chunk lists and hands each chunk ID to onChunk,
// with onObject set it hands each object to onObject, instead of
// collecting objects.
func (s *Store) walkManifestFrames(r io.Reader, partial, skipObjects bool, onChunk func(ChunkID), onObject func(Object) error) (m *Manifest, st frameStats, err error) {
	return s.walkFrames(r, partial, skipObjects, walkHooks{onChunk: onChunk, onObject: onObject})
}

// frameLoc is where an object or object-chunk frame lies in a manifest:
// the frame number its AD carries, the offset of its header and its
// length with the header; for a metadata chunk, which reference of the
// frame names it.
type frameLoc struct {
	seq uint64
	off int64
	n   int64
	ref int
}

// walkHooks are what walkFrames hands decoded frames to; see
// walkManifestFrames. With onFrame set (and onObject and onChunk nil) the
// objects of each object frame and of each metadata chunk go to onFrame,
// together with where the frame lies and the chunk (nil for an object
// frame), instead of being collected. With refsOnly set, records are
// counted but neither kept nor handed on, and metadata chunks are not read
// (the references' counts are summed): the check of a manifest file on its
// own, whose chunks are checked as packs.
type walkHooks struct {
	onChunk  func(ChunkID)
	onObject func(Object) error
	onFrame  func(frameLoc, *ChunkID, []Object) error
	refsOnly bool
	onRef    func(ChunkID) // with refsOnly: each metadata chunk referenced
	// seenRef, with onChunk, says whether a metadata chunk's records were
	// already handed over (the same ID is the same records): such a chunk
	// goes to onChunk but is not read again.
	seenRef func(ChunkID) bool
	// wantRef, with onObject, says whether a metadata chunk's records are
	// wanted: one that is not is counted from its reference and not read
	// (a seek in a sorted snapshot; verify, for a chunk it checked under
	// the same reference). One that is wanted is read next, its records
	// handed to onObject, then checked against the reference.
	wantRef func(id ChunkID, r wireRef) bool
	// laterRef, with onFrame, takes each metadata chunk's reference in
	// place of its records: the chunk is counted from its reference and
	// not read (SnapshotIndex reads it when a lookup reaches it).
	laterRef func(loc frameLoc, id ChunkID, r wireRef) error
}

// recordSpan is what frameRecords saw of the records it handled.
type recordSpan struct {
	keys        bool // first and last were decoded
	first, last []byte
}

// frameRecords handles the records of one object frame or metadata chunk
// (plain, a CBOR array of objects) as h asks, adding them to m's counts.
// ref is the metadata chunk, nil for an object frame.
func (s *Store) frameRecords(plain []byte, m *Manifest, h walkHooks, loc frameLoc, ref *ChunkID) (recordSpan, error) {
	if h.onChunk != nil {
		return recordSpan{}, s.frameChunks(plain, m, h.onChunk)
	}
	var objs []wireObject
	if err := s.codec.unmarshal(plain, &objs); err != nil {
		return recordSpan{}, fmt.Errorf("manifest objects: %w", err)
	}
	var span recordSpan
	if len(objs) > 0 {
		span = recordSpan{keys: true, first: objs[0].Key, last: objs[len(objs)-1].Key}
	}
	var frame []Object // with onFrame
	for _, w := range objs {
		o, err := fromWire(w)
		if err != nil {
			return span, err
		}
		if o.Size > math.MaxInt64-m.Bytes {
			return span, fmt.Errorf("manifest object sizes overflow: %w", ErrCorrupt)
		}
		switch {
		case h.onObject != nil:
			if err := h.onObject(o); err != nil {
				return span, err
			}
		case h.onFrame != nil:
			frame = append(frame, o)
		default:
			m.Objects = append(m.Objects, o)
		}
		m.Count++
		m.Bytes += o.Size
	}
	if h.onFrame != nil {
		if err := h.onFrame(loc, ref, frame); err != nil {
			return span, err
		}
	}
	return span, nil
}

func (s *Store) walkFrames(r io.Reader, partial, skipObjects bool, h walkHooks) (m *Manifest, st frameStats, err error) {
	onChunk := h.onChunk
	var cr *ChunkReader // reads metadata chunks, opened at the first
	fr, err := s.newFrameReader(r)
	if err != nil {
		return nil, st, err
	}
	fr.skip = skipObjects
	st.v1 = fr.v1
	m = &Manifest{ID: fr.id}
	sawTail, sawErrors := false, false
	var errOff int64 // where the errors frame starts, 0 when none
	for {
		start := fr.off
		kind, plain, err := fr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if partial && fr.seq > 0 {
				break // torn or damaged tail of a journal: cut here
			}
			return nil, st, err
		}
		if sawTail {
			return nil, st, fmt.Errorf("frame after tail: %w", ErrCorrupt)
		}
		if sawErrors && kind != frameTail {
			return nil, st, fmt.Errorf("frame after the errors frame: %w", ErrCorrupt)
		}
		if (fr.seq == 1) != (kind == frameHead) {
			return nil, st, fmt.Errorf("manifest head out of place: %w", ErrCorrupt)
		}
		switch kind {
		case frameHead:
			var h wireHead
			if err := s.codec.unmarshal(plain, &h); err != nil {
				return nil, st, fmt.Errorf("manifest head: %w", err)
			}
			m.Source, m.Started, m.RetainUntil, m.LegalHold, m.Sorted = h.Source, unixOrZero(h.Started), unixOrZero(h.RetainUntil), h.LegalHold, h.Sorted
		case frameObjects:
			if plain == nil {
				continue
			}
			if h.refsOnly {
				// Count the records without keeping them.
				if err := s.frameChunks(plain, m, func(ChunkID) {}); err != nil {
					return nil, st, err
				}
				break
			}
			if _, err := s.frameRecords(plain, m, h, frameLoc{seq: fr.seq - 1, off: start, n: fr.off - start}, nil); err != nil {
				return nil, st, err
			}
		case frameRefs:
			if plain == nil {
				continue
			}
			var refs []wireRef
			if err := s.codec.unmarshal(plain, &refs); err != nil {
				return nil, st, fmt.Errorf("manifest object chunks: %w", err)
			}
			if len(refs) == 0 || len(refs) > metaRefs {
				return nil, st, fmt.Errorf("object-chunk frame of %d references: %w", len(refs), ErrCorrupt)
			}
			loc := frameLoc{seq: fr.seq - 1, off: start, n: fr.off - start}
			for i, r := range refs {
				id, err := r.id()
				if err != nil {
					return nil, st, err
				}
				// A chunk not read is counted from its reference.
				unread := false
				switch {
				case h.refsOnly:
					if h.onRef != nil {
						h.onRef(id)
					}
					unread = true
				case onChunk != nil:
					onChunk(id)
					unread = h.seenRef != nil && h.seenRef(id) // checked when it was read
				case h.onObject != nil && h.wantRef != nil:
					unread = !h.wantRef(id, r)
				case h.laterRef != nil:
					loc.ref = i
					if err := h.laterRef(loc, id, r); err != nil {
						return nil, st, err
					}
					unread = true
				}
				if unread {
					if r.Bytes > math.MaxInt64-m.Bytes || r.Count > math.MaxInt64-m.Count {
						return nil, st, fmt.Errorf("manifest object sizes overflow: %w", ErrCorrupt)
					}
					m.Count += r.Count
					m.Bytes += r.Bytes
					continue
				}
				if cr == nil {
					cr = s.NewChunkReader()
					defer cr.Close()
				}
				s.metaReads.Add(1)
				body, err := cr.Read(id)
				if err != nil {
					return nil, st, &MetaChunkError{Chunk: id, Err: err}
				}
				count, nbytes := m.Count, m.Bytes
				loc.ref = i
				got, err := s.frameRecords(body, m, h, loc, &id)
				if errors.Is(err, ErrCorrupt) {
					return nil, st, &MetaChunkError{Chunk: id, Err: err}
				}
				if err != nil {
					return nil, st, err // the hook's own error, as it is
				}
				if m.Count-count != r.Count || m.Bytes-nbytes != r.Bytes ||
					got.keys && (!bytes.Equal(got.first, r.First) || !bytes.Equal(got.last, r.Last)) {
					return nil, st, &MetaChunkError{Chunk: id, Err: fmt.Errorf("holds %d records of %d bytes from %q to %q; the manifest says %d of %d from %q to %q: %w",
						m.Count-count, m.Bytes-nbytes, got.first, got.last, r.Count, r.Bytes, r.First, r.Last, ErrCorrupt)}
				}
			}
		case frameErrors:
			if err := s.codec.unmarshal(plain, &m.Errors); err != nil {
				return nil, st, fmt.Errorf("manifest errors: %w", err)
			}
			sawErrors, errOff = true, start
			continue // counts as valid only with the tail after it
		case frameTail:
			var t wireTail
			if fr.v1 {
				if err := s.codec.unmarshal(plain, &t); err != nil {
					return nil, st, fmt.Errorf("manifest tail: %w", err)
				}
			} else {
				tv, err := decodeTail(plain)
				if err != nil {
					return nil, st, err
				}
				if tv.seq != fr.seq-1 || tv.errOff != errOff {
					return nil, st, fmt.Errorf("manifest tail says frame %d, errors at %d; found frame %d, errors at %d: %w", tv.seq, tv.errOff, fr.seq-1, errOff, ErrCorrupt)
				}
				t = wireTail{Finished: tv.finished, Complete: tv.complete, Errors: m.Errors, Objects: tv.objects, Bytes: tv.bytes}
			}
			if t.Objects < 0 || t.Bytes < 0 {
				return nil, st, fmt.Errorf("manifest tail totals %d objects of %d bytes: %w", t.Objects, t.Bytes, ErrCorrupt)
			}
			if !skipObjects && (m.Count != t.Objects || m.Bytes != t.Bytes) {
				return nil, st, fmt.Errorf("manifest holds %d objects of %d bytes, tail says %d of %d: %w", m.Count, m.Bytes, t.Objects, t.Bytes, ErrCorrupt)
			}
			m.Finished, m.Complete, m.Errors, m.Count, m.Bytes = unixOrZero(t.Finished), t.Complete, t.Errors, t.Objects, t.Bytes
			sawTail = true
		}
		st.validLen, st.frames = fr.off, fr.seq
	}
	st.tail = sawTail
	if fr.seq == 0 {
		return nil, st, fmt.Errorf("manifest has no head: %w", ErrCorrupt)
	}
	if !partial && !sawTail {
		return nil, st, fmt.Errorf("manifest has no tail: %w", ErrCorrupt)
	}
	if !sawTail {
		m.Errors = nil // an errors frame counts only with its tail
	}
	return m, st, nil
}

// tailV2 is the fixed-size tail of a format 2 manifest (layout above).
type tailV2 struct {
	finished, objects, bytes int64
	seq                      uint64 // frame number of the tail
	errOff                   int64  // offset of the errors frame, 0 when none
	complete                 bool
}

func encodeTail(t tailV2) []byte {
	b := make([]byte, 0, tailBodyLen)
	b = binary.BigEndian.AppendUint64(b, uint64(t.finished))
	b = binary.BigEndian.AppendUint64(b, uint64(t.objects))
	b = binary.BigEndian.AppendUint64(b, uint64(t.bytes))
	b = binary.BigEndian.AppendUint64(b, t.seq)
	b = binary.BigEndian.AppendUint64(b, uint64(t.errOff))
	var flags byte
	if t.complete {
		flags = 1
	}
	return append(b, flags)
}

func decodeTail(b []byte) (tailV2, error) {
	if len(b) != tailBodyLen {
		return tailV2{}, fmt.Errorf("manifest tail of %d bytes: %w", len(b), ErrCorrupt)
	}
	t := tailV2{
		finished: int64(binary.BigEndian.Uint64(b[0:])),
		objects:  int64(binary.BigEndian.Uint64(b[8:])),
		bytes:    int64(binary.BigEndian.Uint64(b[16:])),
		seq:      binary.BigEndian.Uint64(b[24:]),
		errOff:   int64(binary.BigEndian.Uint64(b[32:])),
		complete: b[40]&1 != 0,
	}
	if t.objects < 0 || t.bytes < 0 || t.seq == 0 || t.errOff < 0 || b[40]&^1 != 0 ||
		t.errOff != 0 && t.errOff < int64(snapHdrLen) {
		return tailV2{}, fmt.Errorf("manifest tail: %w", ErrCorrupt)
	}
	return t, nil
}

// errV1Manifest says a manifest is in format 1, whose summary is found
// only by walking its frames.
var errV1Manifest = errors.New("format 1 manifest")

// readHead reads the summary of a committed format 2 manifest from its
// first frame, its fixed-size tail at the end and, when the snapshot
// recorded errors, the errors frame just before the tail: O(1) reads
// whatever the object count, each bounded. It returns errV1Manifest for
// a format 1 manifest. It does not check the object frames (a full read
// does); everything it returns is authenticated.
func (s *Store) readHead(f io.ReaderAt, size int64) (*Manifest, error) {
	hdr := make([]byte, snapHdrLen+frameHdrLen)
	if size < int64(len(hdr))+tailFrameLen {
		if size >= 8 {
			if _, err := f.ReadAt(hdr[:8], 0); err == nil && string(hdr[:8]) == snapMagicV1 {
				return nil, errV1Manifest
			}
		}
		return nil, fmt.Errorf("manifest of %d bytes: %w", size, ErrCorrupt)
	}
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("read manifest head: %w", err)
	}
	if string(hdr[:8]) == snapMagicV1 {
		return nil, errV1Manifest
	}
	id := string(hdr[8:snapHdrLen])
	if string(hdr[:8]) != snapMagic || !ValidSnapshotID(id) {
		return nil, fmt.Errorf("manifest magic: %w", ErrCorrupt)
	}
	tailAt := size - tailFrameLen
	headLen := int64(binary.BigEndian.Uint32(hdr[snapHdrLen+1:]))
	if hdr[snapHdrLen] != frameHead || headLen < sealOverhead || headLen > maxFrame || int64(len(hdr))+headLen > tailAt {
		return nil, fmt.Errorf("manifest head frame: %w", ErrCorrupt)
	}
	m := &Manifest{ID: id}
	body, err := s.readSealedFrame(f, int64(len(hdr)), headLen, frameAD(id, 0, frameHead))
	if err != nil {
		return nil, fmt.Errorf("manifest head: %w", err)
	}
	var h wireHead
	if err := s.codec.unmarshal(body, &h); err != nil {
		return nil, fmt.Errorf("manifest head: %w", err)
	}
	m.Source, m.Started, m.RetainUntil, m.LegalHold, m.Sorted = h.Source, unixOrZero(h.Started), unixOrZero(h.RetainUntil), h.LegalHold, h.Sorted

	var th [frameHdrLen]byte
	if _, err := f.ReadAt(th[:], tailAt); err != nil {
		return nil, fmt.Errorf("read manifest tail: %w", err)
	}
	if th[0] != frameTail || binary.BigEndian.Uint32(th[1:]) != tailBodyLen+sealOverhead {
		return nil, fmt.Errorf("manifest has no tail: %w", ErrCorrupt)
	}
	body, err = s.readSealedFrame(f, tailAt+frameHdrLen, tailBodyLen+sealOverhead, frameAD(id, tailSeqAD, frameTail))
	if err != nil {
		return nil, fmt.Errorf("manifest tail: %w", err)
	}
	t, err := decodeTail(body)
	if err != nil {
		return nil, err
	}
	m.Finished, m.Complete, m.Count, m.Bytes = unixOrZero(t.finished), t.complete, t.objects, t.bytes
	if t.errOff != 0 {
		var eh [frameHdrLen]byte
		if t.errOff+frameHdrLen > tailAt || t.seq < 2 {
			return nil, fmt.Errorf("manifest errors frame: %w", ErrCorrupt)
		}
		if _, err := f.ReadAt(eh[:], t.errOff); err != nil {
			return nil, fmt.Errorf("read manifest errors: %w", err)
		}
		n := int64(binary.BigEndian.Uint32(eh[1:]))
		if eh[0] != frameErrors || n < sealOverhead || n > maxFrame || t.errOff+frameHdrLen+n != tailAt {
			return nil, fmt.Errorf("manifest errors frame: %w", ErrCorrupt)
		}
		body, err := s.readSealedFrame(f, t.errOff+frameHdrLen, n, frameAD(id, t.seq-1, frameErrors))
		if err != nil {
			return nil, fmt.Errorf("manifest errors: %w", err)
		}
		if err := s.codec.unmarshal(body, &m.Errors); err != nil {
			return nil, fmt.Errorf("manifest errors: %w", err)
		}
	}
	return m, nil
}

// readSealedFrame reads n bytes at off and opens them under ad.
func (s *Store) readSealedFrame(f io.ReaderAt, off, n int64, ad []byte) ([]byte, error) {
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	return openInPlace(s.keys.meta, ad, b)
}

// frameChunks decodes the sizes and chunk lists of one object frame.
func (s *Store) frameChunks(plain []byte, m *Manifest, onChunk func(ChunkID)) error {
	var objs []wireChunks
	if err := s.codec.unmarshal(plain, &objs); err != nil {
		return fmt.Errorf("manifest objects: %w", err)
	}
	for _, w := range objs {
		if len(w.Chunks)%32 != 0 || w.Size < 0 || w.Deleted && (w.Size != 0 || len(w.Chunks) != 0) {
			return fmt.Errorf("object record: %w", ErrCorrupt)
		}
		if w.Size > math.MaxInt64-m.Bytes {
			return fmt.Errorf("manifest object sizes overflow: %w", ErrCorrupt)
		}
		for b := w.Chunks; len(b) > 0; b = b[32:] {
			onChunk(ChunkID(b[:32]))
		}
		m.Count++
		m.Bytes += w.Size
	}
	return nil
}

// journal appends frames to a manifest in progress.
type journal struct {
	s    *Store
	f    *os.File
	id   string
	seq  uint64
	off  int64 // bytes written: where the next frame starts
	v1   bool  // a format 1 journal (resumed after an upgrade) ends as one
	path string
}

// writeTail ends the manifest: in format 2 an errors frame when there are
// errors, then the fixed-size tail; in format 1 the CBOR tail.
func (j *journal) writeTail(t wireTail) error {
	if j.v1 {
		plain, err := j.s.codec.marshal(t)
		if err != nil {
			return err
		}
		return j.writeFrame(frameTail, plain)
	}
	tv := tailV2{finished: t.Finished, objects: t.Objects, bytes: t.Bytes, complete: t.Complete}
	if len(t.Errors) > 0 {
		plain, err := j.s.codec.marshal(t.Errors)
		if err != nil {
			return err
		}
		tv.errOff = j.off
		if err := j.writeFrame(frameErrors, plain); err != nil {
			return err
		}
	}
	tv.seq = j.seq
	return j.writeFrame(frameTail, encodeTail(tv))
}

func (j *journal) writeFrame(kind byte, plain []byte) error {
	seqAD := j.seq
	if !j.v1 && kind == frameTail {
		seqAD = tailSeqAD
	}
	sealed := sealTo(nil, j.s.keys.meta, frameAD(j.id, seqAD, kind), plain)
	if len(sealed) > maxFrame {
		return fmt.Errorf("manifest frame of %d bytes exceeds %d", len(sealed), maxFrame)
	}
	buf := make([]byte, 0, frameHdrLen+len(sealed))
	buf = append(buf, kind)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(sealed)))
	buf = append(buf, sealed...)
	// Two writes with a hook between them, so crash tests can tear a frame.
	half := len(buf) / 2
	if _, err := j.f.Write(buf[:half]); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	j.s.at("journal-mid-frame")
	if _, err := j.f.Write(buf[half:]); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	j.seq++
	j.off += int64(len(buf))
	j.s.at("journal-before-fsync")
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("fsync journal: %w", err)
	}
	j.s.at("journal-after-fsync")
	return nil
}
