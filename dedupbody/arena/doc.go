// Package arena is a size-classed slab allocator over anonymous mmap, for
// byte slices that are written once and then read concurrently (response
// bodies). The memory is the process's own mapping, outside the Go heap: the
// garbage collector neither scans nor frees it, and the arena can give it
// back to the OS the moment a slab is empty.
//
// # Size classes
//
// A request of n bytes is rounded up to a class: 64 B, then eight classes
// per doubling, each an eighth of the doubling's base apart (64, 72, 80, ...
// 128, 144, ... 4096, 4608, ...), up to SlabSize/8 (128 KiB with the
// default 1 MiB slab: 89 classes). Above 64 B, rounding wastes less than a
// ninth of a slot. A request above the largest class gets a dedicated
// mapping of its own, rounded up to the page size, unmapped when freed.
//
// # Slab layout
//
// A slab is one mapping cut into slots of one class, back to back from
// offset 0. Its size is the smallest power of two of at least MinSlab
// (64 KiB by default) that holds 8 slots, up to SlabSize: with the defaults,
// 64 KiB for classes up to 8 KiB, 1 MiB for
// the largest. Small slabs for small classes keep the memory a class holds
// beyond its live slots small: in a cache-like workload (log-normal sizes
// around 4 KiB, random eviction at a 128 MiB budget) Mapped was 1.27 times
// the bytes requested, against 1.63 with 1 MiB slabs for every class. The
// remainder at the end of a slab is unused: at most 8.6%, for classes of
// 13/128 of their slab.
//
// Nothing else is in the mapping: the slab's bookkeeping (a bitmap of used
// slots, counts, list links) is a small descriptor on the Go heap. So the
// arena never writes to a slot (except to poison it, below), a stray write
// past a slot cannot corrupt the allocator, and an untouched slot costs no
// resident memory. Alloc takes the lowest free slot of the slab that most
// recently had room, which keeps the touched part of a slab dense; each
// class has its own mutex, and mapping a new slab happens outside it.
//
// # How a slot finds its slab
//
// [Arena.Alloc] returns a [Slot]: the slice, a pointer to its slab's
// descriptor, the slot's index and the slab's generation. [Arena.Free] goes
// straight to the descriptor and clears one bit: O(1), no lookup, no
// address arithmetic. Deriving the slab from the address instead would need slabs
// aligned to their size (map twice the size, then trim) and a header in the
// mapping or a table from address to slab, to save the 16 bytes a Slot
// carries beyond the slice. The generation changes when a slab empties, so
// a stale Slot is told apart from a live one even after its slab has been
// reused.
//
// # When memory goes back to the OS
//
// A slab is released the moment its last slot is freed. Up to
// Config.RetainBytes of empty slabs (default 2 MiB) stay mapped and
// resident as spares, reused by the next class that needs a slab of the
// same size; beyond that the slab is unmapped at once. A dedicated mapping
// is unmapped when freed. Keeping a few resident spares is what makes
// alloc/free churn at a slab boundary cheap: faulting a fresh 1 MiB back in
// costs about 335 µs (1.3 µs per 4 KiB page, measured), while the mmap and
// munmap calls themselves cost about 3 µs. For the same reason there is no
// list of MADV_DONTNEED slabs: it would save the 3 µs and still pay the
// faults.
//
// # Memory accounting
//
// [Arena.Stats] counts what the OS holds for the arena, fragmentation
// included. Mapped is every slab (holding slots, or spare) and every
// dedicated mapping: the bytes to count against a memory budget. It is an
// upper bound of what is resident, since pages of a slab that were never
// touched cost nothing (in the workload above, RSS was about 1.2 times the
// bytes requested while Mapped was 1.27). InUse is the class size of each live
// slot, Requested what callers asked for: Mapped minus InUse is the price
// of slabs (free slots, unused tails, spares), InUse minus Requested the
// price of rounding. [Arena.Mapped] reads Mapped with one atomic load.
//
// # The garbage collector and the lifetime of bytes
//
// Slices into the arena may be stored anywhere in Go memory: the collector
// ignores pointers outside its heap. The reverse is forbidden: never store a
// Go pointer inside arena memory, since the collector does not scan it and
// would free the object it points to. The race detector does not see
// accesses to arena memory either.
//
// Unlike a heap buffer, arena bytes do not live as long as someone holds the
// slice. After Free the slot may be handed to another caller, who
// overwrites it, or its slab may be unmapped, and then a read through a
// stale slice kills the process with SIGSEGV (a fatal signal, not a panic
// that can be recovered). A caller must know that no reader still holds the
// bytes before it frees them.
//
// # The arenapoison build tag
//
// Built with -tags arenapoison, Free fills the whole slot with [PoisonByte]
// (0xDB) and parks it in a per-class quarantine (a FIFO of Config.Quarantine
// slots, at most Config.QuarantineBytes) before it can be reused or its slab
// unmapped, so that a use after free reads poison instead of someone else's
// data or crashing. [Poisoned] reports the tag to other packages' tests.
// Without the tag Free does not touch the bytes. In every build freeing a
// slot twice panics with a message naming its size (one bit per slot, kept
// in the descriptor).
package arena
