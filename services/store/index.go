package store

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The chunk index maps chunk IDs to their places in packs. It lives on
// disk, in STORE/index/, as immutable sorted run files; RAM holds only each
// open run's header (about 200 bytes) and the entries of packs sealed since
// the last run was written (at most flushRecords of them on a read-write
// store), so it does not grow with the store. The index is only a cache:
// every entry comes from a pack trailer, it can always be rebuilt from the
// trailers, prune never reads it, and readers check every chunk against its
// AEAD tag and its ID, falling back to the trailers themselves.
//
// Why sorted runs and not an embedded key-value store: the records are
// fixed-size and their keys (HMAC-SHA256 chunk IDs) are uniformly
// distributed, so a run needs no tree: a directory indexed by the top bits
// of the ID points at the one or two pages that can hold an ID (2 page
// reads per run, no fence pointers or filters in RAM). Runs are written
// once, fsynced and renamed (crash-safe by construction, no write-ahead log
// or free list to corrupt), merged like the levels of an LSM tree so there
// are O(log N) of them, and every page is sealed with AES-GCM under the
// meta key, so a damaged or foreign page is detected and its run dropped
// and rebuilt from the trailers. A B-tree store (bbolt, pebble) would bring
// a mutable file the worker rewrites in place, code that must not panic on
// a hostile file, and its own crash recovery, for lookups the runs answer
// in two page reads.
//
// Run file STORE/index/run-<lo>-<hi> (lo, hi: 16 hex digits, the range of
// run sequence numbers it holds; a merge of runs lo..hi is named by the
// whole range, so a crash that leaves the merged run beside its inputs is
// resolved at open by dropping the covered ones):
//
//	| offset  | size          | field                                           |
//	|---------|---------------|-------------------------------------------------|
//	| 0       | 8             | magic "HFIXRUN1"                                |
//	| 8       | 68            | header: nonce(12) || AES-GCM(meta key, AD =     |
//	|         |               | "HFIH" || file name) of 40 bytes: run ID(16) |  |
//	|         |               | N records u64 | K packs u64 | B dir bits u8 |   |
//	|         |               | zero(7)                                         |
//	| 76      | ceil(N/56) x  | record pages, sorted by chunk ID: each          |
//	|         | 4060          | nonce(12) || AES-GCM(meta key, AD = "HFIP" ||   |
//	|         |               | run ID || 'r' || page u64) of 56 records of 72  |
//	|         |               | bytes (last page zero-padded): chunk ID(32) |   |
//	|         |               | pack name(32, raw SHA-256) | offset u32 |       |
//	|         |               | sealed length u32                               |
//	| ...     | ceil(K/128) x | pack pages ('r' -> 'p'): the K pack names this  |
//	|         | 4124          | run indexes, sorted, 32 bytes each              |
//	| ...     | ceil((2^B+1)  | directory pages ('r' -> 'd'): 2^B+1 u64, entry  |
//	|         | /512) x 4124  | j = number of records whose ID's top B bits are |
//	|         |               | < j; the records of bucket j are [e_j, e_j+1)   |
//
// All integers are big endian. The file size must be exactly what N, K and
// B give. A chunk claimed by several packs has a record for each (a trailer
// can lie: readers try each place until one passes the chunk's tag).
//
// Which packs are indexed is the union of the runs' pack lists. Opening the
// store merges them with the pack shards (both in name order, one page per
// run in RAM): a pack no run lists has its trailer read and is indexed; a
// pack a run lists that is no longer on disk (prune removed it) is noted as
// gone, skipped by lookups and left out by merges. A run that fails to read
// is dropped and its packs indexed again. A crash loses at most the run
// being written, whose packs the next open indexes this way.
//
// STORE/index/index, the whole-file cache of the format before runs, is
// never read; prune removes it and names it (it may have been forged).
const (
	runMagic       = "HFIXRUN1"
	runHeaderPlain = 40
	runHeaderSize  = len(runMagic) + sealOverhead + runHeaderPlain // 76
	recSize        = 72
	recsPerPage    = 56
	recPageSize    = recsPerPage*recSize + sealOverhead // 4060
	packsPerPage   = 128
	packPageSize   = packsPerPage*32 + sealOverhead // 4124
	dirPerPage     = 512
	dirPageSize    = dirPerPage*8 + sealOverhead // 4124
	maxDirBits     = 24
	bucketTarget   = 28         // records per directory bucket the writer aims at
	maxRunRecords  = 1 << 40    // a header claiming more is damaged
	maxRunPacks    = 1 << 32    //
	maxRunFile     = 1 << 47    // bound passed to openStoreFile
	legacyIndex    = "index"    // the whole-file cache of the old format
	runTmpPrefix   = "tmp-run-" // a run being written; removed at open
	flushRecords   = 1 << 15    // entries a read-write index keeps in RAM before writing a run (about 3 MiB)
	maxRuns        = 32         // more runs than this are merged whatever their sizes
	maxGone        = 1 << 16    // removed packs the index skips before it merges every run to forget them (2 MiB)
	mergeRatio     = 2          // a run is merged into the one before while that one is at most this many times larger
)

// location is one place a pack's trailer claims a chunk is.
type location struct {
	pack   [32]byte // the pack's name, raw
	offset uint32
	length uint32
}

