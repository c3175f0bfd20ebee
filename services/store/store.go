package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/restic/chunker"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// Names inside the store directory.
const (
	configName   = "holdfast-store"
	lockName     = "lock"
	packsDir     = "packs"
	snapshotsDir = "snapshots"
	retentionDir = "retention"
	wipDir       = "wip"
	tmpDir       = "tmp"
	indexDir     = "index"
	stateDir     = "state"
	clockLogName = "clock.log"
	recoveryDir  = "recovery"
	recoveryName = "wrapped-key"
)

// Defaults for a new store.
const (
	DefaultPackSize = 16 << 20
	minChunk        = 512 << 10
	maxChunk        = 8 << 20
	formatVersion   = 1
)

// ErrLocked means another process holds the store's write lock.
var ErrLocked = errors.New("store is locked by another process")

// ErrNotStore means the directory holds no Holdfast store.
var ErrNotStore = errors.New("not a Holdfast store")

// Sealer sets the flags that make the kernel protect the store. It can only
// set flags, never clear them. After lockdown it is a separate process that
// alone holds CAP_LINUX_IMMUTABLE and checks every path against the layout.
type Sealer interface {
	// SealFile sets FS_IMMUTABLE_FL on a regular file.
	SealFile(path string) error
	// SealDir sets FS_APPEND_FL on a directory (or on an append-only log file).
	SealDir(path string) error
}

// LocalSealer seals through ioctls in this process.
type LocalSealer struct{}

// SealFile sets FS_IMMUTABLE_FL.
func (LocalSealer) SealFile(path string) error { return fsflag.Set(path, fsflag.Immutable) }

// SealDir sets FS_APPEND_FL.
func (LocalSealer) SealDir(path string) error { return fsflag.Set(path, fsflag.Append) }

// Options configure an opened store.
type Options struct {
	Logger hclog.Logger
	// Clock stamps snapshots and retention records; nil means SystemClock.
	Clock Clock
	// PruneClock is prune's time when PruneOptions.Now is not given (the
	// appliance gives its trusted time T either way); nil means Clock.
	// When it is set, commits do not write the high-water log, and a
	// PruneClock that errs never stops a backup.
	PruneClock Clock
	// Sealer sets inode flags; nil means LocalSealer.
	Sealer Sealer
	// ReadOnly opens without any lock and without recovery; it works on a
	// read-only mount and never blocks a writer. Readers see only committed
	// (sealed) files; a prune running at the same time can make a read fail,
	// never return wrong data.
	ReadOnly bool
	// Signer, when set, signs every committed manifest; the receipt is
	// kept in receipts/.
	Signer ReceiptSigner
	// Hook, when set, is called at every named point of the write path
	// (crash tests kill the process there). Production code leaves it nil.
	Hook func(point string)
	// TempDir is where Verify sorts the IDs of the good chunks it found
	// (32 bytes per chunk, twice at the peak; unnamed files, gone when
	// Verify returns or the process dies: see idset.go). Empty means the
	// store's tmp/ for a read-write store, else os.TempDir(): a read-only
	// store may be on a read-only mount.
	TempDir string
}

// InitOptions configure a new store.
type InitOptions struct {
	PackSize int // target pack size in bytes; 0 means DefaultPackSize
	// RecoveryBlob, if set, is the master key wrapped under the paper
	// recovery key (firmware/recoverykey). It is kept sealed, in clear, in
	// STORE/recovery/wrapped-key, so the disk alone and the paper key open
	// the store on any Linux PC.
	RecoveryBlob []byte

	polynomial chunker.Pol // tests only: Rabin with a fixed polynomial; 0 means keyed FastCDC
}

// Modes of what the store makes. The owner (on the appliance the worker,
// uid and gid 1000) writes; its group reads: the appliance's sealer reads
// a file's magic before sealing it and the export reads everything, each
// as a member of the worker's group, owning nothing of the store. Others
// get nothing. Only the writer takes the lock.
const (
	dirMode  os.FileMode = 0o750
	fileMode os.FileMode = 0o640
	lockMode os.FileMode = 0o600
)

