package dedupbody

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkPutDuplicate measures Put of a body that is already stored (the
// dedup hit: index lookup, byte comparison, refcount) and the Release that
// keeps the ref count bounded. The hash is computed once outside the loop,
// as the proxy computes it once per complete body.
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
