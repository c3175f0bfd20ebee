package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Fuzz targets for the decoders that read bytes from disk: manifests and
// journals (readManifestFrames) and pack trailers (readTrailer,
// parseEntries). Each has a raw variant (arbitrary file bytes, which the
// AEAD mostly rejects) and a plaintext variant that seals fuzzer-chosen
// bodies with the store's real key, so the CBOR decoding and the frame
// state machine behind the AEAD are fuzzed too. See docs/fuzzing.md.

// fuzzStore returns a store on a temporary directory whose keys are the
// same in every process: `go test -fuzz` runs the target in several worker
// processes and hands them inputs sealed in another, so a store with a
// random ID (the HKDF salt) would make every sealed seed fail to open. The
// keys are swapped right after Init, before the store writes anything
// sealed but its config, and the store is never reopened.
func fuzzStore(f *testing.F) *Store {
	f.Helper()
	s := newStore(f, InitOptions{PackSize: 4 << 10}, Options{Logger: hclog.NewNullLogger()})
	master, err := testKey.MasterKey(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	id := [16]byte{'h', 'o', 'l', 'd', 'f', 'a', 's', 't', ' ', 'f', 'u', 'z', 'z', 'i', 'n', 'g'}
	k, err := deriveKeys(master, id)
	if err != nil {
		f.Fatal(err)
	}
	s.id, s.keys = id, k
	return s
}

// fuzzObjects are the objects of a seed snapshot: the hostile keys, a few
// small objects that fill several 4 KiB packs (so several object frames),
// and with big set one object of two chunks.
func fuzzObjects(big bool) map[string][]byte {
	objs := hostileKeys()
	for i := range 4 {
		objs[fmt.Sprintf("3k-%d", i)] = randBytes(uint64(10+i), 3<<10)
	}
	if big {
		objs["two-chunks"] = randBytes(20, minChunk+100)
	}
	return objs
}

// seedManifest commits a snapshot of objs and returns its .snap bytes.
func seedManifest(f *testing.F, s *Store, objs map[string][]byte) []byte {
	f.Helper()
	m := putObjects(f, s, "fuzz-src", time.Now().Add(time.Hour), objs)
	raw, err := os.ReadFile(s.path(snapshotsDir, m.ID+".snap"))
	if err != nil {
		f.Fatal(err)
	}
	return raw
}

// mutations returns raw, its truncations at every frame boundary and in
// the middle of each frame, and copies with single bits flipped in the
// header, in each frame header and in each frame body.
func mutations(raw []byte) [][]byte {
	out := [][]byte{raw, raw[:snapHdrLen], raw[:snapHdrLen-1], raw[:0]}
	flip := func(i int, bit byte) {
		if i < len(raw) {
			c := bytes.Clone(raw)
			c[i] ^= bit
			out = append(out, c)
		}
	}
	flip(0, 1)
	flip(snapHdrLen-1, 1)
	for off := snapHdrLen; off+frameHdrLen <= len(raw); {
		n := int(binary.BigEndian.Uint32(raw[off+1:]))
		end := off + frameHdrLen + n
		out = append(out, raw[:off+2], raw[:off+frameHdrLen+n/2])
		if end < len(raw) {
			out = append(out, raw[:end])
		}
		flip(off, 0x02)          // kind
		flip(off+1, 0x80)        // length, high byte
		flip(off+4, 0x01)        // length, low byte
		flip(off+frameHdrLen, 1) // nonce
		flip(end-1, 0x40)        // tag
		off = end
	}
	return out
}

// FuzzManifest feeds arbitrary bytes to the manifest/journal decoder, as a
// committed manifest (partial false) and as a journal (partial true).
// Properties: no panic, and any decode that succeeds is self-consistent
// (checkDecoded).
func FuzzManifest(f *testing.F) {
	s := fuzzStore(f)
	raw := seedManifest(f, s, fuzzObjects(true))
	if _, _, err := s.readManifestFrames(bytes.NewReader(raw), false, false); err != nil {
		f.Fatalf("seed manifest does not decode: %v", err)
	}
	for _, m := range mutations(raw) {
		f.Add(m)
	}
	// A format 2 manifest with an errors frame before its tail.
	sn, err := s.Begin(context.Background(), BeginOptions{Source: "fuzz-errors"})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := sn.Put(context.Background(), ObjectInfo{Key: []byte("k")}, bytes.NewReader([]byte("v"))); err != nil {
		f.Fatal(err)
	}
	sn.RecordError("one")
	sn.RecordError("two")
	me, err := sn.Commit(context.Background(), CommitOptions{})
	if err != nil {
		f.Fatal(err)
	}
	rawErr, err := os.ReadFile(s.path(snapshotsDir, me.ID+".snap"))
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range mutations(rawErr) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecoded(t, s, data)
	})
}