// Config file layout (STORE/holdfast-store), sealed immutable at init:
//
//	| offset | size | field                                                  |
//	|--------|------|--------------------------------------------------------|
//	| 0      | 8    | magic "HOLDFAST"                                       |
//	| 8      | 2    | format version, big endian (1)                         |
//	| 10     | 16   | store ID (random); the HKDF salt                        |
//	| 26     | 4    | length L of the sealed body, big endian                |
//	| 30     | L    | nonce || AES-GCM(meta key, AD = bytes 0..26) of CBOR   |
//	|        |      | storeConfig                                            |
const configMagic = "HOLDFAST"

type storeConfig struct {
	Created    int64  `cbor:"1,keyasint"`
	ChunkerPol uint64 `cbor:"2,keyasint"`
	MinChunk   uint32 `cbor:"3,keyasint"`
	MaxChunk   uint32 `cbor:"4,keyasint"`
	PackSize   uint32 `cbor:"5,keyasint"`
	// Chunker, ChunkerKey and NormalChunk: the chunking table in
	// chunking.go. Absent in stores created before FastCDC (Rabin).
	Chunker     uint8  `cbor:"6,keyasint,omitempty"`
	ChunkerKey  []byte `cbor:"7,keyasint,omitempty"`
	NormalChunk uint32 `cbor:"8,keyasint,omitempty"`
}

// Store is an open store. Its methods are not safe for concurrent use
// except where noted.
type Store struct {
	dir    string
	id     [16]byte
	cfg    storeConfig
	keys   *keys
	codec  codec
	log    hclog.Logger
	clock  Clock
	pclock Clock // prune's clock
	ownPC  bool  // pclock is separate: commits do not record the high-water mark
	sealer Sealer
	hook   func(string)
	signer ReceiptSigner
	ro     bool
	lock   *os.File
	idx    *index
	tmp    string // Options.TempDir
	idRun  int    // IDs Verify sorts in RAM per run; 0 means defaultIDRun (tests set fewer)

	metaReads atomic.Int64 // metadata chunks read by manifest walks (tests)
}

