package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"
)

// TestPackWriterBlobSizes: blobs below and above directBlob (buffered, and
// written straight to the file) reach the file and its name's SHA-256 in
// the same order, at the offsets the trailer gives.
func TestPackWriterBlobSizes(t *testing.T) {
	cases := []struct {
		name  string
		sizes []int
	}{
		{"small", []int{100, 4096 + sealOverhead - 12, 70 << 10}},
		{"large", []int{directBlob, 1 << 20, 4<<20 + 16}},
		{"mixed", []int{16, directBlob - 1, directBlob, 20, 1<<20 + 7, 200 << 10, 2 << 20, 17}},
		{"past writeback steps", []int{3 << 20, 100, 3 << 20, 3 << 20, 16}},
	}
	s := newStore(t, InitOptions{}, Options{})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pw, err := s.newPackWriter()
			if err != nil {
				t.Fatal(err)
			}
			want := []byte(packMagic)
			var offs []uint32
			for j, n := range c.sizes {
				var nonce [12]byte
				copy(nonce[:], randBytes(uint64(1000*i+j), 12))
				ct := randBytes(uint64(1000*i+j+500), n)
				var id ChunkID
				id[0], id[1] = byte(i), byte(j)
				offs = append(offs, uint32(len(want)))
				if err := pw.add(id, &nonce, ct, n); err != nil {
					t.Fatal(err)
				}
				want = append(append(want, nonce[:]...), ct...)
			}
			name, err := s.finishPack(pw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(s.packPath(name))
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(got); hex.EncodeToString(sum[:]) != name {
				t.Fatalf("pack named %s holds bytes hashing to %x", name, sum)
			}
			if !bytes.Equal(got[:len(want)], want) {
				t.Fatal("pack blobs differ from what was added")
			}
			f, err := os.Open(s.packPath(name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			es, err := s.readTrailer(f, int64(len(got)))
			if err != nil {
				t.Fatal(err)
			}
			for j, e := range es {
				if e.offset != offs[j] || int(e.length) != 12+c.sizes[j] {
					t.Errorf("entry %d: offset %d length %d, want %d and %d", j, e.offset, e.length, offs[j], 12+c.sizes[j])
				}
			}
		})
	}
}
