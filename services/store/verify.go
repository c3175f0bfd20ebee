package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// Problem is one defect Verify found.
type Problem struct {
	Kind     string // pack, chunk, manifest, object, flags, retention, foreign, index
	Path     string // file concerned, relative to the store
	Snapshot string // snapshot concerned, if any
	Key      []byte // object key, if any
	Detail   string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Kind)
	if p.Snapshot != "" {
		fmt.Fprintf(&b, " snapshot=%s", p.Snapshot)
	}
	if p.Key != nil {
		fmt.Fprintf(&b, " key=%q", p.Key)
	}
	if p.Path != "" {
		fmt.Fprintf(&b, " path=%s", p.Path)
	}
	return b.String() + ": " + p.Detail
}

// DamagedObject names an object that cannot be read back intact.
type DamagedObject struct {
	Snapshot string
	Key      []byte
}

// Report is what Verify found.
type Report struct {
	Packs, Chunks, Snapshots, Objects int
	Bytes                             int64
	Interrupted                       []string // snapshots in progress (not damage)
	Problems                          []Problem
	DamagedSnapshots                  []string
	DamagedObjects                    []DamagedObject
	// Foreign counts entries that are not what their place in the layout
	// allows (wrong type, wrong name, over their kind's size bound). The
	// first maxForeignReported are named in Problems.
	Foreign int
}

// maxForeignReported bounds how many foreign entries Verify and
// CleanForeign name one by one: millions of planted files cost a count,
// not memory.
const maxForeignReported = 1000

// OK reports whether nothing is damaged.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify reads every pack and manifest back, checks every tag and hash, and
// names exactly which snapshots and objects are damaged. It changes nothing.
func (s *Store) Verify(ctx context.Context) (*Report, error) {
	r := &Report{}
	// The good chunks are kept in a sorted file, not in RAM (idset.go).
	b := newIDSetBuilder(s.verifyTempDir(), s.idRun, 0, s.idx.records())
	defer b.discard()
	if err := s.verifyPacks(ctx, r, b); err != nil {
		return nil, err
	}
	good, err := b.finish()
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer good.close()
	if err := s.verifySnapshots(ctx, r, good); err != nil {
		return nil, err
	}
	if err := s.verifyRetention(r); err != nil {
		return nil, err
	}
	if err := s.verifyReceipts(r); err != nil {
		return nil, err
	}
	if err := s.verifyWorkDirs(r); err != nil {
		return nil, err
	}
	if in, err := s.Interrupted(); err == nil {
		for _, i := range in {
			r.Interrupted = append(r.Interrupted, i.ID)
		}
	}
	if r.Foreign > maxForeignReported {
		s.problem(r, Problem{Kind: "foreign", Detail: fmt.Sprintf("%d more foreign entries not named", r.Foreign-maxForeignReported)})
	}
	return r, nil
}

// verifyTempDir is where Verify keeps its set of good chunks.
func (s *Store) verifyTempDir() string {
	switch {
	case s.tmp != "":
		return s.tmp
	case !s.ro:
		return s.path(tmpDir)
	}
	return os.TempDir()
}

func (s *Store) foreign(r *Report, rel, detail string) {
	r.Foreign++
	if r.Foreign <= maxForeignReported {
		s.problem(r, Problem{Kind: "foreign", Path: rel, Detail: detail})
	}
}