// Init creates a new store in dir, which must not exist or be empty. It
// never touches a directory that holds anything.
//
// ks is a master key (the store gets a random ID) or the StoreKeys of the
// store to make (it gets their ID: the appliance's PID 1 picks the ID and
// derives the subkeys, so the process that makes the store never holds
// the master key).
func Init(ctx context.Context, dir string, ks KeySource, io InitOptions, o Options) (*Store, error) {
	id, err := initID(ks)
	if err != nil {
		return nil, err
	}
	k, err := keysFor(ctx, dir, ks, id, false)
	if err != nil {
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
		return nil, fmt.Errorf("init %s: directory is not empty; refusing to touch it", dir)
	}
	// The probe sets and clears a flag, which needs CAP_LINUX_IMMUTABLE in
	// this process. With a separate sealer (the appliance's worker) the
	// caller probed before handing the directory over, and the sealer's
	// first seal fails on a file system without flags anyway.
	if _, local := o.Sealer.(LocalSealer); o.Sealer == nil || local {
		if err := checkFlagSupport(dir); err != nil {
			return nil, err
		}
	}
	packSize := io.PackSize
	if packSize <= 0 {
		packSize = DefaultPackSize
	}
	cfg := storeConfig{Created: time.Now().UnixNano(), PackSize: uint32(packSize)}
	if err := newChunkerConfig(&cfg, io.polynomial); err != nil {
		return nil, err
	}
	c, err := newCodec()
	if err != nil {
		return nil, err
	}
	body, err := c.marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	hdr := make([]byte, 26, 30)
	copy(hdr, configMagic)
	binary.BigEndian.PutUint16(hdr[8:], formatVersion)
	copy(hdr[10:], id[:])
	sealed := sealTo(nil, k.meta, hdr, body)
	out := binary.BigEndian.AppendUint32(hdr, uint32(len(sealed)))
	out = append(out, sealed...)

	for _, d := range []string{wipDir, tmpDir, indexDir, stateDir, packsDir, snapshotsDir, retentionDir, receiptsDir} {
		if err := os.Mkdir(filepath.Join(dir, d), dirMode); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, lockName), nil, lockMode); err != nil {
		return nil, fmt.Errorf("create lock file: %w", err)
	}
	if len(io.RecoveryBlob) > 0 {
		if err := os.Mkdir(filepath.Join(dir, recoveryDir), dirMode); err != nil {
			return nil, fmt.Errorf("create recovery dir: %w", err)
		}
		tmp := filepath.Join(dir, tmpDir, recoveryName)
		if err := writeFileSync(tmp, io.RecoveryBlob); err != nil {
			return nil, fmt.Errorf("write recovery blob: %w", err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, recoveryDir, recoveryName)); err != nil {
			return nil, fmt.Errorf("install recovery blob: %w", err)
		}
	}
	if err := writeFileSync(filepath.Join(dir, tmpDir, configName), out); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	// The config appears under its final name only once complete.
	if err := os.Rename(filepath.Join(dir, tmpDir, configName), filepath.Join(dir, configName)); err != nil {
		return nil, fmt.Errorf("install config: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	s, err := Open(ctx, dir, ks, o)
	if err != nil {
		return nil, fmt.Errorf("open new store: %w", err)
	}
	return s, nil
}

// Open opens an existing store with a master key or with its StoreKeys
// (refused with a WrongStoreError for a store of another ID). Unless opts.ReadOnly, it takes the write
// lock and recovers from a crash: it empties tmp/, seals files that a crash
// left renamed but unsealed, and restores directory flags.
func Open(ctx context.Context, dir string, ks KeySource, o Options) (*Store, error) {
	raw, err := readStoreFile(filepath.Join(dir, configName), maxConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", dir, ErrNotStore)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(raw) < 30 || string(raw[:8]) != configMagic {
		return nil, fmt.Errorf("open %s: bad config magic: %w", dir, ErrNotStore)
	}
	if v := binary.BigEndian.Uint16(raw[8:]); v != formatVersion {
		return nil, fmt.Errorf("open %s: store format version %d, this build reads %d", dir, v, formatVersion)
	}
	var id [16]byte
	copy(id[:], raw[10:26])
	n := binary.BigEndian.Uint32(raw[26:30])
	if int(n) != len(raw)-30 {
		return nil, fmt.Errorf("open %s: config length: %w", dir, ErrCorrupt)
	}
	k, err := keysFor(ctx, dir, ks, id, o.ReadOnly)
	if err != nil {
		return nil, err
	}
	body, err := openSealed(k.meta, raw[:26], raw[30:])
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, ErrWrongKey)
	}
	c, err := newCodec()
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, id: id, keys: k, codec: c, ro: o.ReadOnly, hook: o.Hook, signer: o.Signer, tmp: o.TempDir}
	if err := c.unmarshal(body, &s.cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if s.cfg.PackSize == 0 {
		return nil, fmt.Errorf("config: bad pack size: %w", ErrCorrupt)
	}
	if err := checkChunkerConfig(s.cfg); err != nil {
		return nil, fmt.Errorf("config: %v: %w", err, ErrCorrupt)
	}
	s.log = o.Logger
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	s.log = s.log.Named("store")
	s.clock = o.Clock
	if s.clock == nil {
		s.clock = SystemClock{}
	}
	s.pclock, s.ownPC = o.PruneClock, o.PruneClock != nil
	if !s.ownPC {
		s.pclock = s.clock
	}
	s.sealer = o.Sealer
	if s.sealer == nil {
		s.sealer = LocalSealer{}
	}
	if !s.ro {
		if err := s.takeLock(); err != nil {
			return nil, err
		}
	}
	if !s.ro {
		if err := s.recover(); err != nil {
			s.Close()
			return nil, fmt.Errorf("recover: %w", err)
		}
	}
	if s.idx, err = s.openIndex(); err != nil {
		s.Close()
		return nil, fmt.Errorf("index: %w", err)
	}
	return s, nil
}

// ReadRecoveryBlob returns the recovery-wrapped master key kept in the store
// at dir. It needs no key: the blob is what the paper recovery key opens.
func ReadRecoveryBlob(dir string) ([]byte, error) {
	b, err := readStoreFile(filepath.Join(dir, recoveryDir, recoveryName), maxRecordFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store %s keeps no recovery blob: %w", dir, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read recovery blob: %w", err)
	}
	return b, nil
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

