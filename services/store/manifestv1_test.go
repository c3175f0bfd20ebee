package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// openV1 opens (read-write) a store written by the old code, whose
// manifests are in the first format (HFSNAP01).
func openV1(t *testing.T) (*Store, storetest.V1Fixture) {
	t.Helper()
	dir := storeDir(t)
	fx := storetest.V1Store(t, dir)
	master, err := hex.DecodeString(fx.Master)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), dir, StaticKey(master), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open the v1 store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, fx
}

// checkV1Objects reads every object of the fixture back through
// FindObject and WriteObject and compares its digest.
func checkV1Objects(t *testing.T, s *Store, fx storetest.V1Fixture) {
	t.Helper()
	for _, id := range fx.Snapshots {
		m, err := s.ReadManifest(id)
		if err != nil {
			t.Fatalf("read manifest %s: %v", id, err)
		}
		if len(m.Objects) != len(fx.Objects[id]) {
			t.Errorf("%s: %d objects, want %d", id, len(m.Objects), len(fx.Objects[id]))
		}
		for key, sum := range fx.Objects[id] {
			_, o, err := s.FindObject(id, []byte(key))
			if err != nil {
				t.Fatalf("find %s in %s: %v", key, id, err)
			}
			h := sha256.New()
			if err := s.WriteObject(context.Background(), o, h); err != nil {
				t.Fatalf("read %s: %v", key, err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != sum {
				t.Errorf("%s in %s: sha256 %s, want %s", key, id, got, sum)
			}
		}
	}
}

// TestV1ManifestsStayReadable: a store written before snapshot heads lists,
// reads, verifies, prunes and mirrors as before, and takes new snapshots
// beside its old ones.
func TestV1ManifestsStayReadable(t *testing.T) {
	ctx := context.Background()
	s, fx := openV1(t)
	infos, err := s.Snapshots()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range infos {
		ids = append(ids, in.ID)
		if in.Source != "v1-fixture" || in.Count != int64(len(fx.Objects[in.ID])) || in.Finished.IsZero() || in.RetainUntil.IsZero() {
			t.Errorf("summary %+v", in.Manifest)
		}
		if !slices.Equal(in.Errors, fx.Errors[in.ID]) || in.Complete != (len(fx.Errors[in.ID]) == 0) {
			t.Errorf("%s: errors %q complete %v, want %q", in.ID, in.Errors, in.Complete, fx.Errors[in.ID])
		}
	}
	if !slices.Equal(ids, fx.Snapshots) {
		t.Fatalf("snapshots %v, want %v", ids, fx.Snapshots)
	}
	checkV1Objects(t, s, fx)
	// The old code kept a whole-file index cache, which nothing reads any
	// more: verify names it (it could as well be forged) until prune
	// removes it, and names nothing else.
	vr, err := s.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if vr.Snapshots != 2 {
		t.Errorf("verify saw %d snapshots", vr.Snapshots)
	}
	for _, p := range vr.Problems {
		if p.Kind != "index" || p.Path != indexDir+"/"+legacyIndex {
			t.Errorf("verify of the old store: %+v", p)
		}
	}

	// A new snapshot beside the old ones shares their chunks.
	sn, err := s.Begin(ctx, BeginOptions{Source: "new"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Put(ctx, ObjectInfo{Key: []byte("new")}, bytes.NewReader([]byte("new object"))); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Commit(ctx, CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	if infos, err := s.Snapshots(); err != nil || len(infos) != 3 {
		t.Fatalf("%d snapshots, %v", len(infos), err)
	}

	// Prune now removes nothing; thirty years on, the older snapshot goes
	// (prune keeps the newest of every source) and every pack stays, since
	// the newer one still references chunks in each (a dry run).
	r, err := s.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Expired) != 0 || len(r.Packs) != 0 || r.KeptAllPacks {
		t.Errorf("prune now: %+v", r)
	}
	r, err = s.Prune(ctx, PruneOptions{DryRun: true, Now: time.Now().AddDate(30, 0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Expired, fx.Snapshots[:1]) || len(r.Packs) != 0 || r.KeptAllPacks {
		t.Errorf("prune in thirty years: expired %v, packs %v, kept all %v", r.Expired, r.Packs, r.KeptAllPacks)
	}

	// A mirror copies the old manifests as they are and reads them.
	b, err := InitMirror(ctx, filepath.Join(storeDir(t)), s, StaticKey(mustHex(t, fx.Master)), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	files, err := ListSealed(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Rel == "recovery/wrapped-key" {
			continue // InitMirror copied it
		}
		if _, err := b.InstallCopy(ctx, s.Dir(), f.Rel); err != nil {
			t.Fatalf("install %s: %v", f.Rel, err)
		}
	}
	if err := b.SaveIndex(); err != nil {
		t.Fatal(err)
	}
	checkV1Objects(t, b, fx)
	mustVerify(t, b)
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResumeV1Journal: a snapshot the old code left in progress (a format
// 1 journal, after a crash and a firmware update) resumes and commits in
// format 1, and reads back whole.
func TestResumeV1Journal(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	base := putObjects(t, s, "base", time.Time{}, map[string][]byte{"a": []byte("aaa")})
	m, err := s.ReadManifest(base.ID)
	if err != nil {
		t.Fatal(err)
	}
	const id = "20260101T000000Z-00c0ffee"
	enc := func(v any) []byte {
		b, err := s.codec.marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	journal := buildFrames(s, id, []frameSpec{
		{frameHead, enc(wireHead{Source: "old", Started: time.Now().UnixNano()})},
		{frameObjects, enc([]wireObject{toWire(m.Objects[0])})},
	}, true)
	if err := os.WriteFile(s.path(wipDir, id+".journal"), journal, 0o600); err != nil {
		t.Fatal(err)
	}
	sn, err := s.Resume(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Put(ctx, ObjectInfo{Key: []byte("b")}, bytes.NewReader([]byte("bbbb"))); err != nil {
		t.Fatal(err)
	}
	sn.RecordError("after the update")
	if _, err := sn.Commit(ctx, CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(s.path(snapshotsDir, id+".snap"))
	if err != nil {
		t.Fatal(err)
	}
	if string(raw[:8]) != snapMagicV1 {
		t.Errorf("resumed format 1 journal committed as %q", raw[:8])
	}
	checkSnapshot(t, s, id, map[string][]byte{"a": []byte("aaa"), "b": []byte("bbbb")})
	h, err := s.SnapshotHead(id)
	if err != nil || h.Count != 2 || !slices.Equal(h.Errors, []string{"after the update"}) || h.Complete {
		t.Errorf("head %+v, %v", h, err)
	}
	mustVerify(t, s)
}
