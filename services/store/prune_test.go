package store

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

func TestPrune(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0}
	s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{Clock: clk})
	day := 24 * time.Hour
	common := randBytes(71, 2<<20)
	type snap struct {
		name, source string
		until        time.Duration
		hold         bool
		objs         map[string][]byte
		expired      bool
	}
	snaps := []*snap{
		{name: "A", source: "s1", until: day, objs: map[string][]byte{"a-only": randBytes(70, 3<<20), "common": common}, expired: true},
		{name: "H", source: "s2", until: day, hold: true, objs: map[string][]byte{"h": randBytes(72, 1<<20)}},
		{name: "X", source: "s1", until: day, objs: map[string][]byte{"x": randBytes(73, 1<<20)}}, // extended below
		{name: "E", source: "s3", until: day, objs: map[string][]byte{"e": randBytes(75, 2<<20)}, expired: true},
		{name: "B", source: "s1", until: 100 * day, objs: map[string][]byte{"common": common, "b": randBytes(74, 1<<20)}},
		{name: "E2", source: "s3", until: day, objs: map[string][]byte{"e2": randBytes(76, 1<<20)}}, // newest of s3: kept
	}
	ids := map[string]string{}
	for i, sn := range snaps {
		clk.set(t0.Add(time.Duration(i) * time.Second))
		w, err := s.Begin(t.Context(), BeginOptions{Source: sn.source, RetainUntil: t0.Add(sn.until), LegalHold: sn.hold})
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
	if err := s.Extend(ids["X"], t0.Add(100*day), false, "operator at the console"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddReceipt(ids["A"], []byte("receipt of A")); err != nil {
		t.Fatal(err)
	}
	before := storeBytes(t, s)
	packsBefore, _ := s.listPacks()

	// Prune compares retention with the trusted time it is given, and
	// nothing else: a prune clock far ahead, or behind, changes nothing.
	for _, r := range []struct {
		name  string
		clock time.Time
	}{
		{"prune clock back before the snapshots", t0.Add(-time.Hour)},
		{"prune clock a year ahead", t0.Add(400 * day)},
	} {
		clk.set(r.clock)
		res, err := s.Prune(t.Context(), PruneOptions{Now: t0.Add(time.Hour)})
		if err != nil || len(res.Expired) != 0 || len(res.Packs) != 0 {
			t.Fatalf("%s: prune at T = t0+1h: %+v, %v; want nothing removed", r.name, res, err)
		}
		if got := storeBytes(t, s); got != before {
			t.Fatalf("%s: prune at T changed the store (%d -> %d bytes)", r.name, before, got)
		}
	}

	clk.set(t0.Add(10 * day))
	dry, err := s.Prune(t.Context(), PruneOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if storeBytes(t, s) != before {
		t.Fatal("dry run changed the store")
	}
	res, err := s.Prune(t.Context(), PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Expired) != len(res.Expired) || len(dry.Packs) != len(res.Packs) || dry.FreedBytes != res.FreedBytes {
		t.Errorf("dry run %+v differs from the real prune %+v", dry, res)
	}
	wantExpired := map[string]bool{ids["A"]: true, ids["E"]: true}
	if len(res.Expired) != len(wantExpired) {
		t.Fatalf("expired %v, want A=%s and E=%s", res.Expired, ids["A"], ids["E"])
	}
	for _, id := range res.Expired {
		if !wantExpired[id] {
			t.Fatalf("prune removed %s, which is protected", id)
		}
	}
	if len(res.Packs) == 0 || res.FreedBytes <= 0 {
		t.Fatalf("prune freed no pack: %+v", res)
	}
	after := storeBytes(t, s)
	if after >= before {
		t.Fatalf("store did not shrink: %d -> %d", before, after)
	}
	t.Logf("prune removed %d snapshots and %d of %d packs, freed %d bytes (%d -> %d)", len(res.Expired), len(res.Packs), len(packsBefore), res.FreedBytes, before, after)

	s = reopen(t, s, Options{Clock: clk})
	mustVerify(t, s)
	for _, sn := range snaps {
		if sn.expired {
			if exists(s.path(snapshotsDir, ids[sn.name]+".snap")) {
				t.Errorf("expired snapshot %s still there", sn.name)
			}
			continue
		}
		checkSnapshot(t, s, ids[sn.name], sn.objs)
	}
	if exists(s.path(receiptsDir, ids["A"]+".receipt")) {
		t.Error("the receipt of a pruned snapshot is still there")
	}
	if exts, _ := os.ReadDir(s.path(retentionDir)); len(exts) != 1 {
		t.Errorf("retention records after prune: %d, want the one of X", len(exts))
	}
	for _, d := range []string{"", packsDir, snapshotsDir, retentionDir, receiptsDir} {
		if ok, err := fsflag.Has(s.path(d), fsflag.Append); err != nil || !ok {
			t.Errorf("directory %q lost FS_APPEND_FL after prune (%v)", d, err)
		}
	}
	packs, _ := s.listPacks()
	for _, p := range packs {
		if ok, err := fsflag.Has(s.packPath(p), fsflag.Immutable); err != nil || !ok {
			t.Errorf("pack %s is not sealed after prune", p)
		}
		if ok, _ := fsflag.Has(s.path(packsDir, p[:2]), fsflag.Append); !ok {
			t.Errorf("shard %s lost FS_APPEND_FL", p[:2])
		}
	}

	// A time back before the last prune removes nothing more (and does
	// not freeze prune).
	clk.set(t0.Add(5 * day))
	if res, err := s.Prune(t.Context(), PruneOptions{}); err != nil || len(res.Expired) != 0 || len(res.Packs) != 0 {
		t.Fatalf("prune at an earlier time: %+v, %v", res, err)
	}

	// A sealed manifest prune cannot read makes it remove no pack (it
	// cannot know what that snapshot references); prune names it and
	// does not stop.
	clk.set(t0.Add(11 * day))
	flipByte(t, s.path(snapshotsDir, ids["B"]+".snap"), 70)
	n := storeBytes(t, s)
	res, err = s.Prune(t.Context(), PruneOptions{})
	if err != nil {
		t.Fatalf("prune stopped on an unreadable manifest: %v", err)
	}
	if !res.KeptAllPacks || len(res.Packs) != 0 {
		t.Fatalf("prune with an unreadable manifest: kept all packs %v, removed %v", res.KeptAllPacks, res.Packs)
	}
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0].Path, ids["B"]) {
		t.Fatalf("prune does not name the unreadable manifest: %v", res.Skipped)
	}
	if storeBytes(t, s) != n {
		t.Fatal("prune with an unreadable manifest changed the store")
	}
	if _, err := os.Stat(s.path(snapshotsDir, ids["B"]+".snap")); err != nil {
		t.Fatal(err)
	}
}
