package ingest

// Pulls from the in-process bucket: keys no S3 server accepts, lying and
// failing sources, mass-change rules, interrupted pulls. The same pulls
// against a real MinIO are in minio_test.go.

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/crc64nvme"

	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// hostileKeys are keys that must be stored and restored exactly and never
// touch the filesystem.
func hostileKeys() map[string][]byte {
	long := bytes.Repeat([]byte("k"), 1024)
	return map[string][]byte{
		"dotdot":       []byte("../../etc/passwd"),
		"absolute":     []byte("/etc/shadow"),
		"nul":          []byte("a\x00b"),
		"newline":      []byte("line1\nline2"),
		"cr":           []byte("x\r\ny"),
		"1024 bytes":   long,
		"invalid utf8": {0xff, 0xfe, 'k', 0xc3},
		"dot":          []byte("."),
		"empty seg":    []byte("a//b/"),
		"percent":      []byte("%2e%2e%2f"),
		"log forgery":  []byte("k\" level=error msg=\"forged"),
	}
}

func TestPullMemHostileKeys(t *testing.T) {
	s := newStore(t)
	b := &memBucket{}
	want := map[string][]byte{}
	i := 0
	for _, k := range hostileKeys() {
		data := randBytes(uint64(i), 100+i)
		b.put(k, data)
		want[string(k)] = data
		i++
	}
	p := &Puller{Store: s, Log: testLogger(t)}
	res, err := p.pull(context.Background(), testSource("hostile", "mem", "mem"), b)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if !res.Complete || res.Fetched != len(want) {
		t.Fatalf("result %+v", res)
	}
	checkLatest(t, s, res.Snapshot, want)
	// No key became a path: nothing in the store is named after a key.
	filepath.WalkDir(s.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && (d.Name() == "passwd" || d.Name() == "shadow" || strings.Contains(p, "..")) {
			t.Errorf("store holds %s", p)
		}
		return nil
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestBodyChecks(t *testing.T) {
	data := randBytes(1, 200_000)
	sha := sha256.Sum256(data)
	sha1s := sha1.Sum(data)
	crc := binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(data))
	crcc := binary.BigEndian.AppendUint32(nil, crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
	crc64 := binary.BigEndian.AppendUint64(nil, crc64nvme.Checksum(data))
	bad := bytes.Clone(data)
	bad[1000] ^= 1
	tests := []struct {
		name     string
		mod      func(o *memObj)
		noMD5    bool
		complete bool
		errWant  string // substring of the recorded error
		sums     []string
		resumes  int
	}{
		{"plain", nil, false, true, "", []string{"md5"}, 0},
		{"sha256 declared", func(o *memObj) { o.checksums = map[string]string{"sha256": b64(sha[:])} }, false, true, "", []string{"md5", "sha256"}, 0},
		{"sha1 declared", func(o *memObj) { o.checksums = map[string]string{"sha1": b64(sha1s[:])} }, false, true, "", []string{"md5", "sha1"}, 0},
		{"crc32 declared", func(o *memObj) { o.checksums = map[string]string{"crc32": b64(crc)} }, false, true, "", []string{"md5", "crc32"}, 0},
		{"crc32c declared", func(o *memObj) {
			o.checksums = map[string]string{"crc32c": b64(crcc)}
			o.checksumType = "FULL_OBJECT"
		}, false, true, "", []string{"md5", "crc32c"}, 0},
		{"crc64nvme declared", func(o *memObj) { o.checksums = map[string]string{"crc64nvme": b64(crc64)} }, false, true, "", []string{"md5", "crc64nvme"}, 0},
		{"composite kept as declared", func(o *memObj) {
			o.etag = "0123456789abcdef0123456789abcdef-3"
			o.checksums = map[string]string{"crc32c": "AAAAAA==-3"}
			o.checksumType = "COMPOSITE"
		}, false, true, "", []string{"crc32c-composite"}, 0},
		{"wrong sha256", func(o *memObj) { o.checksums = map[string]string{"sha256": b64(make([]byte, 32))} }, false, false, "x-amz-checksum-sha256", nil, 0},
		{"wrong crc32c", func(o *memObj) { o.checksums = map[string]string{"crc32c": "AAAAAA=="} }, false, false, "x-amz-checksum-crc32c", nil, 0},
		{"body does not match ETag", func(o *memObj) { o.serve = bad }, false, false, "does not match ETag", nil, 0},
		{"ETag check off", func(o *memObj) { o.serve = bad }, true, true, "", nil, 0},
		{"body longer than listed", func(o *memObj) { o.serve = append(bytes.Clone(data), 'x') }, false, false, "longer than", nil, 0},
		{"listing claims more", func(o *memObj) { o.listSize = int64(len(data)) + 10 }, false, false, "returned", nil, 0},
		{"cut once, resumed", func(o *memObj) { o.cutAt, o.cuts = 30_000, 1 }, false, true, "", []string{"md5"}, 1},
		{"cut twice, resumed", func(o *memObj) { o.cutAt, o.cuts = 30_000, 2 }, false, true, "", []string{"md5"}, 2},
		{"cut every time", func(o *memObj) { o.cutAt, o.cuts = 30_000, -1 }, false, false, "transfer cut at byte 120000 of 200000, 3 resumes failed", nil, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			b := &memBucket{}
			o := b.put([]byte("obj"), data)
			b.put([]byte("other"), []byte("fine"))
			if tt.mod != nil {
				tt.mod(o)
			}
			src := testSource("checks", "mem", "mem")
			src.S3.CheckETagMD5 = !tt.noMD5
			p := &Puller{Store: s, Log: testLogger(t)}
			res, err := p.pull(context.Background(), src, b)
			if res == nil {
				t.Fatalf("pull: %v", err)
			}
			if res.Complete != tt.complete || (err == nil) != tt.complete {
				t.Fatalf("complete = %v, err = %v; want complete %v", res.Complete, err, tt.complete)
			}
			if res.Resumes != tt.resumes {
				t.Errorf("resumes = %d, want %d", res.Resumes, tt.resumes)
			}
			got, m := snapshotContents(t, s, res.Snapshot)
			if !bytes.Equal(got[version{"other", ""}], []byte("fine")) {
				t.Errorf("the good object is missing")
			}
			if !tt.complete {
				if !errors.Is(err, ErrIncomplete) {
					t.Errorf("error %v does not wrap ErrIncomplete", err)
				}
				if _, ok := got[version{"obj", ""}]; ok {
					t.Errorf("a body that failed its checks is in the snapshot")
				}
				if len(m.Errors) != 1 || !strings.Contains(m.Errors[0], tt.errWant) || !strings.Contains(m.Errors[0], `"obj"`) {
					t.Errorf("recorded errors %q, want one naming \"obj\" and %q", m.Errors, tt.errWant)
				}
				return
			}
			want := data
			if tt.noMD5 {
				want = bad // unchecked, what was served is what is kept
			}
			if !bytes.Equal(got[version{"obj", ""}], want) {
				t.Fatalf("obj restored differently")
			}
			for _, obj := range m.Objects {
				if string(obj.Key) != "obj" {
					continue
				}
				for _, k := range tt.sums {
					if obj.Checksums[k] == "" {
						t.Errorf("checksum %q not recorded: %v", k, obj.Checksums)
					}
				}
			}
		})
	}
}

func TestMassChange(t *testing.T) {
	const n = 10
	tests := []struct {
		name      string
		versioned bool
		threshold float64
		noHold    bool
		change    func(b *memBucket)
		alert     bool
		empty     bool
	}{
		{"nothing changed", false, 0.3, false, func(b *memBucket) {}, false, false},
		{"bucket wiped", false, 0.3, false, func(b *memBucket) { b.objs = nil }, true, true},
		{"30% gone is within the threshold", false, 0.3, false, func(b *memBucket) { b.objs = b.objs[3:] }, false, false},
		{"40% gone", false, 0.3, false, func(b *memBucket) { b.objs = b.objs[4:] }, true, false},
		{"40% rewritten", false, 0.3, false, func(b *memBucket) {
			for i := 0; i < 4; i++ {
				b.put(b.objs[0].key, []byte("encrypted by ransomware"))
			}
		}, true, false},
		{"40% gone, threshold 50%", false, 0.5, false, func(b *memBucket) { b.objs = b.objs[4:] }, false, false},
		{"wiped, hold off", false, 0.3, true, func(b *memBucket) { b.objs = nil }, true, true},
		{"new objects only", false, 0.3, false, func(b *memBucket) {
			for i := 0; i < 20; i++ {
				b.put([]byte{'n', byte(i)}, []byte("new"))
			}
		}, false, false},
		{"versioned: delete markers on everything", true, 0.3, false, func(b *memBucket) {
			for i := 0; i < n; i++ {
				dm := b.put([]byte{'k', byte(i)}, nil)
				dm.deleteMarker = true
			}
		}, true, true},
		{"versioned: half overwritten", true, 0.3, false, func(b *memBucket) {
			for i := 0; i < n/2; i++ {
				b.put([]byte{'k', byte(i)}, []byte("v2"))
			}
		}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			b := &memBucket{versioned: tt.versioned}
			for i := 0; i < n; i++ {
				b.put([]byte{'k', byte(i)}, randBytes(uint64(i), 1000))
			}
			al := &alerts{}
			p := &Puller{Store: s, Log: testLogger(t), Alerter: al}
			src := testSource("mc", "mem", "mem")
			src.MassChangeThreshold = tt.threshold
			src.LegalHoldOnMassChange = !tt.noHold
			ctx := context.Background()
			first, err := p.pull(ctx, src, b)
			if err != nil {
				t.Fatal(err)
			}
			snapPath := filepath.Join(s.Dir(), "snapshots", first.Snapshot+".snap")
			before := fileSum(t, snapPath)
			beforeObjs, _ := snapshotContents(t, s, first.Snapshot)
			tt.change(b)
			second, err := p.pull(ctx, src, b)
			if err != nil {
				t.Fatalf("second pull: %v", err)
			}
			if !second.Complete {
				t.Errorf("second snapshot incomplete: %v", second.Errors)
			}
			got := al.list()
			if (len(got) > 0) != tt.alert || (second.MassChange != nil) != tt.alert {
				t.Fatalf("alerts %+v, mass change %+v; want alert %v", got, second.MassChange, tt.alert)
			}
			infos, err := s.Snapshots()
			if err != nil {
				t.Fatal(err)
			}
			held := infos[0].Retention.LegalHold
			if held != (tt.alert && !tt.noHold) {
				t.Errorf("first snapshot legal hold = %v", held)
			}
			if infos[1].Retention.LegalHold {
				t.Errorf("the new snapshot was put under hold")
			}
			if tt.alert {
				a := got[0]
				if a.Kind != "mass-change" || a.Source != "mc" || a.Snapshot != second.Snapshot || second.MassChange.Empty != tt.empty {
					t.Errorf("alert %+v, mass change %+v", a, second.MassChange)
				}
				if !tt.noHold && (len(a.Held) != 1 || a.Held[0] != first.Snapshot) {
					t.Errorf("alert says held %v, want [%s]", a.Held, first.Snapshot)
				}
			}
			// The older snapshot is untouched, byte for byte.
			if fileSum(t, snapPath) != before {
				t.Errorf("the first snapshot's manifest changed")
			}
			afterObjs, _ := snapshotContents(t, s, first.Snapshot)
			if len(afterObjs) != len(beforeObjs) {
				t.Errorf("first snapshot now restores %d objects, was %d", len(afterObjs), len(beforeObjs))
			}
			for k, v := range beforeObjs {
				if !bytes.Equal(afterObjs[k], v) {
					t.Errorf("first snapshot: %q restores differently", k.key)
				}
			}
		})
	}
}

