package arena

import (
	"fmt"
	"testing"
)

// BenchmarkAllocFree measures one Alloc and one Free of the same size, with
// another slot keeping the slab in use (the common case: no slab is mapped
// or released).
func BenchmarkAllocFree(b *testing.B) {
	for _, n := range []int{1 << 10, 4 << 10} {
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			a := New(Config{})
			defer a.Close()
			keep, _ := a.Alloc(n)
			defer a.Free(keep)
			b.ReportAllocs()
			for b.Loop() {
				s, _ := a.Alloc(n)
				a.Free(s)
			}
		})
	}
}

// BenchmarkAllocFreeParallel is BenchmarkAllocFree from every P at once, all
// in one size class: the worst case for the class's mutex.
func BenchmarkAllocFreeParallel(b *testing.B) {
	for _, n := range []int{1 << 10, 4 << 10} {
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			a := New(Config{})
			defer a.Close()
			keep, _ := a.Alloc(n)
			defer a.Free(keep)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s, _ := a.Alloc(n)
					a.Free(s)
				}
			})
		})
	}
}

// BenchmarkAllocFreeChurn keeps 16384 slots of 4 KiB (64 MiB) live and, per
// op, frees the oldest and allocates one: slabs fill, empty in turn and go
// through the spares, as under FIFO eviction. The bytes are not touched.
func BenchmarkAllocFreeChurn(b *testing.B) {
	const live = 16384
	a := New(Config{})
	defer a.Close()
	ring := make([]Slot, live)
	for i := range ring {
		ring[i], _ = a.Alloc(4096)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a.Free(ring[i])
		ring[i], _ = a.Alloc(4096)
		i = (i + 1) % live
	}
	b.StopTimer()
	for _, s := range ring {
		a.Free(s)
	}
}

// BenchmarkAllocFreeDedicated measures a 256 KiB allocation, above the
// largest class: one mmap and one munmap, untouched.
func BenchmarkAllocFreeDedicated(b *testing.B) {
	a := New(Config{})
	defer a.Close()
	b.ReportAllocs()
	for b.Loop() {
		s, _ := a.Alloc(256 << 10)
		a.Free(s)
	}
}
