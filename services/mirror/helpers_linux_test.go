package mirror

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pkg/xattr"

	"github.com/holdfast-appliance/holdfast/services/ingest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

var testKey = store.StaticKey(bytes.Repeat([]byte{0x42}, store.MasterKeySize))

// hmacSigner stands in for the TPM: receipts are MACs of the digest.
type hmacSigner struct{}

func (hmacSigner) SignManifest(_ context.Context, id string, d [32]byte) ([]byte, error) {
	m := hmac.New(sha256.New, []byte("mirror-test"))
	m.Write([]byte(id))
	m.Write(d[:])
	return m.Sum(nil), nil
}

// alerts records every alert.
type alerts struct {
	mu  sync.Mutex
	got []ingest.Alert
}

func (a *alerts) Alert(_ context.Context, al ingest.Alert) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, al)
	return nil
}

func (a *alerts) kinds() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var k []string
	for _, al := range a.got {
		k = append(k, al.Kind)
	}
	return k
}

func (a *alerts) reset() {
	a.mu.Lock()
	a.got = nil
	a.mu.Unlock()
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Warn, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// env is a primary store (open read-write, as ingest holds it) and a
// mirror disk B, with the snapshots put into the primary.
type env struct {
	a      *store.Store
	bDir   string
	want   map[string]map[string][]byte // snapshot -> key -> content
	alerts *alerts
	opts   Options
}

func (e *env) diskA() Disk { return Disk{Name: "A", Dir: e.a.Dir(), Store: e.a} }
func (e *env) diskB() Disk { return Disk{Name: "B", Dir: e.bDir} }
func (e *env) disks() []Disk {
	return []Disk{e.diskA(), e.diskB()}
}

// newEnv makes the primary and an empty mirror of it at bDir (bDir ""
// means a fresh directory), and puts three snapshots into the primary.
func newEnv(t *testing.T, bDir string) *env {
	t.Helper()
	ctx := context.Background()
	log := testLogger(t)
	a, err := store.Init(ctx, storetest.Dir(t), testKey,
		store.InitOptions{PackSize: 1 << 20, RecoveryBlob: []byte("wrapped master key")},
		store.Options{Logger: log, Signer: hmacSigner{}})
	if err != nil {
		t.Fatalf("init primary: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	if bDir == "" {
		bDir = storetest.Dir(t)
	}
	b, err := store.InitMirror(ctx, bDir, a, testKey, store.Options{Logger: log})
	if err != nil {
		t.Fatalf("init mirror: %v", err)
	}
	b.Close()
	al := &alerts{}
	e := &env{a: a, bDir: bDir, want: map[string]map[string][]byte{}, alerts: al,
		opts: Options{Keys: testKey, Logger: log, Alerter: al}}
	for i := range 3 {
		e.put(t, i)
	}
	// A retention record: the first snapshot is put under legal hold.
	first := slices.Sorted(func(yield func(string) bool) {
		for id := range e.want {
			if !yield(id) {
				return
			}
		}
	})[0]
	if err := a.Extend(first, time.Time{}, true, "test hold"); err != nil {
		t.Fatalf("extend: %v", err)
	}
	return e
}

// put commits snapshot number i into the primary: one object shared by
// every snapshot (deduplicated), one of its own over several packs, and
// small ones.
func (e *env) put(t *testing.T, i int) string {
	t.Helper()
	ctx := context.Background()
	objs := map[string][]byte{
		"shared":                     randBytes(1000, 1<<20),
		fmt.Sprintf("big-%d", i):     randBytes(uint64(i), 3<<20),
		fmt.Sprintf("dir/%d/a", i):   randBytes(uint64(100+i), 4096),
		fmt.Sprintf("dir/%d/b", i):   randBytes(uint64(200+i), 10),
		fmt.Sprintf("empty-%d", i):   {},
		"key with \xff and \n in it": []byte(fmt.Sprint("hostile ", i)),
	}
	sn, err := e.a.Begin(ctx, store.BeginOptions{Source: "src", RetainUntil: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range objs {
			if !yield(k) {
				return
			}
		}
	}) {
		if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte(k)}, bytes.NewReader(objs[k])); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	m, err := sn.Commit(ctx, store.CommitOptions{})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	e.want[m.ID] = objs
	return m.ID
}

func randBytes(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 0x6d})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func (e *env) sync(t *testing.T) *SyncResult {
	t.Helper()
	res, err := Sync(context.Background(), e.a, e.diskB(), e.opts)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return res
}

