package ingest

// Pulls from a real MinIO server (tools/testminio starts one per test on
// 127.0.0.1; `make setup` builds it). Buckets are filled with minio-go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/restore"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

func minioSource(m *testminio.Server, name, endpoint, bucket string) config.Source {
	src := testSource(name, endpoint, bucket)
	src.S3.AccessKey, src.S3.SecretKey = testminio.AccessKey, config.Secret(testminio.SecretKey)
	return src
}

// fill uploads objs (key -> content) with default options.
func fill(t *testing.T, m *testminio.Server, bucket string, objs map[string][]byte) {
	t.Helper()
	for k, v := range objs {
		m.Put(t, bucket, k, v, minio.PutObjectOptions{})
	}
}

func removeAll(t *testing.T, m *testminio.Server, bucket string) {
	t.Helper()
	ctx := context.Background()
	for o := range m.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if err := m.Client.RemoveObject(ctx, bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatalf("remove %q: %v", o.Key, err)
		}
	}
}

func TestMinIOFullPull(t *testing.T) {
	m := testminio.Start(t)
	m.MakeBucket(t, "full", false)
	want := map[string][]byte{
		"empty":     {},
		"small.txt": []byte("hello, world"),
		"dir/a":     randBytes(1, 1<<20),
		"big":       randBytes(2, 12<<20+123),
		"sha256":    randBytes(3, 100<<10),
		"crc32c":    randBytes(4, 70<<10),
	}
	for i := 0; i < 40; i++ {
		want["many/"+strconv.Itoa(i)] = randBytes(uint64(100+i), 4096)
	}
	for k, v := range want {
		opts := minio.PutObjectOptions{}
		switch k {
		case "small.txt":
			opts.ContentType = "text/plain"
			opts.UserMetadata = map[string]string{"Owner": "mail-team"}
		case "big":
			opts.PartSize = 5 << 20 // multipart: ETag "<md5 of md5s>-3"
		case "sha256":
			opts.Checksum = minio.ChecksumSHA256
		case "crc32c":
			opts.Checksum = minio.ChecksumCRC32C
		}
		m.Put(t, "full", k, v, opts)
	}
	s := newStore(t)
	p := &Puller{Store: s, Log: testLogger(t)}
	res, err := p.Pull(context.Background(), minioSource(m, "full", m.Endpoint, "full"))
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if !res.Complete || res.Fetched != len(want) || res.Reused != 0 || res.Versioned || res.Objects != int64(len(want)) {
		t.Fatalf("result %+v", res)
	}
	man := checkLatest(t, s, res.Snapshot, want)
	for _, o := range man.Objects {
		switch string(o.Key) {
		case "small.txt":
			if o.ContentType != "text/plain" || o.UserMeta["owner"] != "mail-team" {
				t.Errorf("small.txt: content type %q, user meta %v", o.ContentType, o.UserMeta)
			}
			if o.Checksums["md5"] != o.ETag {
				t.Errorf("small.txt: md5 %q, ETag %q", o.Checksums["md5"], o.ETag)
			}
		case "big":
			if !strings.HasSuffix(o.ETag, "-3") || o.Checksums["md5"] != "" {
				t.Errorf("big: ETag %q, checksums %v: want a multipart ETag and no MD5 check", o.ETag, o.Checksums)
			}
		case "sha256":
			if o.Checksums["sha256"] == "" || o.Checksums["md5"] == "" {
				t.Errorf("sha256: checksums %v, want md5 and sha256 verified", o.Checksums)
			}
		case "crc32c":
			if o.Checksums["crc32c"] == "" {
				t.Errorf("crc32c: checksums %v, want crc32c verified", o.Checksums)
			}
		}
		if o.ModTime.IsZero() || o.ETag == "" {
			t.Errorf("%q: mod time %v, ETag %q", o.Key, o.ModTime, o.ETag)
		}
	}
}

