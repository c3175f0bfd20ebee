package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// plantGoodPacks writes packs of perPack chunks each, n chunks in all,
// whose blobs are real (each a sealed 8-byte counter, so every chunk
// passes Verify's check) without going through the chunker. The packs are
// not sealed and not indexed: reopen the store read-write to do both.
func plantGoodPacks(tb testing.TB, s *Store, n, perPack int, seed uint64) []ChunkID {
	tb.Helper()
	h := s.keys.idHasher()
	ids := make([]ChunkID, 0, n)
	for first := 0; first < n; first += perPack {
		body := []byte(packMagic)
		es := make([]packEntry, 0, perPack)
		for i := first; i < min(n, first+perPack); i++ {
			plain := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, seed), uint64(i))
			id := sumID(h, plain)
			off := len(body)
			body = sealTo(body, s.keys.data, id[:], plain)
			es = append(es, packEntry{id: id, offset: uint32(off), length: uint32(len(body) - off), plainLen: uint32(len(plain))})
			ids = append(ids, id)
		}
		writePlantedPack(tb, s, body, es)
	}
	return ids
}

// writeChunkSnapshot commits a snapshot whose objects reference ids in
// order, perObject chunks each, writing journal frames directly.
func writeChunkSnapshot(t *testing.T, s *Store, ids []ChunkID, perObject int) int {
	t.Helper()
	sn, err := s.Begin(t.Context(), BeginOptions{Source: "chunks"})
	if err != nil {
		t.Fatal(err)
	}
	sn.mu.Lock()
	objects := 0
	for i := 0; i < len(ids); i += perObject {
		cs := ids[i:min(len(ids), i+perObject)]
		o := Object{Key: []byte("obj-" + strconv.Itoa(i)), Size: int64(8 * len(cs)), Chunks: cs}
		sn.objects++
		sn.bytes += o.Size
		objects++
		if err := sn.journalObjects([]journalItem{{inline: []wireObject{toWire(o)}}}); err != nil {
			sn.mu.Unlock()
			t.Fatal(err)
		}
	}
	sn.mu.Unlock()
	if _, err := sn.Commit(t.Context(), CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	return objects
}

// verifyGrowth builds a store of n good chunks in packs of 4096, one
// snapshot referencing each once, and returns how far Verify's heap grew
// above what was in use before it.
func verifyGrowth(t *testing.T, n int) int64 {
	t.Helper()
	s := newStore(t, InitOptions{}, Options{Logger: hclog.NewNullLogger()})
	ids := plantGoodPacks(t, s, n, 4096, uint64(n))
	s = reopen(t, s, Options{Logger: hclog.NewNullLogger()})
	objects := writeChunkSnapshot(t, s, ids, 64)
	ids = nil
	start := time.Now()
	var r *Report
	var err error
	grew := int64(storetest.HeapPeak(func() { r, err = s.Verify(t.Context()) }))
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Chunks != n || r.Objects != objects {
		t.Fatalf("verify of %d chunks: %d chunks, %d objects (want %d), problems %v", n, r.Chunks, r.Objects, objects, r.Problems)
	}
	t.Logf("verify of %d chunks took %s; heap grew %.1f MiB", n, time.Since(start).Round(time.Millisecond), float64(grew)/(1<<20))
	return grew
}

// Verify's memory does not grow with the chunk count: its set of good
// chunks is a sorted file, not a map (idset.go), and it checks references
// in bounded batches. Its peak heap (at GOGC 10, so the live heap) over
// 400,000 chunks may exceed its peak over 20,000 by at most 8 MiB: the
// parts that do grow reach their bounds before 400,000 (the run sorted in
// RAM, 4 MiB; the batch of references, 3 MiB; the merge's readers). The
// old map of good chunks made it 22.7 MiB more.
func TestVerifyMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds stores of 20,000 and 400,000 chunks")
	}
	// Measure the live heap, not the collector's headroom, which grows
	// with whatever else the test binary holds.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	small := verifyGrowth(t, 20_000)
	big := verifyGrowth(t, 400_000)
	const bound = 8 << 20
	if big-small > bound {
		t.Fatalf("verify's peak heap grew by %.1f MiB at 400,000 chunks and %.1f MiB at 20,000: %.1f MiB more, over %d MiB",
			float64(big)/(1<<20), float64(small)/(1<<20), float64(big-small)/(1<<20), bound>>20)
	}
}

// TestVerifyReusesPackBuffer: verify reads every pack into one buffer. A
// new buffer per pack (as before) allocated each pack's size again on top
// of the chunks it decrypts, and the GC's headroom over those took
// `holdfast store verify` of 100,000 objects to 83 MiB of RSS (60 MiB
// with the one buffer).
func TestVerifyReusesPackBuffer(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
	sn, err := s.Begin(ctx, BeginOptions{Source: "packs"})
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 32<<20)
	rand.Read(body)
	if _, err := sn.Put(ctx, ObjectInfo{Key: []byte("big")}, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Commit(ctx, CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := s.Verify(ctx)
	runtime.ReadMemStats(&after)
	if err != nil || !r.OK() {
		t.Fatalf("verify: %v %v", err, r.Problems)
	}
	if r.Packs < 16 {
		t.Fatalf("%d packs, want at least 16 to tell one buffer from one per pack", r.Packs)
	}
	// The chunks' plaintext is allocated once (32 MiB). A buffer per pack
	// adds 32 MiB more (measured: 64.3 MiB in all); one buffer is a pack
	// and a quarter, again for each later pack larger than that
	// (measured: 34.5 to 38.9 MiB in all). Over 12 MiB of data the two
	// were too close for a fixed bound (13.6 to 19.3 against 24.2 MiB).
	alloc := after.TotalAlloc - before.TotalAlloc
	if limit := uint64(len(body)) * 3 / 2; alloc > limit {
		t.Errorf("verify of %d packs holding %d MiB allocated %.1f MiB, want at most %d MiB", r.Packs, len(body)>>20, float64(alloc)/(1<<20), limit>>20)
	}
}
