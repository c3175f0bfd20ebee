package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rchar returns the bytes this process has read through read system
// calls so far (/proc/self/io): what a test counts to show how much of the
// store a call reads, whatever the page cache holds.
func rchar(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no rchar in /proc/self/io")
	return 0
}

// TestSnapshotsReadsHeadsOnly: listing snapshots reads each manifest's head
// and tail, not its object records: the bytes read do not grow with the
// object count (format 1 read S x N x ~100 bytes here, ~2.6 MB).
func TestSnapshotsReadsHeadsOnly(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	const snaps, objects = 8, 10000
	seed := putObjects(t, s, "seed", time.Time{}, map[string][]byte{"x": []byte("shared content")})
	m, err := s.ReadManifest(seed.ID)
	if err != nil {
		t.Fatal(err)
	}
	obj := m.Objects[0]
	var manifestBytes int64
	for i := 0; i < snaps; i++ {
		sn, err := s.Begin(ctx, BeginOptions{Source: fmt.Sprintf("src-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < objects; j++ {
			o := obj
			o.Key = fmt.Appendf(nil, "mail/user%04d/cur/%08d.eml", j%500, j)
			if err := sn.PutExisting(o); err != nil {
				t.Fatal(err)
			}
		}
		if i%2 == 1 {
			sn.RecordError(fmt.Sprintf("error in %d", i))
		}
		m, err := sn.Commit(ctx, CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(s.path(snapshotsDir, m.ID+".snap"))
		if err != nil {
			t.Fatal(err)
		}
		manifestBytes += st.Size()
	}
	before := rchar(t)
	infos, err := s.Snapshots()
	read := rchar(t) - before
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != snaps+1 {
		t.Fatalf("%d snapshots", len(infos))
	}
	for i, in := range infos[1:] {
		wantErrs := []string(nil)
		if i%2 == 1 {
			wantErrs = []string{fmt.Sprintf("error in %d", i)}
		}
		if in.Count != objects || in.Bytes != objects*obj.Size || in.Source != fmt.Sprintf("src-%d", i) ||
			!slices.Equal(in.Errors, wantErrs) || in.Complete != (wantErrs == nil) || in.Finished.IsZero() {
			t.Errorf("snapshot %d: %+v", i, in.Manifest)
		}
	}
	t.Logf("Snapshots() read %d bytes of %d manifests holding %d bytes", read, snaps+1, manifestBytes)
	if limit := int64(snaps+1) * 512; read > limit {
		t.Errorf("Snapshots() read %d bytes of %d manifests (%d bytes); want at most %d", read, snaps+1, manifestBytes, limit)
	}
	// The full read agrees with the head.
	for _, in := range infos {
		m, err := s.ReadManifest(in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if m.Count != in.Count || m.Bytes != in.Bytes || !slices.Equal(m.Errors, in.Errors) || !m.Finished.Equal(in.Finished) || m.Complete != in.Complete {
			t.Errorf("%s: full read %+v, head %+v", in.ID, m, in.Manifest)
		}
	}
	mustVerify(t, s)
}

// TestJournalCutAfterErrorsFrame: a crash between the errors frame and the
// tail leaves a journal in progress; it resumes (the errors frame is cut
// off with the torn end) and commits with the errors recorded after it.
func TestJournalCutAfterErrorsFrame(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	sn, err := s.Begin(ctx, BeginOptions{Source: "src"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Put(ctx, ObjectInfo{Key: []byte("a")}, bytes.NewReader([]byte("aaa"))); err != nil {
		t.Fatal(err)
	}
	sn.mu.Lock()
	err = sn.cutMeta() // as Commit does: stores the records' chunk,
	if err == nil {
		err = sn.waitFinished() // seals the open pack,
	}
	if err == nil { // and journals the reference
		err = sn.flushQueued()
	}
	sn.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s.codec.marshal([]string{"lost with the crash"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sn.j.writeFrame(frameErrors, plain); err != nil {
		t.Fatal(err)
	}
	crash(sn)

	s = reopen(t, s, Options{})
	in, err := s.Interrupted()
	if err != nil || len(in) != 1 || in[0].Objects != 1 {
		t.Fatalf("interrupted %+v, %v", in, err)
	}
	sn, err = s.Resume(ctx, in[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Put(ctx, ObjectInfo{Key: []byte("b")}, bytes.NewReader([]byte("bbbb"))); err != nil {
		t.Fatal(err)
	}
	sn.RecordError("after resume")
	m, err := sn.Commit(ctx, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, s, m.ID, map[string][]byte{"a": []byte("aaa"), "b": []byte("bbbb")})
	infos, err := s.Snapshots()
	if err != nil || len(infos) != 1 || !slices.Equal(infos[0].Errors, []string{"after resume"}) || infos[0].Count != 2 {
		t.Fatalf("snapshots %+v, %v", infos, err)
	}
	mustVerify(t, s)
}

// TestManifestHeadRefusesDamage: the head reader refuses a tail or errors
// frame that does not authenticate or does not fit, so a listing skips the
// manifest (and a full read fails too) rather than trust it.
func TestManifestHeadRefusesDamage(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	sn, err := s.Begin(ctx, BeginOptions{Source: "src"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Put(ctx, ObjectInfo{Key: []byte("a")}, bytes.NewReader([]byte("aaa"))); err != nil {
		t.Fatal(err)
	}
	sn.RecordError("e")
	m, err := sn.Commit(ctx, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(s.path(snapshotsDir, m.ID+".snap"))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := s.readHead(bytes.NewReader(good), int64(len(good))); err != nil || h.Count != 1 || !slices.Equal(h.Errors, []string{"e"}) {
		t.Fatalf("good manifest: %+v, %v", h, err)
	}
	n := len(good)
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"tail bit flipped", func(b []byte) []byte { b[n-1] ^= 1; return b }},
		{"tail cut off", func(b []byte) []byte { return b[:n-tailFrameLen] }},
		{"errors frame bit flipped", func(b []byte) []byte { b[n-tailFrameLen-1] ^= 1; return b }},
		{"head bit flipped", func(b []byte) []byte { b[snapHdrLen+frameHdrLen+3] ^= 1; return b }},
		{"another snapshot's ID", func(b []byte) []byte { b[snapHdrLen-1] ^= 1; return b }},
		{"a byte appended", func(b []byte) []byte { return append(b, 0) }},
		{"only the header", func(b []byte) []byte { return b[:snapHdrLen] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(slices.Clone(good))
			if h, err := s.readHead(bytes.NewReader(b), int64(len(b))); err == nil {
				t.Errorf("head read: %+v", h)
			}
			if _, _, err := s.readManifestFrames(bytes.NewReader(b), false, false); err == nil {
				t.Error("full read passed")
			}
		})
	}
}

// TestRetentionReadsHeadOnly: Extend (ingest on a mass change, the
// console) and ConfirmRetention (PID 1, after every extend the worker
// reports) read a manifest's head, not its objects (both read the whole
// manifest before snapshot heads: here ~1.7 MB).
func TestRetentionReadsHeadOnly(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	seed := putObjects(t, s, "seed", time.Time{}, map[string][]byte{"x": []byte("shared content")})
	m, err := s.ReadManifest(seed.ID)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := s.Begin(ctx, BeginOptions{Source: "big", RetainUntil: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < 30000; j++ {
		o := m.Objects[0]
		o.Key = fmt.Appendf(nil, "mail/user%04d/cur/%08d.eml", j%500, j)
		if err := sn.PutExisting(o); err != nil {
			t.Fatal(err)
		}
	}
	big, err := sn.Commit(ctx, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(48 * time.Hour)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Extend", func() error { return s.Extend(big.ID, until, true, "test") }},
		{"ConfirmRetention", func() error { return s.ConfirmRetention(big.ID, until, true) }},
	} {
		before := rchar(t)
		err := tc.call()
		read := rchar(t) - before
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		t.Logf("%s read %d bytes", tc.name, read)
		if read > 4096 {
			t.Errorf("%s read %d bytes; want at most 4096", tc.name, read)
		}
	}
}

// TestFindObjectStreams: finding one object in a large snapshot, or
// walking all of them, keeps one frame, not the whole object list (before, it decoded the whole manifest:
// a heap growth of 73 MiB here).
func TestFindObjectStreams(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	objs := map[string][]byte{}
	for i := range 8 {
		objs[fmt.Sprintf("c%02d", i)] = randBytes(uint64(2000+i), 4096)
	}
	m := putObjects(t, s, "seed", time.Time{}, objs)
	const n = 20000
	writeBigSnapshot(t, s, n, m.Objects, time.Time{})
	infos, err := s.Snapshots()
	if err != nil {
		t.Fatal(err)
	}
	id := infos[len(infos)-1].ID
	key := bytes.Repeat([]byte{'k'}, 1024)
	copy(key, strconv.Itoa(n-7))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var o Object
	peak := peakHeap(func() { _, o, err = s.FindObject(id, key) })
	if err != nil {
		t.Fatal(err)
	}
	if want := m.Objects[(n-7)%len(m.Objects)]; !slices.Equal(o.Chunks, want.Chunks) || len(o.UserMeta) != 8 {
		t.Errorf("found %+v", o)
	}
	grew := int64(peak) - int64(before.HeapInuse)
	t.Logf("FindObject in %d objects: heap grew %d MiB", n, grew>>20)
	if grew > 32<<20 {
		t.Errorf("FindObject grew the heap by %d MiB; want at most 32", grew>>20)
	}
	// WalkObjects sees every object in the order recorded, in the same
	// bounded memory, and stops at fn's error.
	seen := 0
	peak = peakHeap(func() {
		_, err = s.WalkObjects(id, func(o Object) error {
			if !bytes.HasPrefix(o.Key, []byte(strconv.Itoa(seen))) {
				return fmt.Errorf("object %d has key %.10q", seen, o.Key)
			}
			seen++
			return nil
		})
	})
	if err != nil || seen != n {
		t.Fatalf("walk saw %d objects: %v", seen, err)
	}
	if grew := int64(peak) - int64(before.HeapInuse); grew > 32<<20 {
		t.Errorf("WalkObjects grew the heap by %d MiB; want at most 32", grew>>20)
	}
	stop := errors.New("stop")
	seen = 0
	if _, err := s.WalkObjects(id, func(Object) error {
		if seen++; seen == 10 {
			return stop
		}
		return nil
	}); err != stop || seen != 10 {
		t.Errorf("walk stopped after %d objects with %v, want 10 and the fn's error", seen, err)
	}
	if _, _, err := s.FindObject(id, []byte("absent")); !errors.Is(err, ErrNoObject) {
		t.Errorf("absent key: %v", err)
	}
	if _, _, err := s.FindObject("20990101T000000Z-00000000", key); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent snapshot: %v", err)
	}
}