func TestMinIOIncremental(t *testing.T) {
	m := testminio.Start(t)
	m.MakeBucket(t, "inc", false)
	objs := map[string][]byte{}
	for i := 0; i < 10; i++ {
		objs["obj"+strconv.Itoa(i)] = randBytes(uint64(i), 64<<10+i)
	}
	fill(t, m, "inc", objs)
	s := newStore(t)
	p := &Puller{Store: s, Log: testLogger(t)}
	ctx := context.Background()
	first := newCountingProxy(t, m.Endpoint)
	r1, err := p.Pull(ctx, minioSource(m, "inc", first.Endpoint, "inc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, n := first.objectGets(); n != 10 || r1.Fetched != 10 {
		t.Fatalf("first pull: %d GETs, fetched %d; want 10", n, r1.Fetched)
	}

	// No change: nothing is fetched.
	same := newCountingProxy(t, m.Endpoint)
	r2, err := p.Pull(ctx, minioSource(m, "inc", same.Endpoint, "inc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, n := same.objectGets(); n != 0 || r2.Reused != 10 || r2.Fetched != 0 {
		t.Fatalf("no-change pull: %d GETs, reused %d, fetched %d", n, r2.Reused, r2.Fetched)
	}
	checkLatest(t, s, r2.Snapshot, objs)

	// One changed, one added, one removed: two GETs.
	objs["obj1"] = []byte("changed")
	objs["new"] = []byte("added")
	fill(t, m, "inc", map[string][]byte{"obj1": objs["obj1"], "new": objs["new"]})
	if err := m.Client.RemoveObject(ctx, "inc", "obj2", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	delete(objs, "obj2")
	changed := newCountingProxy(t, m.Endpoint)
	r3, err := p.Pull(ctx, minioSource(m, "inc", changed.Endpoint, "inc"))
	if err != nil {
		t.Fatal(err)
	}
	gets, n := changed.objectGets()
	if n != 2 || gets["obj1"] != 1 || gets["new"] != 1 {
		t.Fatalf("changed pull GETs %v; want obj1 and new once each", gets)
	}
	if r3.Reused != 8 || r3.Fetched != 2 || r3.MassChange != nil {
		t.Fatalf("changed pull: %+v", r3)
	}
	checkLatest(t, s, r3.Snapshot, objs)
	// The first snapshot still holds the old state.
	old := map[string][]byte{}
	for i := 0; i < 10; i++ {
		old["obj"+strconv.Itoa(i)] = randBytes(uint64(i), 64<<10+i)
	}
	checkLatest(t, s, r1.Snapshot, old)
}

// TestMinIOWipedBucket is the seed scenario: the source is wiped; the pull
// still commits, the old snapshot stays byte-identical, an alert is raised
// and the old snapshot is put under legal hold.
func TestMinIOWipedBucket(t *testing.T) {
	m := testminio.Start(t)
	m.MakeBucket(t, "mail", false)
	objs := map[string][]byte{}
	for i := 0; i < 20; i++ {
		objs[fmt.Sprintf("user%d/inbox/%d.eml", i%3, i)] = randBytes(uint64(i), 10_000+i)
	}
	fill(t, m, "mail", objs)
	s := newStore(t)
	al := &alerts{}
	p := &Puller{Store: s, Log: testLogger(t), Alerter: al}
	ctx := context.Background()
	src := minioSource(m, "mail", m.Endpoint, "mail")
	r1, err := p.Pull(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	snapFile := filepath.Join(s.Dir(), "snapshots", r1.Snapshot+".snap")
	before := fileSum(t, snapFile)

	removeAll(t, m, "mail")
	r2, err := p.Pull(ctx, src)
	if err != nil {
		t.Fatalf("pull of the wiped bucket: %v", err)
	}
	if !r2.Complete || r2.Objects != 0 || r2.MassChange == nil || !r2.MassChange.Empty || r2.MassChange.Gone != 20 {
		t.Fatalf("wiped pull: %+v, mass change %+v", r2, r2.MassChange)
	}
	got := al.list()
	if len(got) != 1 || got[0].Kind != "mass-change" || !strings.Contains(got[0].Message, "empty") {
		t.Fatalf("alerts %+v", got)
	}
	infos, err := s.Snapshots()
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].ID != r1.Snapshot || !infos[0].Retention.LegalHold {
		t.Fatalf("snapshots %+v: want the first under legal hold", infos)
	}
	if infos[1].ID != r2.Snapshot || !infos[1].Complete || infos[1].Count != 0 {
		t.Fatalf("new snapshot %+v: want committed, complete and empty", infos[1])
	}
	if fileSum(t, snapFile) != before {
		t.Fatalf("the first snapshot's manifest changed")
	}
	checkLatest(t, s, r1.Snapshot, objs)
}

// TestMinIOVersioned: an object overwritten between pulls keeps both
// versions; a delete is recorded as a delete marker.
func TestMinIOVersioned(t *testing.T) {
	m := testminio.Start(t)
	m.MakeBucket(t, "ver", true)
	v1 := []byte("version one")
	v2 := []byte("version two, longer")
	m.Put(t, "ver", "doc", v1, minio.PutObjectOptions{})
	m.Put(t, "ver", "keep", []byte("kept"), minio.PutObjectOptions{})
	for i := 0; i < 8; i++ {
		m.Put(t, "ver", "other"+strconv.Itoa(i), []byte{byte(i)}, minio.PutObjectOptions{})
	}
	s := newStore(t)
	al := &alerts{}
	p := &Puller{Store: s, Log: testLogger(t), Alerter: al}
	ctx := context.Background()
	r1, err := p.Pull(ctx, minioSource(m, "ver", m.Endpoint, "ver"))
	if err != nil {
		t.Fatal(err)
	}
	if !r1.Versioned || r1.Fetched != 10 {
		t.Fatalf("first pull %+v", r1)
	}
	m.Put(t, "ver", "doc", v2, minio.PutObjectOptions{})
	if err := m.Client.RemoveObject(ctx, "ver", "keep", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	cp := newCountingProxy(t, m.Endpoint)
	r2, err := p.Pull(ctx, minioSource(m, "ver", cp.Endpoint, "ver"))
	if err != nil {
		t.Fatal(err)
	}
	if gets, n := cp.objectGets(); n != 1 || gets["doc"] != 1 {
		t.Fatalf("second pull GETs %v: want only the new version of doc", gets)
	}
	if r2.Reused != 10 || r2.Fetched != 1 || r2.Listed != 12 || len(al.list()) != 0 {
		t.Fatalf("second pull %+v (alerts %v)", r2, al.list())
	}
	got, man := snapshotContents(t, s, r2.Snapshot)
	var docs [][]byte
	ids := map[string]bool{}
	for v, data := range got {
		if v.key == "doc" {
			docs = append(docs, data)
			ids[v.id] = true
		}
	}
	if len(docs) != 2 || len(ids) != 2 || ids[""] {
		t.Fatalf("doc versions %q (ids %v): want two with distinct version IDs", docs, ids)
	}
	if !(bytes.Equal(docs[0], v1) && bytes.Equal(docs[1], v2) || bytes.Equal(docs[0], v2) && bytes.Equal(docs[1], v1)) {
		t.Fatalf("doc versions restore as %q", docs)
	}
	markers := 0
	for _, o := range man.Objects {
		if o.DeleteMarker {
			markers++
			if string(o.Key) != "keep" || o.VersionID == "" || o.Size != 0 {
				t.Errorf("delete marker %+v", o)
			}
		}
	}
	if markers != 1 {
		t.Errorf("%d delete markers recorded, want 1", markers)
	}
	if _, ok := got[version{"keep", ""}]; ok {
		t.Errorf("keep has no version ID")
	}
	// A restore writes each key's current version: doc's second, and not
	// keep, deleted at the source (the snapshot lists doc's versions
	// newest first, as S3 does; before, restore took the last recorded).
	out := filepath.Join(t.TempDir(), "out")
	res, err := restore.ToDir(ctx, s, r2.Snapshot, "", out, restore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects != 9 || res.DeleteMarkers != 1 {
		t.Errorf("restore: %+v, want 9 objects (doc and 8 others) and keep skipped", res)
	}
	if b, err := os.ReadFile(filepath.Join(out, "doc")); err != nil || !bytes.Equal(b, v2) {
		t.Errorf("restored doc %q, %v; want the current version %q", b, err, v2)
	}
	if _, err := os.Lstat(filepath.Join(out, "keep")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("keep, deleted at the source, was restored: %v", err)
	}
	if _, o, err := s.FindObject(r2.Snapshot, []byte("doc")); err != nil || o.Size != int64(len(v2)) {
		t.Errorf("cat doc: %+v, %v; want the current version", o, err)
	}
}

// TestMinIOHostileKeys: keys MinIO accepts go through MinIO; those it (or
// minio-go) refuses are checked to be refused and then go through the
// in-process bucket. Either way they must restore byte-identical.
func TestMinIOHostileKeys(t *testing.T) {
	seg := strings.Repeat("s", 200)
	long1024 := strings.Join([]string{seg, seg, seg, seg, seg, seg[:19]}, "/")
	tests := []struct {
		name    string
		key     string
		minio   bool   // MinIO stores it
		storeAs string // the key MinIO lists, when it normalises it
	}{
		{"dot dot", "../../etc/passwd", false, ""},
		{"dot segment", "a/./b", false, ""},
		{"NUL", "a\x00b", false, ""},
		{"invalid UTF-8", "\xff\xfek\xc3", false, ""}, // refused by minio-go itself
		{"1024 bytes, one segment", strings.Repeat("k", 1024), false, ""},
		{"1025 bytes", long1024 + "x", false, ""},
		{"1024 bytes", long1024, true, ""},
		{"newline", "line1\nline2", true, ""},
		{"CR LF", "x\r\ny", true, ""},
		{"leading slash", "/etc/shadow", true, "etc/shadow"},
		{"log forgery", "k\" level=error msg=\"forged", true, ""},
		{"percent escapes", "%2e%2e%2f", true, ""},
		{"unicode", "Grüße/日本語/🙂", true, ""},
	}
	m := testminio.Start(t)
	m.MakeBucket(t, "keys", false)
	viaMinIO := map[string][]byte{}
	mem := &memBucket{}
	viaMem := map[string][]byte{}
	for i, tt := range tests {
		data := randBytes(uint64(i), 1000+i)
		_, err := m.Client.PutObject(context.Background(), "keys", tt.key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
		if (err == nil) != tt.minio {
			t.Fatalf("%s: MinIO put error %v; the test expects MinIO to accept it: %v", tt.name, err, tt.minio)
		}
		if tt.minio {
			k := tt.key
			if tt.storeAs != "" {
				k = tt.storeAs
			}
			viaMinIO[k] = data
			t.Logf("%-24s via MinIO", tt.name)
		} else {
			mem.put([]byte(tt.key), data)
			if len(tt.key) <= MaxKeyBytes { // longer: not pulled, an error recorded
				viaMem[tt.key] = data
			}
			t.Logf("%-24s via the in-process bucket (MinIO refused: %v)", tt.name, err)
		}
	}
	s := newStore(t)
	p := &Puller{Store: s, Log: testLogger(t)}
	r1, err := p.Pull(context.Background(), minioSource(m, "keys", m.Endpoint, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	checkLatest(t, s, r1.Snapshot, viaMinIO)
	r2, err := p.pull(context.Background(), testSource("keys-mem", "mem", "mem"), mem)
	if r2 == nil || err == nil || !strings.Contains(err.Error(), "key of 1025 bytes exceeds 1024") {
		t.Fatalf("the 1025-byte key: %v, want it refused with an error", err)
	}
	checkLatest(t, s, r2.Snapshot, viaMem)
}

// TestMinIOCutTransfer puts a TCP proxy between the pull and MinIO that
// cuts the response stream mid-body.
func TestMinIOCutTransfer(t *testing.T) {
	tests := []struct {
		name     string
		mode     string
		times    int64
		complete bool
		errWant  string
	}{
		{"cut once: resumed with a Range GET", "cut", 1, true, ""},
		{"cut every connection: recorded", "cut", -1, false, "transfer cut at byte"},
		{"one byte flipped: refused", "flip", 1, false, "does not match"},
	}
	m := testminio.Start(t)
	m.MakeBucket(t, "cut", false)
	big := randBytes(9, 24<<20)
	m.Put(t, "cut", "big", big, minio.PutObjectOptions{PartSize: 32 << 20}) // one part: ETag is its MD5
	small := map[string][]byte{}
	for i := 0; i < 3; i++ {
		small["small"+strconv.Itoa(i)] = randBytes(uint64(i), 10_000)
	}
	fill(t, m, "cut", small)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := newTCPProxy(t, m.Endpoint, tt.mode, 4<<20, tt.times)
			s := newStore(t)
			p := &Puller{Store: s, Log: testLogger(t)}
			src := minioSource(m, "cut", proxy.Endpoint, "cut")
			res, err := p.Pull(context.Background(), src)
			if res == nil {
				t.Fatalf("pull: %v", err)
			}
			if proxy.fired.Load() == 0 {
				t.Fatalf("the proxy never cut or flipped anything")
			}
			want := map[string][]byte{"big": big}
			for k, v := range small {
				want[k] = v
			}
			if tt.complete {
				if err != nil || !res.Complete || res.Resumes < 1 {
					t.Fatalf("pull: %v, %+v: want complete after a resume", err, res)
				}
				checkLatest(t, s, res.Snapshot, want)
				return
			}
			if !errors.Is(err, ErrIncomplete) || res.Complete {
				t.Fatalf("pull: %v: want an incomplete snapshot", err)
			}
			delete(want, "big")
			man := checkLatest(t, s, res.Snapshot, want)
			if len(man.Errors) != 1 || !strings.Contains(man.Errors[0], `"big"`) || !strings.Contains(man.Errors[0], tt.errWant) {
				t.Fatalf("recorded errors %q: want one about \"big\" saying %q", man.Errors, tt.errWant)
			}
		})
	}
}

// TestMinIOBadSource: wrong credentials, a closed port and a missing bucket
// fail with errors that say what to check, and leave no snapshot.
func TestMinIOBadSource(t *testing.T) {
	m := testminio.Start(t)
	m.MakeBucket(t, "exists", false)
	closed, err := testminio.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(src *config.Source)
		want []string
	}{
		{"wrong secret key", func(src *config.Source) { src.S3.SecretKey = "wrong-secret" }, []string{"SignatureDoesNotMatch", "secret_key", m.Endpoint}},
		{"unknown access key", func(src *config.Source) { src.S3.AccessKey = "nobody" }, []string{"InvalidAccessKeyId", "access_key"}},
		{"closed port", func(src *config.Source) { src.S3.Endpoint = "127.0.0.1:" + strconv.Itoa(closed) }, []string{"cannot reach", "connection refused", "127.0.0.1:" + strconv.Itoa(closed)}},
		{"missing bucket", func(src *config.Source) { src.S3.Bucket = "absent" }, []string{"NoSuchBucket", `"absent"`}},
		{"TLS to a plain HTTP server", func(src *config.Source) { src.S3.TLS = true }, []string{"cannot reach"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			p := &Puller{Store: s, Log: testLogger(t)}
			src := minioSource(m, "bad", m.Endpoint, "exists")
			src.Retries = 1
			tt.mod(&src)
			start := time.Now()
			res, err := p.Pull(context.Background(), src)
			if err == nil || res != nil {
				t.Fatalf("pull succeeded: %+v", res)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), testminio.SecretKey) {
				t.Errorf("error leaks the secret key")
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("took %s to fail", d)
			}
			if infos, _ := s.Snapshots(); len(infos) != 0 {
				t.Errorf("a failed connection left snapshots %+v", infos)
			}
		})
	}
}

// TestMinIOBounds: each bound gives an incomplete snapshot naming it.
func TestMinIOBounds(t *testing.T) {
	m := testminio.Start(t)
	m.MakeBucket(t, "bounds", false)
	objs := map[string][]byte{
		"a": randBytes(1, 1<<20), "b": randBytes(2, 1<<20), "c": randBytes(3, 1<<20),
		"huge": randBytes(4, 3<<20), "tiny": []byte("t"),
	}
	fill(t, m, "bounds", objs)
	tests := []struct {
		name     string
		limits   config.Limits
		errWant  string
		errCount int
		objects  int64
	}{
		{"max object size", config.Limits{MaxObjectSize: 2 << 20, MaxObjectsPerPull: 100, Quota: 1 << 40}, "max_object_size", 1, 4},
		{"objects per pull", config.Limits{MaxObjectSize: 1 << 30, MaxObjectsPerPull: 3, Quota: 1 << 40}, "max_objects_per_pull", 1, 3},
		{"quota", config.Limits{MaxObjectSize: 1 << 30, MaxObjectsPerPull: 100, Quota: 2<<20 + 10}, "quota", 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			p := &Puller{Store: s, Log: testLogger(t)}
			src := minioSource(m, "bounds", m.Endpoint, "bounds")
			src.Limits = tt.limits
			res, err := p.Pull(context.Background(), src)
			if !errors.Is(err, ErrIncomplete) || res == nil || res.Complete {
				t.Fatalf("pull: %v, %+v: want an incomplete snapshot", err, res)
			}
			infos, _ := s.Snapshots()
			if len(infos) != 1 || infos[0].Complete || infos[0].Count != tt.objects {
				t.Fatalf("snapshots %+v: want one incomplete with %d objects", infos, tt.objects)
			}
			if len(infos[0].Errors) != tt.errCount {
				t.Errorf("errors %q: want %d", infos[0].Errors, tt.errCount)
			}
			for _, e := range infos[0].Errors {
				if !strings.Contains(e, tt.errWant) {
					t.Errorf("error %q does not name %s", e, tt.errWant)
				}
			}
			got, _ := snapshotContents(t, s, res.Snapshot)
			for v, data := range got {
				if !bytes.Equal(data, objs[v.key]) {
					t.Errorf("%q restores differently", v.key)
				}
			}
		})
	}
}

// TestMinIOGetHashesOnce: a GET from offset 0 still asks for the object's
// checksums, but the body comes back unwrapped: body.verify checks every
// declared full-object checksum itself, so a second hash of the same bytes
// inside minio-go would be wasted CPU.
func TestMinIOGetHashesOnce(t *testing.T) {
	m := testminio.Start(t)
	m.MakeBucket(t, "once", false)
	data := randBytes(9, 300<<10)
	m.Put(t, "once", "sha256", data, minio.PutObjectOptions{Checksum: minio.ChecksumSHA256})
	b, err := newS3Bucket(minioSource(m, "once", m.Endpoint, "once"), NetLimits{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	ctx := context.Background()
	var e entry
	if err := b.List(ctx, false, func(x entry) error { e = x; return nil }); err != nil {
		t.Fatal(err)
	}
	rc, bi, err := b.Get(ctx, e, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if bi.Checksums["sha256"] == "" {
		t.Fatalf("checksums %v: the GET did not ask for them", bi.Checksums)
	}
	if typ := fmt.Sprintf("%T", rc); strings.Contains(typ, "checksum") {
		t.Errorf("body is %s: minio-go hashes it a second time", typ)
	}
}