func (l location) packName() string { return hex.EncodeToString(l.pack[:]) }

// index is the store's chunk index; its methods are safe for concurrent
// use (the writer's finishing goroutine adds packs while readers look up).
type index struct {
	s    *Store
	mu   sync.Mutex
	runs []*run // by lo
	next uint64 // sequence number of the next run

	// Entries not yet in a run: packs sealed since the last flush, and on
	// a read-only store packs no run lists.
	mem      map[ChunkID][]location
	memPacks map[string]bool
	memN     int

	cache   *dirCache
	scratch []byte // one page, for lookups (under mu)

	// Packs some run lists that are no longer on disk (prune removed
	// them): lookups skip them and merges leave them out. Found again by
	// every open's walk, so never written down; more than maxGone make
	// the next flush merge every run.
	gone map[[32]byte]bool

	// A read-only open walks the packs (catchUp) at its first lookup, not
	// at open: an open only to list snapshots or read the ID costs no walk.
	walk sync.Once

	rebuilt bool // a read-write index was rebuilt after a failed read
	lagging bool // a run was dropped since the last catch-up: its packs are unindexed
}

// run is one open run file.
type run struct {
	name   string
	lo, hi uint64
	f      *os.File
	id     [16]byte
	n, k   uint64
	bits   uint8
	packAt int64 // offset of the pack pages
	dirAt  int64 // offset of the directory pages
}

var errRunDamaged = errors.New("index run damaged")

func runName(lo, hi uint64) string { return fmt.Sprintf("run-%016x-%016x", lo, hi) }

// parseRunName returns the range of a run file name.
func parseRunName(name string) (lo, hi uint64, ok bool) {
	rest, ok := strings.CutPrefix(name, "run-")
	if !ok || len(rest) != 33 || rest[16] != '-' {
		return 0, 0, false
	}
	a, b := rest[:16], rest[17:]
	for _, s := range []string{a, b} {
		for _, c := range []byte(s) {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return 0, 0, false
			}
		}
	}
	lo, _ = strconv.ParseUint(a, 16, 64)
	hi, _ = strconv.ParseUint(b, 16, 64)
	return lo, hi, lo <= hi
}

func pagesOf(n, per uint64) uint64 { return (n + per - 1) / per }

func runSize(n, k uint64, bits uint8) int64 {
	return int64(runHeaderSize) + int64(pagesOf(n, recsPerPage))*recPageSize +
		int64(pagesOf(k, packsPerPage))*packPageSize + int64(pagesOf(1<<bits+1, dirPerPage))*dirPageSize
}

func headerAD(name string) []byte { return append([]byte("HFIH"), name...) }

func pageAD(id [16]byte, section byte, page uint64) []byte {
	ad := append([]byte("HFIP"), id[:]...)
	ad = append(ad, section)
	return binary.BigEndian.AppendUint64(ad, page)
}

// openRun opens a run file as hostile input and checks its header and
// size. Pages are checked as they are read.
func (s *Store) openRun(name string) (*run, error) {
	lo, hi, ok := parseRunName(name)
	if !ok {
		return nil, fmt.Errorf("index run name %q: %w", name, errRunDamaged)
	}
	f, size, err := openStoreFile(s.path(indexDir, name), os.O_RDONLY, maxRunFile)
	if err != nil {
		return nil, err
	}
	r := &run{name: name, lo: lo, hi: hi, f: f}
	if err := r.readHeader(s.keys.meta, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("index run %s: %w", name, err)
	}
	return r, nil
}

func (r *run) readHeader(aead cipher.AEAD, size int64) error {
	var hdr [runHeaderSize]byte
	if size < int64(runHeaderSize) {
		return fmt.Errorf("%d bytes: %w", size, errRunDamaged)
	}
	if _, err := r.f.ReadAt(hdr[:], 0); err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	if string(hdr[:len(runMagic)]) != runMagic {
		return fmt.Errorf("magic: %w", errRunDamaged)
	}
	plain, err := openSealed(aead, headerAD(r.name), hdr[len(runMagic):])
	if err != nil || len(plain) != runHeaderPlain {
		return fmt.Errorf("header fails its tag: %w", errRunDamaged)
	}
	copy(r.id[:], plain)
	r.n = binary.BigEndian.Uint64(plain[16:])
	r.k = binary.BigEndian.Uint64(plain[24:])
	r.bits = plain[32]
	if r.n > maxRunRecords || r.k > maxRunPacks || r.bits > maxDirBits {
		return fmt.Errorf("header out of bounds: %w", errRunDamaged)
	}
	if want := runSize(r.n, r.k, r.bits); size != want {
		return fmt.Errorf("%d bytes, its header says %d: %w", size, want, errRunDamaged)
	}
	r.packAt = int64(runHeaderSize) + int64(pagesOf(r.n, recsPerPage))*recPageSize
	r.dirAt = r.packAt + int64(pagesOf(r.k, packsPerPage))*packPageSize
	return nil
}

