package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits sets the histogram's precision: 2^subBits buckets per power of
// two, so a recorded latency is known to within 1/64 (1.6 %).
const subBits = 6

// maxMicros is the largest latency a histogram tells apart (about 67 s);
// longer ones land in its last bucket.
const maxMicros = 1<<26 - 1

// nBuckets is the number of buckets covering [0, maxMicros].
var nBuckets = bucketOf(maxMicros) + 1

// hist is a latency histogram in microseconds, log-linear like
// HdrHistogram: exact below 64 µs, then 64 buckets per power of two. It is
// safe for concurrent use (one atomic add per value).
type hist struct {
	counts []atomic.Uint64
	max    atomic.Uint64 // µs
}

func newHist() *hist { return &hist{counts: make([]atomic.Uint64, nBuckets)} }

// bucketOf is the bucket of v µs.
func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	msb := bits.Len64(v) - 1 // >= subBits
	top := v >> (msb - subBits)
	return (msb-subBits+1)<<subBits + int(top-1<<subBits)
}

// bucketHigh is the largest value bucket b holds.
func bucketHigh(b int) uint64 {
	if b < 1<<subBits {
		return uint64(b)
	}
	g := b >> subBits // >= 1
	top := uint64(b&(1<<subBits-1)) + 1<<subBits
	return top<<(g-1) + (1 << (g - 1)) - 1
}

// record adds one latency.
func (h *hist) record(d time.Duration) {
	v := uint64(max(d.Microseconds(), 0))
	if v > maxMicros {
		v = maxMicros
	}
	h.counts[bucketOf(v)].Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// snapshot copies the counts (for an interval's percentiles: the
// difference of two snapshots).
func (h *hist) snapshot() []uint64 {
	out := make([]uint64, len(h.counts))
	for i := range h.counts {
		out[i] = h.counts[i].Load()
	}
	return out
}

// percentiles gives, for each of ps (0 < p <= 100), the smallest bucket
// bound below which p percent of counts fall, in µs; 0 for no counts.
func percentiles(counts []uint64, ps ...float64) []uint64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	out := make([]uint64, len(ps))
	if total == 0 {
		return out
	}
	for j, p := range ps {
		want := uint64(float64(total)*p/100 + 0.5)
		want = min(max(want, 1), total)
		var seen uint64
		for b, c := range counts {
			seen += c
			if seen >= want {
				out[j] = bucketHigh(b)
				break
			}
		}
	}
	return out
}

// pcts is percentiles of h's counts, none above the largest value
// recorded (a bucket's bound can be).
func (h *hist) pcts(ps ...float64) []uint64 {
	out := percentiles(h.snapshot(), ps...)
	m := h.max.Load()
	for i := range out {
		out[i] = min(out[i], m)
	}
	return out
}

// diff is a - b, bucket by bucket (an interval's counts from two
// cumulative snapshots).
func diff(a, b []uint64) []uint64 {
	out := make([]uint64, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}
