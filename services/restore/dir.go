package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// UnsafeDir is the directory below a restore's target that holds the
// objects whose keys are not clean relative paths.
const UnsafeDir = ".holdfast-unsafe-keys"

// UnsafeIndex is the file in UnsafeDir that maps names to keys: one line
// per object, "<hex sha256 of key>\t<Go-quoted key>\t<reason>".
const UnsafeIndex = "index.tsv"

// MaxSegment is the longest path segment ToDir writes (NAME_MAX).
const MaxSegment = 255

// SafePath reports whether key can be written at the relative path it
// names, and why not: it must be valid UTF-8 without NUL, not absolute,
// with no empty, "." or ".." segment, no segment longer than MaxSegment
// bytes, and must not start with UnsafeDir.
func SafePath(key []byte) (ok bool, reason string) {
	switch {
	case len(key) == 0:
		return false, "empty key"
	case !utf8.Valid(key):
		return false, "not valid UTF-8"
	case strings.IndexByte(string(key), 0) >= 0:
		return false, "holds a NUL byte"
	case key[0] == '/':
		return false, "absolute path"
	}
	segs := strings.Split(string(key), "/")
	if segs[0] == UnsafeDir {
		return false, "names the unsafe-keys directory"
	}
	for _, sg := range segs {
		switch {
		case sg == "":
			return false, "empty path segment"
		case sg == "." || sg == "..":
			return false, fmt.Sprintf("%q segment", sg)
		case len(sg) > MaxSegment:
			return false, fmt.Sprintf("segment of %d bytes (max %d)", len(sg), MaxSegment)
		}
	}
	return true, ""
}

// UnsafeName is the file name an unsafe key is written under in UnsafeDir.
func UnsafeName(key []byte) string {
	h := sha256.Sum256(key)
	return hex.EncodeToString(h[:])
}

// dirWriter writes objects below one directory file descriptor.
type dirWriter struct {
	s    *store.Store
	root int // O_DIRECTORY fd of the target
	mu   sync.Mutex
	// unsafe lines for the index, and whether UnsafeDir was made
	unsafe []string
}

// ToDir restores the selected objects of snapshot snapshotID below dir,
// which must be empty or not exist (it is created with mode 0755, its
// parent must exist). It never follows a symlink and never replaces a file.
// A clean key whose path collides with another (key "a" and key "a/b") is
// written as an unsafe key.
func ToDir(ctx context.Context, s *store.Store, snapshotID, prefix, dir string, opts Options) (*Result, error) {
	o, err := opts.withDefaults(DefaultParallel)
	if err != nil {
		return nil, err
	}
	sel, err := Select(s, snapshotID, prefix, o.Exact)
	if err != nil {
		return nil, err
	}
	root, err := openEmptyDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	w := &dirWriter{s: s, root: root}
	o.Logger.Info("restore to directory", "snapshot", snapshotID, "objects", sel.Objects, "dir", dir)
	n, b, err := runAll(ctx, sel, o, w.write)
	res := &Result{Objects: n, Bytes: b, DeleteMarkers: sel.DeleteMarkers, SnapshotSource: sel.Manifest.Source}
	w.mu.Lock()
	defer w.mu.Unlock()
	res.UnsafeKeys = len(w.unsafe)
	if len(w.unsafe) > 0 {
		if ierr := w.writeIndex(); ierr != nil {
			err = errors.Join(err, ierr)
		}
	}
	if err != nil {
		return res, fmt.Errorf("restore to %s: %w", dir, err)
	}
	return res, nil
}

// openEmptyDir creates dir or opens it when it exists, is a real
// directory (not a symlink) and is empty.
func openEmptyDir(dir string) (int, error) {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return -1, fmt.Errorf("restore: create target %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("restore: open target %s (a symlink is refused): %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir)
	names, err := f.Readdirnames(1)
	if err != nil && len(names) == 0 && !errors.Is(err, io.EOF) {
		f.Close()
		return -1, fmt.Errorf("restore: read target %s: %w", dir, err)
	}
	if len(names) > 0 {
		f.Close()
		return -1, fmt.Errorf("restore: target %s is not empty (it holds %q); restore into an empty or new directory", dir, names[0])
	}
	// Keep our own descriptor: f would close fd when collected.
	nfd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return -1, fmt.Errorf("restore: %w", err)
	}
	return nfd, nil
}

