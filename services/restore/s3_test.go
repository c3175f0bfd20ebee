package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
)

// fakeS3 is just enough of an S3 server to watch how ToS3 talks: it
// records every request, checks each body against the SHA-256 the request
// was signed with, and can refuse one part number.
type fakeS3 struct {
	t        *testing.T
	failPart string // partNumber to refuse with AccessDenied
	// hold keeps each part request waiting (up to this long) until two
	// parts have been in flight at once, so a slow machine still shows
	// whether parts overlap.
	hold time.Duration

	mu       sync.Mutex
	log      []string          // "METHOD key query"
	objects  map[string][]byte // single PUTs and completed uploads
	parts    map[string][]byte // "uploadID/partNumber" -> body
	badSHA   []string
	inFlight atomic.Int32
	maxParts atomic.Int32 // most part uploads seen at once
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/bkt/")
	q := r.URL.Query()
	f.mu.Lock()
	f.log = append(f.log, r.Method+" "+key+" "+r.URL.RawQuery)
	f.mu.Unlock()
	switch {
	case r.Method == http.MethodHead && (r.URL.Path == "/bkt/" || r.URL.Path == "/bkt"):
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPost && q.Has("uploads"):
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>%s</Key><UploadId>up-%s</UploadId></InitiateMultipartUploadResult>`, key, url.QueryEscape(key))
	case r.Method == http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the client gave up on this request (canceled after another failed)
		}
		sum := sha256.Sum256(body)
		if got := r.Header.Get("X-Amz-Content-Sha256"); got != hex.EncodeToString(sum[:]) {
			f.mu.Lock()
			f.badSHA = append(f.badSHA, fmt.Sprintf("%s %s: X-Amz-Content-Sha256 %q", key, r.URL.RawQuery, got))
			f.mu.Unlock()
		}
		if pn := q.Get("partNumber"); pn != "" {
			n := f.inFlight.Add(1)
			defer f.inFlight.Add(-1)
			for {
				m := f.maxParts.Load()
				if n <= m || f.maxParts.CompareAndSwap(m, n) {
					break
				}
			}
			for deadline := time.Now().Add(f.hold); f.maxParts.Load() < 2 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if pn == f.failPart {
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message><Key>%s</Key><BucketName>bkt</BucketName><Resource>/bkt/%s</Resource><RequestId>1</RequestId><HostId>1</HostId></Error>`, key, key)
				return
			}
			f.mu.Lock()
			f.parts[q.Get("uploadId")+"/"+pn] = body
			f.mu.Unlock()
			w.Header().Set("ETag", `"etag-`+pn+`"`)
			return
		}
		f.mu.Lock()
		f.objects[key] = body
		f.mu.Unlock()
		w.Header().Set("ETag", `"single"`)
	case r.Method == http.MethodPost && q.Has("uploadId"):
		// Assemble the parts in order (the request lists them).
		req, _ := io.ReadAll(r.Body)
		var obj []byte
		for i := 1; ; i++ {
			if !strings.Contains(string(req), fmt.Sprintf("<PartNumber>%d</PartNumber>", i)) {
				break
			}
			f.mu.Lock()
			obj = append(obj, f.parts[q.Get("uploadId")+"/"+fmt.Sprint(i)]...)
			f.mu.Unlock()
		}
		f.mu.Lock()
		f.objects[key] = obj
		f.mu.Unlock()
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult><Bucket>bkt</Bucket><Key>%s</Key><ETag>"multi-1"</ETag></CompleteMultipartUploadResult>`, key)
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		w.WriteHeader(http.StatusNoContent)
	default:
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotImplemented)
	}
}

func startFake(t *testing.T, f *fakeS3) Target {
	f.t, f.objects, f.parts = t, map[string][]byte{}, map[string][]byte{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return Target{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: "bkt", AccessKey: "a", SecretKey: config.Secret("b")}
}

func (f *fakeS3) requests(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.log {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// TestToS3Requests checks what goes over the wire: single PUTs and
// multipart parts signed with their body's SHA-256, parts in parallel but
// never more than Buffer allows, and the objects assembled intact.
func TestToS3Requests(t *testing.T) {
	objs := []restoretest.Object{
		{Key: "small", Data: restoretest.RandBytes(20, 3000)},
		{Key: "empty", Data: nil},
		{Key: "exactly-one-part", Data: restoretest.RandBytes(21, MinPartSize)},
		{Key: "big", Data: restoretest.RandBytes(22, 6*MinPartSize+12345)},
	}
	f := newFixture(t, objs)
	fake := &fakeS3{hold: 5 * time.Second}
	tgt := startFake(t, fake)
	res, err := ToS3(context.Background(), f.s, f.id, "", tgt, Options{Parallel: 4, PartSize: MinPartSize, Buffer: 3 * MinPartSize})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if res.Objects != len(objs) {
		t.Errorf("%d objects restored, want %d", res.Objects, len(objs))
	}
	for _, o := range objs {
		if got := fake.objects[o.Key]; sum(got) != sum(o.Data) {
			t.Errorf("%q: %d bytes arrived, content differs", o.Key, len(got))
		}
	}
	for _, b := range fake.badSHA {
		t.Errorf("body not signed with its SHA-256: %s", b)
	}
	if n := len(fake.requests("POST big uploads")); n != 1 {
		t.Errorf("%d multipart uploads of big, want 1", n)
	}
	if n := len(fake.requests("POST exactly-one-part uploads")); n != 0 {
		t.Errorf("an object of exactly one part size went multipart")
	}
	if m := fake.maxParts.Load(); m < 2 || m > 3 {
		t.Errorf("at most %d parts uploaded at once, want 2..3 (parallel, within a buffer of 3 parts)", m)
	}
}

// TestToS3PartRefused: a part the target refuses fails the restore naming
// the object, and the multipart upload is aborted, never completed.
func TestToS3PartRefused(t *testing.T) {
	f := newFixture(t, []restoretest.Object{{Key: "big", Data: restoretest.RandBytes(23, 4*MinPartSize)}})
	fake := &fakeS3{failPart: "2"}
	tgt := startFake(t, fake)
	_, err := ToS3(context.Background(), f.s, f.id, "big", tgt, Options{Exact: true, PartSize: MinPartSize})
	if err == nil || !strings.Contains(err.Error(), `restore "big"`) || !strings.Contains(err.Error(), "Access Denied") {
		t.Fatalf("error %v: want it to name the object and the refusal", err)
	}
	if n := len(fake.requests("DELETE big uploadId=up-big")); n != 1 {
		t.Errorf("%d aborts of the upload, want 1 (requests: %v)", n, fake.requests(""))
	}
	if n := len(fake.requests("POST big uploadId=")); n != 0 {
		t.Errorf("the upload was completed")
	}
	if _, ok := fake.objects["big"]; ok {
		t.Errorf("object big exists")
	}
}

func TestBudget(t *testing.T) {
	b := newBudget(10)
	ctx := context.Background()
	if err := b.acquire(ctx, 6); err != nil {
		t.Fatal(err)
	}
	// A large request waits; a small one behind it waits too (first come,
	// first served), even though it would fit.
	waiters := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			b.mu.Lock()
			w := len(b.waiters)
			b.mu.Unlock()
			if w == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters, want %d", w, n)
			}
		}
	}
	got := make(chan string, 3)
	go func() { b.acquire(ctx, 8); got <- "large" }()
	waiters(1)
	go func() { b.acquire(ctx, 1); got <- "small" }()
	waiters(2)
	select {
	case g := <-got:
		t.Fatalf("%s acquired while the budget was short", g)
	default:
	}
	// A canceled wait gives nothing away and unblocks no one wrongly.
	cctx, cancel := context.WithCancelCause(ctx)
	errc := make(chan error, 1)
	go func() { errc <- b.acquire(cctx, 5) }()
	waiters(3)
	cancel(errors.New("stop"))
	if err := <-errc; err == nil || err.Error() != "stop" {
		t.Errorf("canceled acquire: %v", err)
	}
	b.release(6)
	<-got
	<-got
	if b.used != 9 {
		t.Errorf("used %d after granting 8 and 1, want 9", b.used)
	}
	b.release(8)
	b.release(1)
	if b.used != 0 || len(b.waiters) != 0 {
		t.Errorf("used %d, %d waiters after releasing everything", b.used, len(b.waiters))
	}
	// A request over the limit takes the whole budget.
	if err := b.acquire(ctx, 100); err != nil || b.used != 10 {
		t.Errorf("oversized acquire: %v, used %d", err, b.used)
	}
	b.release(100)
}
