package export

// The export served to minio-go over TLS on 127.0.0.1: listings, every
// object's bytes, metadata, Range and conditional GETs, presigned URLs.

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// syntheticETag is the form of the ETag of an object with none recorded.
var syntheticETag = regexp.MustCompile(`^[0-9a-f]{32}-[0-9]+$`)

// minioCanGet reports whether minio-go will ask for key at all.
func minioCanGet(key string) bool { return utf8.ValidString(key) && len(key) <= 1024 }

func TestMinioListAndGetEverything(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f.dir, nil)
	cl := ts.client(t, testAccess, testSecret)
	ctx := context.Background()

	bs, err := cl.ListBuckets(ctx)
	if err != nil {
		t.Fatalf("list buckets: %v", err)
	}
	var names []string
	for _, b := range bs {
		names = append(names, b.Name)
	}
	if fmt.Sprint(names) != "[docs mail]" {
		t.Fatalf("buckets %q, want docs and mail (and not the source that cannot be a bucket)", names)
	}
	if ok, err := cl.BucketExists(ctx, "docs"); err != nil || !ok {
		t.Errorf("BucketExists(docs) = %v, %v", ok, err)
	}
	if ok, err := cl.BucketExists(ctx, "nope"); err != nil || ok {
		t.Errorf("BucketExists(nope) = %v, %v", ok, err)
	}

	for _, bucket := range []string{"docs", "mail"} {
		want := f.keys(bucket)
		for _, lo := range []struct {
			name string
			opts minio.ListObjectsOptions
		}{
			{"v2", minio.ListObjectsOptions{Recursive: true}},
			{"v2 pages of 7", minio.ListObjectsOptions{Recursive: true, MaxKeys: 7}},
			{"v1", minio.ListObjectsOptions{Recursive: true, UseV1: true}},
			{"v1 pages of 5", minio.ListObjectsOptions{Recursive: true, UseV1: true, MaxKeys: 5}},
		} {
			var got []string
			for o := range cl.ListObjects(ctx, bucket, lo.opts) {
				if o.Err != nil {
					t.Fatalf("%s list %s: %v", bucket, lo.name, o.Err)
				}
				got = append(got, o.Key)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s list %s:\n got %q\nwant %q", bucket, lo.name, got, want)
			}
		}
		for _, key := range f.keys(bucket) {
			o, _ := f.lookup(bucket, key)
			var body []byte
			var st minio.ObjectInfo
			if minioCanGet(key) {
				obj, err := cl.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
				if err != nil {
					t.Fatalf("get %q: %v", key, err)
				}
				if st, err = obj.Stat(); err != nil { // before reading: Stat's Size is what is left
					t.Fatalf("stat %q: %v", key, err)
				}
				if body, err = io.ReadAll(obj); err != nil {
					t.Fatalf("read %q: %v", key, err)
				}
				obj.Close()
			} else {
				status, hdr, b := ts.do(t, "GET", "/"+bucket+"/"+key, "", nil, false)
				if status != 200 {
					t.Fatalf("raw GET %q: %d %s", key, status, b)
				}
				body = b
				st = minio.ObjectInfo{Key: key, Size: int64(len(b)), ContentType: hdr.Get("Content-Type"), ETag: strings.Trim(hdr.Get("ETag"), `"`)}
			}
			if sha(body) != sha(o.data) {
				t.Errorf("%s/%q: %d bytes sha256 %s, want %d bytes %s", bucket, key, len(body), sha(body), len(o.data), sha(o.data))
			}
			wantCT := o.contentType
			if wantCT == "" {
				wantCT = "application/octet-stream"
			}
			if st.ContentType != wantCT || st.Size != int64(len(o.data)) {
				t.Errorf("%s/%q: content type %q size %d, want %q %d", bucket, key, st.ContentType, st.Size, wantCT, len(o.data))
			}
			for k, v := range o.meta {
				if got := st.UserMetadata[http.CanonicalHeaderKey(k)]; got != v {
					t.Errorf("%s/%q: user metadata %q = %q, want %q (all: %v)", bucket, key, k, got, v, st.UserMetadata)
				}
			}
			switch {
			case o.md5:
				if st.ETag != md5hex(o.data) {
					t.Errorf("%s/%q: ETag %q, want the MD5 %s", bucket, key, st.ETag, md5hex(o.data))
				}
			case o.etag != "":
				if st.ETag != o.etag {
					t.Errorf("%s/%q: ETag %q, want the recorded %q", bucket, key, st.ETag, o.etag)
				}
			case len(o.data) == 0:
				if st.ETag != emptyMD5 {
					t.Errorf("%s/%q: ETag %q, want the MD5 of nothing", bucket, key, st.ETag)
				}
			default:
				if !syntheticETag.MatchString(st.ETag) {
					t.Errorf("%s/%q: ETag %q is not of the synthetic form", bucket, key, st.ETag)
				}
			}
		}
	}

	// The top level of a bucket: one folder per snapshot, then latest/.
	var top []string
	for o := range cl.ListObjects(ctx, "docs", minio.ListObjectsOptions{}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		top = append(top, o.Key)
	}
	var wantTop []string
	for _, s := range f.snaps {
		if s.source == "docs" {
			wantTop = append(wantTop, s.id+"/")
		}
	}
	sort.Strings(wantTop) // IDs of one second sort by their random part
	wantTop = append(wantTop, "latest/")
	if !slices.Equal(top, wantTop) {
		t.Errorf("top level %q, want %q", top, wantTop)
	}
	// latest/ is the newest complete snapshot, not the incomplete one after it.
	if l := f.latest("docs"); l.id != f.snaps[1].id {
		t.Fatalf("fixture: latest docs is %s", l.id)
	}
	// A prefix with a delimiter, and start-after.
	var sub []string
	for o := range cl.ListObjects(ctx, "docs", minio.ListObjectsOptions{Prefix: "latest/long/long/"}) {
		sub = append(sub, o.Key)
	}
	if !slices.Equal(sub, []string{"latest/long/long/long/"}) {
		t.Errorf("prefix listing %q", sub)
	}
	var after []string
	for o := range cl.ListObjects(ctx, "docs", minio.ListObjectsOptions{Recursive: true, StartAfter: "latest/plain.txt"}) {
		after = append(after, o.Key)
	}
	all := f.keys("docs")
	i := slices.Index(all, "latest/plain.txt")
	if !slices.Equal(after, all[i+1:]) {
		t.Errorf("start-after: %q, want %q", after, all[i+1:])
	}

	// Keys XML cannot carry, in a listing without encoding-type=url: left out.
	status, _, body := ts.do(t, "GET", "/docs", "list-type=2&prefix="+f.snaps[0].id+"/", nil, false)
	var lr listV2XML
	if status != 200 || xml.Unmarshal(body, &lr) != nil {
		t.Fatalf("plain listing: %d %s", status, body)
	}
	for _, c := range lr.Contents {
		if strings.Contains(c.Key, "utf8") || strings.Contains(c.Key, "ctrl") {
			t.Errorf("plain listing carries %q", c.Key)
		}
	}
	if lr.KeyCount != len(lr.Contents) || len(lr.Contents) != len(f.snaps[0].live)-2 {
		t.Errorf("plain listing: %d keys (KeyCount %d), want %d", len(lr.Contents), lr.KeyCount, len(f.snaps[0].live)-2)
	}

	// Unknown bucket and key.
	if _, err := cl.StatObject(ctx, "docs", "latest/nope", minio.StatObjectOptions{}); minio.ToErrorResponse(err).StatusCode != 404 {
		t.Errorf("stat of a missing key: %v", err)
	}
	for _, k := range []string{"latest", "latest/", f.snaps[0].id, "20990101T000000Z-00000000/plain.txt", "nonsense/plain.txt"} {
		status, _, body := ts.do(t, "GET", "/docs/"+k, "", nil, false)
		if status != 404 || !bytes.Contains(body, []byte("<Code>NoSuchKey</Code>")) {
			t.Errorf("GET docs/%s: %d %s", k, status, body)
		}
	}
	if _, err := cl.GetObject(ctx, "nope", "x", minio.GetObjectOptions{}); err == nil {
		// GetObject is lazy; stat makes the request.
		o, _ := cl.GetObject(ctx, "nope", "x", minio.GetObjectOptions{})
		if _, err := o.Stat(); minio.ToErrorResponse(err).Code != "NoSuchBucket" {
			t.Errorf("missing bucket: %v", err)
		}
	}
}