// page reads and opens page p of a section into buf, returning the plaintext.
func (r *run) page(aead cipher.AEAD, section byte, p uint64, buf []byte) ([]byte, error) {
	var at int64
	var size int
	switch section {
	case 'r':
		at, size = int64(runHeaderSize)+int64(p)*recPageSize, recPageSize
	case 'p':
		at, size = r.packAt+int64(p)*packPageSize, packPageSize
	default:
		at, size = r.dirAt+int64(p)*dirPageSize, dirPageSize
	}
	buf = buf[:size]
	if _, err := r.f.ReadAt(buf, at); err != nil {
		return nil, fmt.Errorf("index run %s: read page: %w", r.name, err)
	}
	plain, err := openInPlace(aead, pageAD(r.id, section, p), buf)
	if err != nil {
		return nil, fmt.Errorf("index run %s: page %c%d fails its tag: %w", r.name, section, p, errRunDamaged)
	}
	return plain, nil
}

// dirCache keeps opened directory pages, the pages every lookup reads
// first, in a fixed budget: dirCacheSlots slots, direct-mapped by run ID
// and page number, each allocated when first used (at most about 4 MiB).
// A run's ID is random and its pages never change, so an entry is never
// stale.
type dirCache struct {
	slots [dirCacheSlots]*dirSlot
}

type dirSlot struct {
	run   [16]byte
	no    uint64
	plain [dirPerPage * 8]byte
}

const dirCacheSlots = 1024

// pageReader reads the pages of one run, keeping the last one.
type pageReader struct {
	r       *run
	aead    cipher.AEAD
	section byte
	cache   *dirCache // directory pages only; may be nil
	no      uint64
	ok      bool
	buf     []byte
	plain   []byte
}

func (pr *pageReader) get(p uint64) ([]byte, error) {
	if pr.ok && pr.no == p {
		return pr.plain, nil
	}
	var slot **dirSlot
	if pr.cache != nil && pr.section == 'd' {
		slot = &pr.cache.slots[(binary.BigEndian.Uint64(pr.r.id[:])+p)%dirCacheSlots]
		if c := *slot; c != nil && c.run == pr.r.id && c.no == p {
			pr.no, pr.ok, pr.plain = p, true, c.plain[:]
			return pr.plain, nil
		}
	}
	if pr.buf == nil {
		pr.buf = make([]byte, max(recPageSize, packPageSize, dirPageSize))
	}
	plain, err := pr.r.page(pr.aead, pr.section, p, pr.buf)
	if err != nil {
		pr.ok = false
		return nil, err
	}
	pr.no, pr.ok, pr.plain = p, true, plain
	if slot != nil {
		if *slot == nil {
			*slot = new(dirSlot)
		}
		(*slot).run, (*slot).no = pr.r.id, p
		copy((*slot).plain[:], plain)
	}
	return plain, nil
}

// record returns record i.
func (pr *pageReader) record(i uint64) ([]byte, error) {
	plain, err := pr.get(i / recsPerPage)
	if err != nil {
		return nil, err
	}
	o := (i % recsPerPage) * recSize
	return plain[o : o+recSize], nil
}

// packAt returns the name of pack i.
func (pr *pageReader) packName(i uint64) ([]byte, error) {
	plain, err := pr.get(i / packsPerPage)
	if err != nil {
		return nil, err
	}
	o := (i % packsPerPage) * 32
	return plain[o : o+32], nil
}

func (pr *pageReader) dirEntry(j uint64) (uint64, error) {
	plain, err := pr.get(j / dirPerPage)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(plain[(j%dirPerPage)*8:]), nil
}

func bucketOf(id []byte, bits uint8) uint64 {
	if bits == 0 {
		return 0
	}
	return binary.BigEndian.Uint64(id[:8]) >> (64 - bits)
}

func recordLocation(rec []byte) location {
	var l location
	copy(l.pack[:], rec[32:64])
	l.offset = binary.BigEndian.Uint32(rec[64:])
	l.length = binary.BigEndian.Uint32(rec[68:])
	return l
}

// lookup appends every place this run records for id. buf is scratch
// space for one page.
func (r *run) lookup(aead cipher.AEAD, cache *dirCache, buf []byte, id ChunkID, out []location) ([]location, error) {
	j := bucketOf(id[:], r.bits)
	dir := pageReader{r: r, aead: aead, section: 'd', cache: cache, buf: buf}
	from, err := dir.dirEntry(j)
	if err != nil {
		return out, err
	}
	to, err := dir.dirEntry(j + 1)
	if err != nil {
		return out, err
	}
	if from > to || to > r.n {
		return out, fmt.Errorf("index run %s: directory entry %d out of order: %w", r.name, j, errRunDamaged)
	}
	recs := pageReader{r: r, aead: aead, section: 'r', buf: buf}
	for i := from; i < to; i++ {
		rec, err := recs.record(i)
		if err != nil {
			return out, err
		}
		switch bytes.Compare(rec[:32], id[:]) {
		case 0:
			out = append(out, recordLocation(rec))
		case 1:
			return out, nil
		}
	}
	return out, nil
}

// runWriter writes one run: records in ID order, then pack names in name
// order, then finish. It holds one page of each section in RAM; the
// directory goes to a second temporary file, appended at the end.
type runWriter struct {
	s       *Store
	f, dirF *os.File
	w, dirW *bufio.Writer
	id      [16]byte
	bits    uint8
	n, k    uint64
	page    []byte // plaintext of the page being filled
	sealed  []byte
	section byte
	pageNo  uint64
	dirBuf  []byte
	dirNo   uint64
	dirNext uint64 // next directory entry to emit
	last    [recSize]byte
	lastPk  [32]byte
}

