package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

var testKey = store.StaticKey(bytes.Repeat([]byte{0x42}, store.MasterKeySize))

// fixture is a committed snapshot in a store that was closed and reopened
// read-only, as `holdfast restore` opens it.
type fixture struct {
	dir      string
	s        *store.Store
	id       string
	recovery recoverykey.Key
	want     map[string]restoretest.Object // the last version of every live key
}

// newFixture creates a store with a recovery blob, commits objs (in order,
// plus restoretest.DeletedKey) and reopens the store read-only.
func newFixture(t *testing.T, objs []restoretest.Object) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := storetest.Dir(t)
	rk, err := recoverykey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := recoverykey.Wrap(testKey, rk)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Init(ctx, dir, testKey, store.InitOptions{PackSize: 4 << 20, RecoveryBlob: blob}, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("init store: %v", err)
	}
	id := restoretest.Commit(t, s, "test", objs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := store.Open(ctx, dir, testKey, store.Options{ReadOnly: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open read-only: %v", err)
	}
	t.Cleanup(func() { ro.Close() })
	return &fixture{dir: dir, s: ro, id: id, recovery: rk, want: restoretest.Want(objs)}
}

// testLogger logs warnings and errors of the code under test to the test's log.
func testLogger(t testing.TB) hclog.Logger { return restoretest.Logger(t, "restore", hclog.Warn) }

// s3Objects are hostile keys MinIO accepts as they are: the shared set
// (a 1024-byte key among them) and a few of this package's own.
func s3Objects() []restoretest.Object {
	return append(restoretest.HostileObjects(12<<20+333, 1024),
		restoretest.Object{Key: "line1\nline2", Data: restoretest.RandBytes(3, 1001)},
		restoretest.Object{Key: "x\r\ny", Data: restoretest.RandBytes(4, 1002)},
		restoretest.Object{Key: "%2e%2e%2f", Data: restoretest.RandBytes(6, 1004)},
		restoretest.Object{Key: "dir/a", Data: restoretest.RandBytes(8, 1006)},
	)
}

// dirOnlyObjects are keys MinIO refuses but a snapshot may hold (a pull
// from another S3 implementation, or `holdfast store put`).
func dirOnlyObjects() []restoretest.Object {
	return []restoretest.Object{
		{Key: "../../etc/passwd", Data: []byte("escape")},
		{Key: "/etc/shadow", Data: []byte("absolute")},
		{Key: "a/./b", Data: []byte("dot")},
		{Key: "a//b", Data: []byte("empty segment")},
		{Key: "trailing/", Data: []byte("trailing slash")},
		{Key: "a\x00b", Data: []byte("nul")},
		{Key: "\xff\xfek\xc3", Data: []byte("bad utf8")},
		{Key: strings.Repeat("k", 256), Data: []byte("long segment")},
		{Key: UnsafeDir + "/index.tsv", Data: []byte("forged index")},
		{Key: "..", Data: []byte("dotdot")},
		{Key: "dir/a/under-a-file", Data: []byte("collides with dir/a")},
	}
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

func startMinIO(t *testing.T, bucket string) (*testminio.Server, Target) {
	m := testminio.Start(t)
	m.MakeBucket(t, bucket, false)
	return m, Target{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: testminio.AccessKey, SecretKey: config.Secret(testminio.SecretKey)}
}

func TestToS3(t *testing.T) {
	objs := s3Objects()
	f := newFixture(t, objs)
	m := testminio.Start(t)
	tgt := Target{Endpoint: m.Endpoint, AccessKey: testminio.AccessKey, SecretKey: config.Secret(testminio.SecretKey)}
	tests := []struct {
		name     string
		prefix   string
		exact    bool
		dstPre   string
		wantKeys []string // nil: every key
	}{
		{"whole snapshot", "", false, "", nil}, // a 1024-byte key leaves no room for a prefix
		{"prefix", "dir/", false, "pre/", []string{"dir/a"}},
		{"one key", "versioned", true, "one/", []string{"versioned"}},
		{"unicode prefix", "Grüße/", false, "ü/", []string{"Grüße/日本語/🙂"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := tgt
			dst.Bucket = fmt.Sprintf("restored-%d", i)
			m.MakeBucket(t, dst.Bucket, false)
			dst.Prefix = tt.dstPre
			var mu sync.Mutex
			var last Progress
			calls := 0
			res, err := ToS3(context.Background(), f.s, f.id, tt.prefix, dst, Options{
				Exact: tt.exact, Parallel: 3, PartSize: MinPartSize, Logger: testLogger(t),
				Progress: func(p Progress) { mu.Lock(); last = p; calls++; mu.Unlock() },
			})
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			want := restoretest.Only(f.want, tt.wantKeys)
			if res.Objects != len(want) || calls != len(want) || last.Objects != len(want) || last.Bytes != last.TotalBytes {
				t.Errorf("result %+v, %d progress calls, last %+v; want %d objects", res, calls, last, len(want))
			}
			if tt.wantKeys == nil && res.DeleteMarkers != 1 {
				t.Errorf("delete markers skipped: %d, want 1", res.DeleteMarkers)
			}
			restoretest.CheckBucket(t, m, dst.Bucket, tt.dstPre, want, MinPartSize)
		})
	}
}

func TestToS3Errors(t *testing.T) {
	f := newFixture(t, []restoretest.Object{{Key: "a", Data: []byte("x")}})
	_, tgt := startMinIO(t, "bkt")
	tests := []struct {
		name   string
		mod    func(*Target)
		prefix string
		exact  bool
		want   string
	}{
		{"no such bucket", func(d *Target) { d.Bucket = "nope" }, "", false, `no bucket "nope"`},
		{"wrong secret", func(d *Target) { d.SecretKey = "wrong" }, "", false, "signature"},
		{"no such key", nil, "zzz", true, `no object matching "zzz"`},
		{"deleted key", nil, "deleted-later", true, `no object matching "deleted-later"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tgt
			if tt.mod != nil {
				tt.mod(&d)
			}
			_, err := ToS3(context.Background(), f.s, f.id, tt.prefix, d, Options{Exact: tt.exact})
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.want)) {
				t.Fatalf("err %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// readTree returns every regular file below dir (relative paths) and fails
// on anything that is neither a file nor a directory.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.IsDir():
			return nil
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			files[rel] = b
			return err
		default:
			t.Errorf("%s: unexpected file type %v", rel, d.Type())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestToDir(t *testing.T) {
	objs := append(s3Objects(), dirOnlyObjects()...)
	f := newFixture(t, objs)
	parent := t.TempDir()
	// Decoys the restore must not touch: a file beside the target.
	if err := os.WriteFile(filepath.Join(parent, "passwd"), []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "out", "restore")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	// One worker: "dir/a" is written before "dir/a/under-a-file", which
	// then collides with it.
	res, err := ToDir(context.Background(), f.s, f.id, "", dir, Options{Parallel: 1, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	files := readTree(t, dir)
	idx := map[string]string{} // file name -> key
	for _, line := range strings.Split(strings.TrimSuffix(string(files[filepath.Join(UnsafeDir, UnsafeIndex)]), "\n"), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) != 3 {
			t.Fatalf("index line %q: want 3 tab-separated fields", line)
		}
		key, err := strconv.Unquote(fields[1])
		if err != nil {
			t.Fatalf("index line %q: %v", line, err)
		}
		idx[fields[0]] = key
	}
	delete(files, filepath.Join(UnsafeDir, UnsafeIndex))
	unsafeWant := map[string]bool{}
	for _, o := range dirOnlyObjects() {
		unsafeWant[o.Key] = true
	}
	if res.UnsafeKeys != len(unsafeWant) || len(idx) != len(unsafeWant) {
		t.Errorf("%d unsafe keys, %d index lines; want %d", res.UnsafeKeys, len(idx), len(unsafeWant))
	}
	for k, w := range f.want {
		var path string
		if unsafeWant[k] {
			name := UnsafeName([]byte(k))
			if idx[name] != k {
				t.Errorf("index maps %s to %q, want %q", name, idx[name], k)
			}
			path = filepath.Join(UnsafeDir, name)
		} else {
			if ok, why := SafePath([]byte(k)); !ok {
				t.Errorf("key %q judged unsafe: %s", k, why)
			}
			path = k
		}
		b, ok := files[path]
		if !ok {
			t.Errorf("key %q: %s not written", k, path)
			continue
		}
		if sum(b) != sum(w.Data) {
			t.Errorf("key %q: sha256 of %s differs", k, path)
		}
		delete(files, path)
	}
	for p := range files {
		t.Errorf("unexpected file %q", p)
	}
	if b, _ := os.ReadFile(filepath.Join(parent, "passwd")); string(b) != "untouched" {
		t.Errorf("file outside the target changed: %q", b)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 2 {
		t.Errorf("the target's parent holds %d entries, want 2 (nothing escaped)", len(ents))
	}
	if st, err := os.Stat(filepath.Join(dir, "plain.txt")); err != nil || st.Mode().Perm()&^0o022 != 0o644&^0o022 {
		t.Errorf("plain.txt mode: %v %v", st, err)
	}

	// A second restore into the same, now non-empty, directory is refused.
	if _, err := ToDir(context.Background(), f.s, f.id, "", dir, Options{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into a non-empty dir: %v, want a refusal", err)
	}
	// A symlink as the target is refused, and nothing lands where it points.
	link := filepath.Join(parent, "link")
	empty := filepath.Join(parent, "empty")
	os.Mkdir(empty, 0o755)
	if err := os.Symlink(empty, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ToDir(context.Background(), f.s, f.id, "", link, Options{}); err == nil {
		t.Errorf("restore through a symlink succeeded")
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("restore through a symlink wrote %d entries", len(ents))
	}
}

func TestSafePath(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true}, {"a/b/c.txt", true}, {"Grüße/🙂", true}, {".hidden", true}, {"a..b", true},
		{"", false}, {"/a", false}, {"a/", false}, {"a//b", false}, {"./a", false}, {"a/..", false},
		{"..", false}, {"a\x00", false}, {"\xff", false}, {strings.Repeat("x", 256), false},
		{strings.Repeat("x", 255), true}, {UnsafeDir + "/x", false}, {UnsafeDir, false},
	}
	for _, tt := range tests {
		if ok, why := SafePath([]byte(tt.key)); ok != tt.ok {
			t.Errorf("SafePath(%q) = %v (%s), want %v", tt.key, ok, why, tt.ok)
		}
	}
}

// flipByte clears the immutable flag, flips one byte at off and seals the
// file again (as services/store's verify tests do).
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	if err := fsflag.Clear(path, fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := fsflag.Set(path, fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
}

// packFiles returns the pack files of the store at dir.
func packFiles(t *testing.T, dir string) []string {
	t.Helper()
	var packs []string
	filepath.WalkDir(filepath.Join(dir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			packs = append(packs, p)
		}
		return nil
	})
	if len(packs) == 0 {
		t.Fatal("no pack files")
	}
	return packs
}

func TestDamagedPackFailsNamingObject(t *testing.T) {
	// Packs are 4 MiB: the first holds file.bin and the start of big.bin,
	// the others only big.bin, which is uploaded in 5 MiB parts, so the
	// damage is met in the middle of a multipart upload.
	f := newFixture(t, []restoretest.Object{
		{Key: "victim/file.bin", Data: restoretest.RandBytes(9, 300<<10)},
		{Key: "victim/big.bin", Data: restoretest.RandBytes(10, 12<<20)},
	})
	for _, p := range packFiles(t, f.dir) {
		// The chunker's polynomial is random per store, so the last pack
		// may hold only a few small chunks: leave a pack too small to have
		// a blob at byte 5000 alone (the others hold both victims).
		if st, err := os.Stat(p); err != nil || st.Size() < 64<<10 {
			continue
		}
		flipByte(t, p, 5000)
	}
	_, tgt := startMinIO(t, "damaged")
	tests := []struct {
		name string
		run  func(dir string) error
	}{
		{"to dir", func(dir string) error {
			_, err := ToDir(context.Background(), f.s, f.id, "", dir, Options{})
			return err
		}},
		{"to S3", func(string) error {
			_, err := ToS3(context.Background(), f.s, f.id, "", tgt, Options{Parallel: 2, PartSize: MinPartSize})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			err := tt.run(dir)
			if err == nil {
				t.Fatal("restore of a damaged pack succeeded")
			}
			if !strings.Contains(err.Error(), `restore "victim/`) || !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("error %q: want it to name the object and wrap store.ErrCorrupt", err)
			}
			for _, name := range []string{"file.bin", "big.bin"} {
				if _, serr := os.Stat(filepath.Join(dir, "victim", name)); serr == nil {
					t.Errorf("a partial file %s was left behind", name)
				}
			}
		})
	}
	// Nothing was left in the bucket.
	cl, err := NewClient(tgt)
	if err != nil {
		t.Fatal(err)
	}
	for o := range cl.ListObjects(context.Background(), "damaged", minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("object %q left in the bucket (err %v)", o.Key, o.Err)
	}
	for u := range cl.ListIncompleteUploads(context.Background(), "damaged", "", true) {
		t.Errorf("multipart upload of %q left behind (err %v)", u.Key, u.Err)
	}
}

func TestRecoveryKeyOpensStore(t *testing.T) {
	f := newFixture(t, []restoretest.Object{{Key: "k", Data: []byte("recovered")}})
	ctx := context.Background()
	wrapped := filepath.Join(f.dir, "recovery", "wrapped-key")
	if _, err := store.ReadRecoveryBlob(f.dir); err != nil {
		t.Fatal(err)
	}
	other, _ := recoverykey.Generate()
	tests := []struct {
		name string
		key  recoverykey.Key
		want error
	}{
		{"right key", f.recovery, nil},
		{"another key", other, recoverykey.ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := store.Open(ctx, f.dir, recoverykey.Opener{Key: tt.key, Path: wrapped}, store.Options{ReadOnly: true})
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("open: %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer s.Close()
			dir := filepath.Join(t.TempDir(), "out")
			if _, err := ToDir(ctx, s, f.id, "k", dir, Options{Exact: true}); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "k")); string(b) != "recovered" {
				t.Errorf("restored %q", b)
			}
		})
	}
}
