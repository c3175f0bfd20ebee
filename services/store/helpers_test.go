package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// testKey is a fixed master key for tests.
var testKey = StaticKey(bytes.Repeat([]byte{0x42}, MasterKeySize))

// fakeClock is a settable Clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() (time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t, nil
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Warn, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// storeDir returns an empty directory for a store on a filesystem with
// inode flags; cleanup clears the flags.
func storeDir(t testing.TB) string { return storetest.Dir(t) }

// unsealAll clears immutable and append flags below dir so it can be removed.
func unsealAll(t testing.TB, dir string) { storetest.Unseal(t, dir) }

func newStore(t testing.TB, io InitOptions, o Options) *Store {
	t.Helper()
	return newStoreIn(t, storeDir(t), io, o)
}

func newStoreIn(t testing.TB, dir string, io InitOptions, o Options) *Store {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	s, err := Init(context.Background(), dir, testKey, io, o)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func reopen(t testing.TB, s *Store, o Options) *Store {
	t.Helper()
	s.Close()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	s2, err := Open(context.Background(), s.Dir(), testKey, o)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// putObjects commits one snapshot holding objs (key -> content).
func putObjects(t testing.TB, s *Store, source string, until time.Time, objs map[string][]byte) *Manifest {
	t.Helper()
	ctx := context.Background()
	sn, err := s.Begin(ctx, BeginOptions{Source: source, RetainUntil: until})
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	for _, k := range sortedKeys(objs) {
		if _, err := sn.Put(ctx, ObjectInfo{Key: []byte(k)}, bytes.NewReader(objs[k])); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	c, err := sn.Commit(ctx, CommitOptions{})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	// Commit returns the summary; the callers want the objects too.
	m, err := s.ReadManifest(c.ID)
	if err != nil {
		t.Fatalf("read manifest: %v", err)
	}
	return m
}

func sortedKeys(m map[string][]byte) []string { return slices.Sorted(maps.Keys(m)) }

// checkSnapshot asserts that snapshot id holds exactly objs, byte for byte.
func checkSnapshot(t testing.TB, s *Store, id string, objs map[string][]byte) {
	t.Helper()
	m, err := s.ReadManifest(id)
	if err != nil {
		t.Fatalf("read manifest %s: %v", id, err)
	}
	if len(m.Objects) != len(objs) {
		t.Fatalf("snapshot %s has %d objects, want %d", id, len(m.Objects), len(objs))
	}
	for _, o := range m.Objects {
		want, ok := objs[string(o.Key)]
		if !ok {
			t.Fatalf("snapshot %s has unexpected object %q", id, o.Key)
		}
		var buf bytes.Buffer
		if err := s.WriteObject(context.Background(), o, &buf); err != nil {
			t.Fatalf("read %q from %s: %v", o.Key, id, err)
		}
		if sha256.Sum256(buf.Bytes()) != sha256.Sum256(want) {
			t.Fatalf("object %q in %s differs from what was stored", o.Key, id)
		}
	}
}

func mustVerify(t testing.TB, s *Store) *Report {
	t.Helper()
	r, err := s.Verify(context.Background())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !r.OK() {
		for _, p := range r.Problems {
			t.Errorf("verify problem: %s", p)
		}
		t.FailNow()
	}
	return r
}

// storeBytes is the size of every pack and manifest.
func storeBytes(t testing.TB, s *Store) int64 {
	t.Helper()
	var n int64
	for _, d := range []string{packsDir, snapshotsDir} {
		filepath.WalkDir(s.path(d), func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				if fi, err := e.Info(); err == nil {
					n += fi.Size()
				}
			}
			return nil
		})
	}
	return n
}

// crash abandons a snapshot as a killed process would, once the packs it
// already closed are sealed: the open pack and queued objects are lost.
func crash(sn *Snapshot) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	for sn.finisher {
		sn.cond.Wait()
	}
	sn.j.f.Close()
	if sn.pw != nil {
		sn.pw.f.Close()
	}
	sn.closed = true
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
