package arena

// qentry is a freed slot held back from reuse (poison builds).
type qentry struct {
	s    *slab
	i    int   // slot index in s
	size int64 // bytes the slot holds mapped
}

// quarantine is a FIFO of freed slots, bounded by count and bytes. Only
// poison builds use it; its owner's lock guards it.
type quarantine struct {
	ring     []qentry
	head, n  int
	bytes    int64
	maxBytes int64
}

func (q *quarantine) init(slots, maxBytes int64) {
	q.ring = make([]qentry, slots)
	q.maxBytes = maxBytes
}

// admit adds e, first pushing out the oldest entries while the ring is full
// or e would take it past maxBytes. It returns them appended to out, for the
// caller to free for real. e itself always stays.
func (q *quarantine) admit(e qentry, out []qentry) []qentry {
	for q.n > 0 && (q.n == len(q.ring) || q.bytes+e.size > q.maxBytes) {
		old := q.ring[q.head]
		q.ring[q.head] = qentry{}
		q.head = (q.head + 1) % len(q.ring)
		q.n--
		q.bytes -= old.size
		out = append(out, old)
	}
	q.ring[(q.head+q.n)%len(q.ring)] = e
	q.n++
	q.bytes += e.size
	return out
}

// reset forgets every entry (Close unmaps their slabs).
func (q *quarantine) reset() {
	clear(q.ring)
	q.head, q.n, q.bytes = 0, 0, 0
}
