package cachestore

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// BenchmarkHitRatio measures the hit ratio of a full store under skewed
// (Zipf) request streams, for admission counters sized at several
// multiples of the entries that fit: what Config.ExpectedEntries (and so
// ristretto's NumCounters, twice it) buys. Each iteration replays the
// same 2 000 000 requests over 1 000 000 keys into a store that holds
// 20 000 entries, storing every miss (as the proxy does) and waiting for
// the store after each Set (as a fill's commit does). The figure is the
// metric hit%, not the time.
func BenchmarkHitRatio(b *testing.B) {
	const (
		fit      = 20_000
		universe = 1_000_000
		requests = 2_000_000
		warm     = 500_000 // requests before hits are counted
	)
	for _, skew := range []float64{1.01, 1.2} {
		stream := make([]uint64, requests)
		z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), skew, 1, universe-1)
		var buf [8]byte
		for i := range stream {
			k := z.Uint64()
			for j := range buf {
				buf[j] = byte(k >> (8 * j))
			}
			stream[i] = xxhash.Sum64(buf[:])
		}
		for _, mult := range []float64{0.25, 0.5, 1, 2, 5} {
			b.Run(fmt.Sprintf("zipf=%.2f/expected=%.2fx", skew, mult), func(b *testing.B) {
				var ratio float64
				for b.Loop() {
					s, err := New(Config{MaxMemory: fit * DefaultEntryOverhead, ExpectedEntries: int64(mult * fit)})
					if err != nil {
						b.Fatal(err)
					}
					hits := 0
					for i, h := range stream {
						if _, ok := s.Get(h); ok {
							if i >= warm {
								hits++
							}
							continue
						}
						s.Set(h, &Entry{Status: 200}, 0)
						s.Wait()
					}
					s.Close()
					ratio = 100 * float64(hits) / (requests - warm)
				}
				b.ReportMetric(ratio, "hit%")
			})
		}
	}
}
