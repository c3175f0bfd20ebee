package ingest

// A hostile source: a proxy in front of a real MinIO (hostile_proxy_test.go)
// misbehaves in one way per row, and the pull runs in a child process
// (child_linux_test.go) so that its peak RSS is its own. Each row checks
// that the pull ends in bounded time with a clear error in the log and in
// the snapshot record, that the snapshot committed before it is unchanged,
// that the store verifies, and that the next pull of the healthy source
// completes.

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// maxPullRSS bounds the peak RSS of a pull child, whatever the source does.
const maxPullRSS = 256 << 20

// hostileNet are the bounds the rows run with: the defaults, except the
// waits, which are shortened so that each row takes seconds (but not so
// short that a MinIO slowed by a loaded machine trips them).
var hostileNet = NetLimits{
	ResponseHeaderTimeout: 2 * time.Second,
	StallWindow:           2 * time.Second,
	StallMinBytes:         4 << 10,
	ListIdleTimeout:       5 * time.Second,
}

func TestHostileSource(t *testing.T) {
	tests := []struct {
		name       string
		mode       string
		limit      int64 // max_objects_per_pull; 0: the default (config.DefaultMaxObjectsPerPull)
		stopAfter  bool  // cancel once listed (the GETs run with the listing: all but the last window are done)
		complete   bool  // the hostile pull's snapshot is complete
		noSnapshot bool  // the pull fails before it begins a snapshot
		errWant    string
		maxTime    time.Duration
	}{
		{"slow-loris body, 1 byte/s", "slow-body", 0, false, false, false, "stalled", 15 * time.Second},
		{"slow-loris headers, 1 byte/s", "slow-headers", 0, false, false, false, "timeout awaiting response headers", 15 * time.Second},
		{"connection reset mid-body, once", "reset-once", 0, false, true, false, "", 10 * time.Second},
		{"connection reset mid-body, every time", "reset-always", 0, false, false, false, "connection reset by peer", 10 * time.Second},
		{"Content-Length shorter than the body", "short-length", 0, false, false, false, "Content-Length", 10 * time.Second},
		{"body longer than listed, no Content-Length", "long-no-length", 0, false, false, false, "longer than", 10 * time.Second},
		{"junk after an honest Content-Length", "extra-after", 0, false, true, false, "", 10 * time.Second},
		{"wrong ETag on the GET", "wrong-etag", 0, false, false, false, "listing said", 10 * time.Second},
		{"ETag that is not the body's MD5", "etag-not-body", 0, false, false, false, "does not match ETag", 10 * time.Second},
		{"10 MiB of response headers", "huge-headers", 0, false, false, false, "oversized response headers", 15 * time.Second},
		{"redirect loop on listing and GETs", "redirect-loop", 0, false, false, false, "never follows", 15 * time.Second},
		{"redirect loop on every request", "redirect-all", 0, false, false, true, "never follows", 15 * time.Second},
		{"a million keys, max_objects_per_pull 20,000", "million-keys", 20_000, false, false, false, "max_objects_per_pull (20000) reached", 2 * time.Minute},
		// A million empty objects listed and fetched as the listing goes
		// (3 to 4 minutes of GETs on two shared cores): peak RSS must not
		// grow with them.
		{"a million keys, listed and fetched whole (limit raised to 2,000,000)", "million-keys", 2_000_000, true, false, false, "interrupted", 8 * time.Minute},
		{"100,000 nested elements", "nested-xml", 0, false, false, false, "nested deeper than 32", 10 * time.Second},
		{"listing page of 512 MiB", "oversized-xml", 0, false, false, false, "more than 4000 entries", 10 * time.Second},
		{"one key of 512 MiB", "oversized-key", 0, false, false, false, "too large", 10 * time.Second},
		{"garbage instead of XML", "garbage-xml", 0, false, false, false, "not valid S3 XML", 10 * time.Second},
		{"an HTML page instead of a listing", "html-page", 0, false, false, false, `root element is "html"`, 10 * time.Second},
		{"empty truncated pages forever", "empty-pages", 0, false, false, false, "no object listed for 5s", 15 * time.Second},
	}
	m := testminio.Start(t)
	const bucket = "hostile"
	m.MakeBucket(t, bucket, false)
	want := map[string][]byte{"big": randBytes(11, 6<<20)}
	for i := 0; i < 4; i++ {
		want["small/"+strconv.Itoa(i)] = randBytes(uint64(20+i), 10_000)
	}
	for k, v := range want {
		m.Put(t, bucket, k, v, minio.PutObjectOptions{PartSize: 16 << 20}) // one part: the ETag is the MD5
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // rows that wait overlap with rows that work
			// A store with one committed snapshot (of another source).
			dir := storetest.Dir(t)
			s, err := store.Init(ctx, dir, testKey, store.InitOptions{PackSize: 4 << 20}, store.Options{Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			base, err := (&Puller{Store: s, Log: testLogger(t)}).Pull(ctx, minioSource(m, "base", m.Endpoint, bucket))
			if err != nil {
				t.Fatal(err)
			}
			baseFile := filepath.Join(dir, "snapshots", base.Snapshot+".snap")
			baseSum := fileSum(t, baseFile)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			proxy := newHostileProxy(t, m.Endpoint, "big", want["big"], tt.mode)
			limits := config.Limits{MaxObjectSize: config.DefaultMaxObjectSize, MaxObjectsPerPull: config.DefaultMaxObjectsPerPull, Quota: config.DefaultQuota}
			if tt.limit > 0 {
				limits.MaxObjectsPerPull = tt.limit
			}
			run := runPullChild(t, pullParams{
				StoreDir: dir, Source: "victim", Endpoint: proxy.Endpoint, Bucket: bucket,
				Retries: 2, Parallel: 4, Limits: limits, Net: hostileNet, Timeout: max(3*time.Minute, tt.maxTime+time.Minute), StopAfter: tt.stopAfter,
			})
			t.Logf("%s: %.2fs, peak RSS %.1f MiB, error: %s", tt.mode, run.Seconds, float64(run.VmHWMKiB)/1024, run.Err)
			if run.VmHWMKiB <= 0 || run.VmHWMKiB<<10 > maxPullRSS {
				t.Errorf("peak RSS %d KiB, want at most %d", run.VmHWMKiB, maxPullRSS>>10)
			}
			if d := time.Duration(run.Seconds * float64(time.Second)); d > tt.maxTime {
				t.Errorf("the pull took %s, want at most %s", d, tt.maxTime)
			}
			if tt.errWant != "" && !strings.Contains(run.Log, tt.errWant) {
				t.Errorf("the log does not say %q:\n%s", tt.errWant, run.Log)
			}
			res := run.Result
			switch {
			case tt.noSnapshot:
				if res != nil || !strings.Contains(run.Err, tt.errWant) {
					t.Fatalf("pull: %+v, %s: want no snapshot and an error saying %q", res, run.Err, tt.errWant)
				}
			case res == nil:
				t.Fatalf("pull committed no snapshot: %s", run.Err)
			case tt.complete:
				if run.Err != "" || !res.Complete {
					t.Fatalf("pull: %s, %+v: want complete", run.Err, res)
				}
			default:
				if !run.Incomplete || res.Complete || !strings.Contains(strings.Join(res.Errors, "\n"), tt.errWant) {
					t.Fatalf("pull: %s, %+v: want an incomplete snapshot and an error saying %q", run.Err, res, tt.errWant)
				}
			}

			// Reopen the store: the record, the old snapshot, verify, and
			// the next pull of the healthy source.
			s, err = store.Open(ctx, dir, testKey, store.Options{Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if res != nil {
				man, err := s.ReadManifest(res.Snapshot)
				if err != nil {
					t.Fatalf("the hostile pull's snapshot: %v", err)
				}
				recorded := strings.Join(man.Errors, "\n")
				if man.Complete != tt.complete || (tt.errWant != "" && !strings.Contains(recorded, tt.errWant)) {
					t.Errorf("snapshot record: complete %v, errors %q; want complete %v and an error saying %q", man.Complete, man.Errors, tt.complete, tt.errWant)
				}
				for _, o := range man.Objects {
					if string(o.Key) == "big" {
						var buf bytes.Buffer
						if err := s.WriteObject(ctx, o, &buf); err != nil || !bytes.Equal(buf.Bytes(), want["big"]) {
							t.Errorf("the hostile pull recorded a wrong \"big\" (%d bytes, %v)", buf.Len(), err)
						}
					}
				}
			}
			if fileSum(t, baseFile) != baseSum {
				t.Errorf("the earlier snapshot's manifest changed")
			}
			checkLatest(t, s, base.Snapshot, want)
			next, err := (&Puller{Store: s, Log: testLogger(t), Alerter: &alerts{}}).Pull(ctx, minioSource(m, "victim", m.Endpoint, bucket))
			if err != nil || !next.Complete {
				t.Fatalf("the next pull of the healthy source: %v", err)
			}
			checkLatest(t, s, next.Snapshot, want)
			rep, err := s.Verify(ctx)
			if err != nil || !rep.OK() {
				t.Fatalf("verify: %v, %+v", err, rep)
			}
		})
	}
}
