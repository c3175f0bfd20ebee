package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// indexScaleEnv lists the chunk counts BenchmarkIndexScale measures,
// comma separated; the default keeps a run within a minute or two.
const indexScaleEnv = "HOLDFAST_INDEX_BENCH_CHUNKS"

// plantSyntheticPacks writes packs of perPack synthetic entries each, n
// entries in all, whose trailers are authentic but whose blobs are all one
// 64-byte region of garbage: enough for the index, which reads only
// trailers, without writing n real chunks. It returns some indexed IDs.
func plantSyntheticPacks(tb testing.TB, s *Store, n, perPack int, seed uint64) []ChunkID {
	tb.Helper()
	var sample []ChunkID
	ids := randBytes(seed, n*32)
	for first := 0; first < n; first += perPack {
		body := append([]byte(packMagic), make([]byte, 64)...)
		es := make([]packEntry, 0, perPack)
		for i := first; i < min(n, first+perPack); i++ {
			var e packEntry
			copy(e.id[:], ids[i*32:])
			e.offset, e.length, e.plainLen = uint32(len(packMagic)), 64, 64-sealOverhead
			es = append(es, e)
		}
		sample = append(sample, es[0].id, es[len(es)-1].id)
		writePlantedPack(tb, s, body, es)
	}
	return sample
}

// writePlantedPack completes a pack of body (magic and blobs) and es with
// its sealed trailer and end, and writes it under its name, unsealed and
// not indexed.
func writePlantedPack(tb testing.TB, s *Store, body []byte, es []packEntry) {
	tb.Helper()
	trailer := sealTo(nil, s.keys.meta, trailerAD, appendEntries(nil, es))
	out := slices.Concat(body, trailer, binary.BigEndian.AppendUint32(nil, uint32(len(trailer))), []byte(packEndMagic))
	sum := sha256.Sum256(out)
	name := hex.EncodeToString(sum[:])
	shard := s.path(packsDir, name[:2])
	if err := s.ensureShard(shard); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shard, name), out, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// heapNow returns the live heap after a collection.
func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// cpuTime is the CPU time this process has used: on a shared machine the
// wall time of a lookup says more about the neighbours than about it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIndexScale measures what the chunk index costs an open store as
// the chunk count grows: the live heap after Open (and its peak during
// Open), the time of the first Open (which indexes every pack) and of the
// next, and the time of one dedup lookup (has), half of chunks that are
// stored and half of one that is not. Run it with
//
//	go test -run '^$' -bench IndexScale -benchtime 200000x ./services/store/
//
// and HOLDFAST_INDEX_BENCH_CHUNKS=100000,1000000,10000000 for other sizes.
func BenchmarkIndexScale(b *testing.B) {
	sizes := []int{100_000, 1_000_000}
	if v := os.Getenv(indexScaleEnv); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("%s: bad size %q", indexScaleEnv, f)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("chunks=%d", n), func(b *testing.B) {
			s := newStore(b, InitOptions{}, Options{Logger: hclog.NewNullLogger()})
			sample := plantSyntheticPacks(b, s, n, 16384, uint64(n))
			s.Close()
			before := heapNow()
			var open *Store
			start := time.Now()
			var err error
			// Not reopen: its cleanup would keep this store, and its index,
			// alive into the next run of this function.
			peak := peakHeap(func() { open, err = Open(b.Context(), s.Dir(), testKey, Options{Logger: hclog.NewNullLogger()}) })
			if err != nil {
				b.Fatal(err)
			}
			openTime := time.Since(start)
			after := heapNow()
			heap := float64(after) - float64(before)
			// The steady state: the index already on disk (after the first
			// open of a store, or of one written before index runs).
			if err := open.Close(); err != nil {
				b.Fatal(err)
			}
			start = time.Now()
			if open, err = Open(b.Context(), s.Dir(), testKey, Options{Logger: hclog.NewNullLogger()}); err != nil {
				b.Fatal(err)
			}
			reopenTime := time.Since(start)
			missing := ChunkID{0xff, 0xee}
			cpu0 := cpuTime()
			b.ResetTimer()
			hits := 0
			for i := range b.N {
				if i%2 == 0 {
					if open.idx.has(sample[(i/2)%len(sample)]) {
						hits++
					}
				} else if open.idx.has(missing) {
					b.Fatal("a chunk nobody stored is indexed")
				}
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			// After the timer: ResetTimer drops metrics reported before it.
			b.ReportMetric(heap/float64(n), "heap-B/chunk")
			b.ReportMetric(heap/(1<<20), "heap-MiB")
			b.ReportMetric(float64(peak)/(1<<20), "peak-inuse-MiB")
			b.ReportMetric(openTime.Seconds(), "open-s")
			b.ReportMetric(reopenTime.Seconds(), "reopen-s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/lookup")
			if runs := indexRuns(open); runs >= 0 {
				b.ReportMetric(float64(runs), "runs")
			}
			if hits != (b.N+1)/2 {
				b.Fatalf("%d of %d stored chunks found", hits, (b.N+1)/2)
			}
			runtime.KeepAlive(open)
			open.Close()
		})
	}
}
