package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// mailKeys returns n sorted keys shaped like maildir paths.
func mailKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user%04d/Maildir/cur/%d.M%06dP%05d.mx1,S=%d:2,S", i/150, 1700000000+i*37, i*7919%1000000, i%30011, 1000+i*131%15000)
	}
	slices.SortFunc(keys, bytes.Compare)
	return keys
}

// storedBody commits an unsorted snapshot holding one small object and
// returns it, so sorted snapshots can record objects that name its chunks.
func storedBody(t *testing.T, s *Store) Object {
	t.Helper()
	sn, err := s.Begin(t.Context(), BeginOptions{Source: "body"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := sn.Put(t.Context(), ObjectInfo{Key: []byte("body")}, bytes.NewReader([]byte("a message")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Commit(t.Context(), CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	return body
}

// mailETag is the ETag recordMail gives key i when nothing changed.
func mailETag(i int) string { return fmt.Sprintf("%032x", i) }

// mailSnapshot makes a store holding one sorted snapshot of n
// maildir-shaped keys (ETags mailETag) and returns the store, the keys
// and the snapshot's summary and metadata size.
func mailSnapshot(t *testing.T, n int) (*Store, [][]byte, *Manifest, MetadataSize) {
	t.Helper()
	s := newStore(t, InitOptions{}, Options{})
	body := storedBody(t, s)
	keys := mailKeys(n)
	m := recordMail(t, s, keys, body, mailETag)
	ms, err := s.SnapshotMetadata(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	return s, keys, m, ms
}

// recordMail commits a sorted snapshot of one record per key, each naming
// body's chunks; etag gives the ETag of key i.
func recordMail(t *testing.T, s *Store, keys [][]byte, body Object, etag func(int) string) *Manifest {
	t.Helper()
	sn, err := s.Begin(t.Context(), BeginOptions{Source: "mail", Sorted: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		o := body
		o.Key, o.ETag, o.ModTime = k, etag(i), time.Unix(int64(1700000000+i), 0).UTC()
		if err := sn.PutExisting(o); err != nil {
			t.Fatal(err)
		}
	}
	m, err := sn.Commit(t.Context(), CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMetadataChunksDedup: a snapshot's records go to metadata chunks, so
// a snapshot of a bucket where nothing changed stores no chunk and a
// manifest of references under 1% of the first snapshot's metadata; one
// where a stretch of keys changed stores only the chunks around it. Every
// snapshot reads back record for record, and verify finds nothing wrong.
func TestMetadataChunksDedup(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	body := storedBody(t, s)
	keys := mailKeys(20_000)

	p0 := storetest.PackBytes(t, s.Dir())
	m1 := recordMail(t, s, keys, body, mailETag)
	meta1 := storetest.PackBytes(t, s.Dir()) - p0 + storetest.ManifestBytes(t, s.Dir(), m1.ID)

	p1 := storetest.PackBytes(t, s.Dir())
	m2 := recordMail(t, s, keys, body, mailETag)
	if got := storetest.PackBytes(t, s.Dir()) - p1; got != 0 {
		t.Errorf("a snapshot where nothing changed wrote %d bytes of packs, want 0", got)
	}
	meta2 := storetest.ManifestBytes(t, s.Dir(), m2.ID)
	t.Logf("first snapshot: %d bytes of metadata (%.1f per record); no-change snapshot: %d bytes (%.2f%%)", meta1, float64(meta1)/float64(len(keys)), meta2, 100*float64(meta2)/float64(meta1))
	if meta2*100 >= meta1 {
		t.Errorf("a snapshot where nothing changed wrote %d bytes of metadata, the first %d: want under 1%%", meta2, meta1)
	}

	// 100 keys in a row change (a user's folder): a few chunks around them.
	p2 := storetest.PackBytes(t, s.Dir())
	changed := func(i int) string {
		if i >= 7000 && i < 7100 {
			return "changed"
		}
		return mailETag(i)
	}
	m3 := recordMail(t, s, keys, body, changed)
	x2, err := s.IndexSnapshot(m2.ID)
	if err != nil {
		t.Fatal(err)
	}
	x3, err := s.IndexSnapshot(m3.ID)
	if err != nil {
		t.Fatal(err)
	}
	old := map[ChunkID]bool{}
	for _, f := range x2.frames {
		old[*f.chunk] = true
	}
	fresh := 0
	records := 0
	for _, f := range x3.frames {
		if !old[*f.chunk] {
			fresh++
			records += f.count
		}
	}
	// The cuts depend on the keys alone, so exactly the chunks that hold
	// a changed key are new: one, or a few when a cut falls among the 100
	// (cuts are random per store). Chunk sizes are geometric (a cut after
	// one key in 256 on average), so they may be large.
	holding := 0
	for _, f := range x2.frames {
		if bytes.Compare(f.last, keys[7000]) >= 0 && bytes.Compare(f.first, keys[7099]) <= 0 {
			holding++
		}
	}
	t.Logf("100 changed keys: %d of %d chunks new, holding %d records; %d bytes of packs written", fresh, len(x3.frames), records, storetest.PackBytes(t, s.Dir())-p2)
	if fresh != holding || len(x3.frames) != len(x2.frames) || 4*fresh > len(x3.frames) {
		t.Errorf("100 changed keys in a row made %d new metadata chunks of %d (%d before); %d held a changed key", fresh, len(x3.frames), len(x2.frames), holding)
	}

	for _, c := range []struct {
		m    *Manifest
		etag func(int) string
	}{{m1, mailETag}, {m2, mailETag}, {m3, changed}} {
		got, err := s.ReadManifest(c.m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Objects) != len(keys) || got.Count != int64(len(keys)) {
			t.Fatalf("%s: %d records (count %d), want %d", c.m.ID, len(got.Objects), got.Count, len(keys))
		}
		for i, o := range got.Objects {
			if !bytes.Equal(o.Key, keys[i]) || o.ETag != c.etag(i) || !slices.Equal(o.Chunks, body.Chunks) {
				t.Fatalf("%s record %d: %q %q, want %q %q", c.m.ID, i, o.Key, o.ETag, keys[i], c.etag(i))
			}
		}
	}
	mustVerify(t, s)
}

// TestMetadataChunkReferenceChecked: the worker, which holds the meta key
// and writes manifests, journals a reference whose chunk, counts or keys
// are not the chunk's. Every read of the snapshot fails with a
// MetaChunkError (the index's, when it reaches that chunk; or at once
// with ErrCorrupt when the forged counts do not add up to the tail's),
// and prune, which then cannot know what the snapshot's
// records name, removes no pack, not even an expired snapshot's. The row
// without forgery shows that prune removes that pack otherwise.
func TestMetadataChunkReferenceChecked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		forge func(r *wireRef)
		// keepAll: prune cannot tell what the records name. Otherwise
		// (a forged key, which names no chunk) it reads every chunk the
		// records name, marks them, and may remove the expired pack.
		keepAll bool
	}{
		{"none", nil, false},
		{"count", func(r *wireRef) { r.Count++ }, true},
		{"bytes", func(r *wireRef) { r.Bytes++ }, true},
		{"first key", func(r *wireRef) { r.First = []byte("a") }, false},
		{"last key", func(r *wireRef) { r.Last = append(slices.Clone(r.Last), 0) }, false},
		{"chunk", func(r *wireRef) { r.Chunk = bytes.Repeat([]byte{7}, 32) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			clk := &fakeClock{t: t0}
			s := newStore(t, InitOptions{}, Options{Clock: clk})
			old, err := s.Begin(t.Context(), BeginOptions{Source: "mail", RetainUntil: t0.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := old.Put(t.Context(), ObjectInfo{Key: []byte("old")}, bytes.NewReader([]byte("only the expired snapshot names this"))); err != nil {
				t.Fatal(err)
			}
			if _, err := old.Commit(t.Context(), CommitOptions{}); err != nil {
				t.Fatal(err)
			}
			clk.set(t0.Add(time.Second))
			body := storedBody(t, s)
			// A clean snapshot of the same records, which shares the
			// forged reference's chunk, comes first in verify's order.
			clean := recordMail(t, s, mailKeys(50), body, mailETag)
			clk.set(t0.Add(2 * time.Second))
			sn, err := s.Begin(t.Context(), BeginOptions{Source: "mail", Sorted: true, RetainUntil: t0.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			for i, k := range mailKeys(50) {
				o := body
				o.Key, o.ETag, o.ModTime = k, mailETag(i), time.Unix(int64(1700000000+i), 0).UTC()
				if err := sn.PutExisting(o); err != nil {
					t.Fatal(err)
				}
			}
			sn.mu.Lock()
			err = sn.cutMeta() // as Commit does
			if err == nil && (len(sn.queued) == 0 || sn.queued[0].ref == nil) {
				err = fmt.Errorf("queued %+v, want references", sn.queued)
			}
			if err == nil && tc.forge != nil {
				tc.forge(sn.queued[0].ref) // before it is journaled
			}
			if err == nil {
				err = sn.waitFinished()
			}
			if err == nil {
				err = sn.flushQueued()
			}
			sn.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			m, err := sn.Commit(t.Context(), CommitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var mc *MetaChunkError
			_, rerr := s.ReadManifest(m.ID)
			_, werr := s.WalkObjects(m.ID, func(Object) error { return nil })
			// The index reads a chunk only when a lookup reaches it: a
			// walk of it fails there, unless the references' counts do
			// not add up to the tail's and the index pass refuses them.
			x, xerr := s.IndexSnapshot(m.ID)
			if xerr == nil {
				it := x.Seek(nil)
				for _, ok := it.Next(); ok; _, ok = it.Next() {
				}
				xerr = it.Err()
			}
			for what, err := range map[string]error{"read": rerr, "walk": werr, "index": xerr} {
				if tc.forge == nil && err != nil {
					t.Errorf("%s: %v", what, err)
				}
				if tc.forge != nil && !errors.As(err, &mc) && !(what == "index" && errors.Is(err, ErrCorrupt)) {
					t.Errorf("%s: %v, want a MetaChunkError", what, err)
				}
			}
			// Verify names the forged snapshot, although it checked the
			// chunk clean under the clean snapshot's reference.
			if tc.forge != nil {
				rep, err := s.Verify(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Contains(rep.DamagedSnapshots, m.ID) || slices.Contains(rep.DamagedSnapshots, clean.ID) {
					t.Errorf("verify named %v damaged; want the forged %s, not the clean %s", rep.DamagedSnapshots, m.ID, clean.ID)
				}
			}
			packs, err := s.listPacks()
			if err != nil {
				t.Fatal(err)
			}
			clk.set(t0.Add(48 * time.Hour))
			res, err := s.Prune(context.Background(), PruneOptions{Now: t0.Add(48 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			after, err := s.listPacks()
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Expired) != 1 {
				t.Fatalf("prune expired %v, want the old snapshot", res.Expired)
			}
			if !tc.keepAll {
				if res.KeptAllPacks || len(res.Packs) == 0 || len(after) >= len(packs) {
					t.Errorf("prune: kept all %v, removed %d packs (%d before, %d after); want the expired one removed", res.KeptAllPacks, len(res.Packs), len(packs), len(after))
				}
				// Every chunk the kept snapshot names is still there.
				if err := s.WriteObject(t.Context(), body, io.Discard); err != nil {
					t.Errorf("after prune: %v", err)
				}
				if tc.forge == nil {
					mustVerify(t, s)
				}
				return
			}
			if !res.KeptAllPacks || len(res.Packs) != 0 || !slices.Equal(packs, after) {
				t.Errorf("prune with an unreadable snapshot: kept all %v, removed %d packs (%d before, %d after)", res.KeptAllPacks, len(res.Packs), len(packs), len(after))
			}
		})
	}
}

// TestPruneReadsSharedMetadataOnce: five snapshots of a bucket where
// nothing changed share their metadata chunks; prune reads each once, not
// once per snapshot, and still keeps every chunk they name.
func TestPruneReadsSharedMetadataOnce(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	body := storedBody(t, s)
	keys := mailKeys(5_000)
	var last *Manifest
	for range 5 {
		last = recordMail(t, s, keys, body, mailETag)
	}
	ms, err := s.SnapshotMetadata(last.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ms.Chunks < 5 {
		t.Fatalf("%d metadata chunks; the test needs several", ms.Chunks)
	}
	before := s.metaReads.Load()
	res, err := s.Prune(t.Context(), PruneOptions{})
	if err != nil || res.KeptAllPacks || len(res.Kept) != 6 {
		t.Fatalf("prune: %+v, %v", res, err)
	}
	// The body's snapshot has a metadata chunk of its own.
	if got := s.metaReads.Load() - before; got != int64(ms.Chunks)+1 {
		t.Errorf("prune read %d metadata chunks; the 5 snapshots share %d, the body's snapshot has 1", got, ms.Chunks)
	}
	if err := s.WriteObject(t.Context(), body, io.Discard); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s)
}

// TestFindObjectReadsOneMetadataChunk: cat of one key in a sorted
// snapshot reads the metadata chunk that holds it (and the next one only
// when the key's records run on into it), not the chunks before it.
func TestFindObjectReadsOneMetadataChunk(t *testing.T) {
	s, keys, m, ms := mailSnapshot(t, 20_000)
	if ms.Chunks < 10 {
		t.Fatalf("%d metadata chunks; the test needs many", ms.Chunks)
	}
	for _, i := range []int{0, 1, 7000, 13333, 19999} {
		before := s.metaReads.Load()
		_, o, err := s.FindObject(m.ID, keys[i])
		if err != nil || !bytes.Equal(o.Key, keys[i]) || o.ETag != mailETag(i) {
			t.Fatalf("find key %d: %q %q, %v", i, o.Key, o.ETag, err)
		}
		if got := s.metaReads.Load() - before; got < 1 || got > 2 {
			t.Errorf("find key %d read %d metadata chunks of %d; want 1 or 2", i, got, ms.Chunks)
		}
	}
	if _, _, err := s.FindObject(m.ID, []byte("user9999/none")); !errors.Is(err, ErrNoObject) {
		t.Errorf("find a key past the last: %v, want ErrNoObject", err)
	}
}

// TestWalkCurrentRangeSeeks: a walk of one prefix of a sorted snapshot
// (restore --prefix) hands over exactly what a filtered walk of the whole
// snapshot does, and reads only the metadata chunks that hold the prefix.
func TestWalkCurrentRangeSeeks(t *testing.T) {
	s, _, m, ms := mailSnapshot(t, 20_000)
	x, err := s.IndexSnapshot(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	walk := func(r KeyRange, match func([]byte) bool) ([]string, int64) {
		var got []string
		before := s.metaReads.Load()
		if _, err := s.WalkCurrentRange(m.ID, r, match, func(o Object) error {
			got = append(got, string(o.Key))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got, s.metaReads.Load() - before
	}
	for _, prefix := range []string{"user0000/", "user0050/", "user0133/", "user0050/Maildir/cur/", "user9"} {
		has := func(k []byte) bool { return bytes.HasPrefix(k, []byte(prefix)) }
		want, all := walk(KeyRange{}, has)
		got, reads := walk(PrefixRange([]byte(prefix)), nil)
		if !slices.Equal(got, want) {
			t.Errorf("prefix %q: %d keys, want %d", prefix, len(got), len(want))
		}
		// The walk reads the chunks that meet the prefix (150 keys of one
		// user: one or a few, as cuts are random per store) and at most
		// the first chunk past them, where it stops.
		r := PrefixRange([]byte(prefix))
		meet := 0
		for _, f := range x.frames {
			if r.meets(f.first, f.last) {
				meet++
			}
		}
		if all != int64(ms.Chunks) || reads > int64(meet)+1 || 4*reads > all {
			t.Errorf("prefix %q: read %d metadata chunks of %d (a whole walk read %d); %d meet the prefix", prefix, reads, ms.Chunks, all, meet)
		}
	}
	if r := PrefixRange([]byte("a\xff\xff")); string(r.To) != "b" {
		t.Errorf("PrefixRange(a\\xff\\xff).To = %q, want b", r.To)
	}
	if r := PrefixRange([]byte("\xff")); r.To != nil {
		t.Errorf("PrefixRange(\\xff).To = %q, want none", r.To)
	}
}

// TestVerifyReadsSharedMetadataOnce: verify reads a metadata chunk that
// several snapshots share once, when the first snapshot that names it is
// found clean, and counts it from its reference in the others; its report
// counts every snapshot's objects all the same. When a data chunk every
// record names is damaged, no snapshot is clean: each is read whole and
// named, with each of its objects.
func TestVerifyReadsSharedMetadataOnce(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	body := storedBody(t, s)
	keys := mailKeys(5_000)
	for range 4 {
		recordMail(t, s, keys, body, mailETag)
	}
	recordMail(t, s, keys, body, func(i int) string {
		if i >= 500 && i < 520 {
			return "changed"
		}
		return mailETag(i)
	})
	chunks := 0 // every reference, in every snapshot (the body's too)
	unique := map[ChunkID]bool{}
	all, err := s.Snapshots()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		f, _, err := s.openCommitted(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = s.walkFrames(f, false, false, walkHooks{refsOnly: true, onRef: func(c ChunkID) {
			chunks++
			unique[c] = true
		}})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(unique) < 5 || chunks < 3*len(unique) {
		t.Fatalf("%d references to %d metadata chunks; the test needs several shared ones", chunks, len(unique))
	}
	verify := func() (*Report, int64) {
		t.Helper()
		before := s.metaReads.Load()
		r, err := s.Verify(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return r, s.metaReads.Load() - before
	}
	r, reads := verify()
	if !r.OK() || r.Snapshots != 6 || r.Objects != 5*len(keys)+1 {
		t.Errorf("verify: ok %v, %d snapshots, %d objects; want 6 and %d: %v", r.OK(), r.Snapshots, r.Objects, 5*len(keys)+1, r.Problems)
	}
	if reads != int64(len(unique)) {
		t.Errorf("verify read %d metadata chunks; %d distinct ones are referenced %d times", reads, len(unique), chunks)
	}

	locs := s.idx.locations(body.Chunks[0])
	if len(locs) != 1 {
		t.Fatalf("body chunk in %d places", len(locs))
	}
	p := s.packPath(locs[0].packName())
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw[int64(locs[0].offset)+int64(locs[0].length)/2] ^= 1
	unsealAll(t, s.Dir())
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r, reads = verify()
	if len(r.DamagedSnapshots) != 6 || len(r.DamagedObjects) != 5*len(keys)+1 {
		t.Errorf("verify with the body damaged: %d damaged snapshots, %d damaged objects; want 6 and %d", len(r.DamagedSnapshots), len(r.DamagedObjects), 5*len(keys)+1)
	}
	if reads != int64(chunks) {
		t.Errorf("verify with the body damaged read %d metadata chunks, want every reference's (%d)", reads, chunks)
	}
}