// TestMassChangeHoldsEarlierSnapshots: every earlier snapshot of the
// source is held, none of another source.
func TestMassChangeHoldsEarlierSnapshots(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	b := &memBucket{}
	for i := 0; i < 5; i++ {
		b.put([]byte{'k', byte(i)}, []byte{byte(i)})
	}
	other := &memBucket{}
	other.put([]byte("x"), []byte("y"))
	p := &Puller{Store: s, Log: testLogger(t), Alerter: &alerts{}}
	src := testSource("a", "mem", "mem")
	for i := 0; i < 3; i++ {
		if _, err := p.pull(ctx, src, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.pull(ctx, testSource("b", "mem", "mem"), other); err != nil {
		t.Fatal(err)
	}
	b.objs = nil
	res, err := p.pull(ctx, src, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Held) != 3 {
		t.Errorf("held %v, want the 3 earlier snapshots of source a", res.Held)
	}
	infos, _ := s.Snapshots()
	for _, si := range infos {
		wantHold := si.Source == "a" && si.ID != res.Snapshot
		if si.Retention.LegalHold != wantHold {
			t.Errorf("snapshot %s of %s: hold %v, want %v", si.ID, si.Source, si.Retention.LegalHold, wantHold)
		}
	}
	// A second wipe finds them already held and still alerts.
	res2, err := p.pull(ctx, src, b)
	if err != nil {
		t.Fatal(err)
	}
	if res2.MassChange != nil {
		t.Errorf("an empty bucket after an empty snapshot is no new mass change: %+v", res2.MassChange)
	}
}

// TestPullFinishesInterrupted: a snapshot a crash left in progress is
// committed as incomplete by the next pull, whose objects it then reuses.
func TestPullFinishesInterrupted(t *testing.T) {
	dir := storetest.Dir(t)
	ctx := context.Background()
	s, err := store.Init(ctx, dir, testKey, store.InitOptions{}, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	b := &memBucket{}
	o := b.put([]byte("big"), randBytes(3, 50_000))
	sn, err := s.Begin(ctx, store.BeginOptions{Source: "crash"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Put(ctx, store.ObjectInfo{Key: o.key, ETag: o.etag, ModTime: o.mod}, bytes.NewReader(o.data)); err != nil {
		t.Fatal(err)
	}
	// Seal the pack so the object reaches the journal, then "crash".
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = store.Open(ctx, dir, testKey, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ints, err := s.Interrupted(); err != nil || len(ints) != 1 {
		t.Fatalf("interrupted = %v, %v; want one", ints, err)
	}
	p := &Puller{Store: s, Log: testLogger(t)}
	res, err := p.pull(ctx, testSource("crash", "mem", "mem"), b)
	if err != nil {
		t.Fatal(err)
	}
	if ints, _ := s.Interrupted(); len(ints) != 0 {
		t.Errorf("still interrupted: %v", ints)
	}
	infos, _ := s.Snapshots()
	if len(infos) != 2 || infos[0].Complete || len(infos[0].Errors) == 0 || !strings.Contains(infos[0].Errors[0], "interrupted") {
		t.Fatalf("snapshots %+v", infos)
	}
	checkLatest(t, s, res.Snapshot, map[string][]byte{"big": o.data})
}

// blockingBucket blocks every GET body until ctx is done.
type blockingBucket struct {
	*memBucket
	started chan struct{}
}

func (b blockingBucket) Get(ctx context.Context, e entry, off int64) (io.ReadCloser, bodyInfo, error) {
	select {
	case b.started <- struct{}{}:
	default:
	}
	return io.NopCloser(ctxReader{ctx}), bodyInfo{Length: e.Size, ETag: e.ETag}, nil
}

type ctxReader struct{ ctx context.Context }

func (r ctxReader) Read([]byte) (int, error) {
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

// TestPullCancelled: a pull cancelled mid-transfer still commits, marked
// incomplete.
func TestPullCancelled(t *testing.T) {
	s := newStore(t)
	b := blockingBucket{&memBucket{}, make(chan struct{}, 1)}
	b.put([]byte("slow"), randBytes(1, 1000))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-b.started
		cancel()
	}()
	p := &Puller{Store: s, Log: testLogger(t)}
	res, err := p.pull(ctx, testSource("c", "mem", "mem"), b)
	if !errors.Is(err, ErrIncomplete) || res == nil {
		t.Fatalf("pull: %v", err)
	}
	m, err := s.ReadManifest(res.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if m.Complete || len(m.Errors) != 1 || !strings.Contains(m.Errors[0], "interrupted") {
		t.Errorf("manifest complete=%v errors=%q", m.Complete, m.Errors)
	}
}

// TestPullListingFails: a listing that fails half way gives an incomplete
// snapshot and no mass-change alert.
func TestPullListingFails(t *testing.T) {
	s := newStore(t)
	b := &memBucket{}
	b.put([]byte("a"), []byte("1"))
	al := &alerts{}
	p := &Puller{Store: s, Log: testLogger(t), Alerter: al}
	src := testSource("l", "mem", "mem")
	if _, err := p.pull(context.Background(), src, b); err != nil {
		t.Fatal(err)
	}
	b.failList = errors.New("connection reset by peer")
	res, err := p.pull(context.Background(), src, b)
	if !errors.Is(err, ErrIncomplete) || res.Complete || !strings.Contains(res.Errors[0], "listing failed") {
		t.Fatalf("pull: %v, %+v", err, res)
	}
	if len(al.list()) != 0 {
		t.Errorf("a failed listing raised a mass-change alert")
	}
}

func TestRetentionFromPolicy(t *testing.T) {
	s := newStore(t)
	b := &memBucket{}
	b.put([]byte("a"), []byte("1"))
	var now time.Time
	p := &Puller{Store: s, Log: testLogger(t), Now: func() time.Time { now = time.Now(); return now }}
	src := testSource("r", "mem", "mem") // all_for 14d, daily_for 90d
	first, err := p.pull(context.Background(), src, b)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.UTC().AddDate(0, 0, 90); !first.RetainUntil.Equal(want) {
		t.Errorf("first of the day: retain until %v, want %v", first.RetainUntil, want)
	}
	second, err := p.pull(context.Background(), src, b)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.UTC().AddDate(0, 0, 14); !second.RetainUntil.Equal(want) {
		t.Errorf("second of the day: retain until %v, want %v", second.RetainUntil, want)
	}
	infos, _ := s.Snapshots()
	if !infos[0].RetainUntil.Equal(first.RetainUntil) || !infos[1].RetainUntil.Equal(second.RetainUntil) {
		t.Errorf("stored retention %v, %v", infos[0].RetainUntil, infos[1].RetainUntil)
	}
}

// Keys over 1,024 bytes and user metadata over 2 KB (S3's own caps) are
// not stored: each such object is a recorded error and the snapshot is
// incomplete; the others are pulled whole. A hostile source cannot make
// manifests (and prune, which reads them) grow past what S3 allows.
func TestPullMemCapsKeysAndMetadata(t *testing.T) {
	tests := []struct {
		name    string
		key     []byte
		meta    map[string]string
		errWant string // "" : the object is stored
	}{
		{"key of 1,024 bytes", bytes.Repeat([]byte{'k'}, 1024), nil, ""},
		{"key of 1,025 bytes", bytes.Repeat([]byte{'l'}, 1025), nil, "key of 1025 bytes exceeds 1024"},
		{"key of 1 MiB", bytes.Repeat([]byte{'m'}, 1<<20), nil, "key of 1048576 bytes exceeds 1024"},
		{"metadata of 2 KB", []byte("meta-ok"), map[string]string{"a": strings.Repeat("x", 2047)}, ""},
		{"metadata over 2 KB", []byte("meta-big"), map[string]string{"a": strings.Repeat("x", 2048)}, "user metadata of 2049 bytes exceeds 2048"},
		{"many metadata keys", []byte("meta-many"), manyMeta(500), "user metadata of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			b := &memBucket{}
			b.put([]byte("plain"), randBytes(1, 1000))
			o := b.put(tt.key, randBytes(2, 1000))
			o.userMeta = tt.meta
			res, err := (&Puller{Store: s, Log: testLogger(t)}).pull(context.Background(), testSource("caps", "mem", "mem"), b)
			if res == nil || err != nil && tt.errWant == "" {
				t.Fatalf("pull: %v", err)
			}
			m, err := s.ReadManifest(res.Snapshot)
			if err != nil {
				t.Fatal(err)
			}
			stored := false
			for _, ob := range m.Objects {
				if bytes.Equal(ob.Key, tt.key) {
					stored = true
				}
			}
			if tt.errWant == "" {
				if !stored || !res.Complete {
					t.Fatalf("object within the caps: stored %v, complete %v, errors %q", stored, res.Complete, m.Errors)
				}
				return
			}
			if stored || res.Complete || res.Failed != 1 {
				t.Fatalf("object past the caps: stored %v, complete %v, failed %d", stored, res.Complete, res.Failed)
			}
			if !slices.ContainsFunc(m.Errors, func(e string) bool { return strings.Contains(e, tt.errWant) }) {
				t.Fatalf("no recorded error says %q: %q", tt.errWant, m.Errors)
			}
			if len(m.Objects) != 1 || string(m.Objects[0].Key) != "plain" {
				t.Fatalf("the other object is not stored: %d objects", len(m.Objects))
			}
		})
	}
}

func manyMeta(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("k%03d", i)] = "v"
	}
	return m
}
