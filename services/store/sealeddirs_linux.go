package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// SealedDirs and ListSealedDir list the sealed files of a store one
// directory at a time, read-only, so a caller walking a large store (the
// sliced scrub, services/mirror) holds one directory's names, not every
// file's: with 16 MiB packs a 10 TB store has 625,000 packs, about 2,400
// a shard. Walking SealedDirs in order and each directory's list in order
// gives the order of ListSealed (packs, manifests, retention records,
// receipts, the recovery blob; each by path).

// SealedDirs returns the directories of the store at root that hold
// sealed files, in ListSealed's order: packs/00 ... packs/ff (those that
// exist), then snapshots, retention, receipts and recovery. Entries of
// packs/ that are not shard directories are left out.
func SealedDirs(root string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(root, configName)); err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	var dirs []string
	err := scanDir(filepath.Join(root, packsDir), func(name string, typ fs.FileMode) error {
		if typ.IsDir() && isShard(name) {
			dirs = append(dirs, packsDir+"/"+name)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read packs: %w", err)
	}
	slices.Sort(dirs)
	return append(dirs, snapshotsDir, retentionDir, receiptsDir, recoveryDir), nil
}

// ListSealedDir lists the sealed files of directory dir (one of
// SealedDirs) of the store at root, sorted by path: regular files whose
// name fits the layout (KindOf), nothing else. A missing directory lists
// nothing.
func ListSealedDir(root, dir string) ([]SealedFile, error) {
	if !slices.Contains([]string{snapshotsDir, retentionDir, receiptsDir, recoveryDir}, dir) {
		shard, ok := strings.CutPrefix(dir, packsDir+"/")
		if !ok || !isShard(shard) {
			return nil, fmt.Errorf("list %q: not a directory of sealed files", dir)
		}
	}
	var out []SealedFile
	err := scanDir(filepath.Join(root, filepath.FromSlash(dir)), func(name string, typ fs.FileMode) error {
		if !typ.IsRegular() {
			return nil
		}
		if k, ok := KindOf(dir + "/" + name); ok {
			out = append(out, SealedFile{Rel: dir + "/" + name, Kind: k})
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	slices.SortFunc(out, func(a, b SealedFile) int { return strings.Compare(a.Rel, b.Rel) })
	return out, nil
}
