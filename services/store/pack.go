package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// Pack file layout (STORE/packs/ab/<sha256 of the whole file>):
//
//	| size  | field                                                        |
//	|-------|--------------------------------------------------------------|
//	| 8     | magic "HFPACK01"                                             |
//	| ...   | blobs, each: nonce(12) || AES-GCM(data key, AD = chunk ID)   |
//	|       | of the chunk plaintext || tag(16)                            |
//	| T     | trailer: nonce(12) || AES-GCM(meta key, AD = "HFPT") of the  |
//	|       | entries, 44 bytes each: chunk ID(32) | offset u32 BE |       |
//	|       | sealed length u32 BE | plaintext length u32 BE              |
//	| 4     | T, big endian                                                |
//	| 8     | magic "HFPKEND1"                                             |
//
// The trailer is what rebuilds the index. The file name is the SHA-256 of
// the file, so a flipped bit anywhere shows as a name mismatch.
const (
	packMagic    = "HFPACK01"
	packEndMagic = "HFPKEND1"
	entrySize    = 32 + 4 + 4 + 4
	packFooter   = 4 + 8
	maxTrailer   = 64 << 20
)

var trailerAD = []byte("HFPT")

type packEntry struct {
	id       ChunkID
	offset   uint32
	length   uint32 // sealed length
	plainLen uint32
}

func appendEntries(dst []byte, es []packEntry) []byte {
	for _, e := range es {
		dst = append(dst, e.id[:]...)
		dst = binary.BigEndian.AppendUint32(dst, e.offset)
		dst = binary.BigEndian.AppendUint32(dst, e.length)
		dst = binary.BigEndian.AppendUint32(dst, e.plainLen)
	}
	return dst
}

func parseEntries(b []byte) ([]packEntry, error) {
	if len(b)%entrySize != 0 {
		return nil, fmt.Errorf("entries of %d bytes: %w", len(b), ErrCorrupt)
	}
	es := make([]packEntry, 0, len(b)/entrySize)
	for ; len(b) > 0; b = b[entrySize:] {
		var e packEntry
		copy(e.id[:], b)
		e.offset = binary.BigEndian.Uint32(b[32:])
		e.length = binary.BigEndian.Uint32(b[36:])
		e.plainLen = binary.BigEndian.Uint32(b[40:])
		es = append(es, e)
	}
	return es, nil
}

// packWriter appends sealed chunks to a pack in tmp/.
type packWriter struct {
	f       *os.File
	w       *bufio.Writer // buffers small blobs for dst
	dst     io.Writer     // the file and sum
	sum     hash.Hash
	tmpPath string
	size    int64
	entries []packEntry
	objects []journalItem // journal entries durable once this pack is sealed
	kicked  int64         // bytes handed to writeback so far
}

func (s *Store) newPackWriter() (*packWriter, error) {
	f, err := os.CreateTemp(s.path(tmpDir), "pack-*")
	if err != nil {
		return nil, fmt.Errorf("create pack: %w", err)
	}
	if err := f.Chmod(fileMode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create pack: %w", err)
	}
	pw := &packWriter{f: f, tmpPath: f.Name(), sum: sha256.New()}
	pw.dst = io.MultiWriter(f, pw.sum)
	pw.w = bufio.NewWriterSize(pw.dst, 1<<20)
	if _, err := pw.w.WriteString(packMagic); err != nil {
		pw.abort()
		return nil, fmt.Errorf("write pack: %w", err)
	}
	pw.size = int64(len(packMagic))
	return pw, nil
}

// add appends the blob nonce || ct for id, where ct is the AES-GCM
// ciphertext and tag.
func (pw *packWriter) add(id ChunkID, nonce *[12]byte, ct []byte, plainLen int) error {
	if _, err := pw.w.Write(nonce[:]); err != nil {
		return fmt.Errorf("write pack: %w", err)
	}
	if len(ct) >= directBlob {
		// A large blob goes to the file and sum straight from the chunk
		// buffer: through bufio it would be copied once more (a memmove
		// of nearly every byte a pull stores), for no fewer writes.
		if err := pw.w.Flush(); err != nil {
			return fmt.Errorf("write pack: %w", err)
		}
		if _, err := pw.dst.Write(ct); err != nil {
			return fmt.Errorf("write pack: %w", err)
		}
	} else if _, err := pw.w.Write(ct); err != nil {
		return fmt.Errorf("write pack: %w", err)
	}
	n := len(nonce) + len(ct)
	pw.entries = append(pw.entries, packEntry{id: id, offset: uint32(pw.size), length: uint32(n), plainLen: uint32(plainLen)})
	pw.size += int64(n)
	if pw.size-pw.kicked >= writebackStep {
		// Start writeback now, so the fsync at the end of the pack finds
		// little left to write and the disk never idles.
		if err := pw.w.Flush(); err != nil {
			return fmt.Errorf("write pack: %w", err)
		}
		startWriteback(pw.f, pw.kicked, pw.size-pw.kicked)
		pw.kicked = pw.size
	}
	return nil
}

const writebackStep = 4 << 20

// directBlob is the blob size from which add writes past the buffer.
const directBlob = 256 << 10

func (pw *packWriter) abort() {
	pw.f.Close()
	os.Remove(pw.tmpPath)
}

