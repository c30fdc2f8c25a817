package arena

// Stats is a snapshot of an [Arena]'s memory. Each class is read under its
// lock, one after another, so under concurrent use the totals may be off by
// the operations in flight; at rest they satisfy
//
//	Mapped == SlabBytes + SpareBytes + DedicatedBytes
//	Mapped >= InUse + QuarantinedBytes, InUse >= Requested
type Stats struct {
	// Mapped is the bytes mapped from the OS now: slabs holding slots,
	// spare slabs and dedicated mappings, with all rounding and free slots
	// included. It is what the arena costs against a memory budget.
	Mapped int64
	// InUse is the bytes live slots take: the class size of each, or the
	// size of its dedicated mapping.
	InUse int64
	// Requested is the bytes asked of Alloc by live slots (sum of len).
	Requested int64
	// Live is the number of live slots (zero-length ones excluded).
	Live int64
	// Slabs and SlabBytes count the slabs holding a live or quarantined
	// slot, and their bytes.
	Slabs, SlabBytes int64
	// SpareSlabs and SpareBytes count the empty slabs kept mapped for reuse
	// ([Config].RetainBytes).
	SpareSlabs, SpareBytes int64
	// Dedicated and DedicatedBytes count dedicated mappings (live or
	// quarantined) and their bytes.
	Dedicated, DedicatedBytes int64
	// Quarantined and QuarantinedBytes count freed slots held back from
	// reuse in poison builds, and the bytes they take. Always 0 otherwise.
	Quarantined, QuarantinedBytes int64
	// Classes has one row per size class, smallest first.
	Classes []ClassStats
}

// ClassStats is one size class's row in [Stats].
type ClassStats struct {
	Size        int   // slot size in bytes
	SlabSize    int   // bytes per slab of this class
	Slabs       int   // slabs of this class
	Live        int64 // live slots
	Quarantined int64 // slots in quarantine (poison builds)
}

// Stats returns a snapshot of the arena's memory. It allocates the Classes
// slice and takes each class's lock briefly: meant for metrics and tests,
// not for every request (see [Arena.Mapped]).
func (a *Arena) Stats() Stats {
	st := Stats{Classes: make([]ClassStats, len(a.classes))}
	for i := range a.classes {
		c := &a.classes[i]
		c.mu.Lock()
		cs := ClassStats{
			Size:        c.size,
			SlabSize:    c.slabSize,
			Slabs:       c.partial.len + c.full.len,
			Live:        c.live,
			Quarantined: int64(c.q.n),
		}
		st.Requested += c.requested
		st.QuarantinedBytes += c.q.bytes
		c.mu.Unlock()
		st.Classes[i] = cs
		st.InUse += cs.Live * int64(cs.Size)
		st.Live += cs.Live
		st.Slabs += int64(cs.Slabs)
		st.SlabBytes += int64(cs.Slabs) * int64(cs.SlabSize)
		st.Quarantined += cs.Quarantined
	}
	b := &a.big
	b.mu.Lock()
	st.Live += b.live
	st.InUse += b.inUse
	st.Requested += b.requested
	st.Dedicated = int64(b.list.len)
	st.DedicatedBytes = b.inUse + b.q.bytes
	st.Quarantined += int64(b.q.n)
	st.QuarantinedBytes += b.q.bytes
	b.mu.Unlock()
	a.mu.Lock()
	st.SpareSlabs, st.SpareBytes = int64(len(a.spare)), a.spareBytes
	a.mu.Unlock()
	st.Mapped = a.mapped.Load()
	return st
}
