package cachestore

import (
	"fmt"
	"testing"
	"time"

	"dedupcache/dedupbody"

	"dedupcache/internal/testutil"
)

// BenchmarkGetLatencyKeys is BenchmarkGetLatency (one goroutine, TTL set,
// a per-Get histogram) over stores of 1 000 to 1 000 000 keys, looked up in
// a scattered order, and reports the live heap per key next to it: how hit
// latency and bytes per key grow with the number of keys.
func BenchmarkGetLatencyKeys(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			bodies := dedupbody.New(dedupbody.Config{})
			data := []byte("a shared body")
			sum := dedupbody.Sum(data)
			keep := bodies.Put(data, sum, nil)
			defer keep.Release()
			before := testutil.HeapAlloc()
			s, err := New(Config{MaxMemory: 1 << 30, ExpectedEntries: int64(n), Stores: []*dedupbody.Store{bodies}})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			hashes := make([]uint64, n)
			for i := range hashes {
				e := &Entry{Key: fmt.Sprintf("127.0.0.1:28083 /obj/%d", i), Body: bodies.Put(data, sum, nil)}
				hashes[i] = hash(e.Key)
				for !s.Set(hashes[i], e, time.Hour) {
					e = &Entry{Key: e.Key, Body: bodies.Put(data, sum, nil)}
					time.Sleep(time.Millisecond) // set buffer full: retry
				}
				if i%10_000 == 0 {
					s.Wait()
				}
			}
			s.Wait()
			perKey := float64(testutil.HeapAlloc()-before-uint64(8*n)) / float64(n) // minus the hashes slice
			var h histogram
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := hashes[(i*7919)%n]
				t0 := time.Now()
				_, ok := s.Get(k)
				h.record(int64(time.Since(t0)))
				if !ok {
					// admission may refuse a few keys of a large store
					h.n--
				}
				i++
			}
			b.ReportMetric(h.quantile(0.50), "p50-ns")
			b.ReportMetric(h.quantile(0.95), "p95-ns")
			b.ReportMetric(float64(h.n), "samples")
			b.ReportMetric(perKey, "heap-B/key")
			b.ReportMetric(float64(s.Stats().Entries), "entries")
		})
	}
}