func md5hex(b []byte) string {
	m := md5Sum(b)
	return fmt.Sprintf("%x", m)
}

func TestMinioRangeAndConditions(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f.dir, nil)
	cl := ts.client(t, testAccess, testSecret)
	ctx := context.Background()
	key := f.snaps[0].id + "/big.bin"
	big := f.snaps[0].live["big.bin"].data
	size := int64(len(big))
	ranges := []struct{ start, end int64 }{
		{0, 0}, {0, 9}, {1, 1 << 20}, {size - 1, size - 1}, {5 << 20, 13<<20 + 17}, {size - 100, size - 1},
		{12 << 20, 0},          // from 12 MiB to the end (minio-go: end 0 means open)
		{5 << 20, 13<<20 + 17}, // again: chunk sizes are known now
	}
	for _, r := range ranges {
		opts := minio.GetObjectOptions{}
		if err := opts.SetRange(r.start, r.end); err != nil {
			t.Fatal(err)
		}
		o, err := cl.GetObject(ctx, "docs", key, opts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(o)
		o.Close()
		if err != nil {
			t.Fatalf("range %d-%d: %v", r.start, r.end, err)
		}
		end := r.end
		if end == 0 && r.start > 0 {
			end = size - 1
		}
		if want := big[r.start : end+1]; !bytes.Equal(got, want) {
			t.Errorf("range %d-%d: %d bytes (sha256 %s), want %d (%s)", r.start, r.end, len(got), sha(got), len(want), sha(want))
		}
	}
	// Raw Range headers, with status and Content-Range.
	raw := []struct {
		hdr, contentRange string
		status            int
		from, to          int64
	}{
		{"bytes=-100", fmt.Sprintf("bytes %d-%d/%d", size-100, size-1, size), 206, size - 100, size},
		{"bytes=-99999999999", fmt.Sprintf("bytes 0-%d/%d", size-1, size), 206, 0, size},
		{fmt.Sprintf("bytes=%d-", size), fmt.Sprintf("bytes */%d", size), 416, 0, 0},
		{"bytes=0-1,4-5", "", 200, 0, size},
	}
	for _, r := range raw {
		status, hdr, body := ts.do(t, "GET", "/docs/"+key, "", map[string]string{"Range": r.hdr}, false)
		if status != r.status || hdr.Get("Content-Range") != r.contentRange {
			t.Errorf("Range %s: %d Content-Range %q, want %d %q", r.hdr, status, hdr.Get("Content-Range"), r.status, r.contentRange)
			continue
		}
		if status < 300 && !bytes.Equal(body, big[r.from:r.to]) {
			t.Errorf("Range %s: wrong body (%d bytes)", r.hdr, len(body))
		}
	}
	// A Range on an empty object is not satisfiable.
	if status, _, _ := ts.do(t, "GET", "/docs/latest/empty", "", map[string]string{"Range": "bytes=0-0"}, false); status != 416 {
		t.Errorf("range of an empty object: %d", status)
	}

	st, err := cl.StatObject(ctx, "docs", key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mod := st.LastModified.UTC().Format(http.TimeFormat)
	cond := []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"If-Match right", map[string]string{"If-Match": `"` + st.ETag + `"`}, 200},
		{"If-Match star", map[string]string{"If-Match": "*"}, 200},
		{"If-Match wrong", map[string]string{"If-Match": `"0000"`}, 412},
		{"If-None-Match right", map[string]string{"If-None-Match": `"` + st.ETag + `"`}, 304},
		{"If-None-Match wrong", map[string]string{"If-None-Match": `"0000"`}, 200},
		{"If-Modified-Since same", map[string]string{"If-Modified-Since": mod}, 304},
		{"If-Modified-Since earlier", map[string]string{"If-Modified-Since": st.LastModified.Add(-time.Hour).UTC().Format(http.TimeFormat)}, 200},
		{"If-Unmodified-Since earlier", map[string]string{"If-Unmodified-Since": st.LastModified.Add(-time.Hour).UTC().Format(http.TimeFormat)}, 412},
		{"Range with If-Match (a resumed GET)", map[string]string{"If-Match": `"` + st.ETag + `"`, "Range": "bytes=10-19"}, 206},
	}
	for _, c := range cond {
		for _, method := range []string{"GET", "HEAD"} {
			status, hdr, _ := ts.do(t, method, "/docs/"+key, "", c.hdr, false)
			if status != c.status {
				t.Errorf("%s %s: %d, want %d", method, c.name, status, c.status)
			}
			if status == 304 && hdr.Get("ETag") != `"`+st.ETag+`"` {
				t.Errorf("%s %s: 304 without the ETag", method, c.name)
			}
		}
	}

	// HEAD carries the headers and no body.
	status, hdr, body := ts.do(t, "HEAD", "/docs/latest/plain.txt", "", nil, false)
	if status != 200 || len(body) != 0 || hdr.Get("Content-Length") != fmt.Sprint(len(f.snaps[1].live["plain.txt"].data)) ||
		hdr.Get("X-Amz-Meta-Owner") != "bob" || hdr.Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD: %d %v %q", status, hdr, body)
	}
	// Checksums on request, for the whole object only.
	_, hdr, _ = ts.do(t, "HEAD", "/docs/"+key, "", map[string]string{"X-Amz-Checksum-Mode": "ENABLED"}, false)
	if got := hdr.Get("X-Amz-Checksum-Sha256"); got == "" || hdr.Get("X-Amz-Checksum-Type") != "FULL_OBJECT" {
		t.Errorf("checksum headers: %v", hdr)
	} else if want := b64sha(big); got != want {
		t.Errorf("x-amz-checksum-sha256 %s, want %s", got, want)
	}
	_, hdr, _ = ts.do(t, "GET", "/docs/"+key, "", map[string]string{"X-Amz-Checksum-Mode": "ENABLED", "Range": "bytes=0-1"}, false)
	if hdr.Get("X-Amz-Checksum-Sha256") != "" {
		t.Error("checksum sent with a Range GET")
	}
	// response-* overrides.
	_, hdr, _ = ts.do(t, "GET", "/docs/latest/plain.txt", "response-content-type=application%2Fx-test&response-content-disposition=attachment", nil, false)
	if hdr.Get("Content-Type") != "application/x-test" || hdr.Get("Content-Disposition") != "attachment" {
		t.Errorf("response overrides: %v", hdr)
	}
	// versionId: only null exists.
	if status, _, _ := ts.do(t, "GET", "/docs/latest/plain.txt", "versionId=null", nil, false); status != 200 {
		t.Errorf("versionId=null: %d", status)
	}
	if status, _, body := ts.do(t, "GET", "/docs/latest/plain.txt", "versionId=abc", nil, false); status != 404 || !bytes.Contains(body, []byte("NoSuchVersion")) {
		t.Errorf("versionId=abc: %d %s", status, body)
	}

	// Presigned URLs.
	u, err := cl.PresignedGetObject(ctx, "docs", "latest/dir/sub/ünïcødé 🙂.bin", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: ts.transport()}).Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, f.snaps[1].live["dir/sub/ünïcødé 🙂.bin"].data) {
		t.Errorf("presigned GET: %d, %d bytes", resp.StatusCode, len(got))
	}
	ts.offset.Store(int64(2 * time.Minute))
	resp, err = (&http.Client{Transport: ts.transport()}).Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("expired presigned GET: %d", resp.StatusCode)
	}
}

