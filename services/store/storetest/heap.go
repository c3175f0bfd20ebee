package storetest

import (
	"runtime"
	"sync"
	"time"
)

// HeapPeak runs f and returns the peak of the heap in use (HeapInuse,
// sampled every 2 ms and once at the end) above what was in use, after a
// collection, before f started. For memory tests that bound how a
// service's heap grows with the size of a store.
func HeapPeak(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	var mu sync.Mutex
	peak := before
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapInuse)
		mu.Unlock()
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	f()
	close(stop)
	<-done
	sample()
	return max(peak, before) - before
}
