package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pkg/xattr"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// Mirror support: what services/mirror needs to keep a second data disk as
// a complete copy of this store and to repair one disk from the other. A
// mirror disk is a store of its own whose config file is the primary's,
// byte for byte (InitMirror): the same store ID, so the same keys and
// chunker polynomial, and every sealed file is copied as it is. The copy
// follows the rules of every write path here: tmp/, fsync, rename with
// RENAME_NOREPLACE into an append-only directory, fsync the directory,
// xattrs, seal.
//
// Which files a mirror keeps, by directory of the layout (doc.go):
//
//	| path                          | mirrored | how                                   |
//	|-------------------------------|----------|---------------------------------------|
//	| holdfast-store                | cloned   | InitMirror copies it; Open checks it  |
//	| packs/ab/<sha256>             | yes      | checked: SHA-256 = name, trailer,     |
//	|                               |          | every blob against its chunk ID       |
//	| snapshots/<id>.snap           | yes      | checked: every frame; xattrs copied   |
//	| retention/<id>.<ns>.ext       | yes      | checked: tag, snapshot = name         |
//	| receipts/<id>.receipt         | yes      | opaque: bytes compared                |
//	| recovery/wrapped-key          | yes      | opaque: bytes compared                |
//	| state/clock.log               | mark     | the high-water mark is carried over   |
//	|                               |          | (AdvanceHighWater), not the records   |
//	| wip/, tmp/, lock              | no       | in progress or local to the disk      |
//	| index/run-*                   | no       | a cache each disk builds for itself   |

// FileKind names the kind of a sealed store file.
type FileKind string

// The kinds of sealed files a mirror keeps.
const (
	KindPack      FileKind = "pack"
	KindManifest  FileKind = "manifest"
	KindRetention FileKind = "retention"
	KindReceipt   FileKind = "receipt"
	KindRecovery  FileKind = "recovery"
)

// Authenticated reports whether the store's keys tell a good copy of such a
// file from a damaged one. Receipts and the recovery blob are opaque to the
// store: it can only read them and compare copies.
func (k FileKind) Authenticated() bool {
	return k == KindPack || k == KindManifest || k == KindRetention
}

// SealedFile is one file a mirror keeps.
type SealedFile struct {
	Rel  string // path relative to the store root, "/" separated
	Kind FileKind
}

// Errors of the mirror helpers.
var (
	// ErrSourceDamaged means the file to be copied fails its check where
	// it was read from; nothing was installed.
	ErrSourceDamaged = errors.New("the copy's source fails its check")
	// ErrNotDamaged means ReplaceDamaged found the file good (or, for a
	// receipt or the recovery blob, readable) and left it alone.
	ErrNotDamaged = errors.New("file is not damaged; left alone")
)

// KindOf returns the kind of the store file at rel ("/" separated, relative
// to the store root). Only paths of exactly the layout's form are accepted,
// so a rel that passes can be joined to a root safely.
func KindOf(rel string) (FileKind, bool) {
	dir, name, ok := strings.Cut(rel, "/")
	if !ok {
		return "", false
	}
	switch dir {
	case packsDir:
		shard, p, ok := strings.Cut(name, "/")
		return KindPack, ok && isShard(shard) && isPackName(p) && strings.HasPrefix(p, shard)
	case snapshotsDir:
		id, ok := strings.CutSuffix(name, ".snap")
		return KindManifest, ok && ValidSnapshotID(id)
	case retentionDir:
		return KindRetention, isExtensionName(name)
	case receiptsDir:
		return KindReceipt, isReceiptName(name)
	case recoveryDir:
		return KindRecovery, name == recoveryName
	}
	return "", false
}

