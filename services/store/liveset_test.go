package store

import (
	"crypto/rand"
	"testing"
	"time"
)

// TestLiveSetNoFalseNegatives: every chunk added tests present (prune must
// never judge a live chunk dead), and chunks never added test present
// about as rarely as the filter was sized for; a second set, salted anew,
// errs on other chunks.
func TestLiveSetNoFalseNegatives(t *testing.T) {
	const n = 200_000
	in := make([]ChunkID, n)
	out := make([]ChunkID, n)
	for i := range in {
		rand.Read(in[i][:])
		rand.Read(out[i][:])
	}
	for _, sized := range []uint64{n, n / 4} { // sized right, and for a quarter of what it gets
		ls, err := newLiveSet(sized, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range in {
			ls.add(c)
		}
		for i, c := range in {
			if !ls.mayHave(c) {
				t.Fatalf("sized for %d: chunk %d added but not found", sized, i)
			}
		}
		fp := 0
		for _, c := range out {
			if ls.mayHave(c) {
				fp++
			}
		}
		t.Logf("sized for %d chunks, %d added: %d bytes, %d false positives in %d", sized, n, ls.bytes(), fp, n)
		if sized == n && fp > 10 { // 1e-5 expected: 2
			t.Errorf("%d false positives in %d, want about %d", fp, n, int(liveFalsePositive*n))
		}
		if ls.bytes() > uint(sized)*4 {
			t.Errorf("filter of %d bytes for %d chunks", ls.bytes(), sized)
		}
	}
}

// TestPruneFalsePositivesOnlyKeep: with a live set of one bit, where every
// chunk tests live, prune still removes the expired snapshot but keeps
// every pack (a false positive can only keep); a prune with a filter of
// its own size then removes the dead packs, and the kept snapshot reads
// back whole after both.
func TestPruneFalsePositivesOnlyKeep(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0}
	s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{Clock: clk})
	day := 24 * time.Hour
	kept := map[string][]byte{"b": randBytes(81, 2<<20)}
	ids := map[string]string{}
	for i, sn := range []struct {
		name  string
		until time.Duration
		objs  map[string][]byte
	}{
		{"A", day, map[string][]byte{"a": randBytes(80, 3<<20)}},
		{"B", 100 * day, kept},
	} {
		clk.set(t0.Add(time.Duration(i) * time.Second))
		w, err := s.Begin(t.Context(), BeginOptions{Source: "s", RetainUntil: t0.Add(sn.until)})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range sortedKeys(sn.objs) {
			if _, err := w.Put(t.Context(), ObjectInfo{Key: []byte(k)}, bytesReader(sn.objs[k])); err != nil {
				t.Fatal(err)
			}
		}
		m, err := w.Commit(t.Context(), CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids[sn.name] = m.ID
	}
	packs, _ := s.listPacks()
	clk.set(t0.Add(10 * day))
	res, err := s.Prune(t.Context(), PruneOptions{liveBits: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Expired) != 1 || res.Expired[0] != ids["A"] || len(res.Packs) != 0 || res.KeptPacks != len(packs) {
		t.Fatalf("prune with a saturated live set: %+v; want A expired and all %d packs kept", res, len(packs))
	}
	checkSnapshot(t, s, ids["B"], kept)
	res, err = s.Prune(t.Context(), PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Packs) == 0 || res.KeptPacks == 0 {
		t.Fatalf("prune with a right-sized live set: %+v; want A's packs removed and B's kept", res)
	}
	s = reopen(t, s, Options{Clock: clk})
	mustVerify(t, s)
	checkSnapshot(t, s, ids["B"], kept)
}