// newRunWriter starts a run of at most about est records.
func (s *Store) newRunWriter(est uint64) (*runWriter, error) {
	w := &runWriter{s: s, section: 'r', page: make([]byte, 0, packsPerPage*32), sealed: make([]byte, 0, packPageSize)}
	for w.bits < maxDirBits && uint64(1)<<w.bits*bucketTarget < est {
		w.bits++
	}
	if _, err := rand.Read(w.id[:]); err != nil {
		return nil, fmt.Errorf("index run id: %w", err)
	}
	var err error
	if w.f, err = os.CreateTemp(s.path(indexDir), runTmpPrefix+"*"); err != nil {
		return nil, fmt.Errorf("index run: %w", err)
	}
	if w.dirF, err = os.CreateTemp(s.path(indexDir), runTmpPrefix+"*"); err != nil {
		w.abort()
		return nil, fmt.Errorf("index run: %w", err)
	}
	// Group-readable like every store file (the export reads the
	// store through the worker's group); CreateTemp makes them 0600.
	for _, f := range []*os.File{w.f, w.dirF} {
		if err := f.Chmod(fileMode); err != nil {
			w.abort()
			return nil, fmt.Errorf("index run: %w", err)
		}
	}
	w.w, w.dirW = bufio.NewWriterSize(w.f, 64<<10), bufio.NewWriterSize(w.dirF, 16<<10)
	if _, err := w.w.Write(make([]byte, runHeaderSize)); err != nil {
		w.abort()
		return nil, fmt.Errorf("index run: %w", err)
	}
	return w, nil
}

