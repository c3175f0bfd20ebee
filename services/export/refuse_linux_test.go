package export

// What the export must refuse: every write, every other verb, every
// request that is not properly signed. The store is byte-identical
// afterwards.

import (
	"bytes"
	"context"
	"encoding/xml"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/tags"
)

func TestWritesAndBadAuthAreRefused(t *testing.T) {
	f := newFixture(t)
	before := treeState(t, f.dir)
	ts := startServer(t, f.dir, nil)
	cl := ts.clientRetries(t, testAccess, testSecret, 1)
	ctx := context.Background()
	latest := f.latest("docs").id

	// Writes through minio-go, as a client would try them.
	writes := []struct {
		name string
		op   func() error
	}{
		{"PutObject", func() error {
			_, err := cl.PutObject(ctx, "docs", "latest/new", strings.NewReader("x"), 1, minio.PutObjectOptions{})
			return err
		}},
		{"PutObject over an existing key", func() error {
			_, err := cl.PutObject(ctx, "docs", "latest/plain.txt", strings.NewReader("overwritten"), 11, minio.PutObjectOptions{})
			return err
		}},
		{"CreateMultipartUpload", func() error {
			_, err := minio.Core{Client: cl}.NewMultipartUpload(ctx, "docs", "latest/multi", minio.PutObjectOptions{})
			return err
		}},
		{"UploadPart", func() error {
			_, err := minio.Core{Client: cl}.PutObjectPart(ctx, "docs", "latest/multi", "upload-id", 1, strings.NewReader("x"), 1, minio.PutObjectPartOptions{})
			return err
		}},
		{"CompleteMultipartUpload", func() error {
			_, err := minio.Core{Client: cl}.CompleteMultipartUpload(ctx, "docs", "latest/multi", "upload-id", []minio.CompletePart{{PartNumber: 1, ETag: "x"}}, minio.PutObjectOptions{})
			return err
		}},
		{"AbortMultipartUpload", func() error {
			return minio.Core{Client: cl}.AbortMultipartUpload(ctx, "docs", "latest/multi", "upload-id")
		}},
		{"DeleteObject", func() error {
			return cl.RemoveObject(ctx, "docs", "latest/plain.txt", minio.RemoveObjectOptions{})
		}},
		{"DeleteObject of a snapshot's key", func() error {
			return cl.RemoveObject(ctx, "docs", latest+"/plain.txt", minio.RemoveObjectOptions{})
		}},
		{"DeleteObjects", func() error {
			ch := make(chan minio.ObjectInfo, 2)
			ch <- minio.ObjectInfo{Key: "latest/plain.txt"}
			ch <- minio.ObjectInfo{Key: "latest/empty"}
			close(ch)
			for e := range cl.RemoveObjects(ctx, "docs", ch, minio.RemoveObjectsOptions{}) {
				return e.Err
			}
			return nil
		}},
		{"CopyObject", func() error {
			_, err := cl.CopyObject(ctx, minio.CopyDestOptions{Bucket: "docs", Object: "latest/copy"}, minio.CopySrcOptions{Bucket: "docs", Object: "latest/plain.txt"})
			return err
		}},
		{"MakeBucket", func() error { return cl.MakeBucket(ctx, "newbucket", minio.MakeBucketOptions{}) }},
		{"RemoveBucket", func() error { return cl.RemoveBucket(ctx, "docs") }},
		{"PutObjectTagging", func() error {
			tg, _ := tags.NewTags(map[string]string{"a": "b"}, true)
			return cl.PutObjectTagging(ctx, "docs", "latest/plain.txt", tg, minio.PutObjectTaggingOptions{})
		}},
		{"SetBucketPolicy", func() error { return cl.SetBucketPolicy(ctx, "docs", `{"Version":"2012-10-17","Statement":[]}`) }},
		{"EnableVersioning", func() error { return cl.EnableVersioning(ctx, "docs") }},
	}
	for _, w := range writes {
		err := w.op()
		if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
			t.Errorf("%s: %v (code %q), want AccessDenied", w.name, err, code)
		}
	}

	// Raw requests: writes are AccessDenied, other verbs MethodNotAllowed,
	// sub-resources the export does not serve NotImplemented.
	raw := []struct {
		method, path, query string
		hdr                 map[string]string
		status              int
		code                string
	}{
		{"PUT", "/docs/latest/x", "", nil, 403, "AccessDenied"},
		{"PUT", "/docs/latest/x", "", map[string]string{"X-Amz-Copy-Source": "/docs/latest/plain.txt"}, 403, "AccessDenied"},
		{"POST", "/docs/latest/x", "uploads", nil, 403, "AccessDenied"},
		{"POST", "/docs", "delete", nil, 403, "AccessDenied"},
		{"DELETE", "/docs/latest/plain.txt", "", nil, 403, "AccessDenied"},
		{"DELETE", "/docs", "", nil, 403, "AccessDenied"},
		{"PUT", "/docs/latest/plain.txt", "acl", nil, 403, "AccessDenied"},
		{"PATCH", "/docs/latest/plain.txt", "", nil, 403, "AccessDenied"},
		{"OPTIONS", "/docs/latest/plain.txt", "", nil, 405, "MethodNotAllowed"},
		{"PROPFIND", "/docs/", "", nil, 405, "MethodNotAllowed"},
		{"FROBNICATE", "/", "", nil, 405, "MethodNotAllowed"},
		{"HEAD", "/", "", nil, 405, ""},
		{"GET", "//docs/latest/plain.txt", "", nil, 404, "NoSuchBucket"},
		{"GET", "/docs/latest/plain.txt", "acl", nil, 501, "NotImplemented"},
		{"GET", "/docs/latest/plain.txt", "tagging", nil, 501, "NotImplemented"},
		{"GET", "/docs/latest/plain.txt", "partNumber=1", nil, 501, "NotImplemented"},
		{"GET", "/docs", "versions", nil, 501, "NotImplemented"},
		{"GET", "/docs", "uploads", nil, 501, "NotImplemented"},
		{"GET", "/docs", "policy", nil, 501, "NotImplemented"},
		{"GET", "/", "acl", nil, 501, "NotImplemented"},
		{"GET", "/docs/latest/plain.txt", "", map[string]string{"X-Amz-Content-Sha256": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"}, 400, "InvalidRequest"},
		{"GET", "/docs", "list-type=2&encoding-type=base64", nil, 400, "InvalidArgument"},
		{"GET", "/docs", "list-type=2&max-keys=-1", nil, 400, "InvalidArgument"},
		{"GET", "/docs", "list-type=2&continuation-token=bm9wZQ", nil, 400, "InvalidArgument"},
	}
	for _, r := range raw {
		status, _, body := ts.do(t, r.method, r.path, r.query, r.hdr, false)
		if status != r.status || r.code != "" && !bytes.Contains(body, []byte("<Code>"+r.code+"</Code>")) {
			t.Errorf("%s %s?%s: %d %s; want %d %s", r.method, r.path, r.query, status, body, r.status, r.code)
		}
	}

	// Authentication.
	wrong := ts.clientRetries(t, testAccess, testSecret+"x", 1)
	if _, err := wrong.ListBuckets(ctx); minio.ToErrorResponse(err).Code != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: %v", err)
	}
	stranger := ts.clientRetries(t, "someone-else", testSecret, 1)
	if _, err := stranger.StatObject(ctx, "docs", "latest/plain.txt", minio.StatObjectOptions{}); minio.ToErrorResponse(err).StatusCode != 403 {
		t.Errorf("unknown access key: %v", err)
	}
	for _, p := range []string{"/", "/docs", "/docs/latest/plain.txt"} {
		status, _, body := ts.do(t, "GET", p, "", nil, true)
		if status != 403 || !bytes.Contains(body, []byte("<Code>AccessDenied</Code>")) || bytes.Contains(body, []byte("hello")) {
			t.Errorf("anonymous GET %s: %d %s", p, status, body)
		}
	}
	for _, skew := range []time.Duration{16 * time.Minute, -16 * time.Minute} {
		ts.offset.Store(int64(skew))
		_, err := cl.ListBuckets(ctx)
		if minio.ToErrorResponse(err).Code != "RequestTimeTooSkewed" {
			t.Errorf("clock skew %s: %v", skew, err)
		}
		status, _, body := ts.do(t, "GET", "/docs/latest/plain.txt", "", nil, false)
		if status != 403 || bytes.Contains(body, []byte("hello")) {
			t.Errorf("clock skew %s: GET %d %s", skew, status, body)
		}
	}
	ts.offset.Store(0)
	if _, err := cl.ListBuckets(ctx); err != nil {
		t.Errorf("after the skew tests: %v", err)
	}

	// Every refusal is logged.
	logs := ts.logs.String()
	for _, want := range []string{"op=PutObject", "op=CreateMultipartUpload", "op=DeleteObjects", "op=CopyObject", "op=DeleteObject",
		"code=MethodNotAllowed", "code=SignatureDoesNotMatch", "code=RequestTimeTooSkewed", "code=InvalidAccessKeyId"} {
		if !strings.Contains(logs, "request refused") || !strings.Contains(logs, want) {
			t.Errorf("log has no refusal with %s", want)
		}
	}

	// The store is exactly as it was: names, sizes, times, flags, xattrs,
	// contents.
	after := treeState(t, f.dir)
	for p, d := range before {
		if after[p] != d {
			t.Errorf("%s changed:\n was %s\n now %s", p, d, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared: %s", p, after[p])
		}
	}
	// And it still serves what it served.
	o, err := cl.GetObject(ctx, "docs", "latest/plain.txt", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(o); err != nil || buf.String() != string(f.latest("docs").live["plain.txt"].data) {
		t.Errorf("after the refusals: %q %v", buf.String(), err)
	}
}

// TestListingXML checks the XML of the listings field by field against
// what S3 sends, for V1 and V2, plain and URL-encoded.
func TestListingXML(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f.dir, nil)
	id := f.latest("mail").id
	status, _, body := ts.do(t, "GET", "/mail", "list-type=2&prefix="+id+"%2Finbox%2F&max-keys=2&fetch-owner=true&encoding-type=url", nil, false)
	var v2 listV2XML
	if status != 200 || xml.Unmarshal(body, &v2) != nil {
		t.Fatalf("v2: %d %s", status, body)
	}
	if v2.Name != "mail" || v2.Prefix != id+"/inbox/" || v2.KeyCount != 2 || v2.MaxKeys != 2 || !v2.IsTruncated ||
		v2.NextContinuationToken == "" || v2.EncodingType != "url" || len(v2.Contents) != 2 || v2.Contents[0].Owner == nil {
		t.Fatalf("v2 page 1: %+v", v2)
	}
	if c := v2.Contents[0]; c.Key != id+"/inbox/1.eml" || c.Size != 12 || c.StorageClass != "STANDARD" ||
		c.ETag != `"`+md5hex([]byte("From: a\n\nhi\n"))+`"` || c.LastModified != "2026-03-01T12:00:00.000Z" {
		t.Errorf("v2 first key: %+v", c)
	}
	// URL-encoded: the key with a space, '?', '%' and '#' comes back encoded.
	if c := v2.Contents[1]; c.Key != id+"/inbox/with%20space%20and%20%3Fquestion%25percent%23hash.eml" {
		t.Errorf("v2 second key: %q", c.Key)
	}
	status, _, body = ts.do(t, "GET", "/mail", "list-type=2&prefix="+id+"%2Finbox%2F&max-keys=2&continuation-token="+v2.NextContinuationToken, nil, false)
	var v2b listV2XML
	if status != 200 || xml.Unmarshal(body, &v2b) != nil || len(v2b.Contents) != 1 || v2b.IsTruncated ||
		v2b.Contents[0].Key != id+"/inbox/ünïcødé 🙂.eml" || v2b.ContinuationToken != v2.NextContinuationToken || v2b.Contents[0].Owner != nil {
		t.Errorf("v2 page 2: %d %+v", status, v2b)
	}
	status, _, body = ts.do(t, "GET", "/mail", "prefix="+id+"%2F&delimiter=%2F&max-keys=2", nil, false)
	var v1 listV1XML
	if status != 200 || xml.Unmarshal(body, &v1) != nil {
		t.Fatalf("v1: %d %s", status, body)
	}
	if len(v1.CommonPrefixes) != 2 || v1.CommonPrefixes[0].Prefix != id+"/a/" || v1.CommonPrefixes[1].Prefix != id+"/archive/" ||
		!v1.IsTruncated || v1.NextMarker != id+"/archive/" {
		t.Errorf("v1: %+v", v1)
	}
	status, _, body = ts.do(t, "GET", "/mail", "prefix="+id+"%2F&delimiter=%2F&marker="+id+"%2Farchive%2F", nil, false)
	var v1b listV1XML
	if status != 200 || xml.Unmarshal(body, &v1b) != nil || len(v1b.CommonPrefixes) != 2 || v1b.CommonPrefixes[0].Prefix != id+"/inbox/" || v1b.IsTruncated {
		t.Errorf("v1 page 2: %d %+v", status, v1b)
	}
	status, _, body = ts.do(t, "GET", "/docs", "location", nil, false)
	if status != 200 || !bytes.Contains(body, []byte(`<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></LocationConstraint>`)) {
		t.Errorf("location: %d %s", status, body)
	}
	status, _, body = ts.do(t, "GET", "/docs", "versioning", nil, false)
	if status != 200 || !bytes.Contains(body, []byte(`<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></VersioningConfiguration>`)) {
		t.Errorf("versioning: %d %s", status, body)
	}
	if status, _, _ := ts.do(t, "GET", "/nope", "list-type=2", nil, false); status != http.StatusNotFound {
		t.Errorf("listing a missing bucket: %d", status)
	}
}