// readAlone opens the store at dir by itself, read-only, verifies it and
// reads every object of want back, byte for byte.
func readAlone(t *testing.T, dir string, want map[string]map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, dir, testKey, store.Options{ReadOnly: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open %s alone: %v", dir, err)
	}
	defer s.Close()
	r, err := s.Verify(ctx)
	if err != nil {
		t.Fatalf("verify %s: %v", dir, err)
	}
	for _, p := range r.Problems {
		t.Errorf("verify %s: %s", dir, p)
	}
	snaps, err := s.Snapshots()
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != len(want) {
		t.Fatalf("%s holds %d snapshots, want %d", dir, len(snaps), len(want))
	}
	for id, objs := range want {
		m, err := s.ReadManifest(id)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if len(m.Objects) != len(objs) {
			t.Fatalf("%s: snapshot %s has %d objects, want %d", dir, id, len(m.Objects), len(objs))
		}
		for _, o := range m.Objects {
			var buf bytes.Buffer
			if err := s.WriteObject(ctx, o, &buf); err != nil {
				t.Fatalf("%s: read %q of %s: %v", dir, o.Key, id, err)
			}
			if !bytes.Equal(buf.Bytes(), objs[string(o.Key)]) {
				t.Fatalf("%s: object %q of %s differs from what was put", dir, o.Key, id)
			}
		}
	}
}

// sameFiles asserts that both stores hold the same sealed files, byte for
// byte, sealed on both, manifests with the same retention xattrs.
func sameFiles(t *testing.T, aDir, bDir string) {
	t.Helper()
	fa, err := store.ListSealed(aDir)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := store.ListSealed(bDir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fa, fb) {
		t.Fatalf("file lists differ:\nA %v\nB %v", fa, fb)
	}
	for _, f := range fa {
		pa, pb := filepath.Join(aDir, f.Rel), filepath.Join(bDir, f.Rel)
		ba, err := os.ReadFile(pa)
		if err != nil {
			t.Fatal(err)
		}
		bb, err := os.ReadFile(pb)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ba, bb) {
			t.Errorf("%s differs between the disks", f.Rel)
		}
		for _, p := range []string{pa, pb} {
			if ok, err := fsflag.Has(p, fsflag.Immutable); err != nil || !ok {
				t.Errorf("%s is not sealed (%v)", p, err)
			}
		}
		if f.Kind == store.KindManifest {
			for _, x := range []string{"user.holdfast.retain_until", "user.holdfast.legal_hold"} {
				va, erra := xattr.Get(pa, x)
				vb, errb := xattr.Get(pb, x)
				if erra != nil || errb != nil || !bytes.Equal(va, vb) {
					t.Errorf("%s: xattr %s differs: %q (%v) vs %q (%v)", f.Rel, x, va, erra, vb, errb)
				}
			}
		}
	}
	if len(fa) == 0 {
		t.Fatal("no files")
	}
}

// firstOf returns the first sealed file of kind in the store at dir.
func firstOf(t *testing.T, dir string, kind store.FileKind) string {
	t.Helper()
	fs, err := store.ListSealed(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Kind == kind {
			return f.Rel
		}
	}
	t.Fatalf("no %s in %s", kind, dir)
	return ""
}

// flip clears the immutable flag (the test holds the capability), flips
// one byte in the middle of the file, and seals it again.
func flip(t *testing.T, path string) {
	t.Helper()
	if err := fsflag.Clear(path, fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	off := st.Size() / 2
	if off < 40 {
		off = st.Size() - 1
	}
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0x20
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := fsflag.Set(path, fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
}

// remove unseals a file and its directory, removes the file and seals the
// directory again.
func remove(t *testing.T, path string) {
	t.Helper()
	dir := filepath.Dir(path)
	if err := fsflag.Clear(path, fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
	if err := fsflag.Clear(dir, fsflag.Append); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := fsflag.Set(dir, fsflag.Append); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mountExt4 loop-mounts a fresh ext4 image and returns the mount point and
// a function that unmounts it (a disk pulled out) and one that mounts it
// again.
func mountExt4(t *testing.T) (mnt string, unmount, remount func()) {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	mnt = filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 (run `make setup`): %v\n%s", err, out)
	}
	mounted := false
	remount = func() {
		if out, err := exec.Command("mount", "-o", "loop", "-t", "ext4", img, mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount image (needs root and loop devices): %v\n%s", err, out)
		}
		mounted = true
	}
	unmount = func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("umount: %v\n%s", err, out)
		}
		mounted = false
	}
	remount()
	t.Cleanup(func() {
		if mounted {
			storetest.Unseal(t, mnt)
			unmount()
		}
	})
	return mnt, unmount, remount
}