// checkDecoded decodes data in every mode and checks what a successful
// decode promises:
//   - the object count and byte total agree with the objects (and so with
//     the tail, which readManifestFrames compares them to);
//   - every object is well formed (size >= 0, a delete marker has no
//     content);
//   - a committed manifest consumed the whole input and has a tail;
//   - a journal's valid length lies within the input, and cutting the
//     journal there (as resume does) decodes to the same thing;
//   - listing (skipObjects) agrees with a full decode of a committed
//     manifest.
func checkDecoded(t *testing.T, s *Store, data []byte) {
	t.Helper()
	// The head reader takes any bytes without a panic; what it returns is
	// checked against a full decode below.
	if h, err := s.readHead(bytes.NewReader(data), int64(len(data))); err == nil && (h == nil || !ValidSnapshotID(h.ID) || h.Count < 0 || h.Bytes < 0) {
		t.Fatalf("head %+v", h)
	}
	for _, partial := range []bool{false, true} {
		m, st, err := s.readManifestFrames(bytes.NewReader(data), partial, false)
		if err != nil {
			if m != nil {
				t.Fatalf("partial=%v: manifest and error %v", partial, err)
			}
			continue
		}
		if err := checkManifest(m); err != nil {
			t.Fatalf("partial=%v: %v", partial, err)
		}
		if st.frames == 0 || st.validLen < int64(snapHdrLen) || st.validLen > int64(len(data)) {
			t.Fatalf("partial=%v: stats %+v for %d bytes", partial, st, len(data))
		}
		if !partial {
			if !st.tail || st.validLen != int64(len(data)) {
				t.Fatalf("committed manifest: stats %+v for %d bytes", st, len(data))
			}
			l, _, err := s.readManifestFrames(bytes.NewReader(data), false, true)
			if err != nil {
				t.Fatalf("full decode works, listing fails: %v", err)
			}
			if l.ID != m.ID || l.Source != m.Source || l.Count != m.Count || l.Bytes != m.Bytes || l.Complete != m.Complete || len(l.Objects) != 0 {
				t.Fatalf("listing %+v disagrees with manifest %+v", l, m)
			}
			// The head reader (listing, prune's retention pass) agrees
			// with a full decode of a format 2 manifest.
			if h, err := s.readHead(bytes.NewReader(data), int64(len(data))); !errors.Is(err, errV1Manifest) {
				if err != nil {
					t.Fatalf("full decode works, head read fails: %v", err)
				}
				if h.ID != m.ID || h.Source != m.Source || h.Count != m.Count || h.Bytes != m.Bytes || h.Complete != m.Complete ||
					!h.Finished.Equal(m.Finished) || !h.Started.Equal(m.Started) || !h.RetainUntil.Equal(m.RetainUntil) || h.LegalHold != m.LegalHold || !slices.Equal(h.Errors, m.Errors) {
					t.Fatalf("head %+v disagrees with manifest %+v", h, m)
				}
			}
			continue
		}
		m2, st2, err := s.readManifestFrames(bytes.NewReader(data[:st.validLen]), true, false)
		if err != nil {
			t.Fatalf("journal cut at its valid length %d does not decode: %v", st.validLen, err)
		}
		if st2 != st || !reflect.DeepEqual(m2, m) {
			t.Fatalf("journal cut at %d decodes differently: %+v %+v, was %+v %+v", st.validLen, st2, m2, st, m)
		}
	}
}

