package ingest

// A pull's memory must not grow with the bucket's object count (issue 18):
// the same pulls of a bucket ten times larger may take only a small
// constant more heap.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// tinyBucket is a bucket of n small objects whose keys, contents and ETags
// derive from their index and generation: it keeps nothing per object, so
// the test's heap is the pull's. changed(i) objects are in generation 2.
type tinyBucket struct {
	n       int
	changed func(i int) bool
}

func tinyKey(i int) []byte { return fmt.Appendf(nil, "mail/%09d.eml", i) }

func (b *tinyBucket) gen(i int) int {
	if b.changed != nil && b.changed(i) {
		return 2
	}
	return 1
}

func (b *tinyBucket) content(i int) []byte {
	return fmt.Appendf(nil, "object %d generation %d %s", i, b.gen(i), bytes.Repeat([]byte{'x'}, i%64))
}

func (b *tinyBucket) entry(i int) entry {
	return entry{Key: tinyKey(i), Size: int64(len(b.content(i))), ETag: fmt.Sprintf("%d-%d", b.gen(i), i),
		ModTime: time.Unix(1700000000+int64(i), 0).UTC(), IsLatest: true}
}

func (b *tinyBucket) Versioned(context.Context) (bool, error) { return false, nil }

func (b *tinyBucket) List(ctx context.Context, _ bool, fn func(entry) error) error {
	for i := 0; i < b.n; i++ {
		if err := fn(b.entry(i)); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (b *tinyBucket) Get(_ context.Context, e entry, off int64) (io.ReadCloser, bodyInfo, error) {
	num := bytes.TrimSuffix(bytes.TrimPrefix(e.Key, []byte("mail/")), []byte(".eml"))
	i, err := strconv.Atoi(string(num))
	if err != nil || i < 0 || i >= b.n {
		return nil, bodyInfo{}, fmt.Errorf("no key %q", e.Key)
	}
	c := b.content(i)
	return io.NopCloser(bytes.NewReader(c[off:])), bodyInfo{Length: int64(len(c)) - off, ETag: b.entry(i).ETag}, nil
}

// pullPeaks runs a first pull, a no-change pull and a pull after 1% of
// the objects changed of a bucket of n objects, and returns the peak heap
// of each.
func pullPeaks(t *testing.T, n int) [3]uint64 {
	ctx := context.Background()
	s := newStore(t)
	p := &Puller{Store: s, Log: testLogger(t), Alerter: &alerts{}}
	src := testSource("mem", "mem", "mem")
	src.S3.CheckETagMD5 = false
	src.Limits.MaxObjectsPerPull = int64(n) + 1
	// One GET at a time: each parallel GET holds a chunker of 12 MiB,
	// which the GC's sync.Pool clearing makes come and go; with one the
	// peak is steadier. The listing window is the same.
	src.Parallel = 1
	b := &tinyBucket{n: n}
	var peaks [3]uint64
	for i, want := range []int{n, 0, n / 100} {
		if i == 2 {
			b.changed = func(i int) bool { return i%100 == 37 }
		}
		var res *Result
		var err error
		peaks[i] = storetest.HeapPeak(func() { res, err = p.pull(ctx, src, b) })
		if err != nil {
			t.Fatalf("%d objects, pull %d: %v", n, i, err)
		}
		if res.Fetched != want || res.Reused != n-want || res.Objects != int64(n) {
			t.Fatalf("%d objects, pull %d: fetched %d, reused %d, %d objects; want %d fetched", n, i, res.Fetched, res.Reused, res.Objects, want)
		}
	}
	return peaks
}

// TestPullMemoryFlat: the first, no-change and 1%-changed pulls of 200,000
// objects take at most 16 MiB more heap than those of 20,000. The slack is
// what the store's bounded caches fill up to at 200,000 and not at 20,000:
// the chunk index's entries not yet in a run (flushRecords, about 3 MiB)
// and its directory page cache (at most about 4 MiB). The pull before
// sorted snapshots held the previous snapshot's objects in a map, the
// baseline's keys, the plan and every recorded object: it grew by 98, 113
// and 175 MiB here.
func TestPullMemoryFlat(t *testing.T) {
	const small, large = 20_000, 200_000
	// Collect often, so the peak is what the pull keeps, not garbage
	// waiting for the next cycle.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	ps := pullPeaks(t, small)
	pl := pullPeaks(t, large)
	names := []string{"first pull", "no-change pull", "1% changed"}
	for i := range ps {
		t.Logf("%-15s peak heap: %6.1f MiB at %d objects, %6.1f MiB at %d", names[i], float64(ps[i])/(1<<20), small, float64(pl[i])/(1<<20), large)
	}
	const slack = 16 << 20
	for i := range ps {
		if pl[i] > ps[i]+slack {
			t.Errorf("%s: peak heap %.1f MiB at %d objects, %.1f MiB at %d: grows with the object count", names[i], float64(pl[i])/(1<<20), large, float64(ps[i])/(1<<20), small)
		}
	}
}