// write restores one object.
func (w *dirWriter) write(ctx context.Context, ob store.Object) error {
	if ok, reason := SafePath(ob.Key); !ok {
		return w.writeUnsafe(ctx, ob, reason)
	}
	segs := strings.Split(string(ob.Key), "/")
	parent, err := w.mkdirs(segs[:len(segs)-1])
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return w.writeUnsafe(ctx, ob, "path collides with another key")
		}
		return fmt.Errorf("restore %q: %w", ob.Key, err)
	}
	defer closeIfNotRoot(parent, w.root)
	err = w.writeFile(ctx, parent, segs[len(segs)-1], ob)
	if errors.Is(err, unix.EEXIST) {
		return w.writeUnsafe(ctx, ob, "path collides with another key")
	}
	return err
}

func closeIfNotRoot(fd, root int) {
	if fd != root {
		unix.Close(fd)
	}
}

// mkdirs creates (0755) and opens each segment in turn below the root,
// refusing symlinks; it returns the last directory's fd.
func (w *dirWriter) mkdirs(segs []string) (int, error) {
	fd := w.root
	for _, sg := range segs {
		if err := unix.Mkdirat(fd, sg, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			closeIfNotRoot(fd, w.root)
			return -1, fmt.Errorf("mkdir %q: %w", sg, err)
		}
		nfd, err := openBeneath(fd, sg, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		closeIfNotRoot(fd, w.root)
		if err != nil {
			return -1, fmt.Errorf("open dir %q: %w", sg, err)
		}
		fd = nfd
	}
	return fd, nil
}

// openBeneath opens name (one segment) below dirfd without following any
// symlink.
func openBeneath(dirfd int, name string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	}
	fd, err := unix.Openat2(dirfd, name, &how)
	if errors.Is(err, unix.ENOSYS) {
		// Kernels before 5.6: a single segment with O_NOFOLLOW cannot
		// leave dirfd either.
		fd, err = unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	}
	return fd, err
}

// writeFile creates name below dirfd (O_EXCL, 0644) and writes the object;
// a partial file is removed.
func (w *dirWriter) writeFile(ctx context.Context, dirfd int, name string, ob store.Object) error {
	fd, err := openBeneath(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("restore %q: create: %w", ob.Key, err)
	}
	f := os.NewFile(uintptr(fd), name)
	err = w.s.WriteObject(ctx, ob, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("restore %q: %w", ob.Key, cerr)
	}
	if err != nil {
		if uerr := unix.Unlinkat(dirfd, name, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("remove partial file: %w", uerr))
		}
		return fmt.Errorf("restore %q: %w", ob.Key, err)
	}
	return nil
}

// writeUnsafe writes an object under UnsafeDir and records it for the index.
func (w *dirWriter) writeUnsafe(ctx context.Context, ob store.Object, reason string) error {
	d, err := w.mkdirs([]string{UnsafeDir})
	if err != nil {
		return fmt.Errorf("restore %q: %w", ob.Key, err)
	}
	defer closeIfNotRoot(d, w.root)
	name := UnsafeName(ob.Key)
	if err := w.writeFile(ctx, d, name, ob); err != nil {
		return err
	}
	w.mu.Lock()
	w.unsafe = append(w.unsafe, name+"\t"+strconv.Quote(string(ob.Key))+"\t"+reason+"\n")
	w.mu.Unlock()
	return nil
}

// writeIndex writes UnsafeDir/UnsafeIndex; called with w.mu held.
func (w *dirWriter) writeIndex() error {
	d, err := w.mkdirs([]string{UnsafeDir})
	if err != nil {
		return fmt.Errorf("unsafe-keys index: %w", err)
	}
	defer closeIfNotRoot(d, w.root)
	fd, err := openBeneath(d, UnsafeIndex, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("unsafe-keys index: create: %w", err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(UnsafeDir, UnsafeIndex))
	slices.Sort(w.unsafe)
	_, err = f.WriteString(strings.Join(w.unsafe, ""))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("unsafe-keys index: %w", err)
	}
	return nil
}
