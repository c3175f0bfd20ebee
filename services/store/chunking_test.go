package store

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
)

// TestChunkerConfig: only the rows of the chunking table open; a config
// naming an unknown chunker (a newer Holdfast) or odd sizes is refused
// rather than chunked differently, which would silently lose dedup.
func TestChunkerConfig(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	for _, tc := range []struct {
		name    string
		cfg     storeConfig
		wantErr string
	}{
		{"rabin", storeConfig{ChunkerPol: 0x3DA3358B4DC173, MinChunk: minChunk, MaxChunk: maxChunk}, ""},
		{"rabin without polynomial", storeConfig{MinChunk: minChunk, MaxChunk: maxChunk}, "polynomial"},
		{"fastcdc", storeConfig{Chunker: chunkerFastCDC, ChunkerKey: key, MinChunk: fastCDCMin, NormalChunk: fastCDCNormal, MaxChunk: fastCDCMax}, ""},
		{"fastcdc short key", storeConfig{Chunker: chunkerFastCDC, ChunkerKey: key[:16], MinChunk: fastCDCMin, NormalChunk: fastCDCNormal, MaxChunk: fastCDCMax}, "key"},
		{"fastcdc other sizes", storeConfig{Chunker: chunkerFastCDC, ChunkerKey: key, MinChunk: fastCDCMin, NormalChunk: fastCDCNormal, MaxChunk: 64 << 20}, "sizes"},
		{"unknown", storeConfig{Chunker: 9, ChunkerKey: key}, "unknown chunker 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkChunkerConfig(tc.cfg)
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestFastCDCSplitter: the pieces put back together are the stream, every
// piece but the last is within the bounds, the same key cuts the same
// places after a reset, and another key cuts others.
func TestFastCDCSplitter(t *testing.T) {
	data := randBytes(5, 24<<20)
	cut := func(key byte) []int {
		cfg := storeConfig{}
		if err := newChunkerConfig(&cfg, 0); err != nil {
			t.Fatal(err)
		}
		cfg.ChunkerKey = bytes.Repeat([]byte{key}, 32)
		s := &Store{cfg: cfg}
		sp, err := s.newSplitter(bytes.NewReader(nil))
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for range 2 { // the second pass after a reset
			sp.reset(bytes.NewReader(data))
			sizes = sizes[:0]
			var joined []byte
			buf := make([]byte, 0, cfg.MaxChunk)
			for {
				c, err := sp.next(buf)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				joined = append(joined, c...)
				sizes = append(sizes, len(c))
			}
			if !bytes.Equal(joined, data) {
				t.Fatal("the chunks do not add up to the stream")
			}
			for i, n := range sizes[:len(sizes)-1] {
				if n < fastCDCMin || n > fastCDCMax {
					t.Fatalf("chunk %d is %d bytes, outside [%d, %d]", i, n, fastCDCMin, fastCDCMax)
				}
			}
		}
		return sizes
	}
	a, a2, b := cut(1), cut(1), cut(2)
	if !slices.Equal(a, a2) {
		t.Error("the same key cut different places")
	}
	if slices.Equal(a, b) {
		t.Error("two keys cut the same places: the chunker is not keyed")
	}
	t.Logf("24 MiB: %d chunks with one key, %d with another", len(a), len(b))
}
