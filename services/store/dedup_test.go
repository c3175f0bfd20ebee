package store

import (
	"bytes"
	"io"
	"testing"
	"time"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// TestDedup runs for both chunkers of the table in chunking.go: keyed
// FastCDC (new stores) and Rabin (stores created before it, still written
// with it).
func TestDedup(t *testing.T) {
	for _, tc := range []struct {
		name string
		io   InitOptions
	}{
		// A fixed polynomial makes the chunk boundaries, and so the
		// figures, the same on every run; stores get a random one.
		{"rabin", InitOptions{polynomial: 0x3DA3358B4DC173}},
		{"keyed fastcdc", InitOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) { testDedup(t, tc.io) })
	}
}

func testDedup(t *testing.T, io InitOptions) {
	s := newStore(t, io, Options{})
	wantChunker := uint8(chunkerFastCDC)
	if io.polynomial != 0 {
		wantChunker = chunkerRabin
	}
	if s.cfg.Chunker != wantChunker {
		t.Fatalf("store chunks with %d, want %d", s.cfg.Chunker, wantChunker)
	}
	data := randBytes(80, 100<<20)
	until := time.Now().Add(time.Hour)
	putObjects(t, s, "src", until, map[string][]byte{"big": data})
	first := storeBytes(t, s)

	putObjects(t, s, "src", until, map[string][]byte{"big": data})
	second := storeBytes(t, s)
	growth := float64(second-first) / float64(first)
	t.Logf("same 100 MiB again: store grew %d bytes (%.4f%%)", second-first, 100*growth)
	if growth >= 0.01 {
		t.Errorf("same data twice grew the store by %.2f%%, want < 1%%", 100*growth)
	}

	shifted := append([]byte{0xAB}, data...)
	m := putObjects(t, s, "src", until, map[string][]byte{"big": shifted})
	third := storeBytes(t, s)
	dedup := 1 - float64(third-second)/float64(len(shifted))
	t.Logf("one byte inserted at the front: %d new bytes stored, %.2f%% deduplicated", third-second, 100*dedup)
	if dedup <= 0.95 {
		t.Errorf("one byte inserted dedups %.2f%%, want > 95%%", 100*dedup)
	}
	checkSnapshot(t, s, m.ID, map[string][]byte{"big": shifted})
}
