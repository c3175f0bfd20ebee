package store

import (
	"bytes"
	"io"
	"testing"
	"time"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func TestDedup(t *testing.T) {
	// A fixed polynomial makes the chunk boundaries, and so the figures,
	// the same on every run; stores get a random one.
	s := newStore(t, InitOptions{polynomial: 0x3DA3358B4DC173}, Options{})
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
