package ingest

// Sorted snapshots and the merge of a listing with the previous ones
// (merge.go): records in listing order, reuse through the merge, versions,
// old unsorted snapshots, mass change on the merge, out-of-order listings.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// logBuffer is a logger whose output a test can search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(string(bytes.TrimRight(p, "\n")))
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func bufferLogger(t testing.TB) (hclog.Logger, *logBuffer) {
	lb := &logBuffer{t: t}
	return hclog.New(&hclog.LoggerOptions{Name: "ingest", Level: hclog.Info, Output: lb}), lb
}

const unsortedNote = "is not sorted"

// listed returns what b lists, in order.
func listed(t *testing.T, b bucket, versioned bool) []entry {
	t.Helper()
	var out []entry
	if err := b.List(context.Background(), versioned, func(e entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// recorded returns snapshot id's objects in the order recorded, and
// checks its head says sorted.
func recorded(t *testing.T, s *store.Store, id string) []store.Object {
	t.Helper()
	var out []store.Object
	m, err := s.WalkObjects(id, func(o store.Object) error {
		out = append(out, o)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if head, err := s.SnapshotHead(id); err != nil || !head.Sorted || !m.Sorted {
		t.Errorf("snapshot %s: head sorted = %v (%v), want sorted", id, head != nil && head.Sorted, err)
	}
	return out
}

// checkOrder asserts that snapshot id records exactly the entries of
// want that are not in skip, in their order.
func checkOrder(t *testing.T, s *store.Store, id string, want []entry, skip map[string]bool) {
	t.Helper()
	got := recorded(t, s, id)
	var exp []entry
	for _, e := range want {
		if !skip[string(e.Key)+"\x00"+e.VersionID] {
			exp = append(exp, e)
		}
	}
	if len(got) != len(exp) {
		t.Fatalf("snapshot %s records %d objects, the listing has %d", id, len(got), len(exp))
	}
	for i := range got {
		if !bytes.Equal(got[i].Key, exp[i].Key) || got[i].VersionID != exp[i].VersionID || got[i].DeleteMarker != exp[i].DeleteMarker {
			t.Fatalf("record %d of %s is %q %q (delete marker %v); the listing has %q %q (%v) there",
				i, id, got[i].Key, got[i].VersionID, got[i].DeleteMarker, exp[i].Key, exp[i].VersionID, exp[i].DeleteMarker)
		}
	}
}

// slowBucket delays the GETs of keys slow says, so later objects finish
// first.
type slowBucket struct {
	*memBucket
	slow func(key []byte) bool
}

func (b slowBucket) Get(ctx context.Context, e entry, off int64) (io.ReadCloser, bodyInfo, error) {
	if b.slow(e.Key) {
		select {
		case <-time.After(30 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return b.memBucket.Get(ctx, e, off)
}

// TestPullRecordsInListingOrder: a versioned bucket, filled in random
// key order with delete markers, whose every tenth key answers slowly:
// each snapshot records exactly the listing, in its order, first pull and
// re-pull (reused, fetched and delete markers interleaved). The pull
// before sorted snapshots recorded reused objects and delete markers while
// listing and fetched ones as their GETs ended.
func TestPullRecordsInListingOrder(t *testing.T) {
	s := newStore(t)
	r := rand.New(rand.NewPCG(1, 2))
	mb := &memBucket{versioned: true}
	keys := r.Perm(200)
	for _, k := range keys {
		for v := range 1 + k%3 {
			mb.put(fmt.Appendf(nil, "k%04d", k), randBytes(uint64(k*10+v), 50+k))
		}
		if k%17 == 0 {
			mb.put(fmt.Appendf(nil, "k%04d", k), nil).deleteMarker = true
		}
	}
	b := slowBucket{mb, func(key []byte) bool { return key[len(key)-1] == '0' }}
	p := &Puller{Store: s, Log: testLogger(t)}
	src := testSource("order", "mem", "mem")
	src.Parallel = 8
	ctx := context.Background()
	res, err := p.pull(ctx, src, b)
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, s, res.Snapshot, listed(t, mb, true), nil)

	// New versions of some keys, a new key in the middle, a delete marker.
	for _, k := range keys[:40] {
		mb.put(fmt.Appendf(nil, "k%04d", k), randBytes(uint64(k+5000), 70))
	}
	mb.put([]byte("k0100a"), []byte("new key"))
	mb.put([]byte("k0150"), nil).deleteMarker = true
	res2, err := p.pull(ctx, src, b)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Fetched != 41 || res2.Reused != res.Fetched {
		t.Errorf("re-pull fetched %d, reused %d; want 41, %d", res2.Fetched, res2.Reused, res.Fetched)
	}
	checkOrder(t, s, res2.Snapshot, listed(t, mb, true), nil)
	got, _ := snapshotContents(t, s, res2.Snapshot)
	for _, o := range mb.objs {
		if !o.deleteMarker && !bytes.Equal(got[version{string(o.key), o.version}], o.data) {
			t.Errorf("%q %s restores differently", o.key, o.version)
		}
	}
}

// TestPullNoChangeReusesByMerge: a re-pull of an unchanged bucket reuses
// every object through the merge (no GET, no map of the previous snapshot)
// and records them in order; a changed object in the middle is fetched.
func TestPullNoChangeReusesByMerge(t *testing.T) {
	s := newStore(t)
	b := &memBucket{}
	for i := range 500 {
		b.put(fmt.Appendf(nil, "dir%d/obj%05d", i%7, i), randBytes(uint64(i), 10+i))
	}
	log, lb := bufferLogger(t)
	p := &Puller{Store: s, Log: log}
	src := testSource("nochange", "mem", "mem")
	ctx := context.Background()
	if _, err := p.pull(ctx, src, b); err != nil {
		t.Fatal(err)
	}
	gets := b.gets
	res, err := p.pull(ctx, src, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused != 500 || res.Fetched != 0 || b.gets != gets {
		t.Errorf("no-change pull: reused %d, fetched %d, %d GETs", res.Reused, res.Fetched, b.gets-gets)
	}
	checkOrder(t, s, res.Snapshot, listed(t, b, false), nil)
	b.put(fmt.Appendf(nil, "dir%d/obj%05d", 250%7, 250), []byte("changed"))
	res, err = p.pull(ctx, src, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused != 499 || res.Fetched != 1 {
		t.Errorf("one changed: reused %d, fetched %d", res.Reused, res.Fetched)
	}
	checkOrder(t, s, res.Snapshot, listed(t, b, false), nil)
	if strings.Contains(lb.String(), unsortedNote) {
		t.Errorf("the pulls fell back to the map")
	}
}

// TestPullReusesUnsortedSnapshot: a previous snapshot of the old, unsorted
// kind (objects recorded in another order, no sorted flag) is still
// reused, through the map, and the log says so; the snapshot the pull
// writes is sorted, and the pull after it merges.
func TestPullReusesUnsortedSnapshot(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	b := &memBucket{}
	for i := range 50 {
		b.put(fmt.Appendf(nil, "k%03d", i), randBytes(uint64(i), 100+i))
	}
	sn, err := s.Begin(ctx, store.BeginOptions{Source: "old"})
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b.objs) - 1; i >= 0; i-- { // reverse order: not sorted
		o := b.objs[i]
		if _, err := sn.Put(ctx, store.ObjectInfo{Key: o.key, ETag: o.etag, ModTime: o.mod}, bytes.NewReader(o.data)); err != nil {
			t.Fatal(err)
		}
	}
	old, err := sn.Commit(ctx, store.CommitOptions{})
	if err != nil || old.Sorted {
		t.Fatalf("commit: %v, sorted %v", err, old != nil && old.Sorted)
	}
	log, lb := bufferLogger(t)
	p := &Puller{Store: s, Log: log}
	src := testSource("old", "mem", "mem")
	res, err := p.pull(ctx, src, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused != 50 || res.Fetched != 0 || b.gets != 0 {
		t.Errorf("pull after an unsorted snapshot: reused %d, fetched %d, %d GETs", res.Reused, res.Fetched, b.gets)
	}
	if !strings.Contains(lb.String(), unsortedNote) {
		t.Errorf("the log does not say the previous snapshot is not sorted")
	}
	checkOrder(t, s, res.Snapshot, listed(t, b, false), nil)
	lb.mu.Lock()
	lb.buf.Reset()
	lb.mu.Unlock()
	res, err = p.pull(ctx, src, b)
	if err != nil || res.Reused != 50 || res.Fetched != 0 {
		t.Fatalf("third pull: %v, %+v", err, res)
	}
	if strings.Contains(lb.String(), unsortedNote) {
		t.Errorf("the third pull fell back to the map: its previous snapshot is sorted")
	}
}

// TestMergeMatchesMap: on random versioned and unversioned buckets
// changed at random (versions added, keys deleted, delete markers, keys
// rewritten, new keys), the merge finds the same previous records and the
// same mass change as the map the pull used before: over a baseline and
// an incomplete snapshot after it.
func TestMergeMatchesMap(t *testing.T) {
	for seed := range uint64(6) {
		versioned := seed%2 == 1
		t.Run(fmt.Sprintf("seed %d versioned %v", seed, versioned), func(t *testing.T) {
			s := newStore(t)
			ctx := context.Background()
			r := rand.New(rand.NewPCG(seed, 7))
			b := &memBucket{versioned: versioned}
			for i := range 300 {
				for range 1 + r.IntN(2) {
					b.put(fmt.Appendf(nil, "k%04d", r.IntN(400)), randBytes(uint64(i), 20))
				}
			}
			p := &Puller{Store: s, Log: testLogger(t), Alerter: &alerts{}}
			src := testSource("m", "mem", "mem")
			if _, err := p.pull(ctx, src, b); err != nil {
				t.Fatal(err)
			}
			mutate := func() {
				for range 60 {
					k := fmt.Appendf(nil, "k%04d", r.IntN(450))
					switch r.IntN(4) {
					case 0:
						b.put(k, randBytes(r.Uint64(), 20))
					case 1:
						if versioned {
							b.put(k, nil).deleteMarker = true
						}
					default:
						b.mu.Lock()
						for i, o := range b.objs {
							if bytes.Equal(o.key, k) {
								b.objs = append(b.objs[:i], b.objs[i+1:]...)
								break
							}
						}
						b.mu.Unlock()
					}
				}
			}
			// An incomplete snapshot after the baseline: one object
			// fails its size check.
			mutate()
			bad := b.put([]byte("k9999"), []byte("short"))
			bad.listSize = 99
			if _, err := p.pull(ctx, src, b); !errors.Is(err, ErrIncomplete) {
				t.Fatalf("second pull: %v", err)
			}
			mutate()

			h, err := p.history("m")
			if err != nil {
				t.Fatal(err)
			}
			if len(h.all) != 2 || h.base != 0 {
				t.Fatalf("history: %d snapshots, baseline %d", len(h.all), h.base)
			}
			merged, err := h.open(s, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer merged.close()
			if _, ok := merged.(*mergePast); !ok {
				t.Fatalf("history opened as %T, want a merge", merged)
			}
			mapped, err := openMapPast(s, h.all[h.base:])
			if err != nil {
				t.Fatal(err)
			}
			found := 0
			for _, e := range listed(t, b, versioned) {
				if err := merged.observe(e, true); err != nil {
					t.Fatal(err)
				}
				mapped.observe(e, true)
				mo, mok := merged.find(e)
				po, pok := mapped.find(e)
				if mok != pok || mok && (mo.ETag != po.ETag || mo.Size != po.Size || !mo.ModTime.Equal(po.ModTime) || len(mo.Chunks) != len(po.Chunks)) {
					t.Fatalf("%q %q: merge found %v %+v, map %v %+v", e.Key, e.VersionID, mok, mo, pok, po)
				}
				if mok {
					found++
				}
			}
			mm, err := merged.massChange(-1)
			if err != nil {
				t.Fatal(err)
			}
			pm, _ := mapped.massChange(-1)
			if (mm == nil) != (pm == nil) || mm != nil && *mm != *pm {
				t.Fatalf("mass change: merge %+v, map %+v", mm, pm)
			}
			if found == 0 || mm == nil || mm.Gone == 0 || mm.Changed == 0 && !versioned {
				t.Errorf("the case tests little: %d found, mass change %+v", found, mm)
			}
			t.Logf("%d found; mass change %+v", found, mm)
		})
	}
}

// TestMassChangeOnMerge: keys gone before the first listed key, between
// listed keys and after the last, and rewritten ones, are counted exactly
// by the merge.
func TestMassChangeOnMerge(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	b := &memBucket{}
	for i := range 100 {
		b.put(fmt.Appendf(nil, "k%03d", i), []byte{byte(i)})
	}
	al := &alerts{}
	p := &Puller{Store: s, Log: testLogger(t), Alerter: al}
	src := testSource("mass", "mem", "mem")
	src.MassChangeThreshold = 0.3
	first, err := p.pull(ctx, src, b)
	if err != nil {
		t.Fatal(err)
	}
	keep := b.objs[:0]
	for i, o := range b.objs {
		if i < 10 || i >= 90 || i%10 == 5 { // 10 + 10 + 8 gone
			continue
		}
		keep = append(keep, o)
	}
	b.objs = keep
	for i := 20; i < 30; i++ { // 10 rewritten
		b.put(fmt.Appendf(nil, "k%03d", i), []byte("rewritten"))
	}
	b.put([]byte("k500"), []byte("new"))
	res, err := p.pull(ctx, src, b)
	if err != nil {
		t.Fatal(err)
	}
	// k025 was deleted and written again: changed, not gone.
	want := MassChange{Baseline: first.Snapshot, Previous: 100, Current: 74, Gone: 27, Changed: 10, Share: 0.37}
	if res.MassChange == nil || *res.MassChange != want {
		t.Fatalf("mass change %+v, want %+v", res.MassChange, want)
	}
	if len(al.list()) != 1 {
		t.Errorf("%d alerts", len(al.list()))
	}
}

// orderedBucket lists its memBucket's entries in the order given.
type orderedBucket struct {
	*memBucket
	order []string
}

func (b orderedBucket) List(ctx context.Context, versions bool, fn func(entry) error) error {
	var all []entry
	if err := b.memBucket.List(ctx, versions, func(e entry) error {
		all = append(all, e)
		return nil
	}); err != nil {
		return err
	}
	for _, k := range b.order {
		for _, e := range all {
			if string(e.Key) == k {
				if err := fn(e); err != nil {
					return err
				}
			}
		}
	}
	return ctx.Err()
}

// TestPullRefusesOutOfOrderListing: an entry a source lists below a key it
// listed before (S3 never does) is refused with a recorded error; the rest
// is pulled and the snapshot stays sorted.
func TestPullRefusesOutOfOrderListing(t *testing.T) {
	s := newStore(t)
	mb := &memBucket{}
	for _, k := range []string{"a", "b", "c", "d"} {
		mb.put([]byte(k), []byte("data "+k))
	}
	b := orderedBucket{mb, []string{"a", "c", "b", "d"}}
	p := &Puller{Store: s, Log: testLogger(t)}
	res, err := p.pull(context.Background(), testSource("ooo", "mem", "mem"), b)
	if !errors.Is(err, ErrIncomplete) || res == nil {
		t.Fatalf("pull: %v", err)
	}
	if res.Failed != 1 || res.Fetched != 3 || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "out of S3's key order") {
		t.Fatalf("result %+v", res)
	}
	checkOrder(t, s, res.Snapshot, listed(t, mb, false), map[string]bool{"b\x00": true})
}

// TestMergeKeyWithManyVersions: a key with more versions than a stream
// holds for one key (maxKeyGroup) costs no more memory: the versions past
// the bound are fetched again, the snapshot is still whole and in order,
// and the key's live state (its newest version) is still found.
func TestMergeKeyWithManyVersions(t *testing.T) {
	s := newStore(t)
	b := &memBucket{versioned: true}
	b.put([]byte("a"), []byte("a"))
	for i := range maxKeyGroup + 10 {
		b.put([]byte("many"), fmt.Appendf(nil, "version %d", i))
	}
	b.put([]byte("z"), []byte("z"))
	al := &alerts{}
	p := &Puller{Store: s, Log: testLogger(t), Alerter: al}
	src := testSource("versions", "mem", "mem")
	src.S3.CheckETagMD5 = false
	ctx := context.Background()
	if _, err := p.pull(ctx, src, b); err != nil {
		t.Fatal(err)
	}
	res, err := p.pull(ctx, src, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused != maxKeyGroup+2 || res.Fetched != 10 || res.MassChange != nil || len(al.list()) != 0 {
		t.Errorf("re-pull: reused %d, fetched %d, mass change %+v", res.Reused, res.Fetched, res.MassChange)
	}
	checkOrder(t, s, res.Snapshot, listed(t, b, true), nil)
	got, _ := snapshotContents(t, s, res.Snapshot)
	for _, o := range b.objs {
		if !bytes.Equal(got[version{string(o.key), o.version}], o.data) {
			t.Fatalf("%q %s restores differently", o.key, o.version)
		}
	}
}
