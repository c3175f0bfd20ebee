package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// putPathsParallel is how many files PutPaths reads at once: enough to
// overlap cold-disk reads of small files with hashing and sealing.
const putPathsParallel = 8

// PutPaths adds local files and directory trees to the snapshot. An
// object's key is its path relative to the parent of the argument that
// named it, with "/" separators ("put /data/mail" gives "mail/a.eml").
// Files are read several at a time, so objects are recorded in the order
// they finish, not in lexical order. Each object records its SHA-256 as
// computed while reading. Objects a resumed snapshot already holds (same
// key, size and modification time) are skipped. Symlinks and special files
// are skipped with a recorded error.
func (sn *Snapshot) PutPaths(ctx context.Context, paths []string) error {
	return sn.putPaths(ctx, paths, putPathsParallel)
}

// putPaths is PutPaths reading parallel files at once; with 1 the order of
// work is fixed, which crash tests need to hit the same point twice.
func (sn *Snapshot) putPaths(ctx context.Context, paths []string, parallel int) error {
	// The CLI's local put keeps a map of what a resumed snapshot holds
	// (its memory grows with that count; pulls do not use this path).
	have := map[string]Object{}
	if err := sn.WalkJournaled(func(o Object) error {
		have[string(o.Key)] = o
		return nil
	}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type file struct {
		path, key string
		info      fs.FileInfo
	}
	work := make(chan file)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				if err := sn.putFile(ctx, f.path, f.key, f.info); err != nil {
					cancel(err)
				}
			}
		}()
	}
	walkErr := func() error {
		defer close(work)
		for _, root := range paths {
			root = filepath.Clean(root)
			base := filepath.Dir(root)
			err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return fmt.Errorf("walk %s: %w", p, err)
				}
				if d.IsDir() {
					return nil
				}
				rel, err := filepath.Rel(base, p)
				if err != nil {
					return fmt.Errorf("key for %s: %w", p, err)
				}
				key := filepath.ToSlash(rel)
				if !d.Type().IsRegular() {
					sn.RecordError(fmt.Sprintf("%s: skipped: not a regular file (%s)", key, d.Type()))
					return nil
				}
				info, err := d.Info()
				if err != nil {
					return fmt.Errorf("stat %s: %w", p, err)
				}
				if o, ok := have[key]; ok && o.Size == info.Size() && o.ModTime.Equal(info.ModTime().UTC()) {
					return nil
				}
				select {
				case work <- file{p, key, info}:
					return nil
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			})
			if err != nil {
				return err
			}
		}
		return nil
	}()
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return walkErr
}

func (sn *Snapshot) putFile(ctx context.Context, path, key string, fi fs.FileInfo) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	info := ObjectInfo{
		Key: []byte(key), ModTime: fi.ModTime().UTC(),
		Finish: func(int64) (map[string]string, error) {
			return map[string]string{"sha256": hex.EncodeToString(h.Sum(nil))}, nil
		},
	}
	if _, err := sn.Put(ctx, info, io.TeeReader(f, h)); err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	return nil
}
