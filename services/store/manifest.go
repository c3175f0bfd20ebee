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
//	| 8    | magic "HFSNAP01"                                               |
//	| 25   | snapshot ID, ASCII "YYYYMMDDTHHMMSSZ-xxxxxxxx"                  |
//	| ...  | frames, each:                                                  |
//	|      |   1  kind: 1 head, 2 objects, 3 tail                           |
//	|      |   4  L, big endian (at most 64 MiB)                            |
//	|      |   L  nonce(12) || AES-GCM(meta key, AD = "HFSF" || ID ||       |
//	|      |      frame number u64 BE || kind) of a CBOR body || tag(16)    |
//
// Frame 0 is the head (source, start, retention); object frames follow;
// a committed manifest ends with exactly one tail frame (end time,
// completeness, errors, totals). The frame number in the AD stops frames
// from being dropped, reordered or moved between snapshots. A journal
// without a tail is a snapshot in progress; a torn last frame is cut off
// when it is resumed.
const (
	snapMagic   = "HFSNAP01"
	snapIDLen   = 25
	snapHdrLen  = len(snapMagic) + snapIDLen
	frameHdrLen = 5
	maxFrame    = 64 << 20

	frameHead    byte = 1
	frameObjects byte = 2
	frameTail    byte = 3
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
	if string(hdr[:8]) != snapMagic || !ValidSnapshotID(string(hdr[8:])) {
		return nil, fmt.Errorf("manifest magic: %w", ErrCorrupt)
	}
	return &frameReader{s: s, r: br, id: string(hdr[8:]), off: int64(snapHdrLen)}, nil
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
	if kind < frameHead || kind > frameTail || n > maxFrame || n < sealOverhead {
		return 0, nil, fmt.Errorf("frame %d header: %w", fr.seq, ErrCorrupt)
	}
	if fr.skip && kind == frameObjects {
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
	plain, err = openInPlace(fr.s.keys.meta, frameAD(fr.id, fr.seq, kind), body)
	if err != nil {
		return 0, nil, fmt.Errorf("frame %d: %w", fr.seq, err)
	}
	fr.seq++
	fr.off += int64(frameHdrLen) + int64(n)
	return kind, plain, nil
}

// frameStats says how much of a journal is valid.
type frameStats struct {
	validLen int64  // bytes up to the end of the last good frame
	frames   uint64 // good frames
	tail     bool   // the journal ends with a tail: only the rename is missing
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

// manifestChunks streams every chunk ID a manifest or journal references
// to fn, one frame at a time, and returns its summary (Objects empty). It
// keeps no object: memory is one frame, whatever the manifest's size.
func (s *Store) manifestChunks(r io.Reader, partial bool, fn func(ChunkID)) (*Manifest, frameStats, error) {
	return s.walkManifestFrames(r, partial, false, fn, nil)
}

// manifestObjects streams every object of a committed manifest to fn, one
// frame at a time, and returns its summary (Objects empty). fn may see
// objects of a manifest that turns out damaged further on: the error says so.
func (s *Store) manifestObjects(r io.Reader, fn func(Object)) (*Manifest, error) {
	m, _, err := s.walkManifestFrames(r, false, false, nil, fn)
	return m, err
}

// walkManifestFrames decodes a manifest or journal; with onChunk set it
// decodes only sizes and chunk lists and hands each chunk ID to onChunk,
// with onObject set it hands each object to onObject, instead of
// collecting objects.
func (s *Store) walkManifestFrames(r io.Reader, partial, skipObjects bool, onChunk func(ChunkID), onObject func(Object)) (m *Manifest, st frameStats, err error) {
	fr, err := s.newFrameReader(r)
	if err != nil {
		return nil, st, err
	}
	fr.skip = skipObjects
	m = &Manifest{ID: fr.id}
	sawTail := false
	for {
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
		if (fr.seq == 1) != (kind == frameHead) {
			return nil, st, fmt.Errorf("manifest head out of place: %w", ErrCorrupt)
		}
		switch kind {
		case frameHead:
			var h wireHead
			if err := s.codec.unmarshal(plain, &h); err != nil {
				return nil, st, fmt.Errorf("manifest head: %w", err)
			}
			m.Source, m.Started, m.RetainUntil, m.LegalHold = h.Source, unixOrZero(h.Started), unixOrZero(h.RetainUntil), h.LegalHold
		case frameObjects:
			if plain == nil {
				continue
			}
			if onChunk != nil {
				if err := s.frameChunks(plain, m, onChunk); err != nil {
					return nil, st, err
				}
				break
			}
			var objs []wireObject
			if err := s.codec.unmarshal(plain, &objs); err != nil {
				return nil, st, fmt.Errorf("manifest objects: %w", err)
			}
			for _, w := range objs {
				o, err := fromWire(w)
				if err != nil {
					return nil, st, err
				}
				if o.Size > math.MaxInt64-m.Bytes {
					return nil, st, fmt.Errorf("manifest object sizes overflow: %w", ErrCorrupt)
				}
				if onObject != nil {
					onObject(o)
				} else {
					m.Objects = append(m.Objects, o)
				}
				m.Count++
				m.Bytes += o.Size
			}
		case frameTail:
			var t wireTail
			if err := s.codec.unmarshal(plain, &t); err != nil {
				return nil, st, fmt.Errorf("manifest tail: %w", err)
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
	return m, st, nil
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
	path string
}

func (j *journal) writeFrame(kind byte, plain []byte) error {
	sealed := sealTo(nil, j.s.keys.meta, frameAD(j.id, j.seq, kind), plain)
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
	j.s.at("journal-before-fsync")
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("fsync journal: %w", err)
	}
	j.s.at("journal-after-fsync")
	return nil
}
