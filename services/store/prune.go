package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// PruneOptions bound what prune may do.
type PruneOptions struct {
	DryRun bool
	// Now is the trusted time T (firmware/trustedtime) retention is
	// compared with, and nothing else; zero means the prune clock's time
	// (hosts and tests). T only runs late, so prune never refuses a time
	// for being far past an earlier one.
	Now time.Time
	// liveBits forces the size of the live set's filter (tests); 0 sizes
	// it from the index (liveset.go).
	liveBits uint
}

// PruneResult says what prune removed (or, in a dry run, would remove).
type PruneResult struct {
	Now        time.Time
	Expired    []string // manifests removed
	Kept       []string // snapshots kept
	Packs      []string // packs removed
	KeptPacks  int
	FreedBytes int64
	DryRun     bool
	// Skipped names every entry prune could not use (a foreign file, an
	// unreadable manifest or journal), so the appliance can alert. None
	// stops a prune; each can only make it keep more.
	Skipped []Problem
	// KeptAllPacks is set when a sealed manifest could not be read whole:
	// prune cannot know what it references, so it removes no pack.
	KeptAllPacks bool
}

// Prune removes snapshots whose retention has ended and the packs whose every
// chunk is referenced only by them (or by nothing). It is the only code that
// clears an inode flag, needs CAP_LINUX_IMMUTABLE, and runs in the boot
// maintenance window. It refuses when the clock looks wrong, and it always
// keeps the newest snapshot of every source. Packs are removed whole, never
// rewritten.
//
// It decides only from sealed, self-proving data: a pack by its own sealed
// trailer, a snapshot by its sealed manifest, its xattrs and its retention
// records. Unsealed files (journals, a manifest not yet sealed) only add
// live chunks. A foreign entry is skipped and reported in Skipped; a sealed
// manifest that cannot be read makes prune remove no pack at all. Manifests
// are streamed one frame at a time and the live chunk IDs go into a Bloom
// filter of about 3 bytes a chunk (liveset.go), so memory is neither
// objects times snapshots nor a map of every live chunk; a false positive
// only keeps a pack.
func (s *Store) Prune(ctx context.Context, o PruneOptions) (*PruneResult, error) {
	if s.ro {
		return nil, errors.New("prune: store opened read-only")
	}
	now := o.Now
	if now.IsZero() {
		var err error
		if now, err = s.pclock.Now(); err != nil {
			return nil, fmt.Errorf("prune refused: %w: %v", ErrClockUntrusted, err)
		}
	}
	res := &PruneResult{Now: now, DryRun: o.DryRun}
	skipped := 0
	skip := func(rel, detail string) {
		// Every one is counted; the first maxForeignReported are kept and
		// logged, so millions of planted files cost no memory.
		if skipped++; skipped <= maxForeignReported {
			s.log.Warn("prune skips an entry it cannot use", "path", rel, "detail", detail)
			res.Skipped = append(res.Skipped, Problem{Kind: "foreign", Path: rel, Detail: detail})
		}
	}
	defer func() {
		if skipped > maxForeignReported {
			res.Skipped = append(res.Skipped, Problem{Kind: "foreign", Detail: fmt.Sprintf("%d more entries skipped, not named", skipped-maxForeignReported)})
		}
	}()
	exts, err := s.extensions()
	if err != nil {
		return nil, err
	}
	type summary struct {
		source  string
		started time.Time
		protect bool // retention protects it now, or it is not sealed
	}
	sums := map[string]summary{}
	newest := map[string]string{} // source -> snapshot with the latest start
	// Manifests are read as the directory is: only readable ones are kept
	// (their summary), foreign ones only counted.
	var ids []string
	err = scanDir(s.path(snapshotsDir), func(name string, typ fs.FileMode) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		id, ok := strings.CutSuffix(name, ".snap")
		if !ok || !ValidSnapshotID(id) {
			return nil // not named like a manifest: nothing reads it
		}
		rel := snapshotsDir + "/" + name
		if !typ.IsRegular() {
			skip(rel, "named like a manifest but not a regular file ("+typ.String()+")")
			return nil
		}
		m, sealed, err := s.readManifestHead(id)
		switch {
		case err == nil:
		case errors.Is(err, ErrForeign) || !sealed:
			// Not a regular file, or never sealed and unreadable: it
			// cannot be a committed manifest (the store renames a manifest
			// into place only whole, and recovery seals it).
			skip(rel, err.Error())
			return nil
		default:
			res.KeptAllPacks = true
			skip(rel, "sealed manifest unreadable, so what it references is unknown; no pack is removed: "+err.Error())
			return nil
		}
		ids = append(ids, id)
		sums[id] = summary{source: m.Source, started: m.Started, protect: !sealed || s.effectiveRetention(m, exts[id]).Protects(now)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prune: read snapshots: %w", err)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if cur, ok := newest[sums[id].source]; !ok || !sums[id].started.Before(sums[cur].started) {
			newest[sums[id].source] = id
		}
	}
	live, err := newLiveSet(s.idx.records(), o.liveBits)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	s.log.Info("prune: live chunk set", "bytes", live.bytes(), "index_entries", s.idx.records())
	mark := live.add
	// Snapshots of an unchanged bucket share their metadata chunks: each
	// is read once.
	seenMeta := map[ChunkID]struct{}{}
	for _, id := range ids {
		sum, ok := sums[id]
		if !ok {
			continue
		}
		if !sum.protect && newest[sum.source] != id {
			res.Expired = append(res.Expired, id)
			continue
		}
		res.Kept = append(res.Kept, id)
		if err := s.streamManifestChunks(s.path(snapshotsDir, id+".snap"), false, mark, seenMeta); err != nil {
			res.KeptAllPacks = true
			skip(snapshotsDir+"/"+id+".snap", "kept manifest unreadable, so what it references is unknown; no pack is removed: "+err.Error())
		}
	}
	err = scanDir(s.path(wipDir), func(name string, typ fs.FileMode) error {
		id, ok := journalID(name)
		if !ok {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.streamManifestChunks(s.path(wipDir, name), true, mark, seenMeta); err != nil {
			// A journal unreadable from its head on references nothing a
			// reader could find; a torn tail was cut at the last good frame.
			// One whose metadata chunk does not read references records
			// nobody can name: keep every pack.
			var mc *MetaChunkError
			if errors.As(err, &mc) {
				res.KeptAllPacks = true
			}
			skip(wipDir+"/"+name, fmt.Sprintf("journal %s unreadable: %v", id, err))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prune: read wip: %w", err)
	}
	// Each pack is judged by its own trailer, read from the sealed pack
	// file itself; the index is never consulted. A pack that is not
	// sealed, whose trailer does not open, or whose bytes do not hash to
	// its name is kept.
	onDisk, err := s.listPacks()
	if err != nil {
		return nil, err
	}
	for _, name := range onDisk {
		es, sealed, err := s.packEntries(name)
		if err != nil {
			s.log.Warn("prune keeps a pack whose trailer it cannot read", "pack", name, "error", err)
			res.KeptPacks++
			continue
		}
		dead := sealed && !res.KeptAllPacks
		for _, e := range es {
			if live.mayHave(e.id) {
				dead = false
				break
			}
		}
		if !dead {
			res.KeptPacks++
			continue
		}
		size, err := s.checkPackName(name)
		if err != nil {
			s.log.Warn("prune keeps a pack whose content does not match its name", "pack", name, "error", err)
			res.KeptPacks++
			continue
		}
		res.Packs = append(res.Packs, name)
		res.FreedBytes += size
	}
	if p, ok := s.legacyIndexProblem(); ok { // cachecheck.go
		s.log.Warn("whole-file index cache of the old format found; never read, removed", "path", p.Path)
		res.Skipped = append([]Problem{p}, res.Skipped...) // first: alerts name the first few
		if !o.DryRun && !s.ro {
			if err := os.Remove(s.path(p.Path)); err != nil {
				s.log.Warn("old index cache not removed", "error", err)
			}
		}
	}
	if o.DryRun {
		return res, nil
	}
	// Manifests go first: a crash then leaves only unreferenced packs,
	// which the next prune removes.
	for _, id := range res.Expired {
		if err := s.unsealRemove(s.path(snapshotsDir), id+".snap"); err != nil {
			return res, err
		}
		s.log.Info("expired snapshot removed", "snapshot", id, "source", sums[id].source)
	}
	// Receipts and retention records of removed snapshots go with them.
	if err := s.removeRecordsOf(res.Expired); err != nil {
		return res, err
	}
	drop := map[string]bool{}
	for _, name := range res.Packs {
		if err := s.unsealRemove(s.path(packsDir, name[:2]), name); err != nil {
			return res, err
		}
		drop[name] = true
	}
	if len(drop) > 0 {
		// The runs that list a removed pack are dropped and their other
		// packs indexed again, so no lookup finds a removed chunk.
		if err := s.idx.catchUp(); err != nil {
			s.log.Warn("index not brought up to date; the next open does it", "error", err)
		}
	}
	s.log.Info("prune done", "expired", len(res.Expired), "packs", len(res.Packs), "freed_bytes", res.FreedBytes)
	return res, nil
}

// removeRecordsOf removes the receipts and retention records of snapshots
// prune has removed.
func (s *Store) removeRecordsOf(ids []string) error {
	gone := map[string]bool{}
	for _, id := range ids {
		gone[id] = true
	}
	if len(gone) == 0 {
		return nil
	}
	for _, dir := range []string{receiptsDir, retentionDir} {
		var names []string
		err := scanDir(s.path(dir), func(name string, typ fs.FileMode) error {
			if id, _, ok := strings.Cut(name, "."); ok && gone[id] && typ.IsRegular() {
				names = append(names, name)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("prune: read %s: %w", dir, err)
		}
		for _, name := range names {
			if err := s.unsealRemove(s.path(dir), name); err != nil {
				return err
			}
		}
	}
	return nil
}

// unsealRemove clears FS_IMMUTABLE_FL on dir/name and FS_APPEND_FL on dir,
// removes the file, and sets FS_APPEND_FL on dir again whatever happens.
func (s *Store) unsealRemove(dir, name string) (err error) {
	path := filepath.Join(dir, name)
	if err := fsflag.Clear(path, fsflag.Immutable); err != nil {
		return fmt.Errorf("prune: unseal %s: %w", path, err)
	}
	if err := fsflag.Clear(dir, fsflag.Append); err != nil {
		return fmt.Errorf("prune: open dir %s: %w", dir, err)
	}
	defer func() {
		if serr := s.sealer.SealDir(dir); serr != nil && err == nil {
			err = fmt.Errorf("prune: reseal dir %s: %w", dir, serr)
		}
	}()
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("prune: remove %s: %w", path, err)
	}
	return syncDir(dir)
}

// checkPackName checks that a pack's bytes hash to its name and returns its
// size.
func (s *Store) checkPackName(name string) (int64, error) {
	f, _, err := openStoreFile(s.packPath(name), os.O_RDONLY, s.maxPackFile())
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, fmt.Errorf("read pack %s: %w", name, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != name {
		return 0, fmt.Errorf("pack %s: content does not match its name: %w", name, ErrCorrupt)
	}
	return n, nil
}

// readManifestHead reads the summary of a committed manifest (its head and
// tail; a format 1 manifest's object frames are skipped, not decrypted)
// and says whether the file is sealed. Prune then streams the chunks of
// every manifest whole, which checks what the head says.
func (s *Store) readManifestHead(id string) (*Manifest, bool, error) {
	f, size, err := openStoreFile(s.path(snapshotsDir, id+".snap"), os.O_RDONLY, maxManifestFile)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	sealed, err := isSealedFile(f)
	if err != nil {
		return nil, false, err
	}
	m, err := s.manifestSummary(f, size)
	if err != nil {
		return nil, sealed, err
	}
	if m.ID != id {
		return nil, sealed, fmt.Errorf("manifest %s holds snapshot %s: %w", id, m.ID, ErrCorrupt)
	}
	return m, sealed, nil
}

// streamManifestChunks hands every chunk a manifest (or, with partial, a
// journal) references to fn, one frame at a time. A metadata chunk whose
// ID is in seen (when not nil) is handed over but not read again: its
// records were, for an earlier manifest. Every chunk read is added to
// seen. seen is exact (a Bloom filter's false positive here would leave
// the chunks of unread records unmarked); it holds one ID per distinct
// metadata chunk, about 32 bytes per 256 records of the kept snapshots'
// union.
func (s *Store) streamManifestChunks(path string, partial bool, fn func(ChunkID), seen map[ChunkID]struct{}) error {
	f, _, err := openStoreFile(path, os.O_RDONLY, maxManifestFile)
	if err != nil {
		return err
	}
	defer f.Close()
	h := walkHooks{onChunk: fn}
	if seen != nil {
		h.seenRef = func(c ChunkID) bool {
			if _, ok := seen[c]; ok {
				return true
			}
			seen[c] = struct{}{}
			return false
		}
	}
	_, _, err = s.walkFrames(f, partial, false, h)
	return err
}