func (w *runWriter) abort() {
	for _, f := range []*os.File{w.f, w.dirF} {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
}

// flushPage seals the page being filled, zero-padded to per entries of size.
func (w *runWriter) flushPage(per, size int) error {
	if len(w.page) == 0 {
		return nil
	}
	w.page = append(w.page, make([]byte, per*size-len(w.page))...)
	w.sealed = sealTo(w.sealed[:0], w.s.keys.meta, pageAD(w.id, w.section, w.pageNo), w.page)
	w.page = w.page[:0]
	w.pageNo++
	_, err := w.w.Write(w.sealed)
	return err
}

func (w *runWriter) emitDir(v uint64) error {
	w.dirBuf = binary.BigEndian.AppendUint64(w.dirBuf, v)
	if len(w.dirBuf) < dirPerPage*8 {
		return nil
	}
	return w.flushDir()
}

func (w *runWriter) flushDir() error {
	if len(w.dirBuf) == 0 {
		return nil
	}
	w.dirBuf = append(w.dirBuf, make([]byte, dirPerPage*8-len(w.dirBuf))...)
	out := sealTo(nil, w.s.keys.meta, pageAD(w.id, 'd', w.dirNo), w.dirBuf)
	w.dirBuf = w.dirBuf[:0]
	w.dirNo++
	_, err := w.dirW.Write(out)
	return err
}

// add appends one record; records come in ID order, and an exact
// duplicate of the previous one is dropped.
func (w *runWriter) add(rec []byte) error {
	if w.section != 'r' {
		return errors.New("index run: record after the pack list")
	}
	if w.n > 0 {
		switch c := bytes.Compare(rec[:32], w.last[:32]); {
		case c < 0:
			return errors.New("index run: records out of order")
		case c == 0 && bytes.Equal(rec, w.last[:]):
			return nil
		}
	}
	copy(w.last[:], rec)
	for b := bucketOf(rec, w.bits); w.dirNext <= b; w.dirNext++ {
		if err := w.emitDir(w.n); err != nil {
			return err
		}
	}
	w.page = append(w.page, rec...)
	w.n++
	if len(w.page) == recsPerPage*recSize {
		return w.flushPage(recsPerPage, recSize)
	}
	return nil
}

// addPack appends one pack name; names come in order, duplicates dropped.
func (w *runWriter) addPack(name [32]byte) error {
	if w.section == 'r' {
		if err := w.flushPage(recsPerPage, recSize); err != nil {
			return err
		}
		w.section, w.pageNo = 'p', 0
	}
	if w.k > 0 {
		switch c := bytes.Compare(name[:], w.lastPk[:]); {
		case c < 0:
			return errors.New("index run: packs out of order")
		case c == 0:
			return nil
		}
	}
	w.lastPk = name
	w.page = append(w.page, name[:]...)
	w.k++
	if len(w.page) == packsPerPage*32 {
		return w.flushPage(packsPerPage, 32)
	}
	return nil
}

// finish completes the run and publishes it as run-<lo>-<hi>: written to a
// temporary file, fsynced, renamed, the directory fsynced.
func (w *runWriter) finish(lo, hi uint64) (*run, error) {
	r, err := w.finishFile(lo, hi)
	if err != nil {
		w.abort()
		return nil, fmt.Errorf("index run: %w", err)
	}
	return r, nil
}

func (w *runWriter) finishFile(lo, hi uint64) (*run, error) {
	if w.section == 'r' {
		if err := w.flushPage(recsPerPage, recSize); err != nil {
			return nil, err
		}
		w.section, w.pageNo = 'p', 0
	}
	if err := w.flushPage(packsPerPage, 32); err != nil {
		return nil, err
	}
	for ; w.dirNext <= 1<<w.bits; w.dirNext++ {
		if err := w.emitDir(w.n); err != nil {
			return nil, err
		}
	}
	if err := w.flushDir(); err != nil {
		return nil, err
	}
	if err := w.dirW.Flush(); err != nil {
		return nil, err
	}
	if _, err := w.dirF.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if _, err := io.Copy(w.w, w.dirF); err != nil {
		return nil, err
	}
	if err := w.w.Flush(); err != nil {
		return nil, err
	}
	name := runName(lo, hi)
	plain := make([]byte, runHeaderPlain)
	copy(plain, w.id[:])
	binary.BigEndian.PutUint64(plain[16:], w.n)
	binary.BigEndian.PutUint64(plain[24:], w.k)
	plain[32] = w.bits
	hdr := sealTo([]byte(runMagic), w.s.keys.meta, headerAD(name), plain)
	if _, err := w.f.WriteAt(hdr, 0); err != nil {
		return nil, err
	}
	if err := w.f.Sync(); err != nil {
		return nil, err
	}
	w.dirF.Close()
	os.Remove(w.dirF.Name())
	w.dirF = nil
	final := w.s.path(indexDir, name)
	if err := os.Rename(w.f.Name(), final); err != nil {
		return nil, err
	}
	w.f.Close()
	w.f = nil
	if err := syncDir(w.s.path(indexDir)); err != nil {
		return nil, err
	}
	return w.s.openRun(name)
}

// openIndex opens the runs in STORE/index and indexes every pack they do
// not list.
func (s *Store) openIndex() (*index, error) {
	ix := &index{s: s, mem: map[ChunkID][]location{}, memPacks: map[string]bool{}, gone: map[[32]byte]bool{},
		cache: &dirCache{}, scratch: make([]byte, max(recPageSize, packPageSize, dirPageSize))}
	var names []string
	err := scanDir(s.path(indexDir), func(name string, typ fs.FileMode) error {
		if _, _, ok := parseRunName(name); ok && typ.IsRegular() {
			names = append(names, name)
		} else if !s.ro && strings.HasPrefix(name, runTmpPrefix) { // a run write cut short
			if err := os.Remove(s.path(indexDir, name)); err != nil {
				s.log.Warn("index dir entry not removed", "name", name, "error", err)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read index dir: %w", err)
	}
	for _, name := range names {
		r, err := s.openRun(name)
		if err != nil {
			s.log.Warn("index run unreadable; its packs are indexed again from their trailers", "run", name, "error", err)
			ix.removeRunFile(name)
			continue
		}
		ix.runs = append(ix.runs, r)
	}
	ix.sortRuns()
	ix.dropCovered()
	for _, r := range ix.runs {
		ix.next = max(ix.next, r.hi+1)
	}
	if s.ro {
		return ix, nil
	}
	ix.walk.Do(func() {}) // done here and now
	if err := ix.catchUp(); err != nil {
		ix.close()
		return nil, err
	}
	return ix, nil
}

// walked makes sure a read-only index has walked the packs once.
func (ix *index) walked() {
	ix.walk.Do(func() {
		if err := ix.catchUp(); err != nil {
			ix.s.log.Warn("packs not walked; the index may miss chunks, readers fall back to the trailers", "error", err)
		}
	})
}

func (ix *index) sortRuns() {
	slices.SortFunc(ix.runs, func(a, b *run) int { return cmp.Or(cmp.Compare(a.lo, b.lo), cmp.Compare(b.hi, a.hi)) })
}

// dropCovered drops runs whose range another run covers: the inputs of a
// merge that a crash left beside its output.
func (ix *index) dropCovered() {
	var kept []*run
	for _, r := range ix.runs {
		if n := len(kept); n > 0 && kept[n-1].hi >= r.hi {
			ix.s.log.Info("index run covered by a merged run removed", "run", r.name, "by", kept[n-1].name)
			r.f.Close()
			ix.removeRunFile(r.name)
			continue
		}
		kept = append(kept, r)
	}
	ix.runs = kept
}

func (ix *index) removeRunFile(name string) {
	if ix.s.ro {
		return
	}
	if err := os.Remove(ix.s.path(indexDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		ix.s.log.Warn("index run not removed", "run", name, "error", err)
	}
}

// close closes the run files.
func (ix *index) close() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, r := range ix.runs {
		r.f.Close()
	}
	ix.runs = nil
}

// dropRuns closes and removes runs (on a read-write store).
func (ix *index) dropRuns(drop map[*run]bool) {
	var kept []*run
	for _, r := range ix.runs {
		if drop[r] {
			r.f.Close()
			ix.removeRunFile(r.name)
			continue
		}
		kept = append(kept, r)
	}
	ix.runs = kept
}

// catchUp indexes every pack on disk that no run lists (on a read-only
// store at the first lookup, see walked), notes the packs
// runs list that are no longer on disk (lookups skip them) and drops every
// run that fails to read (its packs are then indexed again). ix.mu must not
// be held.
func (ix *index) catchUp() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	clear(ix.gone)
	// A second pass indexes the other packs of the runs the first dropped.
	for range 2 {
		stale, err := ix.scanPacks()
		if err != nil {
			return err
		}
		if len(stale) == 0 {
			break
		}
		for r := range stale {
			ix.s.log.Warn("index run fails to read; dropped, its packs are indexed again", "run", r.name)
		}
		ix.dropRuns(stale)
	}
	ix.lagging = false
	return ix.flushLocked(0)
}

// scanPacks walks the packs on disk in name order beside the pack lists of
// the runs, indexing unlisted packs into mem (and flushing on a read-write
// store) and recording in ix.gone the packs runs list that are no longer
// on disk. It returns the runs that fail to read.
func (ix *index) scanPacks() (map[*run]bool, error) {
	stale := map[*run]bool{}
	type cursor struct {
		pr pageReader
		i  uint64
	}
	// Runs written during the walk (every flushRecords entries) are merged
	// among themselves only, never with the runs the cursors read.
	walked := len(ix.runs)
	curs := make([]*cursor, len(ix.runs))
	for n, r := range ix.runs {
		curs[n] = &cursor{pr: pageReader{r: r, aead: ix.s.keys.meta, section: 'p'}}
	}
	err := ix.s.eachPack(func(name string) error {
		raw, err := hex.DecodeString(name)
		if err != nil {
			return nil
		}
		indexed := ix.memPacks[name]
		for _, c := range curs {
			if stale[c.pr.r] {
				continue
			}
			for c.i < c.pr.r.k {
				p, err := c.pr.packName(c.i)
				if err != nil {
					ix.s.log.Warn("index run unreadable; dropped", "run", c.pr.r.name, "error", err)
					stale[c.pr.r] = true
					break
				}
				cmp := bytes.Compare(p, raw)
				if cmp > 0 {
					break
				}
				c.i++
				if cmp == 0 {
					indexed = true
					break
				}
				ix.markGone(p) // a pack it lists is gone
			}
		}
		if indexed {
			return nil
		}
		es, _, err := ix.s.packEntries(name)
		if err != nil {
			// A damaged pack is reported by Verify; its chunks are absent.
			ix.s.log.Warn("pack trailer unreadable; its chunks are not indexed", "pack", name, "error", err)
			return nil
		}
		ix.addMem(name, es)
		if !ix.s.ro && ix.memN >= flushRecords {
			return ix.flushLocked(walked)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, c := range curs {
		for ; !stale[c.pr.r] && c.i < c.pr.r.k; c.i++ {
			p, err := c.pr.packName(c.i)
			if err != nil {
				ix.s.log.Warn("index run unreadable; dropped", "run", c.pr.r.name, "error", err)
				stale[c.pr.r] = true
				break
			}
			ix.markGone(p)
		}
	}
	return stale, nil
}

// markGone records that a pack some run lists is no longer on disk.
func (ix *index) markGone(p []byte) {
	var pk [32]byte
	copy(pk[:], p)
	ix.gone[pk] = true
}

// eachPack calls fn with the name of every regular file named like a pack,
// in name order, holding one shard's names at a time. Other entries are
// skipped (Verify reports them).
func (s *Store) eachPack(fn func(name string) error) error {
	for _, sh := range shardNames() {
		var names []string
		err := scanDir(s.path(packsDir, sh), func(name string, typ fs.FileMode) error {
			if typ.IsRegular() && isPackName(name) && strings.HasPrefix(name, sh) {
				names = append(names, name)
			}
			return nil
		})
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			s.log.Warn("pack shard unreadable; its packs are skipped", "shard", sh, "error", err)
		}
		sort.Strings(names)
		for _, n := range names {
			if err := fn(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// listPacks returns the names of every pack, in name order.
func (s *Store) listPacks() ([]string, error) {
	var names []string
	err := s.eachPack(func(n string) error { names = append(names, n); return nil })
	return names, err
}

// shardNames returns "00" to "ff".
func shardNames() []string {
	out := make([]string, 0, 256)
	for i := range 256 {
		out = append(out, fmt.Sprintf("%02x", i))
	}
	return out
}

func isPackName(n string) bool {
	if len(n) != 64 {
		return false
	}
	for _, c := range []byte(n) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (ix *index) addMem(name string, es []packEntry) {
	var pk [32]byte
	if _, err := hex.Decode(pk[:], []byte(name)); err != nil || ix.memPacks[name] {
		return
	}
	ix.memPacks[name] = true
	for _, e := range es {
		ix.mem[e.id] = append(ix.mem[e.id], location{pack: pk, offset: e.offset, length: e.length})
		ix.memN++
	}
}

// records is how many entries the index holds, in runs and in memory: at
// least the number of distinct chunks it knows (a chunk stored twice
// counts twice).
func (ix *index) records() uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := uint64(ix.memN)
	for _, r := range ix.runs {
		n += r.n
	}
	return n
}

// addPack indexes a pack just sealed (or copied in). On a read-write store
// its entries are written as a run once enough have gathered.
func (ix *index) addPack(name string, es []packEntry) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.addMem(name, es)
	if !ix.s.ro && ix.memN >= flushRecords {
		if err := ix.flushLocked(0); err != nil {
			ix.s.log.Warn("index run not written; the entries stay in memory", "error", err)
		}
	}
}

// flush writes the entries in memory as a run and merges runs; when a run
// was dropped since the last catch-up (it failed to read), the packs it
// listed are indexed again first.
func (ix *index) flush() error {
	ix.mu.Lock()
	lagging := ix.lagging && !ix.s.ro
	if !lagging {
		defer ix.mu.Unlock()
		return ix.flushLocked(0)
	}
	ix.mu.Unlock()
	return ix.catchUp()
}

// flushLocked writes the entries in memory as a run, then merges the last
// two runs while the older is at most mergeRatio times the newer (or there
// are more than maxRuns), never touching the runs before ix.runs[from].
func (ix *index) flushLocked(from int) error {
	if ix.s.ro {
		return nil
	}
	if len(ix.memPacks) > 0 {
		ids := make([]ChunkID, 0, len(ix.mem))
		for id := range ix.mem {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b ChunkID) int { return bytes.Compare(a[:], b[:]) })
		packs := make([]string, 0, len(ix.memPacks))
		for p := range ix.memPacks {
			packs = append(packs, p)
		}
		sort.Strings(packs)
		w, err := ix.s.newRunWriter(uint64(ix.memN))
		if err != nil {
			return err
		}
		rec := make([]byte, recSize)
		for _, id := range ids {
			locs := ix.mem[id]
			slices.SortFunc(locs, compareLocations)
			for _, l := range locs {
				fillRecord(rec, id, l)
				if err := w.add(rec); err != nil {
					w.abort()
					return fmt.Errorf("index run: %w", err)
				}
			}
		}
		for _, p := range packs {
			var pk [32]byte
			hex.Decode(pk[:], []byte(p))
			if err := w.addPack(pk); err != nil {
				w.abort()
				return fmt.Errorf("index run: %w", err)
			}
		}
		r, err := w.finish(ix.next, ix.next)
		if err != nil {
			return err
		}
		ix.next++
		ix.runs = append(ix.runs, r)
		ix.mem, ix.memPacks, ix.memN = map[ChunkID][]location{}, map[string]bool{}, 0
	}
	all := from == 0 && len(ix.gone) > maxGone
	for n := len(ix.runs); n-2 >= from && (all || ix.runs[n-2].n <= mergeRatio*ix.runs[n-1].n || n > maxRuns); n = len(ix.runs) {
		if err := ix.mergeLast(); err != nil {
			return err
		}
	}
	if all && len(ix.runs) <= 1 {
		// Every run went through a merge, which leaves removed packs out
		// (a single run is merged with nothing: rare, it stays noted).
		clear(ix.gone)
	}
	return nil
}

func compareLocations(a, b location) int {
	return cmp.Or(bytes.Compare(a.pack[:], b.pack[:]), cmp.Compare(a.offset, b.offset), cmp.Compare(a.length, b.length))
}

func fillRecord(rec []byte, id ChunkID, l location) {
	copy(rec, id[:])
	copy(rec[32:], l.pack[:])
	binary.BigEndian.PutUint32(rec[64:], l.offset)
	binary.BigEndian.PutUint32(rec[68:], l.length)
}

// mergeLast merges the last two runs into one, streaming: one page of each
// in RAM. A run that fails to read is dropped instead (its packs are then
// indexed again at the next catch-up).
func (ix *index) mergeLast() error {
	n := len(ix.runs)
	a, b := ix.runs[n-2], ix.runs[n-1]
	w, err := ix.s.newRunWriter(a.n + b.n)
	if err != nil {
		return err
	}
	bad, err := mergeInto(w, ix.s.keys.meta, a, b, ix.gone)
	if err != nil {
		w.abort()
		if bad != nil {
			ix.s.log.Warn("index run unreadable; dropped, its packs are indexed again at the next open", "run", bad.name, "error", err)
			ix.dropRuns(map[*run]bool{bad: true})
			ix.lagging = true
			return nil
		}
		return err
	}
	r, err := w.finish(a.lo, b.hi)
	if err != nil {
		return err
	}
	ix.dropRuns(map[*run]bool{a: true, b: true})
	ix.runs = append(ix.runs, r)
	ix.sortRuns()
	return nil
}

// mergeInto writes the records and packs of a and b into w, leaving out
// the packs in gone. When a page fails to read it returns the run at
// fault.
func mergeInto(w *runWriter, aead cipher.AEAD, a, b *run, gone map[[32]byte]bool) (*run, error) {
	isGone := func(p []byte) bool { return len(gone) > 0 && gone[[32]byte(p)] }
	ra, rb := pageReader{r: a, aead: aead, section: 'r'}, pageReader{r: b, aead: aead, section: 'r'}
	var i, j uint64
	for i < a.n || j < b.n {
		var x, y []byte
		var err error
		if i < a.n {
			if x, err = ra.record(i); err != nil {
				return a, err
			}
		}
		if j < b.n {
			if y, err = rb.record(j); err != nil {
				return b, err
			}
		}
		rec := y
		if y == nil || x != nil && bytes.Compare(x, y) <= 0 {
			rec, i = x, i+1
		} else {
			j++
		}
		if isGone(rec[32:64]) {
			continue
		}
		if err := w.add(rec); err != nil {
			return nil, err
		}
	}
	pa, pb := pageReader{r: a, aead: aead, section: 'p'}, pageReader{r: b, aead: aead, section: 'p'}
	i, j = 0, 0
	for i < a.k || j < b.k {
		var x, y []byte
		var err error
		if i < a.k {
			if x, err = pa.packName(i); err != nil {
				return a, err
			}
		}
		if j < b.k {
			if y, err = pb.packName(j); err != nil {
				return b, err
			}
		}
		var pk [32]byte
		if y == nil || x != nil && bytes.Compare(x, y) <= 0 {
			copy(pk[:], x)
			i++
		} else {
			copy(pk[:], y)
			j++
		}
		if isGone(pk[:]) {
			continue
		}
		if err := w.addPack(pk); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// locations returns every place a pack's trailer claims id. A run that
// fails to read is dropped (its packs are indexed again by the next
// catch-up), so a damaged index costs only lookups that miss.
func (ix *index) locations(id ChunkID) []location { return ix.find(id, false) }

// has reports whether some pack's trailer claims id (the writer's dedup
// lookup). It stops at the first run that holds id, oldest first: the
// oldest runs are the largest.
func (ix *index) has(id ChunkID) bool { return len(ix.find(id, true)) > 0 }

func (ix *index) find(id ChunkID, first bool) []location {
	ix.walked()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	live := func(l location) bool { return !ix.gone[l.pack] }
	out := slices.Clone(ix.mem[id])
	if first && slices.ContainsFunc(out, live) {
		return out
	}
	var bad map[*run]bool
	for _, r := range ix.runs {
		var err error
		if out, err = r.lookup(ix.s.keys.meta, ix.cache, ix.scratch, id, out); err != nil {
			ix.s.log.Warn("index run unreadable; dropped", "run", r.name, "error", err)
			if bad == nil {
				bad = map[*run]bool{}
			}
			bad[r] = true
		}
		if first && slices.ContainsFunc(out, live) {
			break
		}
	}
	if bad != nil {
		ix.dropRuns(bad)
		ix.lagging = true
	}
	if len(ix.gone) > 0 {
		out = slices.DeleteFunc(out, func(l location) bool { return !live(l) })
	}
	return out
}

// markRebuilt reports whether a reader may still rebuild this index after
// a failed read (once per open store), and uses that chance up.
func (ix *index) markRebuilt() bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ok := !ix.rebuilt
	ix.rebuilt = true
	return ok
}

// packRecords returns what the index records for one pack, scanning every
// run (Verify's fallback when a pack's trailer does not read).
func (ix *index) packRecords(name string) []packEntry {
	ix.walked()
	var pk [32]byte
	if _, err := hex.Decode(pk[:], []byte(name)); err != nil {
		return nil
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var out []packEntry
	for id, locs := range ix.mem {
		for _, l := range locs {
			if l.pack == pk {
				out = append(out, packEntry{id: id, offset: l.offset, length: l.length})
			}
		}
	}
	for _, r := range ix.runs {
		pr := pageReader{r: r, aead: ix.s.keys.meta, section: 'r'}
		for i := uint64(0); i < r.n; i++ {
			rec, err := pr.record(i)
			if err != nil {
				break
			}
			if bytes.Equal(rec[32:64], pk[:]) {
				l := recordLocation(rec)
				var e packEntry
				copy(e.id[:], rec)
				e.offset, e.length = l.offset, l.length
				out = append(out, e)
			}
		}
	}
	return out
}

// rebuild drops every run and indexes every pack from its trailer.
func (ix *index) rebuild() error {
	ix.walk.Do(func() {})
	ix.mu.Lock()
	all := map[*run]bool{}
	for _, r := range ix.runs {
		all[r] = true
	}
	ix.dropRuns(all)
	ix.mem, ix.memPacks, ix.memN = map[ChunkID][]location{}, map[string]bool{}, 0
	ix.mu.Unlock()
	return ix.catchUp()
}

// trailerLocations finds id by reading every pack's trailer: the reader's
// last resort when the index does not lead to it. RAM: one trailer.
func (s *Store) trailerLocations(id ChunkID) []location {
	var out []location
	s.eachPack(func(name string) error {
		es, _, err := s.packEntries(name)
		if err != nil {
			return nil
		}
		for _, e := range es {
			if e.id == id {
				var l location
				hex.Decode(l.pack[:], []byte(name))
				l.offset, l.length = e.offset, e.length
				out = append(out, l)
			}
		}
		return nil
	})
	return out
}

// RebuildIndex rebuilds the index from pack trailers alone, ignoring the
// runs on disk.
func (s *Store) RebuildIndex() error {
	if err := s.idx.rebuild(); err != nil {
		return fmt.Errorf("rebuild index: %w", err)
	}
	return nil
}

// packEntries reads the trailer of a pack from the pack file itself,
// opened as hostile input, and says whether the file is sealed.
func (s *Store) packEntries(name string) (es []packEntry, sealed bool, err error) {
	f, size, err := openStoreFile(s.packPath(name), os.O_RDONLY, s.maxPackFile())
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	if sealed, err = isSealedFile(f); err != nil {
		return nil, false, err
	}
	es, err = s.readTrailer(f, size)
	return es, sealed, err
}

// saveIndex writes the entries gathered in memory as a run (after a
// commit, a prune, a mirror sync).
func (s *Store) saveIndex() error { return s.idx.flush() }
