package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// hostileKeys are object keys that must be stored and read back exactly and
// never touch the filesystem.
func hostileKeys() map[string][]byte {
	long := strings.Repeat("k", 1024)
	return map[string][]byte{
		"../../etc/passwd":     []byte("root:x:0:0"),
		"/absolute/path":       []byte("abs"),
		"nul\x00inside":        []byte("nul"),
		"new\nline":            []byte("nl"),
		long:                   []byte("long key"),
		"bad utf8 \xff\xfe":    []byte("invalid utf-8"),
		"":                     []byte("empty key"),
		"snapshots/x.snap":     []byte("looks like a store path"),
		"dir/":                 {},
		"unicode-\u00e9\u4e2d": []byte("ok"),
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		objs map[string][]byte
	}{
		{"sizes", map[string][]byte{
			"empty":       {},
			"one-byte":    {7},
			"4k":          randBytes(1, 4096),
			"min-chunk":   randBytes(2, minChunk),
			"max-chunk+1": randBytes(3, maxChunk+1),
			"20MiB":       randBytes(4, 20<<20),
			"zeros-3MiB":  make([]byte, 3<<20),
		}},
		{"hostile-keys", hostileKeys()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, InitOptions{PackSize: 4 << 20}, Options{})
			m := putObjects(t, s, "src", time.Now().Add(time.Hour), tc.objs)
			if m.Count != int64(len(tc.objs)) || !m.Complete {
				t.Fatalf("manifest: count %d complete %v", m.Count, m.Complete)
			}
			checkSnapshot(t, s, m.ID, tc.objs)
			s = reopen(t, s, Options{})
			checkSnapshot(t, s, m.ID, tc.objs)
			mustVerify(t, s)
			ro := reopen(t, s, Options{ReadOnly: true})
			checkSnapshot(t, ro, m.ID, tc.objs)
			// No object key became a path anywhere in the store.
			filepath.Walk(s.Dir(), func(p string, _ os.FileInfo, _ error) error {
				for k := range tc.objs {
					if len(k) > 3 && strings.Contains(p, k) {
						t.Errorf("object key %q appears in store path %s", k, p)
					}
				}
				return nil
			})
		})
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	dir := s.Dir()
	if _, err := Open(ctx, dir, testKey, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("second writer: got %v, want ErrLocked", err)
	}
	s.Close()
	other := StaticKey(bytes.Repeat([]byte{1}, 32))
	if _, err := Open(ctx, dir, other, Options{}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("wrong key: got %v, want ErrWrongKey", err)
	}
	if _, err := Open(ctx, t.TempDir(), testKey, Options{}); !errors.Is(err, ErrNotStore) {
		t.Errorf("empty dir: got %v, want ErrNotStore", err)
	}
	if _, err := Init(ctx, dir, testKey, InitOptions{}, Options{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("init over a store: got %v, want a refusal", err)
	}
	busy := t.TempDir()
	os.WriteFile(filepath.Join(busy, "precious"), []byte("data"), 0o600)
	if _, err := Init(ctx, busy, testKey, InitOptions{}, Options{}); err == nil {
		t.Error("init in a non-empty directory succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(busy, "precious")); string(b) != "data" {
		t.Error("init touched an existing file")
	}
}

func TestIndexRebuild(t *testing.T) {
	s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
	objs := map[string][]byte{"a": randBytes(10, 5<<20), "b": randBytes(11, 3<<20)}
	m := putObjects(t, s, "src", time.Time{}, objs)
	want := indexRecords(t, s)
	if want == 0 {
		t.Fatal("no chunks indexed")
	}
	for _, tc := range []struct {
		name   string
		damage func(path string)
	}{
		{"deleted", func(p string) { os.Remove(p) }},
		{"garbage", func(p string) { os.WriteFile(p, []byte("HFIXRUN1garbage"), 0o600) }},
		{"truncated", func(p string) { os.Truncate(p, 100) }},
		{"flipped byte in a record page", func(p string) { flipByte(t, p, int64(runHeaderSize)+100) }},
		{"flipped byte in the directory", func(p string) { flipByte(t, p, -100) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Close()
			runs := runFiles(t, s)
			if len(runs) == 0 {
				t.Fatal("no index run")
			}
			for _, r := range runs {
				tc.damage(s.path(indexDir, r))
			}
			s = reopen(t, s, Options{})
			if got := indexRecords(t, s); got != want {
				t.Fatalf("index after %s runs: %d records, want %d", tc.name, got, want)
			}
			checkSnapshot(t, s, m.ID, objs)
		})
	}
	if err := s.RebuildIndex(); err != nil {
		t.Fatal(err)
	}
	if got := indexRecords(t, s); got != want {
		t.Fatalf("rebuilt index: %d records, want %d", got, want)
	}
}

func TestResumeAndDiscard(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
	first := map[string][]byte{"a": randBytes(20, 3<<20), "b": randBytes(21, 3<<20)}
	sn, err := s.Begin(ctx, BeginOptions{Source: "src", RetainUntil: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range sortedKeys(first) {
		if _, err := sn.Put(ctx, ObjectInfo{Key: []byte(k)}, bytes.NewReader(first[k])); err != nil {
			t.Fatal(err)
		}
	}
	// A pack is closed once it reaches 1 MiB; once closed packs are sealed,
	// objects are in the journal except what sits in the open pack.
	// Simulate a crash: drop the process state without Commit or Abort.
	crash(sn)
	s = reopen(t, s, Options{})
	in, err := s.Interrupted()
	if err != nil || len(in) != 1 || in[0].ID != sn.ID() || in[0].Source != "src" {
		t.Fatalf("interrupted = %+v, %v", in, err)
	}
	sn2, err := s.Resume(ctx, sn.ID())
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]bool{}
	journaled, err := sn2.Objects()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range journaled {
		done[string(o.Key)] = true
	}
	if !done["a"] {
		t.Fatalf("resumed snapshot lost object a, which a sealed pack holds: %v", done)
	}
	all := map[string][]byte{"a": first["a"], "b": first["b"], "c": randBytes(22, 1<<20)}
	for _, k := range sortedKeys(all) {
		if done[k] {
			continue
		}
		if _, err := sn2.Put(ctx, ObjectInfo{Key: []byte(k)}, bytes.NewReader(all[k])); err != nil {
			t.Fatal(err)
		}
	}
	m, err := sn2.Commit(ctx, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, s, m.ID, all)
	mustVerify(t, s)

	// Discard: a second interrupted snapshot goes away, nothing else does.
	sn3, err := s.Begin(ctx, BeginOptions{Source: "other"})
	if err != nil {
		t.Fatal(err)
	}
	sn3.Put(ctx, ObjectInfo{Key: []byte("x")}, bytes.NewReader(randBytes(23, 2<<20)))
	crash(sn3)
	s = reopen(t, s, Options{})
	if err := s.Discard(sn3.ID()); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.Interrupted(); len(in) != 0 {
		t.Fatalf("after discard: %+v", in)
	}
	checkSnapshot(t, s, m.ID, all)
	mustVerify(t, s)
}

func TestExtendOnlyLengthens(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	until := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	m := putObjects(t, s, "src", until, map[string][]byte{"a": []byte("x")})
	if err := s.Extend(m.ID, until.Add(-time.Hour), false, "shorten"); !errors.Is(err, ErrShorten) {
		t.Fatalf("shorten: got %v, want ErrShorten", err)
	}
	if err := s.Extend(m.ID, until, false, "same"); !errors.Is(err, ErrShorten) {
		t.Fatalf("no change: got %v, want ErrShorten", err)
	}
	later := until.Add(48 * time.Hour)
	if err := s.Extend(m.ID, later, false, "longer"); err != nil {
		t.Fatal(err)
	}
	if err := s.Extend(m.ID, time.Time{}, true, "hold"); err != nil {
		t.Fatal(err)
	}
	infos, err := s.Snapshots()
	if err != nil || len(infos) != 1 {
		t.Fatalf("snapshots: %v %v", infos, err)
	}
	r := infos[0].Retention
	if !r.RetainUntil.Equal(later) || !r.LegalHold || r.Disagree {
		t.Fatalf("retention %+v, want until %s with hold", r, later)
	}
	if err := s.Extend("20260101T000000Z-00000000", later, false, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown snapshot: got %v", err)
	}

	// A snapshot kept forever (zero retain-until) stays forever: a dated
	// "extension" would shorten it and is refused; a hold is still added.
	forever := putObjects(t, s, "src", time.Time{}, map[string][]byte{"b": []byte("y")})
	if err := s.Extend(forever.ID, time.Now().Add(time.Hour), false, "date on a forever snapshot"); !errors.Is(err, ErrShorten) {
		t.Fatalf("dated extension of a forever snapshot: got %v, want ErrShorten", err)
	}
	if err := s.Extend(forever.ID, time.Time{}, true, "hold"); err != nil {
		t.Fatal(err)
	}
	infos, _ = s.Snapshots()
	for _, i := range infos {
		if i.ID == forever.ID && (!i.Retention.RetainUntil.IsZero() || !i.Retention.LegalHold || !i.Retention.Protects(time.Now().AddDate(100, 0, 0))) {
			t.Fatalf("forever snapshot after extensions: %+v", i.Retention)
		}
	}
	mustVerify(t, s)
}

// TestReadOnlyNeverBlocksWriter opens a reader while a writer holds the lock,
// and a writer while a reader is open.
func TestReadOnlyNeverBlocksWriter(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	m := putObjects(t, s, "src", time.Time{}, map[string][]byte{"a": []byte("x")})
	ro, err := Open(context.Background(), s.Dir(), testKey, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open while a writer holds the lock: %v", err)
	}
	defer ro.Close()
	checkSnapshot(t, ro, m.ID, map[string][]byte{"a": []byte("x")})
	s.Close()
	w, err := Open(context.Background(), s.Dir(), testKey, Options{})
	if err != nil {
		t.Fatalf("writer open while a reader is open: %v", err)
	}
	w.Close()
}

// TestConcurrentPuts streams objects into one snapshot from many goroutines,
// with duplicated content racing to be stored.
func TestConcurrentPuts(t *testing.T) {
	s := newStore(t, InitOptions{PackSize: 2 << 20}, Options{})
	ctx := context.Background()
	objs := map[string][]byte{}
	for i := 0; i < 32; i++ {
		objs[fmt.Sprintf("obj-%02d", i)] = randBytes(uint64(200+i%8), 1<<20+i*4096) // many share content
	}
	sn, err := s.Begin(ctx, BeginOptions{Source: "src"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(objs))
	for k, v := range objs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := sn.Put(ctx, ObjectInfo{Key: []byte(k)}, bytes.NewReader(v)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	m, err := sn.Commit(ctx, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, s, m.ID, objs)
	s = reopen(t, s, Options{})
	checkSnapshot(t, s, m.ID, objs)
	mustVerify(t, s)
}

// brokenClock is a prune clock that refuses to vouch for the time.
type brokenClock struct{}

func (brokenClock) Now() (time.Time, error) { return time.Time{}, errors.New("TPM clock rolled back") }

func TestPruneClockIsSeparate(t *testing.T) {
	wall := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} // far ahead
	s := newStore(t, InitOptions{}, Options{Clock: wall, PruneClock: brokenClock{}})
	// A frozen prune clock never stops a backup...
	m := putObjects(t, s, "src", time.Now().Add(time.Hour), map[string][]byte{"a": []byte("x")})
	// ...and a wall clock far ahead at commit time writes no high-water mark.
	if hw, err := s.HighWater(); err != nil || !hw.IsZero() {
		t.Fatalf("commit recorded a high-water mark %v (%v) with a separate prune clock", hw, err)
	}
	if _, err := s.Prune(t.Context(), PruneOptions{}); !errors.Is(err, ErrClockUntrusted) {
		t.Fatalf("prune with a refusing prune clock: %v", err)
	}
	checkSnapshot(t, s, m.ID, map[string][]byte{"a": []byte("x")})

	good := &fakeClock{t: time.Now()}
	s = reopen(t, s, Options{Clock: wall, PruneClock: good})
	if _, err := s.Prune(t.Context(), PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	// Prune compares with its time only and records nothing in the
	// high-water log, which no longer gates it.
	if hw, _ := s.HighWater(); !hw.IsZero() {
		t.Fatalf("prune recorded a high-water mark %v", hw)
	}
}

func TestRecoveryBlobIsKeptSealed(t *testing.T) {
	blob := []byte("wrapped master key, 103 bytes in real life")
	s := newStore(t, InitOptions{RecoveryBlob: blob}, Options{})
	got, err := ReadRecoveryBlob(s.Dir())
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("recovery blob %q, %v", got, err)
	}
	for _, p := range []string{s.path(recoveryDir, recoveryName)} {
		if ok, err := fsflag.Has(p, fsflag.Immutable); err != nil || !ok {
			t.Fatalf("%s not sealed (%v)", p, err)
		}
	}
	if ok, _ := fsflag.Has(s.path(recoveryDir), fsflag.Append); !ok {
		t.Fatal("recovery dir is not append-only")
	}
	plain := newStore(t, InitOptions{}, Options{})
	if _, err := ReadRecoveryBlob(plain.Dir()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("store without a blob: %v", err)
	}
	mustVerify(t, s)
}
