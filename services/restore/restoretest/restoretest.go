// Package restoretest gives restore tests of any package (services/restore,
// its disk package, the appliance's worker, the holdfast command) what they
// share: the objects a test puts into a snapshot, a set of hostile keys S3
// must carry through unchanged, committing them to a store, and reading a
// MinIO bucket back to compare every object's SHA-256, content type, user
// metadata and multipart ETag with what went in. It is for tests only.
//
// Limits: it does not create or open stores (storetest and disktest give
// the places for them) and does not restore; ListBucket and CheckBucket
// read a server started by tools/testminio. Every helper fails the test,
// never skips it, when something goes wrong. It must not import
// services/restore, whose own tests use it.
package restoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// Object is one object a test puts into a snapshot.
type Object struct {
	Key         string
	Data        []byte
	ContentType string // "" is stored as none; S3 then reports application/octet-stream
	Meta        map[string]string
}

// DeletedKey is the key Commit puts into every snapshot and then marks
// deleted at the source, so no restore may write it.
const DeletedKey = "deleted-later"

// RandBytes returns n pseudo-random bytes, the same for the same seed.
func RandBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// longKey returns a key of n bytes: segments of at most 200 's' joined by
// slashes.
func longKey(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(strings.Repeat("s", min(200, n-b.Len())))
	}
	return b.String()
}

// HostileObjects returns objects whose keys MinIO stores as they are and
// a restore must carry through unchanged: content types and metadata, an
// empty object, "big/multipart.bin" of bigSize bytes (make it larger than
// the restore's part size), a key of longKeyLen bytes (S3 allows 1024, a
// destination prefix included), a key forging a log line, a Unicode path,
// and "versioned" put twice, of which the second counts. Tests append
// their own keys (none of these).
func HostileObjects(bigSize, longKeyLen int) []Object {
	return []Object{
		{Key: "plain.txt", Data: []byte("hello\n"), ContentType: "text/plain; charset=utf-8", Meta: map[string]string{"Owner": "alice", "Reason": "a b c"}},
		{Key: "empty", Data: nil},
		{Key: "big/multipart.bin", Data: RandBytes(1, bigSize), ContentType: "application/x-big", Meta: map[string]string{"Part": "yes"}},
		{Key: longKey(longKeyLen), Data: RandBytes(2, 1000)},
		{Key: "k\" level=error msg=\"forged", Data: RandBytes(5, 1003)},
		{Key: "Grüße/日本語/🙂", Data: RandBytes(7, 1005), ContentType: "image/x-smile"},
		{Key: "versioned", Data: []byte("first version")},
		{Key: "versioned", Data: []byte("second, the one that counts"), Meta: map[string]string{"V": "2"}},
	}
}

// Commit puts objs, in order, into a new snapshot of s from source, then
// DeletedKey and its delete marker, commits the snapshot and returns its
// ID.
func Commit(t testing.TB, s *store.Store, source string, objs []Object) string {
	t.Helper()
	ctx := context.Background()
	sn, err := s.Begin(ctx, store.BeginOptions{Source: source})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte(o.Key), ContentType: o.ContentType, UserMeta: o.Meta}, bytes.NewReader(o.Data)); err != nil {
			t.Fatalf("put %q: %v", o.Key, err)
		}
	}
	if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte(DeletedKey)}, strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	if err := sn.PutExisting(store.Object{Key: []byte(DeletedKey), DeleteMarker: true}); err != nil {
		t.Fatal(err)
	}
	m, err := sn.Commit(ctx, store.CommitOptions{})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return m.ID
}

// Want maps every key of objs to its last version: what a restore of the
// whole snapshot must write.
func Want(objs []Object) map[string]Object {
	want := map[string]Object{}
	for _, o := range objs {
		want[o.Key] = o
	}
	return want
}

// Only returns the objects of all named by keys, or all itself when keys
// is nil.
func Only(all map[string]Object, keys []string) map[string]Object {
	if keys == nil {
		return all
	}
	want := map[string]Object{}
	for _, k := range keys {
		want[k] = all[k]
	}
	return want
}

// Got is an object as read back from a bucket.
type Got struct {
	SHA256      [32]byte
	ContentType string
	Meta        map[string]string // user metadata
	ETag        string
}

// ListBucket reads every object of bucket below prefix, by key with prefix
// cut.
func ListBucket(t testing.TB, m *testminio.Server, bucket, prefix string) map[string]Got {
	t.Helper()
	ctx := context.Background()
	got := map[string]Got{}
	for o := range m.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list: %v", o.Err)
		}
		r, err := m.Client.GetObject(ctx, bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatalf("get %q: %v", o.Key, err)
		}
		st, err := m.Client.StatObject(ctx, bucket, o.Key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got[strings.TrimPrefix(o.Key, prefix)] = Got{sha256.Sum256(b), st.ContentType, st.UserMetadata, st.ETag}
	}
	return got
}

// CheckBucket compares the objects of bucket below prefix with want:
// the same keys, nothing more, each with the SHA-256, content type
// (application/octet-stream for none) and user metadata put, and a
// multipart ETag on every object larger than partSize.
func CheckBucket(t testing.TB, m *testminio.Server, bucket, prefix string, want map[string]Object, partSize int) {
	t.Helper()
	got := ListBucket(t, m, bucket, prefix)
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("key %q missing from the bucket", k)
			continue
		}
		if g.SHA256 != sha256.Sum256(w.Data) {
			t.Errorf("key %q: sha256 differs", k)
		}
		if len(w.Data) > partSize && !strings.Contains(g.ETag, "-") {
			t.Errorf("key %q: ETag %q is not a multipart ETag", k, g.ETag)
		}
		ct := w.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		if g.ContentType != ct {
			t.Errorf("key %q: content type %q, want %q", k, g.ContentType, ct)
		}
		if !maps.Equal(g.Meta, w.Meta) {
			t.Errorf("key %q: metadata %v, want %v", k, g.Meta, w.Meta)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected key %q in the bucket", k)
		}
	}
}

// Logger returns a logger named name that writes to the test's log.
func Logger(t testing.TB, name string, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: logWriter{t}})
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
