package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The index maps chunk IDs to their place in a pack. It lives in memory and
// is cached in STORE/index/index, a file that is never trusted further than
// its authentication tag and can always be rebuilt from pack trailers:
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

type index struct {
	packs   []string // by pack number
	entries map[string][]packEntry
	chunks  map[ChunkID]location
	dirty   bool
}

type indexCachePack struct {
	Name    string `cbor:"1,keyasint"`
	Entries []byte `cbor:"2,keyasint"`
}

func newIndex() *index {
	return &index{entries: map[string][]packEntry{}, chunks: map[ChunkID]location{}}
}

func (ix *index) addPack(name string, es []packEntry) {
	if _, ok := ix.entries[name]; ok {
		return
	}
	n := int32(len(ix.packs))
	ix.packs = append(ix.packs, name)
	ix.entries[name] = es
	for _, e := range es {
		if _, dup := ix.chunks[e.id]; !dup {
			ix.chunks[e.id] = location{pack: n, offset: e.offset, length: e.length}
		}
	}
	ix.dirty = true
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
	return out
}

func (ix *index) has(id ChunkID) bool {
	_, ok := ix.chunks[id]
	return ok
}

// listPacks returns the names of every pack file on disk.
func (s *Store) listPacks() ([]string, error) {
	shards, err := os.ReadDir(s.path(packsDir))
	if err != nil {
		return nil, fmt.Errorf("read packs: %w", err)
	}
	var names []string
	for _, sh := range shards {
		if !sh.IsDir() || !isShard(sh.Name()) {
			continue
		}
		es, err := os.ReadDir(s.path(packsDir, sh.Name()))
		if err != nil {
			return nil, fmt.Errorf("read shard: %w", err)
		}
		for _, e := range es {
			if isPackName(e.Name()) && strings.HasPrefix(e.Name(), sh.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	return names, nil
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
		es, err := s.packEntries(name)
		if err != nil {
			// A damaged pack is reported by Verify; its chunks are absent.
			s.log.Warn("pack trailer unreadable; its chunks are not indexed", "pack", name, "error", err)
			continue
		}
		ix.addPack(name, es)
	}
	ix.dirty = fromCache != len(cached) || fromCache != len(ix.packs)
	return ix, nil
}

// RebuildIndex rebuilds the index from pack trailers alone, ignoring the
// cache, and writes a new cache.
func (s *Store) RebuildIndex() error {
	names, err := s.listPacks()
	if err != nil {
		return err
	}
	ix := newIndex()
	for _, name := range names {
		es, err := s.packEntries(name)
		if err != nil {
			s.log.Warn("pack trailer unreadable; its chunks are not indexed", "pack", name, "error", err)
			continue
		}
		ix.addPack(name, es)
	}
	s.idx = ix
	return s.saveIndex()
}

func (s *Store) packEntries(name string) ([]packEntry, error) {
	f, err := os.Open(s.packPath(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return s.readTrailer(f, st.Size())
}

func (s *Store) readIndexCache() map[string][]packEntry {
	raw, err := os.ReadFile(s.path(indexDir, "index"))
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