// ID returns the store ID in hex.
func (s *Store) ID() string { return fmt.Sprintf("%x", s.id) }

// Close closes the index and releases the lock.
func (s *Store) Close() error {
	if s.idx != nil {
		s.idx.close()
	}
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

func (s *Store) takeLock() error {
	f, _, err := openStoreFile(filepath.Join(s.dir, lockName), os.O_RDWR, -1)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return ErrLocked
		}
		return fmt.Errorf("lock: %w", err)
	}
	s.lock = f
	return nil
}

func (s *Store) at(point string) {
	if s.hook != nil {
		s.hook(point)
	}
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// recover brings a store back to a consistent state after a crash. It only
// seals, restores flags and removes files from tmp/; it never removes or
// changes anything in packs/, snapshots/ or retention/.
func (s *Store) recover() error {
	// Directories a crash during init (or an older layout) left missing.
	for _, d := range []string{wipDir, tmpDir, indexDir, stateDir, packsDir, snapshotsDir, retentionDir, receiptsDir} {
		if err := os.Mkdir(s.path(d), dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	// tmp/ is emptied and cut-short cache writes go; entries that will not
	// go are left for CleanForeign and never stop the open.
	if err := scanDir(s.path(tmpDir), func(name string, _ fs.FileMode) error {
		if err := os.RemoveAll(s.path(tmpDir, name)); err != nil {
			s.log.Warn("tmp entry not removed", "name", name, "error", err)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("clean tmp: %w", err)
	}
	if err := scanDir(s.path(indexDir), func(name string, _ fs.FileMode) error {
		if strings.HasPrefix(name, "index-") { // a cache write cut short
			if err := os.RemoveAll(s.path(indexDir, name)); err != nil {
				s.log.Warn("index dir entry not removed", "name", name, "error", err)
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("clean index dir: %w", err)
	}
	if err := s.sealer.SealFile(s.path(configName)); err != nil {
		return fmt.Errorf("seal config: %w", err)
	}
	for _, d := range []string{"", packsDir, snapshotsDir, retentionDir, receiptsDir} {
		if err := s.sealer.SealDir(s.path(d)); err != nil {
			return fmt.Errorf("seal dir: %w", err)
		}
	}
	var shards []string
	if err := scanDir(s.path(packsDir), func(name string, typ fs.FileMode) error {
		if !typ.IsDir() || !isShard(name) {
			s.log.Warn("foreign entry in packs/ skipped", "name", name, "type", typ.String())
			return nil
		}
		shards = append(shards, name)
		return nil
	}); err != nil {
		return fmt.Errorf("read packs: %w", err)
	}
	for _, sh := range shards {
		if err := s.sealer.SealDir(s.path(packsDir, sh)); err != nil {
			return fmt.Errorf("seal shard: %w", err)
		}
		if err := s.sealEntries(path.Join(packsDir, sh), func(name string) bool { return isPackName(name) && strings.HasPrefix(name, sh) }, s.checkPackFile); err != nil {
			return err
		}
	}
	if err := s.sealEntries(snapshotsDir, func(name string) bool {
		id, ok := strings.CutSuffix(name, ".snap")
		return ok && ValidSnapshotID(id)
	}, s.finishManifestSeal); err != nil {
		return err
	}
	if err := s.sealEntries(retentionDir, func(string) bool { return true }, s.checkExtensionFile); err != nil {
		return err
	}
	if fi, err := os.Lstat(s.path(recoveryDir)); err == nil && !fi.IsDir() {
		s.log.Warn("foreign entry named recovery/ skipped: not a directory", "mode", fi.Mode().String())
	} else if err == nil {
		if err := s.sealer.SealDir(s.path(recoveryDir)); err != nil {
			return fmt.Errorf("seal recovery dir: %w", err)
		}
		s.sealIfComplete(s.path(recoveryDir, recoveryName), func(p string) error {
			_, err := readStoreFile(p, maxRecordFile)
			return err
		}, func(msg string, args ...any) { s.log.Warn(msg, args...) })
	}
	// A receipt is renamed into place only once fsynced, so it is whole.
	if err := s.sealEntries(receiptsDir, isReceiptName, func(path string) error {
		_, err := readStoreFile(path, maxRecordFile)
		return err
	}); err != nil {
		return err
	}
	if err := s.recoverJournals(); err != nil {
		return err
	}
	s.issueMissingReceipts()
	return s.openClockLog()
}

// issueMissingReceipts asks the signer, when there is one, for the receipt
// of every sealed manifest that has none: a crash between a commit's
// rename and its receipt, or a commit that recovery completed without a
// signer (the appliance's boot-time open), leaves a snapshot without one,
// and restore refuses a snapshot without a receipt. An unsealed manifest
// (one that failed its check) gets none. Failures are logged: the
// snapshots are committed, and the next open tries again.
func (s *Store) issueMissingReceipts() {
	if s.signer == nil {
		return
	}
	have := map[string]bool{}
	if err := scanDir(s.path(receiptsDir), func(name string, typ fs.FileMode) error {
		if isReceiptName(name) {
			have[name] = true
		}
		return nil
	}); err != nil {
		s.log.Error("missing receipts not issued", "error", err)
		return
	}
	ids, err := s.snapshotIDs()
	if err != nil {
		s.log.Error("missing receipts not issued", "error", err)
		return
	}
	for _, id := range ids {
		if have[id+".receipt"] {
			continue
		}
		if sealed, err := fsflag.Has(s.path(snapshotsDir, id+".snap"), fsflag.Immutable); err != nil || !sealed {
			continue
		}
		if err := s.issueReceipt(context.Background(), id); err != nil {
			s.log.Error("snapshot still has no receipt", "id", id, "error", err)
			continue
		}
		s.log.Warn("receipt issued for a snapshot committed without one (a crash before its receipt)", "id", id)
	}
}

// recoverJournals finishes journals that a crash left complete (only the
// rename was missing) and removes journals torn inside their head frame
// (they record no object and reference no chunk). Other journals stay for
// Resume or Discard.
func (s *Store) recoverJournals() error {
	// Journals are handled as the directory is read, one at a time and
	// streamed frame by frame: neither many journals nor a large one cost
	// memory. A journal that cannot be finished stays for Resume, Discard
	// or CleanForeign; none stops the open.
	err := scanDir(s.path(wipDir), func(name string, typ fs.FileMode) error {
		id, ok := journalID(name)
		if !ok || !typ.IsRegular() {
			return nil
		}
		m, st, err := s.journalSummary(id)
		switch {
		case err != nil && st.frames == 0 && errors.Is(err, io.ErrUnexpectedEOF):
			// Cut inside its header or head frame: it records no object
			// and references no chunk.
			s.log.Info("removing journal torn before its first frame", "id", id)
			if err := os.Remove(s.path(wipDir, name)); err != nil {
				s.log.Warn("torn journal not removed", "id", id, "error", err)
			}
		case err != nil:
			s.log.Warn("unreadable journal left in place", "id", id, "error", err)
		case st.tail:
			s.log.Info("completing commit interrupted before its rename", "id", id)
			if err := s.publishManifest(id); err != nil {
				// Something else holds its name in snapshots/: the journal
				// stays, and its chunks stay live for prune.
				s.log.Warn("complete journal not published; left in wip/", "id", id, "error", err)
				return nil
			}
			if err := s.sealManifest(s.path(snapshotsDir, id+".snap"), m); err != nil {
				s.log.Warn("recovered manifest not sealed; the next open tries again", "id", id, "error", err)
				return nil
			}
			if err := s.issueReceipt(context.Background(), id); err != nil {
				s.log.Error("recovered snapshot has no receipt", "id", id, "error", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read wip: %w", err)
	}
	return nil
}

// journalSummary reads a journal frame by frame without keeping its
// objects.
func (s *Store) journalSummary(id string) (*Manifest, frameStats, error) {
	f, _, err := openStoreFile(s.path(wipDir, id+".journal"), os.O_RDONLY, maxManifestFile)
	if err != nil {
		return nil, frameStats{}, err
	}
	defer f.Close()
	return s.manifestSelf(f, true)
}

// sealEntries runs sealIfComplete on every regular file of dir (relative to
// the store) whose name passes named. Other entries are foreign: they are
// skipped (Verify names them) and never stop an open. Only the first
// maxForeignLogged foreign or unsealable entries of a directory are logged
// one by one.
func (s *Store) sealEntries(dir string, named func(string) bool, check func(string) error) error {
	foreign := 0
	note := func(msg string, args ...any) {
		if foreign++; foreign <= maxForeignLogged {
			s.log.Warn(msg, append([]any{"dir", dir}, args...)...)
		}
	}
	err := scanDir(s.path(dir), func(name string, typ fs.FileMode) error {
		if !typ.IsRegular() || !named(name) {
			note("foreign entry skipped", "name", name, "type", typ.String())
			return nil
		}
		s.sealIfComplete(s.path(dir, name), check, note)
		return nil
	})
	if foreign > maxForeignLogged {
		s.log.Warn("more foreign or unsealable entries skipped, not logged one by one", "dir", dir, "count", foreign-maxForeignLogged)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	return nil
}

// maxForeignLogged bounds the foreign entries an open logs one by one in
// each directory, and CleanForeign in the whole store; Verify and
// CleanForeign count and name them.
const maxForeignLogged = 100

// sealIfComplete seals a file that a crash left renamed into place but not
// yet sealed. check validates it first (and may set xattrs); a file that
// fails its check, is not a regular file, has another name (a hard link) or
// that the sealer refuses is left alone, noted, and reported by Verify.
// Nothing here stops an open.
func (s *Store) sealIfComplete(path string, check func(string) error, note func(msg string, args ...any)) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		note("entry not sealed: cannot stat it", "path", path, "error", err)
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		note("foreign entry not sealed: not a regular file with one name", "path", path, "mode", st.Mode, "links", st.Nlink)
		return
	}
	sealed, err := fsflag.Has(path, fsflag.Immutable)
	if err != nil {
		note("entry not sealed: cannot read its flags", "path", path, "error", err)
		return
	}
	if sealed {
		return
	}
	if err := check(path); err != nil {
		note("unsealed file fails its check; leaving it for verify", "path", path, "error", err)
		return
	}
	s.log.Info("sealing file left unsealed by a crash", "path", path)
	if err := s.sealer.SealFile(path); err != nil {
		// The sealer refuses what is not of the kind its name claims: the
		// file stays unsealed, nothing trusts it, and Verify names it.
		note("file left unsealed: the seal failed", "path", path, "error", err)
	}
}

func isShard(name string) bool {
	if len(name) != 2 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// checkFlagSupport proves the filesystem under dir honours FS_APPEND_FL,
// using a probe directory it then removes.
func checkFlagSupport(dir string) error {
	probe := filepath.Join(dir, ".flag-probe")
	if err := os.Mkdir(probe, dirMode); err != nil {
		return fmt.Errorf("flag probe: %w", err)
	}
	defer os.Remove(probe)
	if err := fsflag.Set(probe, fsflag.Append); err != nil {
		return fmt.Errorf("store needs a filesystem with inode flags (ext4, xfs, btrfs) and CAP_LINUX_IMMUTABLE: %w", err)
	}
	return fsflag.Clear(probe, fsflag.Append)
}

// installSealed writes data to tmp/, fsyncs it, renames it into dir under
// name (never replacing an existing file), fsyncs dir and seals the file.
// A crash at any point leaves either nothing in dir or the whole file,
// which recovery seals if the crash came before the seal.
func (s *Store) installSealed(dir, name string, data []byte) error {
	tmp := s.path(tmpDir, name)
	if err := writeFileSync(tmp, data); err != nil {
		return err
	}
	final := s.path(dir, name)
	if err := renameNoReplace(tmp, final); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncDir(s.path(dir)); err != nil {
		return err
	}
	if err := s.sealer.SealFile(final); err != nil {
		return fmt.Errorf("seal %s: %w", final, err)
	}
	return nil
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