// isExtensionName reports whether n has the form <snapshot id>.<ns>.ext.
func isExtensionName(n string) bool {
	rest, ok := strings.CutSuffix(n, ".ext")
	if !ok || len(rest) < snapIDLen+2 || rest[snapIDLen] != '.' || !ValidSnapshotID(rest[:snapIDLen]) {
		return false
	}
	ns := rest[snapIDLen+1:]
	if len(ns) > 20 {
		return false
	}
	for _, c := range []byte(ns) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ListSealed lists the files of the store at root that a mirror keeps on
// every disk (see the table above), packs first, then manifests, retention
// records, receipts and the recovery blob: the order a copy must follow so
// that a disk never holds a manifest whose packs it lacks. The directories
// are read in the opposite order, so with a writer running every listed
// manifest's packs are listed too. Names that do not fit the layout are
// left out (Verify reports them); a missing directory lists nothing.
func ListSealed(root string) ([]SealedFile, error) {
	if _, err := os.Stat(filepath.Join(root, configName)); err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	var out []SealedFile
	// Directories are read in batches and only regular files of the
	// layout are kept: foreign entries (any type, any number) cost nothing.
	addFrom := func(d string) error {
		err := scanDir(filepath.Join(root, filepath.FromSlash(d)), func(name string, typ fs.FileMode) error {
			if !typ.IsRegular() {
				return nil
			}
			if k, ok := KindOf(d + "/" + name); ok {
				out = append(out, SealedFile{Rel: d + "/" + name, Kind: k})
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read %s: %w", d, err)
		}
		return nil
	}
	for _, d := range []string{recoveryDir, receiptsDir, retentionDir, snapshotsDir} {
		if err := addFrom(d); err != nil {
			return nil, err
		}
	}
	var shards []string
	err := scanDir(filepath.Join(root, packsDir), func(name string, typ fs.FileMode) error {
		if typ.IsDir() && isShard(name) {
			shards = append(shards, name)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read packs: %w", err)
	}
	for _, sh := range shards {
		if err := addFrom(packsDir + "/" + sh); err != nil {
			return nil, err
		}
	}
	order := map[FileKind]int{KindPack: 0, KindManifest: 1, KindRetention: 2, KindReceipt: 3, KindRecovery: 4}
	slices.SortFunc(out, func(a, b SealedFile) int {
		if d := order[a.Kind] - order[b.Kind]; d != 0 {
			return d
		}
		return strings.Compare(a.Rel, b.Rel)
	})
	return out, nil
}

// FileCheck is what CheckFile found out about a good file.
type FileCheck struct {
	Digest [32]byte // SHA-256 of the whole file
	Size   int64
	Sealed bool // FS_IMMUTABLE_FL is set
}

// checked is the internal result of a file check.
type checked struct {
	digest   [32]byte
	size     int64
	entries  []packEntry // packs: the trailer's entries
	manifest *Manifest   // manifests: the decoded manifest
}

// CheckFile reads file rel of the store at root (this store's directory or
// another disk of the same store) whole and checks it with this store's
// keys: a pack must hash to its name, start with its magic, have a trailer
// that opens and every blob must open and hash to its chunk ID; a manifest
// must decode in full (every frame's tag, head, tail and totals) and hold
// the snapshot its name says; a retention record must open and name its
// snapshot. Receipts and the recovery blob need only be readable. A missing
// file is an error wrapping fs.ErrNotExist; a damaged one wraps ErrCorrupt.
// CheckFile uses only the store's keys, so it may run while the store
// writes.
func (s *Store) CheckFile(ctx context.Context, root, rel string) (FileCheck, error) {
	if err := ctx.Err(); err != nil {
		return FileCheck{}, err
	}
	kind, ok := KindOf(rel)
	if !ok {
		return FileCheck{}, fmt.Errorf("check %q: not a sealed store file", rel)
	}
	p := filepath.Join(root, filepath.FromSlash(rel))
	c, err := s.checkAt(kind, p, path.Base(rel))
	if err != nil {
		return FileCheck{}, fmt.Errorf("%s: %w", rel, err)
	}
	sealed, err := fsflag.Has(p, fsflag.Immutable)
	if err != nil {
		return FileCheck{}, fmt.Errorf("%s: flags: %w", rel, err)
	}
	return FileCheck{Digest: c.digest, Size: c.size, Sealed: sealed}, nil
}

// checkAt checks the file at p as a file of the given kind named name.
func (s *Store) checkAt(kind FileKind, p, name string) (checked, error) {
	switch kind {
	case KindPack:
		return s.checkPackAt(p, name)
	case KindManifest:
		return s.checkManifestAt(p, strings.TrimSuffix(name, ".snap"))
	case KindRetention:
		return s.checkExtensionAt(p, name)
	default:
		raw, err := readStoreFile(p, s.maxOfKind(kind))
		if err != nil {
			return checked{}, err
		}
		return checked{digest: sha256.Sum256(raw), size: int64(len(raw))}, nil
	}
}

// maxOfKind is the largest file of a kind a mirror reads.
func (s *Store) maxOfKind(kind FileKind) int64 {
	switch kind {
	case KindPack:
		return s.maxPackFile()
	case KindManifest:
		return maxManifestFile
	}
	return maxRecordFile
}

func (s *Store) checkPackAt(p, name string) (checked, error) {
	raw, err := readStoreFile(p, s.maxPackFile())
	if err != nil {
		return checked{}, fmt.Errorf("read pack: %w", err)
	}
	c := checked{digest: sha256.Sum256(raw), size: int64(len(raw))}
	if hex.EncodeToString(c.digest[:]) != name {
		return c, fmt.Errorf("pack content does not match its name (SHA-256): %w", ErrCorrupt)
	}
	if !bytes.HasPrefix(raw, []byte(packMagic)) {
		return c, fmt.Errorf("pack magic: %w", ErrCorrupt)
	}
	if c.entries, err = s.readTrailer(bytes.NewReader(raw), c.size); err != nil {
		return c, fmt.Errorf("trailer: %w", err)
	}
	h := s.keys.idHasher()
	for _, e := range c.entries {
		// readTrailer has checked that every entry lies inside the pack.
		if _, err := s.openBlob(e.id, raw[e.offset:int64(e.offset)+int64(e.length)], h); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (s *Store) checkManifestAt(p, id string) (checked, error) {
	f, _, err := openStoreFile(p, os.O_RDONLY, maxManifestFile)
	if err != nil {
		return checked{}, err
	}
	defer f.Close()
	h := sha256.New()
	n := &countWriter{w: h}
	m, _, merr := s.manifestSelf(io.TeeReader(f, n), false)
	// The digest covers the whole file, damaged or not (nothing is left
	// after the tail of a good manifest).
	if _, err := io.Copy(n, f); err != nil {
		return checked{}, fmt.Errorf("read manifest: %w", err)
	}
	c := checked{size: n.n, manifest: m}
	h.Sum(c.digest[:0])
	if merr != nil {
		return c, fmt.Errorf("manifest %s: %w", id, merr)
	}
	if m.ID != id {
		return c, fmt.Errorf("manifest %s holds snapshot %s: %w", id, m.ID, ErrCorrupt)
	}
	return c, nil
}

// checkExtensionAt is readExtension for a file at any path: magic, tag
// (the AD binds the record to its name) and snapshot = name.
func (s *Store) checkExtensionAt(p, name string) (checked, error) {
	raw, err := readStoreFile(p, maxRecordFile)
	if err != nil {
		return checked{}, err
	}
	c := checked{digest: sha256.Sum256(raw), size: int64(len(raw))}
	if !bytes.HasPrefix(raw, []byte(extMagic)) {
		return c, fmt.Errorf("retention record magic: %w", ErrCorrupt)
	}
	plain, err := openSealed(s.keys.meta, []byte("HFRX"+name), raw[len(extMagic):])
	if err != nil {
		return c, fmt.Errorf("retention record: %w", err)
	}
	var x retentionExt
	if err := s.codec.unmarshal(plain, &x); err != nil {
		return c, err
	}
	if !strings.HasPrefix(name, x.Snapshot+".") {
		return c, fmt.Errorf("retention record %s names snapshot %s: %w", name, x.Snapshot, ErrCorrupt)
	}
	return c, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// staged is a verified copy waiting in tmp/.
type staged struct {
	tmp string
	checked
}

// retentionXattrs are a manifest's xattrs as read from a file.
type retentionXattrs struct {
	until time.Time
	hold  bool
	ok    bool // both present and well formed
}

// stageCopy copies srcRoot/rel into a new file in tmp/ and checks it:
//
//  1. the source is read once, hashed as it is copied;
//  2. the copy is fsynced, its pages are dropped from the page cache
//     (POSIX_FADV_DONTNEED), and it is read back from the disk and checked
//     in full as a file of its kind named rel;
//  3. a copy whose digest differs from the source's was damaged on the way
//     to this disk (ErrCorrupt); a copy equal to the source that fails its
//     check means the source is damaged (ErrSourceDamaged).
//
// A manifest copy gets the source's retention xattrs (the same bytes); when
// old holds the xattrs of a file being replaced, the more protective of
// both is kept, so a repair never shortens retention. Nothing outside tmp/
// is touched; on error the copy is removed.
func (s *Store) stageCopy(ctx context.Context, srcRoot, rel string, kind FileKind, old *retentionXattrs) (st staged, err error) {
	src := filepath.Join(srcRoot, filepath.FromSlash(rel))
	in, _, err := openStoreFile(src, os.O_RDONLY, s.maxOfKind(kind))
	if err != nil {
		return st, fmt.Errorf("open source: %w", err)
	}
	defer in.Close()
	out, err := os.CreateTemp(s.path(tmpDir), "copy-*")
	if err != nil {
		return st, fmt.Errorf("create copy: %w", err)
	}
	st.tmp = out.Name()
	if err = out.Chmod(fileMode); err != nil {
		out.Close()
		os.Remove(st.tmp)
		return st, fmt.Errorf("create copy: %w", err)
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(st.tmp)
		}
	}()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	first := true
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		n, rerr := io.ReadFull(in, buf)
		if n > 0 {
			h.Write(buf[:n])
			if _, err := out.Write(buf[:n]); err != nil {
				return st, fmt.Errorf("write copy: %w", err)
			}
			if first {
				first = false
				s.at("copy-mid") // crash tests: a half-written copy in tmp/
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return st, fmt.Errorf("read source: %w", rerr)
		}
	}
	var srcSum [32]byte
	h.Sum(srcSum[:0])
	s.at("copy-before-fsync")
	if err := out.Sync(); err != nil {
		return st, fmt.Errorf("fsync copy: %w", err)
	}
	// Read the copy back from the disk, not from the page cache.
	_ = unix.Fadvise(int(out.Fd()), 0, 0, unix.FADV_DONTNEED)
	if err := out.Close(); err != nil {
		return st, fmt.Errorf("close copy: %w", err)
	}
	c, cerr := s.checkAt(kind, st.tmp, path.Base(rel))
	switch {
	case c.digest != srcSum && cerr != nil:
		return st, fmt.Errorf("copy of %s read back differs from its source: %v: %w", rel, cerr, ErrCorrupt)
	case c.digest != srcSum:
		return st, fmt.Errorf("copy of %s read back differs from its source: %w", rel, ErrCorrupt)
	case cerr != nil:
		return st, fmt.Errorf("%s on %s: %v: %w", rel, srcRoot, cerr, ErrSourceDamaged)
	}
	st.checked = c
	if kind == KindManifest {
		if err := s.copyRetentionXattrs(src, st.tmp, c.manifest, old); err != nil {
			return st, err
		}
		f, err := os.Open(st.tmp)
		if err != nil {
			return st, err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return st, fmt.Errorf("fsync copy: %w", err)
		}
	}
	return st, nil
}

// copyRetentionXattrs gives dst the retention xattrs of src, byte for byte.
// When src lacks them (or they are malformed), they are set from the
// manifest head, as recovery does. When old is set and well formed, the
// more protective of old and src is kept.
func (s *Store) copyRetentionXattrs(src, dst string, m *Manifest, old *retentionXattrs) error {
	until, hold, ok := readRetentionXattrs(src)
	if !ok {
		until, hold = m.RetainUntil, m.LegalHold
	}
	if old != nil && old.ok {
		merged := laterRetention(until, old.until)
		if !merged.Equal(until) || (old.hold && !hold) {
			ok = false // the result differs from src: write it, not src's bytes
		}
		until, hold = merged, hold || old.hold
	}
	if !ok {
		return s.setRetentionXattrs(dst, until, hold)
	}
	for _, name := range []string{xattrRetainUntil, xattrLegalHold} {
		v, err := xattr.LGet(src, name)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if err := xattr.LSet(dst, name, v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// InstallCopy copies the sealed file rel of the store at srcRoot (another
// disk of this store) into this store, which must be open read-write: the
// copy is checked as stageCopy says, created in its directory (a new shard
// or recovery/ is made and sealed append-only first) with
// RENAME_NOREPLACE, the directory is fsynced and the file sealed. A crash
// leaves either a file in tmp/ (emptied at the next open) or the whole
// file in place, which recovery checks and seals. An existing file is
// never replaced: the error then wraps fs.ErrExist. A copied pack joins
// the index; SaveIndex writes it as a run. It returns the file's size.
func (s *Store) InstallCopy(ctx context.Context, srcRoot, rel string) (int64, error) {
	if s.ro {
		return 0, errors.New("install copy: store opened read-only")
	}
	kind, ok := KindOf(rel)
	if !ok {
		return 0, fmt.Errorf("install copy: %q is not a sealed store file", rel)
	}
	final := s.path(filepath.FromSlash(rel))
	if _, err := os.Lstat(final); err == nil {
		return 0, fmt.Errorf("install copy %s: %w", rel, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("install copy %s: %w", rel, err)
	}
	st, err := s.stageCopy(ctx, srcRoot, rel, kind, nil)
	if err != nil {
		return 0, fmt.Errorf("install copy: %w", err)
	}
	dir := filepath.Dir(final)
	if kind == KindPack || kind == KindRecovery {
		if err := s.ensureShard(dir); err != nil { // creates, fsyncs the parent, seals append-only
			os.Remove(st.tmp)
			return 0, err
		}
	}
	s.at("copy-before-rename")
	if err := renameNoReplace(st.tmp, final); err != nil {
		os.Remove(st.tmp)
		return 0, fmt.Errorf("install copy: %w", err)
	}
	s.at("copy-after-rename")
	if err := syncDir(dir); err != nil {
		return 0, err
	}
	s.at("copy-before-seal")
	if err := s.sealer.SealFile(final); err != nil {
		return 0, fmt.Errorf("install copy: seal %s: %w", rel, err)
	}
	s.at("copy-after-seal")
	if kind == KindPack {
		s.idx.addPack(path.Base(rel), st.entries)
	}
	return st.size, nil
}

// ReplaceDamaged replaces file rel of this store, which fails its check, by
// a verified copy of the same file from the store at srcRoot (another disk
// of this store). It needs CAP_LINUX_IMMUTABLE, which on the appliance only
// PID 1 holds in the boot maintenance window, and the store open
// read-write. It refuses, touching nothing:
//   - a file that passes its check (or, for a receipt or the recovery blob,
//     can be read): ErrNotDamaged;
//   - a missing file (use InstallCopy): an error wrapping fs.ErrNotExist;
//   - a source that fails its check: ErrSourceDamaged.
//
// Otherwise the copy is staged and checked (stageCopy; a manifest keeps the
// more protective retention xattrs of the old and the new file), then
// FS_IMMUTABLE_FL is cleared on exactly the damaged file and FS_APPEND_FL
// on its directory, the copy is renamed over it (atomic: the name always
// holds a whole file), the directory is fsynced and set append-only again
// whatever happened, and the file is sealed. A crash in between leaves the
// damaged file or the good one under the name; recovery restores the
// directory flags and seals a good file.
func (s *Store) ReplaceDamaged(ctx context.Context, srcRoot, rel string) (n int64, err error) {
	if s.ro {
		return 0, errors.New("replace damaged: store opened read-only")
	}
	kind, ok := KindOf(rel)
	if !ok {
		return 0, fmt.Errorf("replace damaged: %q is not a sealed store file", rel)
	}
	final := s.path(filepath.FromSlash(rel))
	_, cerr := s.checkAt(kind, final, path.Base(rel))
	switch {
	case cerr == nil:
		return 0, fmt.Errorf("replace damaged %s: %w", rel, ErrNotDamaged)
	case errors.Is(cerr, fs.ErrNotExist):
		return 0, fmt.Errorf("replace damaged %s: %w", rel, cerr)
	}
	var old *retentionXattrs
	if kind == KindManifest {
		u, h, ok := readRetentionXattrs(final)
		old = &retentionXattrs{until: u, hold: h, ok: ok}
	}
	st, err := s.stageCopy(ctx, srcRoot, rel, kind, old)
	if err != nil {
		return 0, fmt.Errorf("replace damaged: %w", err)
	}
	dir := filepath.Dir(final)
	s.at("repair-before-unseal")
	if err := fsflag.Clear(final, fsflag.Immutable); err != nil {
		os.Remove(st.tmp)
		return 0, fmt.Errorf("replace damaged: unseal %s: %w", rel, err)
	}
	if err := fsflag.Clear(dir, fsflag.Append); err != nil {
		os.Remove(st.tmp)
		return 0, fmt.Errorf("replace damaged: open dir %s: %w", dir, err)
	}
	defer func() {
		if serr := s.sealer.SealDir(dir); serr != nil && err == nil {
			err = fmt.Errorf("replace damaged: reseal dir %s: %w", dir, serr)
		}
	}()
	s.at("repair-before-rename")
	if err := os.Rename(st.tmp, final); err != nil {
		os.Remove(st.tmp)
		return 0, fmt.Errorf("replace damaged: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return 0, err
	}
	s.at("repair-before-seal")
	if err := s.sealer.SealFile(final); err != nil {
		return 0, fmt.Errorf("replace damaged: seal %s: %w", rel, err)
	}
	if kind == KindPack {
		s.idx.addPack(path.Base(rel), st.entries) // a no-op when the index knew it
	}
	s.log.Info("damaged file replaced by a verified copy", "path", rel, "from", srcRoot)
	return st.size, nil
}

// AdvanceHighWater appends t to the clock high-water log when it is past
// the current mark, so a mirror disk carries the mark of the disk it copies
// and prune on it alone cannot be fooled by a clock its twin already
// refused.
func (s *Store) AdvanceHighWater(t time.Time) error {
	if s.ro {
		return errors.New("advance high-water mark: store opened read-only")
	}
	if t.IsZero() {
		return nil
	}
	return s.recordClock(fixedClock(t))
}

type fixedClock time.Time

func (c fixedClock) Now() (time.Time, error) { return time.Time(c), nil }

// PeekID returns the store ID (hex, as ID returns it) recorded in the
// config of the store at dir, without a key and without opening the store,
// so a caller can tell a disk of another store before it opens it
// read-write (which runs recovery). The ID is not authenticated here; Open
// checks the config with the key.
func PeekID(dir string) (string, error) {
	id, err := ReadID(dir)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(id[:]), nil
}

// SaveIndex writes the index entries gathered since the last run as a run
// (after InstallCopy).
func (s *Store) SaveIndex() error { return s.saveIndex() }

// InitMirror makes dir, which must not exist or be empty, a second disk of
// the store primary: the same layout and flags as Init makes, the primary's
// config file byte for byte (so the same store ID, keys and chunker
// polynomial) and its recovery blob. Packs, manifests and records are
// copied afterwards by InstallCopy (services/mirror.Sync). ks must open the
// store. Like Init it never touches a directory that holds anything; on the
// appliance a blank disk is formatted only when the operator asks for it
// at the console.
func InitMirror(ctx context.Context, dir string, primary *Store, ks KeySource, o Options) (*Store, error) {
	cfg, err := readStoreFile(primary.path(configName), maxConfigFile)
	if err != nil {
		return nil, fmt.Errorf("read primary config: %w", err)
	}
	if len(cfg) < 30 || !bytes.Equal(cfg[10:26], primary.id[:]) || int(binary.BigEndian.Uint32(cfg[26:30])) != len(cfg)-30 {
		return nil, fmt.Errorf("primary config: %w", ErrCorrupt)
	}
	blob, err := ReadRecoveryBlob(primary.Dir())
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create store dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read store dir: %w", err)
	}
	if len(entries) > 0 {
		return nil, fmt.Errorf("init mirror %s: directory is not empty; refusing to touch it", dir)
	}
	if err := checkFlagSupport(dir); err != nil {
		return nil, err
	}
	for _, d := range []string{wipDir, tmpDir, indexDir, stateDir, packsDir, snapshotsDir, retentionDir, receiptsDir} {
		if err := os.Mkdir(filepath.Join(dir, d), dirMode); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, lockName), nil, lockMode); err != nil {
		return nil, fmt.Errorf("create lock file: %w", err)
	}
	if len(blob) > 0 {
		if err := os.Mkdir(filepath.Join(dir, recoveryDir), dirMode); err != nil {
			return nil, fmt.Errorf("create recovery dir: %w", err)
		}
		tmp := filepath.Join(dir, tmpDir, recoveryName)
		if err := writeFileSync(tmp, blob); err != nil {
			return nil, fmt.Errorf("write recovery blob: %w", err)
		}
		if err := renameNoReplace(tmp, filepath.Join(dir, recoveryDir, recoveryName)); err != nil {
			return nil, fmt.Errorf("install recovery blob: %w", err)
		}
		if err := syncDir(filepath.Join(dir, recoveryDir)); err != nil {
			return nil, err
		}
	}
	if err := writeFileSync(filepath.Join(dir, tmpDir, configName), cfg); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	// The config appears under its final name only once complete; the
	// first open seals it and sets the directory flags.
	if err := renameNoReplace(filepath.Join(dir, tmpDir, configName), filepath.Join(dir, configName)); err != nil {
		return nil, fmt.Errorf("install config: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	s, err := Open(ctx, dir, ks, o)
	if err != nil {
		return nil, fmt.Errorf("open new mirror: %w", err)
	}
	if s.id != primary.id {
		s.Close()
		return nil, fmt.Errorf("init mirror: new disk has store ID %s, primary %s", s.ID(), primary.ID())
	}
	return s, nil
}