// checkManifest checks the invariants of a decoded manifest.
func checkManifest(m *Manifest) error {
	if m == nil || !ValidSnapshotID(m.ID) {
		return fmt.Errorf("manifest %+v", m)
	}
	if m.Count != int64(len(m.Objects)) {
		return fmt.Errorf("count %d, %d objects", m.Count, len(m.Objects))
	}
	var total int64
	for i, o := range m.Objects {
		if o.Size < 0 || o.Key == nil || o.DeleteMarker && (o.Size != 0 || len(o.Chunks) != 0) {
			return fmt.Errorf("object %d malformed: %+v", i, o)
		}
		total += o.Size
		if total < 0 {
			return fmt.Errorf("object sizes overflow int64 at object %d", i)
		}
	}
	if m.Bytes != total {
		return fmt.Errorf("bytes %d, objects sum to %d", m.Bytes, total)
	}
	return nil
}

// frameSpec is one frame of a manifest built by buildFrames.
type frameSpec struct {
	kind byte
	body []byte // CBOR plaintext
}

// fuzzSnapID is the snapshot ID of manifests built by buildFrames.
const fuzzSnapID = "20250101T000000Z-0123abcd"

// buildFrames writes a manifest of the given frames, each sealed with the
// store's real meta key and numbered in order, exactly as journal.writeFrame
// does: in format 2 (a tail frame sealed with the tail's AD) or, with v1,
// in format 1.
func buildFrames(s *Store, id string, frames []frameSpec, v1 bool) []byte {
	magic := snapMagic
	if v1 {
		magic = snapMagicV1
	}
	out := append([]byte(magic), id...)
	for i, fs := range frames {
		seq := uint64(i)
		if !v1 && fs.kind == frameTail {
			seq = tailSeqAD
		}
		sealed := sealTo(nil, s.keys.meta, frameAD(id, seq, fs.kind), fs.body)
		out = append(out, fs.kind)
		out = binary.BigEndian.AppendUint32(out, uint32(len(sealed)))
		out = append(out, sealed...)
	}
	return out
}

// openFrames decrypts the frames of a manifest built by the store.
func openFrames(tb testing.TB, s *Store, raw []byte) []frameSpec {
	tb.Helper()
	fr, err := s.newFrameReader(bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	var out []frameSpec
	for {
		kind, plain, err := fr.next()
		if err != nil {
			return out
		}
		out = append(out, frameSpec{kind, plain})
	}
}

// encodeSpecs and decodeSpecs give a fuzzer-friendly form of a frame list:
// per frame, kind(1) || length u16 BE || body. A short last record takes
// what is left.
func encodeSpecs(frames []frameSpec) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f.kind)
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.body)))
		b = append(b, f.body...)
	}
	return b
}

