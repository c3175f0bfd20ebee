package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
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

func (s *Store) snapshotIDs() ([]string, error) {
	es, err := os.ReadDir(s.path(snapshotsDir))
	if err != nil {
		return nil, fmt.Errorf("read snapshots: %w", err)
	}
	var ids []string
	for _, e := range es {
		if id, ok := strings.CutSuffix(e.Name(), ".snap"); ok && ValidSnapshotID(id) {
			ids = append(ids, id)
		}
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
	f, err := os.Open(s.path(snapshotsDir, id+".snap"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, _, err := s.readManifestFrames(f, false, true)
	if err != nil {
		return nil, err
	}
	if m.ID != id {
		return nil, fmt.Errorf("manifest %s holds snapshot %s: %w", id, m.ID, ErrCorrupt)
	}
	return m, nil
}

// ReadManifest reads a whole committed manifest.
func (s *Store) ReadManifest(id string) (*Manifest, error) {
	if !ValidSnapshotID(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, ErrNotFound)
	}
	f, err := os.Open(s.path(snapshotsDir, id+".snap"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
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

// FindObject returns the object with key in snapshot id. When a snapshot
// holds the key more than once (versions of an S3 object, or a file that
// changed before a resumed put read it again) the last one recorded wins.
func (s *Store) FindObject(id string, key []byte) (*Manifest, Object, error) {
	m, err := s.ReadManifest(id)
	if err != nil {
		return nil, Object{}, err
	}
	for i := len(m.Objects) - 1; i >= 0; i-- {
		if o := m.Objects[i]; bytes.Equal(o.Key, key) {
			return m, o, nil
		}
	}
	return nil, Object{}, fmt.Errorf("object %q in %s: %w", key, id, ErrNotFound)
}

// ChunkReader reads chunks by ID, keeping pack files open. Not safe for
// concurrent use.
type ChunkReader struct {
	s     *Store
	files map[int32]*os.File
	h     hash.Hash
}

// NewChunkReader returns a reader; Close it when done.
func (s *Store) NewChunkReader() *ChunkReader {
	return &ChunkReader{s: s, files: map[int32]*os.File{}, h: s.keys.idHasher()}
}

// Read returns the plaintext of chunk id, checked against its ID.
func (cr *ChunkReader) Read(id ChunkID) ([]byte, error) {
	loc, ok := cr.s.idx.chunks[id]
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", id, ErrNotFound)
	}
	f, ok := cr.files[loc.pack]
	if !ok {
		var err error
		if f, err = os.Open(cr.s.packPath(cr.s.idx.packs[loc.pack])); err != nil {
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
