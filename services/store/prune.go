package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// PruneOptions bound what prune may do.
type PruneOptions struct {
	DryRun bool
	// MaxClockJump is how far the clock may be past the high-water mark;
	// beyond it prune refuses. 0 means DefaultMaxClockJump.
	MaxClockJump time.Duration
}

// DefaultMaxClockJump is the default bound on a forward clock jump.
const DefaultMaxClockJump = 7 * 24 * time.Hour

// PruneResult says what prune removed (or, in a dry run, would remove).
type PruneResult struct {
	Now        time.Time
	Expired    []string // manifests removed
	Kept       []string // snapshots kept
	Packs      []string // packs removed
	KeptPacks  int
	FreedBytes int64
	DryRun     bool
}

// Prune removes snapshots whose retention has ended and the packs whose every
// chunk is referenced only by them (or by nothing). It is the only code that
// clears an inode flag, needs CAP_LINUX_IMMUTABLE, and runs in the boot
// maintenance window. It refuses when the clock looks wrong, when any
// manifest or journal cannot be read (it cannot know what that references),
// and it always keeps the newest snapshot of every source. Packs are removed
// whole, never rewritten.
func (s *Store) Prune(ctx context.Context, o PruneOptions) (*PruneResult, error) {
	if s.ro {
		return nil, errors.New("prune: store opened read-only")
	}
	jump := o.MaxClockJump
	if jump == 0 {
		jump = DefaultMaxClockJump
	}
	now, err := s.trustedNow(jump)
	if err != nil {
		return nil, fmt.Errorf("prune refused: %w", err)
	}
	res := &PruneResult{Now: now, DryRun: o.DryRun}
	ids, err := s.snapshotIDs()
	if err != nil {
		return nil, err
	}
	exts, err := s.extensions()
	if err != nil {
		return nil, err
	}
	live := map[ChunkID]bool{}
	newest := map[string]string{} // source -> snapshot with the latest start
	manifests := map[string]*Manifest{}
	for _, id := range ids {
		m, err := s.ReadManifest(id)
		if err != nil {
			return nil, fmt.Errorf("prune refused: cannot read snapshot %s, so cannot know what it references: %w", id, err)
		}
		manifests[id] = m
		if cur, ok := newest[m.Source]; !ok || !m.Started.Before(manifests[cur].Started) {
			newest[m.Source] = id
		}
	}
	for _, id := range ids {
		m := manifests[id]
		if s.effectiveRetention(m, exts[id]).Protects(now) || newest[m.Source] == id {
			res.Kept = append(res.Kept, id)
			markLive(live, m.Objects)
			continue
		}
		res.Expired = append(res.Expired, id)
	}
	in, err := os.ReadDir(s.path(wipDir))
	if err != nil {
		return nil, fmt.Errorf("read wip: %w", err)
	}
	for _, e := range in {
		id, ok := journalID(e.Name())
		if !ok {
			continue
		}
		m, _, err := s.readJournal(id)
		if err != nil {
			return nil, fmt.Errorf("prune refused: cannot read journal %s: %w", id, err)
		}
		markLive(live, m.Objects)
	}
	// Each pack is judged by its own trailer, read from the sealed pack
	// file itself; the index cache is never consulted. A pack that is not
	// sealed, whose trailer does not open, or whose bytes do not hash to
	// its name is kept.
	onDisk, err := s.listPacks()
	if err != nil {
		return nil, err
	}
	ix := newIndex()
	for _, name := range onDisk {
		es, sealed, err := s.packEntries(name)
		if err != nil {
			s.log.Warn("prune keeps a pack whose trailer it cannot read", "pack", name, "error", err)
			res.KeptPacks++
			continue
		}
		ix.addPack(name, es)
		dead := sealed
		for _, e := range es {
			if live[e.id] {
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
	ix.dirty = true
	s.idx = ix
	if o.DryRun {
		return res, nil
	}
	// Manifests go first: a crash then leaves only unreferenced packs,
	// which the next prune removes.
	for _, id := range res.Expired {
		if err := s.unsealRemove(s.path(snapshotsDir), id+".snap"); err != nil {
			return res, err
		}
		s.log.Info("expired snapshot removed", "snapshot", id, "source", manifests[id].Source)
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
	s.idx = s.idx.withoutPacks(drop)
	s.idx.cached = false
	if err := s.saveIndex(); err != nil {
		s.log.Warn("index cache not saved; it will be rebuilt", "error", err)
	}
	if err := s.recordClock(s.pclock); err != nil {
		return res, err
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
	for _, dir := range []string{receiptsDir, retentionDir} {
		es, err := os.ReadDir(s.path(dir))
		if err != nil {
			return fmt.Errorf("prune: read %s: %w", dir, err)
		}
		for _, e := range es {
			if id, _, ok := strings.Cut(e.Name(), "."); ok && gone[id] {
				if err := s.unsealRemove(s.path(dir), e.Name()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func markLive(live map[ChunkID]bool, objs []Object) {
	for _, o := range objs {
		for _, c := range o.Chunks {
			live[c] = true
		}
	}
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