func decodeSpecs(b []byte) []frameSpec {
	var out []frameSpec
	for len(b) > 0 {
		kind := b[0]
		b = b[1:]
		n := 0
		if len(b) >= 2 {
			n = int(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		n = min(n, len(b))
		out = append(out, frameSpec{kind, b[:n]})
		b = b[n:]
	}
	return out
}

// FuzzManifestPlaintext seals fuzzer-chosen CBOR bodies as the frames of a
// manifest with the store's real key, optionally tearing the last frame,
// so that the CBOR decoder and the head/objects/tail state machine are
// reached. Properties: those of FuzzManifest, and a committed manifest
// that decodes re-encodes (head, objects, tail) to the same manifest.
func FuzzManifestPlaintext(f *testing.F) {
	s := fuzzStore(f)
	seed := openFrames(f, s, seedManifest(f, s, fuzzObjects(true)))
	if len(seed) < 4 {
		f.Fatalf("seed manifest has %d frames, want head, several object frames and tail", len(seed))
	}
	enc := func(v any) []byte {
		b, err := s.codec.marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	var id ChunkID
	id[0] = 1
	obj := toWire(Object{Key: []byte("k\xff"), Size: 5, ModTime: time.Unix(1, 2), Chunks: []ChunkID{id},
		Checksums: map[string]string{"sha256": "00"}, UserMeta: map[string]string{"a": "b"}})
	head := frameSpec{frameHead, enc(wireHead{Source: "s", Started: 1, RetainUntil: 2, LegalHold: true})}
	objs := frameSpec{frameObjects, enc([]wireObject{obj, {Key: []byte{}, Deleted: true}})}
	tail := frameSpec{frameTail, enc(wireTail{Finished: 3, Complete: true, Errors: []string{"e"}, Objects: 2, Bytes: 5})}
	// Format 2: the errors frame's offset is where buildFrames puts it.
	errs := frameSpec{frameErrors, enc([]string{"e"})}
	errOff := int64(len(buildFrames(s, fuzzSnapID, []frameSpec{head, objs}, false)))
	tail2 := frameSpec{frameTail, encodeTail(tailV2{finished: 3, objects: 2, bytes: 5, seq: 3, errOff: errOff, complete: true})}
	seeds := []struct {
		frames []frameSpec
		tear   bool
		v1     bool
	}{
		{seed, false, false},
		{seed[:len(seed)-1], false, false},
		{seed, true, false},
		{[]frameSpec{head, objs, errs, tail2}, false, false},
		{[]frameSpec{head, objs, {frameTail, encodeTail(tailV2{objects: 2, bytes: 5, seq: 2})}}, false, false},
		{[]frameSpec{head, objs, errs, errs, tail2}, false, false},
		{[]frameSpec{head, objs, errs, objs, tail2}, false, false},
		{[]frameSpec{head, errs}, false, false},
		{[]frameSpec{head, objs, tail}, false, true},
		{[]frameSpec{head, objs, objs, frameSpec{frameTail, enc(wireTail{Objects: 4, Bytes: 10})}}, false, true},
		{[]frameSpec{head, tail, tail}, false, true},
		{[]frameSpec{objs, head, tail}, false, true},
		{[]frameSpec{head, head}, false, true},
		{[]frameSpec{head, {frameObjects, enc([]wireObject{{Size: -1}})}}, false, true},
		{[]frameSpec{head, {frameObjects, enc([]wireObject{{Size: 1 << 62}, {Size: 1 << 62}})},
			{frameTail, enc(wireTail{Objects: 2, Bytes: -1 << 63})}}, false, true},
		{[]frameSpec{head, {frameObjects, enc([]wireObject{{Chunks: make([]byte, 31)}})}}, false, true},
		{[]frameSpec{head, {frameObjects, enc(map[int]int{1: 2})}}, false, true},
		{[]frameSpec{head, {4, nil}}, false, true},
		{[]frameSpec{{frameHead, []byte{0xbf}}}, false, true},
	}
	for _, sd := range seeds {
		f.Add(encodeSpecs(sd.frames), sd.tear, sd.v1)
	}
	for _, v1 := range []bool{false, true} {
		frames := []frameSpec{head, objs, errs, tail2}
		if v1 {
			frames = []frameSpec{head, objs, tail}
		}
		m, _, err := s.readManifestFrames(bytes.NewReader(buildFrames(s, fuzzSnapID, frames, v1)), false, false)
		if err != nil || m.Count != 2 || !slices.Equal(m.Errors, []string{"e"}) {
			f.Fatalf("hand-built seed (format 1: %v) does not decode: %+v, %v", v1, m, err)
		}
	}
	f.Fuzz(func(t *testing.T, spec []byte, tear, v1 bool) {
		data := buildFrames(s, fuzzSnapID, decodeSpecs(spec), v1)
		if tear && len(data) > snapHdrLen {
			data = data[:len(data)-1]
		}
		checkDecoded(t, s, data)
		m, _, err := s.readManifestFrames(bytes.NewReader(data), false, false)
		if err != nil {
			return
		}
		again := buildFrames(s, m.ID, encodeManifest(t, s, m, v1), v1)
		m2, _, err := s.readManifestFrames(bytes.NewReader(again), false, false)
		if err != nil {
			t.Fatalf("re-encoded manifest does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(m2), normalize(m)) {
			t.Fatalf("manifest does not round-trip:\n got %+v\nwant %+v", m2, m)
		}
	})
}

// encodeManifest gives m's frames as the writer would: head, one object
// frame, then in format 2 an errors frame (when m has errors) and the
// fixed-size tail, in format 1 the CBOR tail.
func encodeManifest(t *testing.T, s *Store, m *Manifest, v1 bool) []frameSpec {
	t.Helper()
	ns := func(tm time.Time) int64 {
		if tm.IsZero() {
			return 0
		}
		return tm.UnixNano()
	}
	ws := make([]wireObject, 0, len(m.Objects))
	for _, o := range m.Objects {
		ws = append(ws, toWire(o))
	}
	enc := func(v any) []byte {
		b, err := s.codec.marshal(v)
		if err != nil {
			t.Fatalf("encode decoded manifest: %v", err)
		}
		return b
	}
	frames := []frameSpec{
		{frameHead, enc(wireHead{Source: m.Source, Started: ns(m.Started), RetainUntil: ns(m.RetainUntil), LegalHold: m.LegalHold})},
		{frameObjects, enc(ws)},
	}
	if v1 {
		return append(frames, frameSpec{frameTail, enc(wireTail{Finished: ns(m.Finished), Complete: m.Complete, Errors: m.Errors, Objects: m.Count, Bytes: m.Bytes})})
	}
	tv := tailV2{finished: ns(m.Finished), objects: m.Count, bytes: m.Bytes, complete: m.Complete}
	if len(m.Errors) > 0 {
		tv.errOff = int64(len(buildFrames(s, m.ID, frames, false)))
		frames = append(frames, frameSpec{frameErrors, enc(m.Errors)})
	}
	tv.seq = uint64(len(frames))
	return append(frames, frameSpec{frameTail, encodeTail(tv)})
}

// normalize maps empty maps and slices to nil: the encoder omits them, so
// they come back as nil.
func normalize(m *Manifest) *Manifest {
	c := *m
	if len(c.Errors) == 0 {
		c.Errors = nil
	}
	c.Objects = nil
	for _, o := range m.Objects {
		if len(o.Checksums) == 0 {
			o.Checksums = nil
		}
		if len(o.UserMeta) == 0 {
			o.UserMeta = nil
		}
		if len(o.Chunks) == 0 {
			o.Chunks = nil
		}
		c.Objects = append(c.Objects, o)
	}
	return &c
}

// seedPacks returns the bytes of the seed snapshot's packs.
func seedPacks(f *testing.F, s *Store) [][]byte {
	f.Helper()
	seedManifest(f, s, fuzzObjects(false))
	var out [][]byte
	err := filepath.WalkDir(s.path(packsDir), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		out = append(out, b)
		return err
	})
	if err != nil || len(out) == 0 {
		f.Fatalf("seed packs: %d, %v", len(out), err)
	}
	return out
}

// checkTrailer runs readTrailer on data (as a file) and checks that every
// entry it returns lies within the pack, between the magic and the
// trailer, and holds at least a nonce and a tag. It returns the entries.
func checkTrailer(t *testing.T, s *Store, path string, data []byte) ([]packEntry, error) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	es, err := s.readTrailer(fh, int64(len(data)))
	if err != nil {
		if es != nil {
			t.Fatalf("entries and error %v", err)
		}
		return nil, err
	}
	size := int64(len(data))
	trailer := int64(binary.BigEndian.Uint32(data[size-packFooter:]))
	for i, e := range es {
		start, end := int64(e.offset), int64(e.offset)+int64(e.length)
		if start < int64(len(packMagic)) || end > size-packFooter-trailer || e.length < sealOverhead {
			t.Fatalf("entry %d [%d, %d) outside the blobs [%d, %d) of a %d-byte pack", i, start, end, len(packMagic), size-packFooter-trailer, size)
		}
	}
	return es, nil
}

// checkParse checks parseEntries on b: it accepts exactly the whole
// multiples of entrySize, and what it accepts re-encodes to b.
func checkParse(t *testing.T, b []byte) {
	t.Helper()
	es, err := parseEntries(b)
	if (err == nil) != (len(b)%entrySize == 0) {
		t.Fatalf("parseEntries of %d bytes: %v", len(b), err)
	}
	if err == nil && (len(es) != len(b)/entrySize || !bytes.Equal(appendEntries(nil, es), b)) {
		t.Fatalf("parseEntries of %d bytes gives %d entries that do not re-encode", len(b), len(es))
	}
}

// FuzzPackTrailer feeds arbitrary pack bytes to readTrailer (through a
// file) and to parseEntries. Properties: no panic; every entry returned
// lies within the pack (checkTrailer); parseEntries round-trips.
func FuzzPackTrailer(f *testing.F) {
	s := fuzzStore(f)
	path := filepath.Join(f.TempDir(), "pack")
	for _, p := range seedPacks(f, s) {
		f.Add(p)
		f.Add(p[:len(p)-1])
		f.Add(p[len(p)-packFooter-entrySize:])
		for _, i := range []int{0, len(p) - 1, len(p) - packFooter, len(p) - packFooter - 1, len(p) - packFooter - sealOverhead} {
			c := bytes.Clone(p)
			c[i] ^= 0x10
			f.Add(c)
		}
	}
	f.Add([]byte(packMagic + "\x00\x00\x00\x00" + packEndMagic))
	f.Add([]byte(packMagic + "\xff\xff\xff\xff" + packEndMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkTrailer(t, s, path, data)
		checkParse(t, data)
	})
}

// FuzzPackTrailerPlaintext seals fuzzer-chosen entry bytes as the trailer
// of a pack whose blob area is blobs bytes long, with the store's real
// key. Properties: no panic; readTrailer accepts exactly the trailers
// whose entries parse and all lie within the blob area (an oracle written
// from the pack layout), and returns them unchanged.
func FuzzPackTrailerPlaintext(f *testing.F) {
	s := fuzzStore(f)
	path := filepath.Join(f.TempDir(), "pack")
	for _, p := range seedPacks(f, s) {
		es, err := s.readTrailer(mustOpen(f, p, path), int64(len(p)))
		if err != nil {
			f.Fatalf("seed pack: %v", err)
		}
		tl := int(binary.BigEndian.Uint32(p[len(p)-packFooter:]))
		blobs := uint32(len(p) - packFooter - tl - len(packMagic))
		f.Add(appendEntries(nil, es), blobs)
		f.Add(appendEntries(nil, es), blobs-1)
	}
	e := func(off, length uint32) []byte {
		return appendEntries(nil, []packEntry{{offset: off, length: length, plainLen: 1}})
	}
	f.Add([]byte{}, uint32(0))
	f.Add(e(8, 28), uint32(28))
	f.Add(e(7, 28), uint32(28))
	f.Add(e(8, 27), uint32(28))
	f.Add(e(0xffffffff, 0xffffffff), uint32(100))
	f.Add(append(e(8, 28), 0), uint32(28))
	f.Fuzz(func(t *testing.T, entries []byte, blobs uint32) {
		blobs %= 1 << 20 // keep files small
		data := make([]byte, 0, len(packMagic)+int(blobs)+len(entries)+sealOverhead+packFooter)
		data = append(data, packMagic...)
		data = append(data, make([]byte, blobs)...)
		trailer := sealTo(nil, s.keys.meta, trailerAD, entries)
		data = append(data, trailer...)
		data = binary.BigEndian.AppendUint32(data, uint32(len(trailer)))
		data = append(data, packEndMagic...)

		want := len(entries)%entrySize == 0
		for b := entries; want && len(b) > 0; b = b[entrySize:] {
			off, n := binary.BigEndian.Uint32(b[32:]), binary.BigEndian.Uint32(b[36:])
			want = off >= uint32(len(packMagic)) && int64(off)+int64(n) <= int64(len(packMagic))+int64(blobs) && n >= sealOverhead
		}
		es, err := checkTrailer(t, s, path, data)
		if (err == nil) != want {
			t.Fatalf("readTrailer: %v, want accepted=%v", err, want)
		}
		if err == nil && !bytes.Equal(appendEntries(nil, es), entries) {
			t.Fatal("readTrailer changed the entries")
		}
		checkParse(t, entries)
	})
}

func mustOpen(f *testing.F, data []byte, path string) *os.File {
	f.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		f.Fatal(err)
	}
	fh, err := os.Open(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fh.Close() })
	return fh
}

// TestShortFrameAllocatesLittle: a frame header that claims 64 MiB at the
// end of a short file (torn or hostile) must not make the decoder allocate
// the claimed size (FuzzManifest spent most of its time doing so).
func TestShortFrameAllocatesLittle(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	raw := binary.BigEndian.AppendUint32([]byte(snapMagic+fuzzSnapID+"\x01"), maxFrame)
	for _, partial := range []bool{false, true} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, err := s.readManifestFrames(bytes.NewReader(raw), partial, false)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("partial=%v: %v, want a torn frame", partial, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("partial=%v: decoding %d bytes allocated %d bytes", partial, len(raw), n)
		}
	}
}
