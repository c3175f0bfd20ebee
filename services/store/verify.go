package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
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
	good := map[ChunkID]bool{}
	if err := s.verifyPacks(ctx, r, good); err != nil {
		return nil, err
	}
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

func (s *Store) verifyPacks(ctx context.Context, r *Report, good map[ChunkID]bool) error {
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
			s.verifyPack(r, rel, name, good, h)
		}
	}
	return nil
}

func (s *Store) verifyPack(r *Report, rel, name string, good map[ChunkID]bool, h hash.Hash) {
	raw, err := readStoreFile(s.path(rel), s.maxPackFile())
	if err != nil {
		s.problem(r, Problem{Kind: "pack", Path: rel, Detail: err.Error()})
		return
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
		good[e.id] = true
	}
	if bad > 0 {
		// A trailer is authenticated with the meta key only: a pack whose
		// trailer names chunks its blobs do not hold is named here, and
		// readers take those chunks from the other packs that hold them.
		s.problem(r, Problem{Kind: "pack", Path: rel, Detail: fmt.Sprintf("trailer lies or blobs are damaged: %d of %d chunks fail their check at the place the trailer gives", bad, len(es))})
	}
}

func (s *Store) verifySnapshots(ctx context.Context, r *Report, good map[ChunkID]bool) error {
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
		m, err := s.streamManifestObjects(id, func(o Object) {
			objects++
			size += o.Size
			for _, c := range o.Chunks {
				if !good[c] {
					bad = append(bad, Problem{Kind: "object", Snapshot: id, Key: o.Key, Detail: fmt.Sprintf("chunk %s is missing or damaged", c)})
					break
				}
			}
		})
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
		}
	}
	sort.Strings(r.DamagedSnapshots)
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

// streamManifestObjects streams the objects of committed manifest id to fn.
func (s *Store) streamManifestObjects(id string, fn func(Object)) (*Manifest, error) {
	f, _, err := openStoreFile(s.path(snapshotsDir, id+".snap"), os.O_RDONLY, maxManifestFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := s.manifestObjects(f, fn)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("manifest %s holds snapshot %s: %w", id, m.ID, ErrCorrupt)
	}
	return m, nil
}
