package export

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// memKey is key i of the big snapshot: 100 "directories" of n/100 keys.
func memKey(i, n int) string { return fmt.Sprintf("d%02d/o%07d", i/(n/100), i%(n/100)) }

// bigSortedStore writes a store whose source "big" has one sorted snapshot
// of n objects (n a multiple of 100), each a record of the same 4 KiB
// body, and returns its directory, the snapshot's ID and the body.
func bigSortedStore(t *testing.T, n int) (string, string, []byte) {
	t.Helper()
	ctx := context.Background()
	dir := storetest.Dir(t)
	st, err := store.Init(ctx, dir, testKey, store.InitOptions{}, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	data := randBytes(9, 4096)
	sn, err := st.Begin(ctx, store.BeginOptions{Source: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := sn.Put(ctx, store.ObjectInfo{Key: []byte("body")}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Commit(ctx, store.CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	if sn, err = st.Begin(ctx, store.BeginOptions{Source: "big", Sorted: true}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		o := body
		o.Key, o.ModTime = []byte(memKey(i, n)), baseTime
		if err := sn.PutExisting(o); err != nil {
			t.Fatal(err)
		}
	}
	m, err := sn.Commit(ctx, store.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return dir, m.ID, data
}

// servePeak serves a sorted snapshot of n objects and returns the peak
// heap growth of a first listing (a page of keys, and the snapshot's
// directories with delimiter "/"), a GET and a HEAD, and then the mean
// time of a GET of a random key and of one of consecutive keys.
func servePeak(t *testing.T, n int) (peak uint64, random, inOrder time.Duration) {
	dir, id, data := bigSortedStore(t, n)
	ts := startServer(t, dir, nil)
	mid := id + "/" + memKey(n/2+7, n)
	start := time.Now()
	peak = storetest.HeapPeak(func() {
		code, _, body := ts.do(t, http.MethodGet, "/big", "list-type=2&max-keys=1000&prefix="+id+"/d50/", nil, false)
		if code != http.StatusOK || strings.Count(string(body), "<Key>") != min(1000, n/100) {
			t.Errorf("listing: %d, %d keys: %.300s", code, strings.Count(string(body), "<Key>"), body)
		}
		code, _, body = ts.do(t, http.MethodGet, "/big", "list-type=2&delimiter=/&prefix="+id+"/", nil, false)
		if code != http.StatusOK || strings.Count(string(body), "<Prefix>"+id+"/d") != 100 {
			t.Errorf("listing with delimiter: %d: %.300s", code, body)
		}
		code, _, body = ts.do(t, http.MethodGet, "/big/"+mid, "", nil, false)
		if code != http.StatusOK || !bytes.Equal(body, data) {
			t.Errorf("GET %s: %d, %d bytes", mid, code, len(body))
		}
		if code, _, _ := ts.do(t, http.MethodHead, "/big/"+mid, "", nil, false); code != http.StatusOK {
			t.Errorf("HEAD %s: %d", mid, code)
		}
	})
	t.Logf("%d objects: first listing, GET and HEAD took %s", n, time.Since(start).Round(time.Millisecond))
	// GETs of random keys over one kept-alive connection: each decodes
	// the manifest frame that holds its key (1024 records here).
	// Then GETs in key order, which find their frame in the cache.
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	cl := ts.client(t, testAccess, testSecret)
	const gets = 200
	var sums [2]time.Duration // random keys, keys in order
	first := rng.IntN(n - gets)
	for i := range 2 * gets {
		key := id + "/" + memKey(rng.IntN(n), n)
		if i >= gets {
			key = id + "/" + memKey(first+i-gets, n)
		}
		start := time.Now()
		o, err := cl.GetObject(context.Background(), "big", key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(o)
		o.Close()
		sums[i/gets] += time.Since(start)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("GET %s: %d bytes, %v", key, len(got), err)
		}
	}
	return peak, sums[0] / gets, sums[1] / gets
}

// TestServeMemoryFlat: serving a listing, a GET and a HEAD of a sorted
// snapshot of 200,000 objects takes at most 16 MiB more heap than one of
// 20,000. The export before sorted snapshots were indexed held every
// object record of the snapshot in memory, with a map and a sorted key
// list to build it.
func TestServeMemoryFlat(t *testing.T) {
	const small, large = 20_000, 200_000
	// Collect often, so the peak is what serving keeps, not garbage
	// waiting for the next cycle.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	ps, rs, qs := servePeak(t, small)
	pl, rl, ol := servePeak(t, large)
	t.Logf("peak heap growth: %.1f MiB at %d objects, %.1f MiB at %d", float64(ps)/(1<<20), small, float64(pl)/(1<<20), large)
	t.Logf("GET of a 4 KiB object, random key: %s at %d objects, %s at %d; keys in order: %s, %s",
		rs.Round(time.Microsecond), small, rl.Round(time.Microsecond), large, qs.Round(time.Microsecond), ol.Round(time.Microsecond))
	if pl > ps+16<<20 {
		t.Errorf("peak heap %.1f MiB at %d objects, %.1f MiB at %d: grows with the object count", float64(pl)/(1<<20), large, float64(ps)/(1<<20), small)
	}
}
