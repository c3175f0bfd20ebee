package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

func walkKeys(t *testing.T, s *Store, id string) []string {
	t.Helper()
	var keys []string
	if _, err := s.WalkObjects(id, func(o Object) error {
		keys = append(keys, string(o.Key))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestSortedSnapshot: a sorted snapshot takes keys in ascending order
// (equal keys adjacent) and refuses a key below the last; its head says
// sorted, in the summary, the full read and the commit's result. An
// unsorted one takes any order and says so.
func TestSortedSnapshot(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	sn, err := s.Begin(ctx, BeginOptions{Source: "sorted", Sorted: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := sn.Put(ctx, ObjectInfo{Key: []byte("b")}, bytes.NewReader([]byte("bee")))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"b", "c", "c\x00"} {
		o := a
		o.Key = []byte(k)
		if err := sn.PutExisting(o); err != nil {
			t.Fatalf("record %q: %v", k, err)
		}
	}
	for _, k := range []string{"a", "c", ""} {
		o := a
		o.Key = []byte(k)
		if err := sn.PutExisting(o); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("record %q after %q: %v, want ErrOutOfOrder", k, "c\x00", err)
		}
	}
	if _, err := sn.Put(ctx, ObjectInfo{Key: []byte("a")}, bytes.NewReader([]byte("ay"))); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("put %q: %v, want ErrOutOfOrder", "a", err)
	}
	m, err := sn.Commit(ctx, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Sorted || m.Count != 4 || len(m.Objects) != 0 {
		t.Errorf("commit: sorted %v, count %d, %d objects returned", m.Sorted, m.Count, len(m.Objects))
	}
	if h, err := s.SnapshotHead(m.ID); err != nil || !h.Sorted {
		t.Errorf("head: %+v, %v", h, err)
	}
	if full, err := s.ReadManifest(m.ID); err != nil || !full.Sorted || len(full.Objects) != 4 {
		t.Errorf("read: %v", err)
	}
	if got, want := fmt.Sprint(walkKeys(t, s, m.ID)), fmt.Sprint([]string{"b", "b", "c", "c\x00"}); got != want {
		t.Errorf("recorded %s, want %s", got, want)
	}

	un, err := s.Begin(ctx, BeginOptions{Source: "unsorted"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"z", "a"} {
		o := a
		o.Key = []byte(k)
		if err := un.PutExisting(o); err != nil {
			t.Fatal(err)
		}
	}
	m2, err := un.Commit(ctx, CommitOptions{})
	if err != nil || m2.Sorted {
		t.Fatalf("unsorted commit: %v, sorted %v", err, m2 != nil && m2.Sorted)
	}
	if h, err := s.SnapshotHead(m2.ID); err != nil || h.Sorted {
		t.Errorf("unsorted head: %+v, %v", h, err)
	}
}

// TestStoreBodyRecordsNothing: StoreBody stores the chunks and records
// nothing; PutExisting then records the object, in the caller's order.
func TestStoreBodyRecordsNothing(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	sn, err := s.Begin(ctx, BeginOptions{Source: "body", Sorted: true})
	if err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{"x": randBytes(1, 5000), "y": randBytes(2, 7000)}
	y, err := sn.StoreBody(ctx, ObjectInfo{Key: []byte("y")}, bytes.NewReader(data["y"]))
	if err != nil {
		t.Fatal(err)
	}
	x, err := sn.StoreBody(ctx, ObjectInfo{Key: []byte("x")}, bytes.NewReader(data["x"]))
	if err != nil {
		t.Fatal(err)
	}
	if sn.Count() != 0 {
		t.Fatalf("StoreBody recorded: count %d", sn.Count())
	}
	for _, o := range []Object{x, y} {
		if err := sn.PutExisting(o); err != nil {
			t.Fatal(err)
		}
	}
	m, err := sn.Commit(ctx, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, s, m.ID, data)
	if got := fmt.Sprint(walkKeys(t, s, m.ID)); got != "[x y]" {
		t.Errorf("recorded %s", got)
	}
}

// TestResumeSorted: a sorted journal left by a crash resumes sorted:
// Count and WalkJournaled give what it holds (read back from the journal;
// the snapshot keeps no list), it still refuses a key below its last, and
// the committed snapshot holds the old and new objects in order.
func TestResumeSorted(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
	sn, err := s.Begin(ctx, BeginOptions{Source: "src", Sorted: true, RetainUntil: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string][]byte{}
	for i := range 5 {
		k := fmt.Sprintf("k%d", i)
		objs[k] = randBytes(uint64(i), 600<<10) // packs of 1 MiB close as they go
		if _, err := sn.Put(ctx, ObjectInfo{Key: []byte(k)}, bytes.NewReader(objs[k])); err != nil {
			t.Fatal(err)
		}
	}
	crash(sn)
	s = reopen(t, s, Options{})
	sn2, err := s.Resume(ctx, sn.ID())
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	if err := sn2.WalkJournaled(func(o Object) error {
		held = append(held, string(o.Key))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(held) == 0 || int64(len(held)) != sn2.Count() {
		t.Fatalf("resumed: journal holds %v, count %d", held, sn2.Count())
	}
	last := held[len(held)-1]
	if _, err := sn2.Put(ctx, ObjectInfo{Key: []byte("a")}, bytes.NewReader([]byte("a"))); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("put %q after resuming at %q: %v, want ErrOutOfOrder", "a", last, err)
	}
	want := map[string][]byte{}
	for _, k := range held {
		want[k] = objs[k]
	}
	for _, k := range []string{"k5", "k6"} {
		want[k] = randBytes(uint64(len(k)+100), 1000)
		if _, err := sn2.Put(ctx, ObjectInfo{Key: []byte(k)}, bytes.NewReader(want[k])); err != nil {
			t.Fatal(err)
		}
	}
	m, err := sn2.Commit(ctx, CommitOptions{})
	if err != nil || !m.Sorted || m.Count != int64(len(want)) {
		t.Fatalf("commit: %v, %+v", err, m)
	}
	checkSnapshot(t, s, m.ID, want)
	keys := walkKeys(t, s, m.ID)
	for i := 1; i < len(keys); i++ {
		if keys[i] < keys[i-1] {
			t.Fatalf("recorded out of order: %v", keys)
		}
	}
}

// TestRecordsWaitingForAPackAreBounded: records queued behind an open pack
// (a pull reusing many objects while it writes few chunks) do not pile up:
// the pack is sealed early, and the heap stays flat.
func TestRecordsWaitingForAPackAreBounded(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	sn, err := s.Begin(ctx, BeginOptions{Source: "queue", Sorted: true})
	if err != nil {
		t.Fatal(err)
	}
	seed, err := sn.Put(ctx, ObjectInfo{Key: []byte("0")}, bytes.NewReader([]byte("seed")))
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	// The queue fills and drains as packs seal (up to about 15,000 records
	// here), so one sample can catch it full and another empty: compare
	// the highest of the samples in the second quarter of the run with the
	// highest in the last quarter, both past the first fills (the two
	// differ by up to 13 MiB on a loaded machine). Records kept for the
	// whole run (about 170 bytes each in RAM) would add 25 MiB between the
	// two.
	var early, late uint64
	const n = 600_000
	for i := range n {
		if i%100 == 0 {
			// A small new body keeps a pack open.
			if _, err := sn.StoreBody(ctx, ObjectInfo{Key: []byte("x")}, bytes.NewReader(fmt.Appendf(nil, "new %d", i))); err != nil {
				t.Fatal(err)
			}
		}
		o := seed
		o.Key = fmt.Appendf(nil, "k%09d", i)
		o.ETag = "an etag of some length, as S3 gives"
		if err := sn.PutExisting(o); err != nil {
			t.Fatal(err)
		}
		switch {
		case i%5000 != 0:
		case i >= n/4 && i < n/2:
			early = max(early, heap())
		case i >= n*3/4:
			late = max(late, heap())
		}
	}
	sn.mu.Lock()
	queued := len(sn.queued)
	sn.mu.Unlock()
	if late > early+16<<20 || queued > n/10 {
		t.Errorf("heap peaked at %d MiB late in %d records, %d MiB early; %d records queued", late>>20, n, early>>20, queued)
	}
	if _, err := sn.Commit(ctx, CommitOptions{}); err != nil {
		t.Fatal(err)
	}
}