// finishPack writes the trailer, fsyncs, renames the pack into packs/ and
// seals it. It returns the pack name; the caller adds it to the index.
func (s *Store) finishPack(pw *packWriter) (string, error) {
	plain := appendEntries(make([]byte, 0, len(pw.entries)*entrySize), pw.entries)
	trailer := sealTo(nil, s.keys.meta, trailerAD, plain)
	tail := binary.BigEndian.AppendUint32(trailer, uint32(len(trailer)))
	tail = append(tail, packEndMagic...)
	if _, err := pw.w.Write(tail); err != nil {
		pw.abort()
		return "", fmt.Errorf("write pack trailer: %w", err)
	}
	if err := pw.w.Flush(); err != nil {
		pw.abort()
		return "", fmt.Errorf("flush pack: %w", err)
	}
	s.at("pack-before-fsync")
	if err := pw.f.Sync(); err != nil {
		pw.abort()
		return "", fmt.Errorf("fsync pack: %w", err)
	}
	if err := pw.f.Close(); err != nil {
		os.Remove(pw.tmpPath)
		return "", fmt.Errorf("close pack: %w", err)
	}
	name := hex.EncodeToString(pw.sum.Sum(nil))
	shard := s.path(packsDir, name[:2])
	if err := s.ensureShard(shard); err != nil {
		os.Remove(pw.tmpPath)
		return "", err
	}
	final := filepath.Join(shard, name)
	s.at("pack-before-rename")
	if err := renameNoReplace(pw.tmpPath, final); err != nil {
		os.Remove(pw.tmpPath)
		return "", fmt.Errorf("install pack: %w", err)
	}
	s.at("pack-after-rename")
	if err := syncDir(shard); err != nil {
		return "", err
	}
	s.at("pack-before-seal")
	if err := s.sealer.SealFile(final); err != nil {
		return "", fmt.Errorf("seal pack: %w", err)
	}
	s.at("pack-after-seal")
	return name, nil
}

func (s *Store) ensureShard(shard string) error {
	err := os.Mkdir(shard, dirMode)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create shard: %w", err)
	}
	if err := syncDir(filepath.Dir(shard)); err != nil {
		return err
	}
	if err := s.sealer.SealDir(shard); err != nil {
		return fmt.Errorf("seal shard: %w", err)
	}
	return nil
}

func (s *Store) packPath(name string) string {
	return s.path(packsDir, name[:2], name)
}

// readTrailer reads the entries of a pack from its trailer.
func (s *Store) readTrailer(f io.ReaderAt, size int64) ([]packEntry, error) {
	if size < int64(len(packMagic)+packFooter) {
		return nil, fmt.Errorf("pack of %d bytes: %w", size, ErrCorrupt)
	}
	var foot [packFooter]byte
	if _, err := f.ReadAt(foot[:], size-packFooter); err != nil {
		return nil, fmt.Errorf("read pack footer: %w", err)
	}
	if string(foot[4:]) != packEndMagic {
		return nil, fmt.Errorf("pack end magic: %w", ErrCorrupt)
	}
	t := int64(binary.BigEndian.Uint32(foot[:4]))
	if t > maxTrailer || t > size-packFooter-int64(len(packMagic)) {
		return nil, fmt.Errorf("pack trailer length %d: %w", t, ErrCorrupt)
	}
	sealed := make([]byte, t)
	if _, err := f.ReadAt(sealed, size-packFooter-t); err != nil {
		return nil, fmt.Errorf("read pack trailer: %w", err)
	}
	plain, err := openSealed(s.keys.meta, trailerAD, sealed)
	if err != nil {
		return nil, fmt.Errorf("pack trailer: %w", err)
	}
	es, err := parseEntries(plain)
	if err != nil {
		return nil, err
	}
	limit := size - packFooter - t
	for _, e := range es {
		if int64(e.offset) < int64(len(packMagic)) || int64(e.offset)+int64(e.length) > limit || e.length < sealOverhead {
			return nil, fmt.Errorf("pack entry out of bounds: %w", ErrCorrupt)
		}
	}
	return es, nil
}

// openBlob decrypts a sealed blob and checks that its plaintext hashes to id.
func (s *Store) openBlob(id ChunkID, sealed []byte, h hash.Hash) ([]byte, error) {
	plain, err := openSealed(s.keys.data, id[:], sealed)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	if sumID(h, plain) != id {
		return nil, fmt.Errorf("chunk %s: content does not match its ID: %w", id, ErrCorrupt)
	}
	return plain, nil
}

// checkPackFile checks that a pack's name is the SHA-256 of its bytes, that
// its trailer opens and that every blob the trailer names is at its place:
// it passes its tag and hashes to its ID. Recovery calls it before sealing
// a pack that a crash left unsealed, so no pack with a lying trailer is
// ever sealed by the store.
func (s *Store) checkPackFile(path string) error {
	f, size, err := openStoreFile(path, os.O_RDONLY, s.maxPackFile())
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read pack: %w", err)
	}
	if n != size || hex.EncodeToString(h.Sum(nil)) != filepath.Base(path) {
		return fmt.Errorf("pack content does not match its name: %w", ErrCorrupt)
	}
	var magic [8]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || !bytes.Equal(magic[:], []byte(packMagic)) {
		return fmt.Errorf("pack magic: %w", ErrCorrupt)
	}
	es, err := s.readTrailer(f, n)
	if err != nil {
		return err
	}
	ih := s.keys.idHasher()
	var buf []byte
	for _, e := range es {
		buf = slices.Grow(buf[:0], int(e.length))[:e.length]
		if _, err := f.ReadAt(buf, int64(e.offset)); err != nil {
			return fmt.Errorf("read chunk %s: %w", e.id, err)
		}
		if _, err := s.openBlob(e.id, buf, ih); err != nil {
			return fmt.Errorf("pack trailer names a chunk its blobs do not hold: %w", err)
		}
	}
	return nil
}
