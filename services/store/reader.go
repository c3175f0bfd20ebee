package store

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
)

// SnapshotInfo summarises a committed snapshot.
type SnapshotInfo struct {
	Manifest            // Objects is empty; see Count and Bytes
	Retention Retention // effective retention
}

// ErrNotFound means no such snapshot or object.
var ErrNotFound = errors.New("not found")

// ErrNoObject means the snapshot exists and holds no such key; it wraps
// ErrNotFound.
var ErrNoObject = fmt.Errorf("no such object: %w", ErrNotFound)

// snapshotIDs lists the IDs of regular files named like manifests, sorted.
// Other entries are skipped (Verify names them) and cost no memory.
func (s *Store) snapshotIDs() ([]string, error) {
	var ids []string
	err := scanDir(s.path(snapshotsDir), func(name string, typ fs.FileMode) error {
		if id, ok := strings.CutSuffix(name, ".snap"); ok && ValidSnapshotID(id) && typ.IsRegular() {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read snapshots: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// Snapshots lists committed snapshots by start time, oldest first. Damaged manifests are
// skipped with a warning; Verify names them.
func (s *Store) Snapshots() ([]SnapshotInfo, error) {
	ids, err := s.snapshotIDs()
	if err != nil {
		return nil, err
	}
	exts, err := s.extensions()
	if err != nil {
		return nil, err
	}
	var out []SnapshotInfo
	for _, id := range ids {
		m, err := s.readManifestSummary(id)
		if err != nil {
			s.log.Warn("damaged manifest skipped", "snapshot", id, "error", err)
			continue
		}
		out = append(out, SnapshotInfo{Manifest: *m, Retention: s.effectiveRetention(m, exts[id])})
	}
	// IDs carry whole seconds only; the manifest has the exact start.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

func (s *Store) readManifestSummary(id string) (*Manifest, error) {
	f, size, err := openStoreFile(s.path(snapshotsDir, id+".snap"), os.O_RDONLY, maxManifestFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := s.manifestSummary(f, size)
	if err != nil {
		return nil, err
	}
	if m.ID != id {
		return nil, fmt.Errorf("manifest %s holds snapshot %s: %w", id, m.ID, ErrCorrupt)
	}
	return m, nil
}

// SnapshotHead reads the summary of committed snapshot id (Objects empty;
// a format 2 manifest's head and tail only): ReadManifest without the
// objects, in O(1) bounded reads.
func (s *Store) SnapshotHead(id string) (*Manifest, error) {
	if !ValidSnapshotID(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, ErrNotFound)
	}
	m, err := s.readManifestSummary(id)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	return m, nil
}

// manifestSummary reads a committed manifest's summary (Objects empty): a
// format 2 manifest's head and tail only, a format 1 manifest by walking
// its frames without decrypting its objects.
func (s *Store) manifestSummary(f *os.File, size int64) (*Manifest, error) {
	m, err := s.readHead(f, size)
	if !errors.Is(err, errV1Manifest) {
		return m, err
	}
	m, _, err = s.readManifestFrames(f, false, true)
	return m, err
}

// openCommitted opens the manifest of committed snapshot id as hostile
// input (regular file, no symlink, bounded) and returns its size; an ID
// that is not one, or no such snapshot, is ErrNotFound.
func (s *Store) openCommitted(id string) (*os.File, int64, error) {
	if !ValidSnapshotID(id) {
		return nil, 0, fmt.Errorf("snapshot %q: %w", id, ErrNotFound)
	}
	f, size, err := openStoreFile(s.path(snapshotsDir, id+".snap"), os.O_RDONLY, maxManifestFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	return f, size, err
}

// ReadManifest reads a whole committed manifest.
func (s *Store) ReadManifest(id string) (*Manifest, error) {
	f, _, err := s.openCommitted(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, _, err := s.readManifestFrames(f, false, false)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("manifest %s holds snapshot %s: %w", id, m.ID, ErrCorrupt)
	}
	return m, nil
}

// WalkObjects hands every object of committed snapshot id to fn, in the
// order recorded, one manifest frame at a time, and returns the snapshot's
// summary (Objects empty): memory does not grow with the object count. fn
// may see objects of a manifest that turns out damaged further on (the
// error says so); an error from fn stops the walk and is returned as it is.
func (s *Store) WalkObjects(id string, fn func(Object) error) (*Manifest, error) {
	return s.walkCommitted(id, nil, fn)
}

// walkCommitted is WalkObjects; a metadata chunk whose reference wantRef
// (when not nil) refuses is not read: its records are counted, not handed
// to fn.
func (s *Store) walkCommitted(id string, wantRef func(ChunkID, wireRef) bool, fn func(Object) error) (*Manifest, error) {
	f, _, err := s.openCommitted(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var fnErr error
	m, _, err := s.walkFrames(f, false, false, walkHooks{wantRef: wantRef, onObject: func(o Object) error {
		fnErr = fn(o)
		return fnErr
	}})
	if err != nil {
		if fnErr != nil {
			return nil, fnErr
		}
		return nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("manifest %s holds snapshot %s: %w", id, m.ID, ErrCorrupt)
	}
	return m, nil
}

// ChunkReader reads chunks by ID, keeping pack files open. Not safe for
// concurrent use.
type ChunkReader struct {
	s     *Store
	files map[[32]byte]*os.File
	h     hash.Hash
}

// NewChunkReader returns a reader; Close it when done.
func (s *Store) NewChunkReader() *ChunkReader {
	return &ChunkReader{s: s, files: map[[32]byte]*os.File{}, h: s.keys.idHasher()}
}

// Read returns the plaintext of chunk id, checked against its ID. It tries
// every pack whose trailer claims the chunk until one passes the chunk's
// tag: a lying trailer costs a failed try, never the chunk. When no place
// the index names works, the index is stale, damaged or forged (it is only
// a cache): a read-write store rebuilds it from the trailers once and tries
// again; a read-only one, which cannot write the index, reads every pack
// trailer for this chunk (RAM: one trailer).
func (cr *ChunkReader) Read(id ChunkID) ([]byte, error) {
	plain, err := cr.read(id, cr.s.idx.locations(id))
	if err == nil {
		return plain, nil
	}
	if !cr.s.ro {
		if !cr.s.idx.markRebuilt() {
			return nil, err
		}
		cr.s.log.Warn("chunk not readable where the index says; rebuilding the index from pack trailers", "chunk", id.String(), "error", err)
		if rerr := cr.s.RebuildIndex(); rerr != nil {
			return nil, fmt.Errorf("%w (and rebuilding the index: %v)", err, rerr)
		}
		return cr.read(id, cr.s.idx.locations(id))
	}
	cr.s.log.Warn("chunk not readable where the index says; reading the pack trailers", "chunk", id.String(), "error", err)
	if plain, terr := cr.read(id, cr.s.trailerLocations(id)); terr == nil {
		return plain, nil
	}
	return nil, err
}

func (cr *ChunkReader) read(id ChunkID, locs []location) ([]byte, error) {
	if len(locs) == 0 {
		return nil, fmt.Errorf("chunk %s: %w", id, ErrNotFound)
	}
	var first error
	for _, loc := range locs {
		plain, err := cr.readAt(id, loc)
		if err == nil {
			return plain, nil
		}
		if len(locs) > 1 {
			cr.s.log.Warn("chunk fails its check in one pack; trying the next", "chunk", id.String(), "pack", loc.packName(), "error", err)
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

func (cr *ChunkReader) readAt(id ChunkID, loc location) ([]byte, error) {
	f, ok := cr.files[loc.pack]
	if !ok {
		var err error
		if f, _, err = openStoreFile(cr.s.packPath(loc.packName()), os.O_RDONLY, cr.s.maxPackFile()); err != nil {
			return nil, fmt.Errorf("open pack: %w", err)
		}
		if len(cr.files) > 64 {
			cr.Close()
		}
		cr.files[loc.pack] = f
	}
	sealed := make([]byte, loc.length)
	if _, err := f.ReadAt(sealed, int64(loc.offset)); err != nil {
		return nil, fmt.Errorf("read chunk %s: %w", id, err)
	}
	return cr.s.openBlob(id, sealed, cr.h)
}

// Close closes the pack files.
func (cr *ChunkReader) Close() {
	for k, f := range cr.files {
		f.Close()
		delete(cr.files, k)
	}
}

// WriteObject writes the content of o to w, checking every chunk.
func (s *Store) WriteObject(ctx context.Context, o Object, w io.Writer) error {
	cr := s.NewChunkReader()
	defer cr.Close()
	var n int64
	for _, id := range o.Chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := cr.Read(id)
		if err != nil {
			return fmt.Errorf("object %q: %w", o.Key, err)
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("write object %q: %w", o.Key, err)
		}
		n += int64(len(data))
	}
	if n != o.Size {
		return fmt.Errorf("object %q: read %d bytes, manifest says %d: %w", o.Key, n, o.Size, ErrCorrupt)
	}
	return nil
}
