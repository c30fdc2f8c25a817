package dedupbody

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkPutDuplicate measures Put of a body that is already stored (the
// dedup hit: index lookup, byte comparison, refcount) and the Release that
// keeps the ref count bounded. The hash is computed once outside the loop,
// as the proxy computes it while streaming (see BenchmarkBuilder).
func BenchmarkPutDuplicate(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			st := New(Config{})
			data := bytes.Repeat([]byte("z"), size)
			h := Sum(data)
			keep := st.Put(bytes.Clone(data), h, nil)
			defer keep.Release()
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				st.Put(data, h, nil).Release()
			}
		})
	}
}

// BenchmarkBuilder streams 16 KiB in 4 KiB writes, hashing on the way, and
// stores it as a new body (released again in the loop).
func BenchmarkBuilder(b *testing.B) {
	const size, chunk = 16 << 10, 4 << 10
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	for _, tt := range []struct {
		name string
		hint int
	}{{"hint", size}, {"nohint", 0}} {
		b.Run(tt.name, func(b *testing.B) {
			st := New(Config{})
			b.ReportAllocs()
			b.SetBytes(size)
			for b.Loop() {
				bu := NewBuilder(tt.hint, 1<<20)
				for p := data; len(p) > 0; p = p[chunk:] {
					_, _ = bu.Write(p[:chunk])
				}
				bu.Put(st, nil).Release()
			}
		})
	}
}

// BenchmarkLookup measures a lookup of a stored 1 KiB body (no reference
// taken). TestLookupNoAlloc asserts it does not allocate.
func BenchmarkLookup(b *testing.B) {
	st := New(Config{})
	data := bytes.Repeat([]byte("y"), 1<<10)
	h := Sum(data)
	r := st.Put(bytes.Clone(data), h, nil)
	defer r.Release()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := st.Lookup(data, h); !ok {
			b.Fatal("miss")
		}
	}
}
