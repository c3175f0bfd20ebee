package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The index maps chunk IDs to their place in a pack. It lives in memory and
// is cached in STORE/index/index, a file that is never trusted further than
// its authentication tag (which the worker can forge: prune never reads the
// cache, and a read that fails where it points rebuilds the index from the
// trailers) and can always be rebuilt from pack trailers:
//
//	| size | field                                                         |
//	|------|---------------------------------------------------------------|
//	| 8    | magic "HFINDEX1"                                              |
//	| rest | nonce(12) || AES-GCM(meta key, AD = "HFIX") of CBOR           |
//	|      | [ {1: pack name, 2: entries (44 bytes each, as in trailers)} ]|
const indexMagic = "HFINDEX1"

var indexAD = []byte("HFIX")

type location struct {
	pack   int32
	offset uint32
	length uint32
}

// The index keeps every place a chunk is claimed: chunks holds the first,
// more the others. A pack's trailer can lie (it is authenticated with the
// meta key, which the worker can derive), so the reader tries each place
// until one passes its AEAD tag and its ID check.
type index struct {
	packs   []string // by pack number
	entries map[string][]packEntry
	chunks  map[ChunkID]location
	more    map[ChunkID][]location
	cached  bool // some entries came from the cache, not from trailers
	dirty   bool
}

type indexCachePack struct {
	Name    string `cbor:"1,keyasint"`
	Entries []byte `cbor:"2,keyasint"`
}

func newIndex() *index {
	return &index{entries: map[string][]packEntry{}, chunks: map[ChunkID]location{}, more: map[ChunkID][]location{}}
}

func (ix *index) addPack(name string, es []packEntry) {
	if _, ok := ix.entries[name]; ok {
		return
	}
	n := int32(len(ix.packs))
	ix.packs = append(ix.packs, name)
	ix.entries[name] = es
	for _, e := range es {
		loc := location{pack: n, offset: e.offset, length: e.length}
		if _, dup := ix.chunks[e.id]; dup {
			ix.more[e.id] = append(ix.more[e.id], loc)
			continue
		}
		ix.chunks[e.id] = loc
	}
	ix.dirty = true
}

// locations returns every place a pack's trailer claims id, in name order.
func (ix *index) locations(id ChunkID) []location {
	first, ok := ix.chunks[id]
	if !ok {
		return nil
	}
	return append([]location{first}, ix.more[id]...)
}

// withoutPacks returns a new index without the named packs. Chunks that
// also live in a kept pack point there afterwards.
func (ix *index) withoutPacks(drop map[string]bool) *index {
	out := newIndex()
	for _, name := range ix.packs {
		if !drop[name] {
			out.addPack(name, ix.entries[name])
		}
	}
	out.dirty = true
	out.cached = ix.cached
	return out
}

func (ix *index) has(id ChunkID) bool {
	_, ok := ix.chunks[id]
	return ok
}

// listPacks returns the names of every regular file named like a pack, in
// name order. Other entries are skipped (Verify reports them); only names
// of the pack form are kept, so junk costs no memory.
func (s *Store) listPacks() ([]string, error) {
	var names []string
	for _, sh := range shardNames() {
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
	}
	sort.Strings(names)
	return names, nil
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

// loadIndex reads the cache and reads the trailer of every pack the cache
// does not cover. A cache that fails to open is ignored.
func (s *Store) loadIndex() (*index, error) {
	onDisk, err := s.listPacks()
	if err != nil {
		return nil, err
	}
	cached := s.readIndexCache()
	ix := newIndex()
	fromCache := 0
	for _, name := range onDisk {
		if es, ok := cached[name]; ok {
			ix.addPack(name, es)
			fromCache++
			continue
		}
		es, _, err := s.packEntries(name)
		if err != nil {
			// A damaged pack is reported by Verify; its chunks are absent.
			s.log.Warn("pack trailer unreadable; its chunks are not indexed", "pack", name, "error", err)
			continue
		}
		ix.addPack(name, es)
	}
	ix.dirty = fromCache != len(cached) || fromCache != len(ix.packs)
	ix.cached = fromCache > 0
	return ix, nil
}

// trailerIndex builds the index from pack trailers alone.
func (s *Store) trailerIndex() (*index, error) {
	names, err := s.listPacks()
	if err != nil {
		return nil, err
	}
	ix := newIndex()
	for _, name := range names {
		es, _, err := s.packEntries(name)
		if err != nil {
			s.log.Warn("pack trailer unreadable; its chunks are not indexed", "pack", name, "error", err)
			continue
		}
		ix.addPack(name, es)
	}
	return ix, nil
}

// RebuildIndex rebuilds the index from pack trailers alone, ignoring the
// cache, and writes a new cache.
func (s *Store) RebuildIndex() error {
	ix, err := s.trailerIndex()
	if err != nil {
		return err
	}
	s.idx = ix
	return s.saveIndex()
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

func (s *Store) readIndexCache() map[string][]packEntry {
	raw, err := readStoreFile(s.path(indexDir, "index"), maxIndexCache)
	if errors.Is(err, ErrForeign) {
		s.log.Warn("index cache is not a regular file of bounded size; ignored", "error", err)
	}
	if err != nil || len(raw) < len(indexMagic) || string(raw[:len(indexMagic)]) != indexMagic {
		return nil
	}
	plain, err := openSealed(s.keys.meta, indexAD, raw[len(indexMagic):])
	if err != nil {
		s.log.Warn("index cache fails its tag; rebuilding from packs")
		return nil
	}
	var packs []indexCachePack
	if err := s.codec.unmarshal(plain, &packs); err != nil {
		return nil
	}
	out := make(map[string][]packEntry, len(packs))
	for _, p := range packs {
		es, err := parseEntries(p.Entries)
		if err != nil {
			return nil
		}
		out[p.Name] = es
	}
	return out
}

// saveIndex writes the cache atomically if it changed.
func (s *Store) saveIndex() error {
	if s.ro || !s.idx.dirty {
		return nil
	}
	packs := make([]indexCachePack, 0, len(s.idx.entries))
	for _, name := range s.idx.packs {
		es := s.idx.entries[name]
		packs = append(packs, indexCachePack{Name: name, Entries: appendEntries(make([]byte, 0, len(es)*entrySize), es)})
	}
	plain, err := s.codec.marshal(packs)
	if err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	out := sealTo([]byte(indexMagic), s.keys.meta, indexAD, plain)
	tmp, err := os.CreateTemp(s.path(indexDir), "index-*")
	if err != nil {
		return fmt.Errorf("index cache: %w", err)
	}
	if err := tmp.Chmod(fileMode); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("index cache: %w", err)
	}
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("index cache: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("index cache: %w", err)
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), filepath.Join(s.path(indexDir), "index")); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("index cache: %w", err)
	}
	s.idx.dirty = false
	return nil
}
