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
	Kind     string // pack, chunk, manifest, object, flags, retention, foreign
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
}

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
	if in, err := s.Interrupted(); err == nil {
		for _, i := range in {
			r.Interrupted = append(r.Interrupted, i.ID)
		}
	}
	return r, nil
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
	shards, err := os.ReadDir(s.path(packsDir))
	if err != nil {
		return fmt.Errorf("read packs: %w", err)
	}
	h := s.keys.idHasher()
	for _, sh := range shards {
		if !sh.IsDir() || !isShard(sh.Name()) {
			s.problem(r, Problem{Kind: "foreign", Path: packsDir + "/" + sh.Name(), Detail: "not a pack shard"})
			continue
		}
		es, err := os.ReadDir(s.path(packsDir, sh.Name()))
		if err != nil {
			return fmt.Errorf("read shard: %w", err)
		}
		for _, e := range es {
			if err := ctx.Err(); err != nil {
				return err
			}
			rel := packsDir + "/" + sh.Name() + "/" + e.Name()
			if !isPackName(e.Name()) || !strings.HasPrefix(e.Name(), sh.Name()) {
				s.problem(r, Problem{Kind: "foreign", Path: rel, Detail: "not a pack"})
				continue
			}
			r.Packs++
			s.checkSealed(r, rel)
			s.verifyPack(r, rel, e.Name(), good, h)
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
		// Chunks whose place the cached index still knows can be checked.
		s.problem(r, Problem{Kind: "pack", Path: rel, Detail: "trailer: " + err.Error()})
		es = s.idx.entries[name]
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
	es, err := os.ReadDir(s.path(snapshotsDir))
	if err != nil {
		return fmt.Errorf("read snapshots: %w", err)
	}
	exts, err := s.extensions()
	if err != nil {
		return err
	}
	for _, e := range es {
		if err := ctx.Err(); err != nil {
			return err
		}
		rel := snapshotsDir + "/" + e.Name()
		id, ok := strings.CutSuffix(e.Name(), ".snap")
		if !ok || !ValidSnapshotID(id) {
			s.problem(r, Problem{Kind: "foreign", Path: rel, Detail: "not a manifest"})
			continue
		}
		r.Snapshots++
		s.checkSealed(r, rel)
		m, err := s.ReadManifest(id)
		if err != nil {
			s.problem(r, Problem{Kind: "manifest", Path: rel, Snapshot: id, Detail: err.Error()})
			r.DamagedSnapshots = append(r.DamagedSnapshots, id)
			continue
		}
		if ret := s.effectiveRetention(m, exts[id]); ret.Disagree {
			s.problem(r, Problem{Kind: "retention", Path: rel, Snapshot: id, Detail: "retention xattrs disagree with the manifest"})
		}
		damaged := false
		for _, o := range m.Objects {
			r.Objects++
			r.Bytes += o.Size
			for _, c := range o.Chunks {
				if !good[c] {
					s.problem(r, Problem{Kind: "object", Snapshot: id, Key: o.Key, Detail: fmt.Sprintf("chunk %s is missing or damaged", c)})
					r.DamagedObjects = append(r.DamagedObjects, DamagedObject{Snapshot: id, Key: o.Key})
					damaged = true
					break
				}
			}
		}
		if damaged {
			r.DamagedSnapshots = append(r.DamagedSnapshots, id)
		}
	}
	sort.Strings(r.DamagedSnapshots)
	return nil
}

func (s *Store) verifyReceipts(r *Report) error {
	es, err := os.ReadDir(s.path(receiptsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // made before receipts existed; recovery creates it
	}
	if err != nil {
		return fmt.Errorf("read receipts: %w", err)
	}
	for _, e := range es {
		rel := receiptsDir + "/" + e.Name()
		if !isReceiptName(e.Name()) {
			s.problem(r, Problem{Kind: "foreign", Path: rel, Detail: "not a receipt"})
			continue
		}
		s.checkSealed(r, rel)
	}
	return nil
}

func (s *Store) verifyRetention(r *Report) error {
	es, err := os.ReadDir(s.path(retentionDir))
	if err != nil {
		return fmt.Errorf("read retention: %w", err)
	}
	for _, e := range es {
		rel := retentionDir + "/" + e.Name()
		s.checkSealed(r, rel)
		if _, err := s.readExtension(e.Name()); err != nil {
			s.problem(r, Problem{Kind: "retention", Path: rel, Detail: err.Error()})
		}
	}
	return nil
}
