package ingest

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

var testKey = store.StaticKey(bytes.Repeat([]byte{0x42}, store.MasterKeySize))

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "ingest", Level: hclog.Warn, Output: testWriter{t}})
}

// newStore creates a store in a temporary directory (ext4 with inode flags;
// run as root) and removes it, unsealed, when the test ends.
func newStore(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Init(context.Background(), storetest.Dir(t), testKey, store.InitOptions{PackSize: 4 << 20}, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("init store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testSource is a source with defaults as the config gives them.
func testSource(name, endpoint, bucket string) config.Source {
	return config.Source{
		Name: name,
		S3: config.S3{Endpoint: endpoint, Bucket: bucket, AccessKey: "holdfast-test", SecretKey: "holdfast-test-secret",
			CheckETagMD5: true},
		Schedule:              config.Schedule{Every: 6 * time.Hour},
		Retention:             config.Retention{AllFor: config.Period{Days: 14}, DailyFor: config.Period{Days: 90}},
		Parallel:              4,
		Retries:               3,
		Limits:                config.Limits{MaxObjectSize: config.DefaultMaxObjectSize, MaxObjectsPerPull: config.DefaultMaxObjectsPerPull, Quota: config.DefaultQuota},
		MassChangeThreshold:   config.DefaultMassChangeThreshold,
		LegalHoldOnMassChange: true,
	}
}

// alerts records alerts.
type alerts struct {
	mu  sync.Mutex
	got []Alert
}

func (a *alerts) Alert(_ context.Context, al Alert) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, al)
	return nil
}

func (a *alerts) list() []Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Alert(nil), a.got...)
}

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 7})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// version identifies an object version in test expectations.
type version struct{ key, id string }

// snapshotContents restores every object of snapshot id (delete markers
// apart) and returns key/version -> content.
func snapshotContents(t testing.TB, s *store.Store, id string) (map[version][]byte, *store.Manifest) {
	t.Helper()
	m, err := s.ReadManifest(id)
	if err != nil {
		t.Fatalf("read manifest %s: %v", id, err)
	}
	out := map[version][]byte{}
	for _, o := range m.Objects {
		if o.DeleteMarker {
			continue
		}
		var buf bytes.Buffer
		if err := s.WriteObject(context.Background(), o, &buf); err != nil {
			t.Fatalf("restore %q from %s: %v", o.Key, id, err)
		}
		out[version{string(o.Key), o.VersionID}] = buf.Bytes()
	}
	return out, m
}

// checkLatest asserts that snapshot id holds exactly want (key -> content)
// for an unversioned source.
func checkLatest(t testing.TB, s *store.Store, id string, want map[string][]byte) *store.Manifest {
	t.Helper()
	got, m := snapshotContents(t, s, id)
	if len(got) != len(want) {
		t.Errorf("snapshot %s has %d objects, want %d", id, len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[version{k, ""}]
		if !ok {
			t.Errorf("snapshot %s lacks %q", id, k)
			continue
		}
		if !bytes.Equal(g, w) {
			t.Errorf("snapshot %s: %q restored as %d bytes (sha256 %x), want %d bytes (sha256 %x)", id, k, len(g), sha256.Sum256(g), len(w), sha256.Sum256(w))
		}
	}
	return m
}

// memObj is one version in a memBucket, with ways to misbehave.
type memObj struct {
	key          []byte
	version      string
	data         []byte
	etag         string
	mod          time.Time
	deleteMarker bool
	checksums    map[string]string
	checksumType string
	userMeta     map[string]string
	serve        []byte // body actually served, when it differs from data
	listSize     int64  // size the listing claims, when >= 0 and set
	cutAt        int64  // cut each response after this many bytes ...
	cuts         int    // ... this many times (-1: always)
}

// memBucket is an in-process bucket: it lets tests use keys and
// misbehaviour a real S3 server will not produce.
type memBucket struct {
	mu        sync.Mutex
	versioned bool
	objs      []*memObj
	gets      int
	rangeGets int
	failList  error
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// put adds an object version (replacing the key unless versioned).
func (b *memBucket) put(key []byte, data []byte) *memObj {
	b.mu.Lock()
	defer b.mu.Unlock()
	o := &memObj{key: bytes.Clone(key), data: data, etag: md5hex(data), mod: time.Unix(1700000000+int64(len(b.objs)), 0).UTC(), listSize: -1}
	if b.versioned {
		o.version = fmt.Sprintf("v%d", len(b.objs)+1)
	} else {
		for i, old := range b.objs {
			if bytes.Equal(old.key, key) {
				b.objs = append(b.objs[:i], b.objs[i+1:]...)
				break
			}
		}
	}
	b.objs = append(b.objs, o)
	return o
}

func (b *memBucket) Versioned(context.Context) (bool, error) { return b.versioned, nil }

func (b *memBucket) List(ctx context.Context, versions bool, fn func(entry) error) error {
	b.mu.Lock()
	objs := append([]*memObj(nil), b.objs...)
	b.mu.Unlock()
	if b.failList != nil {
		return b.failList
	}
	latest := map[string]*memObj{}
	for _, o := range objs {
		latest[string(o.key)] = o // later puts are newer
	}
	// As S3 lists: keys in ascending byte order, a key's versions newest
	// first.
	seq := map[*memObj]int{}
	for i, o := range objs {
		seq[o] = i
	}
	slices.SortStableFunc(objs, func(a, b *memObj) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return seq[b] - seq[a]
	})
	for _, o := range objs {
		isLatest := latest[string(o.key)] == o
		if !versions && (!isLatest || o.deleteMarker) {
			continue
		}
		size := int64(len(o.data))
		if o.listSize >= 0 {
			size = o.listSize
		}
		if err := fn(entry{Key: o.key, VersionID: o.version, Size: size, ETag: o.etag, ModTime: o.mod, IsLatest: isLatest, DeleteMarker: o.deleteMarker}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// cutReader returns data then an unexpected EOF.
type cutReader struct{ r io.Reader }

func (c cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *memBucket) Get(ctx context.Context, e entry, off int64) (io.ReadCloser, bodyInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gets++
	if off > 0 {
		b.rangeGets++
	}
	for _, o := range b.objs {
		if !bytes.Equal(o.key, e.Key) || o.version != e.VersionID || o.deleteMarker {
			continue
		}
		if e.ETag != "" && o.etag != e.ETag {
			return nil, bodyInfo{}, minio.ErrorResponse{Code: "PreconditionFailed", StatusCode: 412, Message: "At least one of the pre-conditions you specified did not hold"}
		}
		body := o.data
		if o.serve != nil {
			body = o.serve
		}
		if off > int64(len(body)) {
			return nil, bodyInfo{}, minio.ErrorResponse{Code: "InvalidRange", StatusCode: 416}
		}
		var r io.Reader = bytes.NewReader(body[off:])
		if o.cuts != 0 && o.cutAt < int64(len(body))-off {
			if o.cuts > 0 {
				o.cuts--
			}
			r = cutReader{io.LimitReader(r, o.cutAt)}
		}
		bi := bodyInfo{Length: -1, ETag: o.etag, ContentType: "application/octet-stream", Checksums: o.checksums, ChecksumType: o.checksumType, UserMeta: o.userMeta}
		if o.serve == nil {
			bi.Length = int64(len(body)) - off
		}
		return io.NopCloser(r), bi, nil
	}
	return nil, bodyInfo{}, minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404, Message: "The specified key does not exist."}
}

// fileSum returns the SHA-256 of a file.
func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