// regularNames lists the regular files of dir (relative to the store)
// whose name passes ok, sorted, and reports every other entry as foreign.
func (s *Store) regularNames(r *Report, dir string, ok func(string) bool, what string) ([]string, error) {
	var names []string
	err := scanDir(s.path(dir), func(name string, typ fs.FileMode) error {
		switch {
		case !ok(name):
			s.foreign(r, dir+"/"+name, "not "+what)
		case !typ.IsRegular():
			s.foreign(r, dir+"/"+name, fmt.Sprintf("named like %s but not a regular file (%s)", what, typ))
		default:
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}

// verifyWorkDirs reports foreign entries in the directories the worker
// writes freely (wip/, index/, tmp/, state/) and in the store root.
func (s *Store) verifyWorkDirs(r *Report) error {
	if _, err := s.regularNames(r, wipDir, func(n string) bool { _, ok := journalID(n); return ok }, "a journal"); err != nil {
		return err
	}
	names, err := s.regularNames(r, indexDir, func(n string) bool {
		_, _, ok := parseRunName(n)
		return ok || n == legacyIndex
	}, "an index run")
	if err != nil {
		return err
	}
	for _, n := range names {
		if n == legacyIndex {
			if p, ok := s.legacyIndexProblem(); ok {
				s.problem(r, p)
			}
			continue
		}
		rn, err := s.openRun(n)
		if err != nil {
			s.problem(r, Problem{Kind: "index", Path: indexDir + "/" + n, Detail: err.Error() + "; the next read-write open indexes its packs again"})
			continue
		}
		rn.f.Close()
	}
	if _, err := s.regularNames(r, tmpDir, func(string) bool { return true }, "a temporary file"); err != nil {
		return err
	}
	if _, err := s.regularNames(r, stateDir, func(n string) bool { return n == clockLogName || n == scrubStateName || n == ScrubPassName }, "the clock log, the scrub state or the scrub pass"); err != nil {
		return err
	}
	return scanDir(s.dir, func(name string, typ fs.FileMode) error {
		want, known := rootLayout(name)
		switch {
		case !known:
			s.foreign(r, name, "not part of the store layout")
		case want != typ.Type():
			s.foreign(r, name, fmt.Sprintf("has type %s, the layout says %s", typ.Type(), want))
		}
		return nil
	})
}

// rootLayout returns the type the store root's entry name must have, and
// whether the layout has such an entry at all.
func rootLayout(name string) (fs.FileMode, bool) {
	switch name {
	case configName, lockName:
		return 0, true
	case packsDir, snapshotsDir, retentionDir, wipDir, tmpDir, indexDir, stateDir, recoveryDir, receiptsDir:
		return fs.ModeDir, true
	}
	return 0, false
}

func (s *Store) problem(r *Report, p Problem) {
	s.log.Warn("verify: "+p.Kind, "path", p.Path, "snapshot", p.Snapshot, "key", fmt.Sprintf("%q", p.Key), "detail", p.Detail)
	r.Problems = append(r.Problems, p)
}

func (s *Store) checkSealed(r *Report, rel string) {
	ok, err := fsflag.Has(s.path(rel), fsflag.Immutable)
	if err != nil || !ok {
		s.problem(r, Problem{Kind: "flags", Path: rel, Detail: "not sealed immutable"})
	}
}

func (s *Store) verifyPacks(ctx context.Context, r *Report, good *idSetBuilder) error {
	var shards []string
	if err := scanDir(s.path(packsDir), func(name string, typ fs.FileMode) error {
		if !typ.IsDir() || !isShard(name) {
			s.foreign(r, packsDir+"/"+name, "not a pack shard")
			return nil
		}
		shards = append(shards, name)
		return nil
	}); err != nil {
		return fmt.Errorf("read packs: %w", err)
	}
	sort.Strings(shards)
	h := s.keys.idHasher()
	var buf []byte
	for _, sh := range shards {
		names, err := s.regularNames(r, packsDir+"/"+sh, func(n string) bool { return isPackName(n) && strings.HasPrefix(n, sh) }, "a pack")
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				return err
			}
			rel := packsDir + "/" + sh + "/" + name
			r.Packs++
			s.checkSealed(r, rel)
			if err := s.verifyPack(r, rel, name, good, h, &buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// verifyPack checks one pack and adds its good chunks to good. Damage is
// reported in r; the error is good's (its temporary files). The pack is
// read into *buf, which keeps the largest buffer for the next pack: a new
// 16 MiB buffer per pack took verify's heap from 19 MB live to 54 MB.
func (s *Store) verifyPack(r *Report, rel, name string, good *idSetBuilder, h hash.Hash, buf *[]byte) error {
	// Most packs are the target size and a part of a chunk: a buffer a
	// quarter larger than the first holds them all.
	raw, err := readStoreFileInto(s.path(rel), s.maxPackFile(), *buf, 25)
	if err != nil {
		s.problem(r, Problem{Kind: "pack", Path: rel, Detail: err.Error()})
		return nil
	}
	if cap(raw) > cap(*buf) {
		*buf = raw
	}
	sum := sha256.Sum256(raw)
	if hex.EncodeToString(sum[:]) != name {
		s.problem(r, Problem{Kind: "pack", Path: rel, Detail: "content does not match its name (SHA-256)"})
	}
	if !bytes.HasPrefix(raw, []byte(packMagic)) {
		s.problem(r, Problem{Kind: "pack", Path: rel, Detail: "bad magic"})
	}
	es, err := s.readTrailer(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		// Chunks whose place the index still knows can be checked.
		s.problem(r, Problem{Kind: "pack", Path: rel, Detail: "trailer: " + err.Error()})
		es = s.idx.packRecords(name)
	} else {
		s.checkCachedEntries(r, name, es) // cachecheck.go
	}
	bad := 0
	for _, e := range es {
		r.Chunks++
		end := int64(e.offset) + int64(e.length)
		if end > int64(len(raw)) {
			s.problem(r, Problem{Kind: "chunk", Path: rel, Detail: fmt.Sprintf("chunk %s lies past the end of the pack", e.id)})
			bad++
			continue
		}
		if _, err := s.openBlob(e.id, raw[e.offset:end], h); err != nil {
			s.problem(r, Problem{Kind: "chunk", Path: rel, Detail: err.Error()})
			bad++
			continue
		}
		if err := good.add(e.id); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	if bad > 0 {
		// A trailer is authenticated with the meta key only: a pack whose
		// trailer names chunks its blobs do not hold is named here, and
		// readers take those chunks from the other packs that hold them.
		s.problem(r, Problem{Kind: "pack", Path: rel, Detail: fmt.Sprintf("trailer lies or blobs are damaged: %d of %d chunks fail their check at the place the trailer gives", bad, len(es))})
	}
	return nil
}

func (s *Store) verifySnapshots(ctx context.Context, r *Report, good *idSet) error {
	names, err := s.regularNames(r, snapshotsDir, func(n string) bool {
		id, ok := strings.CutSuffix(n, ".snap")
		return ok && ValidSnapshotID(id)
	}, "a manifest")
	if err != nil {
		return err
	}
	exts, err := s.extensions()
	if err != nil {
		return err
	}
	batch := &chunkCheck{set: good}
	// Snapshots of an unchanged bucket share their metadata chunks, and a
	// chunk's records are checked the same way in each: one read and
	// found clean under a reference (in a snapshot with no damage) is
	// counted from that same reference in the next snapshots, not read
	// again.
	clean := make(map[refDigest]struct{})
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		rel := snapshotsDir + "/" + name
		id := strings.TrimSuffix(name, ".snap")
		r.Snapshots++
		s.checkSealed(r, rel)
		// Objects are streamed one frame at a time: only damaged ones are
		// kept, so memory does not grow with the manifest.
		var bad []Problem
		var objects int
		var size int64
		var setErr error
		var read []refDigest // the references whose chunks this snapshot read
		batch.reset(id)
		want := func(c ChunkID, ref wireRef) bool {
			d := digestRef(c, ref)
			if _, ok := clean[d]; ok {
				objects += int(ref.Count)
				size += ref.Bytes
				return false
			}
			if len(clean)+len(read) < maxVerifiedRefs {
				read = append(read, d)
			}
			return true
		}
		m, err := s.walkCommitted(id, want, func(o Object) error {
			objects++
			size += o.Size
			if setErr == nil {
				setErr = batch.add(o, &bad)
			}
			return nil
		})
		if setErr == nil {
			setErr = batch.flush(&bad)
		}
		if setErr != nil {
			return fmt.Errorf("verify: %w", setErr)
		}
		if err != nil {
			s.problem(r, Problem{Kind: "manifest", Path: rel, Snapshot: id, Detail: err.Error()})
			r.DamagedSnapshots = append(r.DamagedSnapshots, id)
			continue
		}
		if ret := s.effectiveRetention(m, exts[id]); ret.Disagree {
			s.problem(r, Problem{Kind: "retention", Path: rel, Snapshot: id, Detail: "retention xattrs disagree with the manifest"})
		}
		r.Objects += objects
		r.Bytes += size
		for _, p := range bad {
			s.problem(r, p)
			r.DamagedObjects = append(r.DamagedObjects, DamagedObject{Snapshot: id, Key: p.Key})
		}
		if len(bad) > 0 {
			r.DamagedSnapshots = append(r.DamagedSnapshots, id)
			continue
		}
		for _, d := range read {
			clean[d] = struct{}{}
		}
	}
	sort.Strings(r.DamagedSnapshots)
	return nil
}

// Bounds of one batch of chunkCheck: it holds about 50 bytes per
// reference and 12 per object, beside the keys.
const (
	checkBatchRefs     = 64 << 10
	checkBatchObjects  = 64 << 10
	checkBatchKeyBytes = 2 << 20
)

// chunkCheck checks the chunk references of a snapshot's objects against
// the set of good chunks a batch at a time: sorted, the lookups of a batch
// read the set's file forward (idSet.hasSorted), instead of one pread per
// reference. An object is damaged if one of its chunks is not good; the
// problem names its first such chunk, and objects are reported in the
// manifest's order.
type chunkCheck struct {
	set   *idSet
	snap  string
	ids   []ChunkID // every reference of the batch, in object order
	refs  []idRef
	found []bool
	objs  []checkObject
	keys  []byte
}

// checkObject is one object of a batch: its key, keys[keyOff:keyEnd],
// and its chunks, ids[first:] up to the next object's first.
type checkObject struct {
	keyOff, keyEnd, first uint32
}

// reset starts the batches of snapshot id.
func (c *chunkCheck) reset(id string) {
	c.snap = id
	c.ids, c.objs, c.keys = c.ids[:0], c.objs[:0], c.keys[:0]
}

// add queues o, checking the batch first when it is full.
func (c *chunkCheck) add(o Object, bad *[]Problem) error {
	if len(o.Chunks) == 0 {
		return nil
	}
	if len(c.ids)+len(o.Chunks) > checkBatchRefs || len(c.objs) >= checkBatchObjects || len(c.keys)+len(o.Key) > checkBatchKeyBytes {
		if err := c.flush(bad); err != nil {
			return err
		}
	}
	c.objs = append(c.objs, checkObject{keyOff: uint32(len(c.keys)), keyEnd: uint32(len(c.keys) + len(o.Key)), first: uint32(len(c.ids))})
	c.keys = append(c.keys, o.Key...)
	c.ids = append(c.ids, o.Chunks...)
	return nil
}

// flush checks the batch and appends a problem for each damaged object.
func (c *chunkCheck) flush(bad *[]Problem) error {
	if len(c.ids) == 0 {
		return nil
	}
	c.refs = c.refs[:0]
	for i, id := range c.ids {
		c.refs = append(c.refs, newIDRef(id, i))
	}
	slices.SortFunc(c.refs, func(a, b idRef) int { return cmp.Compare(a.top, b.top) })
	if cap(c.found) < len(c.ids) {
		c.found = make([]bool, len(c.ids))
	}
	found := c.found[:len(c.ids)]
	if err := c.set.hasSorted(c.ids, c.refs, found); err != nil {
		return err
	}
	for k, o := range c.objs {
		end := uint32(len(c.ids))
		if k+1 < len(c.objs) {
			end = c.objs[k+1].first
		}
		for i := o.first; i < end; i++ {
			if !found[i] {
				*bad = append(*bad, Problem{Kind: "object", Snapshot: c.snap, Key: bytes.Clone(c.keys[o.keyOff:o.keyEnd]), Detail: fmt.Sprintf("chunk %s is missing or damaged", c.ids[i])})
				break
			}
		}
	}
	c.ids, c.objs, c.keys = c.ids[:0], c.objs[:0], c.keys[:0]
	return nil
}

func (s *Store) verifyReceipts(r *Report) error {
	names, err := s.regularNames(r, receiptsDir, isReceiptName, "a receipt")
	if errors.Is(err, fs.ErrNotExist) {
		return nil // made before receipts existed; recovery creates it
	}
	if err != nil {
		return err
	}
	for _, name := range names {
		s.checkSealed(r, receiptsDir+"/"+name)
	}
	return nil
}

func (s *Store) verifyRetention(r *Report) error {
	names, err := s.regularNames(r, retentionDir, func(string) bool { return true }, "a retention record")
	if err != nil {
		return err
	}
	for _, name := range names {
		rel := retentionDir + "/" + name
		s.checkSealed(r, rel)
		if _, err := s.readExtension(name); err != nil {
			s.problem(r, Problem{Kind: "retention", Path: rel, Detail: err.Error()})
		}
	}
	return nil
}

// maxVerifiedRefs bounds the metadata chunk references Verify remembers
// as checked and clean (about 50 bytes each in its map: at most about
// 13 MiB, the metadata of some 60 million objects); past it, chunks are
// read again in each snapshot that names them.
const maxVerifiedRefs = 1 << 18

// refDigest names a metadata chunk under one reference: its ID and the
// count, bytes, first and last key the reference gives (a reference that
// differs from the one a chunk was checked under is checked again).
type refDigest [16]byte

func digestRef(id ChunkID, r wireRef) refDigest {
	h := sha256.New()
	var n [24]byte
	binary.BigEndian.PutUint64(n[0:], uint64(r.Count))
	binary.BigEndian.PutUint64(n[8:], uint64(r.Bytes))
	binary.BigEndian.PutUint64(n[16:], uint64(len(r.First)))
	h.Write(id[:])
	h.Write(n[:])
	h.Write(r.First)
	h.Write(r.Last)
	var d refDigest
	copy(d[:], h.Sum(nil))
	return d
}