// TestNewSnapshotsAppear commits snapshots while the export runs: they are
// listed, latest/ moves, and their objects (in packs the export's first
// index did not know) are served.
func TestNewSnapshotsAppear(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f.dir, nil)
	cl := ts.client(t, testAccess, testSecret)
	ctx := context.Background()
	before, err := cl.StatObject(ctx, "docs", "latest/plain.txt", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(ctx, f.dir, testKey, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(77, 3<<20)
	sp := f.addSnapshot(t, s, "docs", []obj{{key: "plain.txt", data: data, md5: true}}, false)
	f.addSnapshot(t, s, "newsource", []obj{{key: "n", data: []byte("new")}}, false)
	s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := cl.StatObject(ctx, "docs", "latest/plain.txt", minio.StatObjectOptions{})
		if err == nil && st.ETag != before.ETag {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("latest/ did not move to the new snapshot: %v %v", st.ETag, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, k := range []string{"latest/plain.txt", sp.id + "/plain.txt"} {
		o, err := cl.GetObject(ctx, "docs", k, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(o)
		o.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, %v", k, len(got), err)
		}
	}
	bs, err := cl.ListBuckets(ctx)
	if err != nil || len(bs) != 3 || bs[2].Name != "newsource" {
		t.Errorf("buckets after a new source: %v %v", bs, err)
	}
}

// TestDamagedChunkIsNeverServed flips a byte every 32 KiB of every pack:
// a GET of an object with a chunk there fails (before the headers: 500;
// the store checks every chunk) and never returns wrong bytes, and the
// failure is logged. Where a flip lands is up to the pack layout, so the
// store itself says, key by key, what the export must do: a key whose
// record does not read (its metadata chunk, or in a snapshot that is not
// sorted any of them, is damaged) fails as "cannot read snapshot"; a key
// whose record reads but whose data does not fails as "object read from
// the store failed"; the rest are served whole.
func TestDamagedChunkIsNeverServed(t *testing.T) {
	f := newFixture(t)
	damagePacks(t, f.dir)
	ctx := context.Background()
	const (
		served = iota
		recordFails
		dataFails
	)
	keys := f.keys("docs")
	want := make(map[string]int, len(keys))
	st, err := store.Open(ctx, f.dir, testKey, store.Options{ReadOnly: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		seg, rest, _ := strings.Cut(key, "/")
		if seg == "latest" {
			seg = f.latest("docs").id
		}
		_, o, err := st.FindObject(seg, []byte(rest))
		switch {
		case err != nil:
			want[key] = recordFails
		case st.WriteObject(ctx, o, io.Discard) != nil:
			want[key] = dataFails
		default:
			want[key] = served
		}
	}
	st.Close()

	ts := startServer(t, f.dir, nil)
	cl := ts.clientRetries(t, testAccess, testSecret, 1)
	failed := map[int]int{}
	for _, key := range keys {
		if !minioCanGet(key) {
			continue
		}
		wantObj, _ := f.lookup("docs", key)
		o, err := cl.GetObject(ctx, "docs", key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(o)
		o.Close()
		if err != nil {
			if want[key] == served {
				t.Errorf("%q: %v; the store reads it whole", key, err)
			}
			failed[want[key]]++
			continue
		}
		if !bytes.Equal(got, wantObj.data) {
			t.Fatalf("%q: served %d wrong bytes", key, len(got))
		}
		if want[key] != served {
			t.Errorf("%q: served although the store does not read it (case %d)", key, want[key])
		}
	}
	if failed[recordFails]+failed[dataFails] == 0 {
		t.Fatal("no GET failed although every pack is damaged")
	}
	t.Logf("GETs that failed: %d for their record, %d for their data", failed[recordFails], failed[dataFails])
	logs := ts.logs.String()
	for c, msg := range map[int]string{recordFails: "cannot read snapshot", dataFails: "object read from the store failed"} {
		if failed[c] > 0 != strings.Contains(logs, msg) {
			t.Errorf("%d GETs failed so, and the log has %q: %v", failed[c], msg, strings.Contains(logs, msg))
		}
	}
}
