package arena

import "math/bits"

// minClass is the smallest slot size. Every class size is a multiple of 8,
// so slots are 8-byte aligned; classes of 4 KiB and up that are multiples of
// the page size start on a page.
const minClass = 64

// minSlab is the default smallest slab (Config.MinSlab), and minSlots
// the fewest slots a slab holds unless it is as large as Config.SlabSize.
const (
	minSlab  = 64 << 10
	minSlots = 8
)

// slabFor returns the slab size for slots of size bytes: the smallest power
// of two of at least least that holds minSlots of them, capped at max.
func slabFor(size, least, max int) int {
	s := least
	for s < max && s < minSlots*size {
		s *= 2
	}
	return s
}

// classSizes returns the slot sizes from minClass up to max (a power of two):
// eight classes per doubling, each 1/8 of the doubling's base apart, so
// rounding a request up to its class wastes at most 12.5% of the class.
func classSizes(max int) []int {
	sizes := []int{minClass}
	for j := 1; ; j++ {
		size := classSize(j)
		if size > max {
			return sizes
		}
		sizes = append(sizes, size)
	}
}

// classSize returns the size of class j, the inverse of classOf.
func classSize(j int) int {
	if j == 0 {
		return minClass
	}
	e := 7 + (j-1)/8 // the class lies in (2^(e-1), 2^e]
	k := 8 + (j-1)%8
	return (k + 1) << (e - 4)
}

// classOf returns the index of the smallest class that holds n bytes,
// for 0 < n <= the largest class, without a table.
func classOf(n int) int {
	if n <= minClass {
		return 0
	}
	e := bits.Len(uint(n - 1)) // 2^(e-1) <= n-1 < 2^e, e >= 7
	k := (n - 1) >> (e - 4)    // in [8, 16): which eighth of the doubling
	return (e-7)*8 + k - 8 + 1
}
