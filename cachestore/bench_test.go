package cachestore

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"testing"
	"time"

	"dedupcache/dedupbody"
)

const benchKeys = 1024

// benchStore returns a store holding benchKeys entries, set with ttl, and
// their key hashes.
func benchStore(tb testing.TB, ttl time.Duration) (*Store, []uint64) {
	tb.Helper()
	bodies := dedupbody.New(dedupbody.Config{})
	s, err := New(Config{MaxMemory: 64 << 20, Stores: []*dedupbody.Store{bodies}})
	if err != nil {
		tb.Fatal(err)
	}
	data := []byte("a shared body")
	hashes := make([]uint64, benchKeys)
	for i := range hashes {
		e := &Entry{Key: fmt.Sprintf("GET example.com/items/%04d", i), Body: bodies.Put(data, dedupbody.Sum(data), nil)}
		hashes[i] = hash(e.Key)
		s.Set(hashes[i], e, ttl)
	}
	s.Wait()
	for _, h := range hashes {
		if _, ok := s.Get(h); !ok {
			tb.Fatal("entry not stored")
		}
	}
	return s, hashes
}

func BenchmarkGetHit(b *testing.B) {
	s, hashes := benchStore(b, time.Hour)
	defer s.Close()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := s.Get(hashes[i%benchKeys]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	// Without a TTL ristretto's Get skips its clock read.
	b.Run("serial-nottl", func(b *testing.B) {
		s, hashes := benchStore(b, 0)
		defer s.Close()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := s.Get(hashes[i%benchKeys]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, ok := s.Get(hashes[i%benchKeys]); !ok {
					b.Fatal("miss")
				}
				i++
			}
		})
	})
}

// TestGetHitNoAlloc asserts that a hit does not allocate. ristretto's Get
// buffer hands a full 64-key stripe to the policy and allocates a fresh one,
// so a Get allocates 1/64 of a 512-byte slice on average; AllocsPerRun
// rounds that down, and the test logs the exact rate.
func TestGetHitNoAlloc(t *testing.T) {
	s, hashes := benchStore(t, time.Hour)
	defer s.Close()
	i := 0
	get := func() {
		if _, ok := s.Get(hashes[i%benchKeys]); !ok {
			panic("miss")
		}
		i++
	}
	if n := testing.AllocsPerRun(1000, get); n != 0 {
		t.Errorf("Get allocs: got %v; want 0", n)
	}
	const runs = 1 << 16
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range runs {
		get()
	}
	runtime.ReadMemStats(&m1)
	t.Logf("Get: %.4f allocs/op, %.2f B/op (amortised over %d hits)",
		float64(m1.Mallocs-m0.Mallocs)/runs, float64(m1.TotalAlloc-m0.TotalAlloc)/runs, runs)
}

// histogram records latencies in ns: exact below 1024 ns, then 16 linear
// sub-buckets per power of two.
type histogram struct {
	low  [1024]uint64
	high [64][16]uint64
	n    uint64
	sum  int64
}

func (h *histogram) record(ns int64) {
	h.n++
	h.sum += ns
	if ns < 1024 {
		h.low[max(ns, 0)]++
		return
	}
	e := bits.Len64(uint64(ns)) - 1 // 2^e <= ns < 2^(e+1), e >= 10
	h.high[e][(uint64(ns)>>(e-4))&15]++
}

func (h *histogram) add(o *histogram) {
	for i := range h.low {
		h.low[i] += o.low[i]
	}
	for e := range h.high {
		for j := range h.high[e] {
			h.high[e][j] += o.high[e][j]
		}
	}
	h.n += o.n
	h.sum += o.sum
}

func (h *histogram) mean() float64 { return float64(h.sum) / float64(max(h.n, 1)) }

// quantile returns the smallest recorded bucket's lower bound at or above q.
func (h *histogram) quantile(q float64) float64 {
	want := uint64(q * float64(h.n))
	var seen uint64
	for i, c := range h.low {
		if seen += c; seen > want {
			return float64(i)
		}
	}
	for e := range h.high {
		for j, c := range h.high[e] {
			if seen += c; seen > want {
				return float64(uint64(1)<<e + uint64(j)<<(e-4))
			}
		}
	}
	return 0
}

// BenchmarkGetLatency records the latency of every Get (hits, as above) in a
// histogram and reports p50, p95 and p99 in ns. The figures include the cost
// of reading the clock twice, reported as clock-ns (p50 of an empty interval).
// mean-ns is well above p50: about one Get in 64 hands a batch of keys to
// ristretto's policy goroutine over a channel, which can cost microseconds.
// With more goroutines than CPUs the tail includes time spent descheduled.
func BenchmarkGetLatency(b *testing.B) {
	s, hashes := benchStore(b, time.Hour)
	defer s.Close()
	var clock histogram
	for range 100_000 {
		t0 := time.Now()
		clock.record(int64(time.Since(t0)))
	}
	for _, g := range []int{1, 8} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			var (
				mu  sync.Mutex
				all histogram
			)
			run := func(next func() bool) {
				h := new(histogram)
				for i := 0; next(); i++ {
					k := hashes[i%benchKeys]
					t0 := time.Now()
					_, ok := s.Get(k)
					h.record(int64(time.Since(t0)))
					if !ok {
						panic("miss")
					}
				}
				mu.Lock()
				all.add(h)
				mu.Unlock()
			}
			b.ReportAllocs()
			if g == 1 {
				run(b.Loop)
			} else {
				b.SetParallelism((g + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) { run(pb.Next) })
			}
			b.ReportMetric(all.quantile(0.50), "p50-ns")
			b.ReportMetric(all.quantile(0.95), "p95-ns")
			b.ReportMetric(all.quantile(0.99), "p99-ns")
			b.ReportMetric(all.mean(), "mean-ns")
			b.ReportMetric(clock.quantile(0.50), "clock-ns")
			b.ReportMetric(float64(all.n), "samples")
		})
	}
}

// TestGetLatency records 100 000 Get latencies per goroutine with 1 and 8
// goroutines and logs the percentiles (no assertion: timing is the
// machine's). Skipped under -short and -race.
func TestGetLatency(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measurement; skipped under -short and -race")
	}
	s, hashes := benchStore(t, time.Hour)
	defer s.Close()
	const samples = 100_000
	for _, g := range []int{1, 8} {
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			all histogram
		)
		for w := range g {
			wg.Go(func() {
				h := new(histogram)
				for i := range samples {
					k := hashes[(i+w*97)%benchKeys]
					t0 := time.Now()
					s.Get(k)
					h.record(int64(time.Since(t0)))
				}
				mu.Lock()
				all.add(h)
				mu.Unlock()
			})
		}
		wg.Wait()
		t.Logf("goroutines=%d (GOMAXPROCS %d): %d samples, p50 %.0f ns, p95 %.0f ns, p99 %.0f ns, p99.9 %.0f ns, mean %.0f ns",
			g, runtime.GOMAXPROCS(0), all.n, all.quantile(0.5), all.quantile(0.95), all.quantile(0.99), all.quantile(0.999), all.mean())
	}
}
