// Package dedupbody is a content-addressed, reference-counted store of
// immutable byte buffers. Identical buffers are kept once: [Store.Put] finds
// an equal buffer by its xxhash64 and a byte comparison, and hands out another
// reference to it. A buffer is dropped from the store the moment its last
// reference is released.
//
// The package knows nothing of HTTP: the cache stores response bodies and
// rendered header blocks in it.
//
// # Charging
//
// Every live buffer is charged to exactly one of its references, so that a
// caller that accounts memory per reference (the entry store does, against
// its byte budget) counts each unique buffer once. [Store.Put] returns a
// charged [Ref] when the buffer is new, or when it exists but nobody carries
// its charge; otherwise it returns an uncharged Ref. When a charged Ref is
// released while other references remain, the buffer becomes uncharged and
// its bytes are reported by [Store.Stats] as UnchargedBytes until a later Put
// takes the charge again or the last reference goes. So at any moment:
//
//	Bytes == (sum of sizes of charged live refs) + UnchargedBytes
//
// # Memory
//
// With [Config.Arena] set, every new body's bytes are copied into a slot of
// that arena (memory the process maps itself, outside the Go heap: the
// collector neither scans nor paces it) and the slot is freed the moment
// the last reference is released: from then on the bytes may be reused for
// another body or unmapped. So a caller must hold a reference for as long
// as it reads [Ref.Bytes] (the cache holds its entry pinned, see package
// cachestore). Without an arena, bodies are ordinary heap allocations that
// stay valid for as long as anything points to them.
package dedupbody

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"dedupcache/dedupbody/arena"
)

// Sum returns the hash [Store.Put] expects for data: xxhash64.
func Sum(data []byte) uint64 { return xxhash.Sum64(data) }

// BodyOverhead is the heap a stored body costs beyond its bytes: the Body
// struct (96 B size class) and its index map slot, measured by
// TestBodyOverhead and rounded up.
const BodyOverhead = 120

// Config configures a [Store].
type Config struct {
	// MinShareSize is the smallest buffer that is indexed for sharing.
	// Smaller buffers are stored once per reference, which saves the index
	// slot and hash lookup where a shared copy would save less than it costs.
	// Zero shares every buffer, including the empty one.
	MinShareSize int
	// Arena, if set, holds the bytes of every new body (see Memory in the
	// package doc). When it cannot map memory, a body is kept on the heap
	// instead (Stats.HeapFallbacks).
	Arena *arena.Arena
}

// Store holds deduplicated buffers. All methods may be called concurrently.
type Store struct {
	minShare int
	arena    *arena.Arena

	mu    sync.Mutex
	index map[uint64]*Body // head of a chain of bodies with the same hash

	bodies    atomic.Int64 // live bodies
	bytes     atomic.Int64 // sum of Size() over live bodies
	data      atomic.Int64 // sum of Len() over live bodies
	refs      atomic.Int64 // live references
	logical   atomic.Int64 // sum of Len() over live references
	uncharged atomic.Int64 // bytes of live bodies that no live reference is charged for
	puts      atomic.Int64 // Put calls
	shared    atomic.Int64 // Put calls answered with an existing body
	collide   atomic.Int64 // hash matches whose bytes differed
	badRel    atomic.Int64 // releases past zero (a caller bug)
	fallback  atomic.Int64 // bodies kept on the heap because the arena refused
}

// New returns an empty Store.
func New(cfg Config) *Store {
	return &Store{minShare: cfg.MinShareSize, arena: cfg.Arena, index: make(map[uint64]*Body)}
}

// Body is one stored buffer. Its bytes are immutable while it has a
// reference. Without an arena they are owned by the garbage collector (a
// reader still holding them after the last release keeps valid memory);
// in an arena they are freed at the last release (see Memory in the
// package doc).
type Body struct {
	slot    arena.Slot // the bytes: an arena slot, or heap memory (arena.Wrap)
	aux     any
	extra   int64 // bytes aux occupies, counted in Size
	store   *Store
	next    *Body  // next body with the same hash (collision chain)
	hash    uint64 // xxhash64 of data
	refs    int32  // guarded by store.mu
	charged bool   // guarded by store.mu: a live reference carries the charge
	indexed bool
	// tag is what a [Ref] points to: tag[0] (value 0) for an uncharged
	// reference, tag[1] (value 1) for the charged one. A Ref is then one
	// pointer, not a pointer and a flag: an entry holding two of them fits
	// a smaller size class (BENCHMARKS.md, memory per key).
	tag [2]byte
}

// newBody returns a Body with its tags set.
func newBody(b Body) *Body {
	b.tag = [2]byte{0, 1}
	return &b
}

// Bytes returns the stored bytes. The caller must not modify them.
func (b *Body) Bytes() []byte { return b.slot.Bytes() }

// Size returns the bytes the body occupies: the buffer's capacity (what the
// allocator handed out) plus what its aux value takes, as the aux function
// reported.
func (b *Body) Size() int64 { return int64(cap(b.slot.Bytes())) + b.extra }

// Len returns the number of stored bytes (the payload, without rounding).
func (b *Body) Len() int64 { return int64(len(b.slot.Bytes())) }

// Hash returns the buffer's xxhash64.
func (b *Body) Hash() uint64 { return b.hash }

// Aux returns the value computed by the aux function given to the Put that
// created the body (nil if none). It is immutable like the bytes.
func (b *Body) Aux() any { return b.aux }

// Refs returns the number of live references (a snapshot).
func (b *Body) Refs() int {
	b.store.mu.Lock()
	defer b.store.mu.Unlock()
	return int(b.refs)
}

// Ref is one counted reference to a [Body]. It is a small value: copy it
// freely, but call [Ref.Release] exactly once per Ref returned by Put.
// The zero Ref refers to nothing; releasing it does nothing.
type Ref struct {
	p *byte // &body.tag[0] (uncharged) or &body.tag[1] (charged); nil: the zero Ref
}

// tagOffset is where Body.tag is in a Body.
const tagOffset = unsafe.Offsetof(Body{}.tag)

// refTo returns a reference to b, charged or not.
func refTo(b *Body, charged bool) Ref {
	if charged {
		return Ref{&b.tag[1]}
	}
	return Ref{&b.tag[0]}
}

// Body returns the referenced body, or nil for the zero Ref.
func (r Ref) Body() *Body {
	if r.p == nil {
		return nil
	}
	// r.p points into the Body (which it keeps alive): back by the tag's
	// offset and index, which is the tag's value.
	return (*Body)(unsafe.Add(unsafe.Pointer(r.p), -int(tagOffset)-int(*r.p)))
}

// Bytes returns the referenced bytes (nil for the zero Ref). Read-only.
func (r Ref) Bytes() []byte {
	if r.p == nil {
		return nil
	}
	return r.Body().slot.Bytes()
}

// Charged reports whether this reference carries the body's bytes in the
// caller's accounting (see the package doc).
func (r Ref) Charged() bool { return r.p != nil && *r.p == 1 }

// ChargedSize returns Size() of the body if this reference is charged, else 0.
func (r Ref) ChargedSize() int64 {
	if !r.Charged() {
		return 0
	}
	return r.Body().Size()
}

// Put stores data under its hash h (from [Sum] or a streaming xxhash) and
// returns a new reference. If an equal buffer is stored, data is not kept
// and the reference points to the stored one. Without an arena the store
// takes ownership of data when it keeps it: the caller must not modify data
// after Put. With an arena, a new body is always a copy in the arena.
//
// aux, if not nil, is called once when a new body is created, with the
// bytes, under the store's lock: it must be quick and must not call the
// store. It returns a value derived from the bytes (available from
// [Body.Aux], immutable like them) and the heap bytes that value takes,
// which [Body.Size] includes.
func (s *Store) Put(data []byte, h uint64, aux func([]byte) (any, int64)) Ref {
	return s.put(data, h, aux, false)
}

// PutCopy is [Store.Put] for bytes the caller keeps: when they are new, the
// store keeps an exact-size copy (its own allocation, see [Alloc]); when an
// equal body is stored, nothing is copied or allocated. data may be reused
// by the caller as soon as PutCopy returns.
func (s *Store) PutCopy(data []byte, h uint64, aux func([]byte) (any, int64)) Ref {
	return s.put(data, h, aux, true)
}

func (s *Store) put(data []byte, h uint64, aux func([]byte) (any, int64), copyNew bool) Ref {
	s.puts.Add(1)
	if len(data) < s.minShare {
		b := newBody(Body{slot: s.keep(data, copyNew), store: s, hash: h, refs: 1, charged: true})
		if aux != nil {
			b.aux, b.extra = aux(b.Bytes())
		}
		s.added(b)
		return refTo(b, true)
	}

	s.mu.Lock()
	head := s.index[h]
	for b := head; b != nil; b = b.next {
		if bytes.Equal(b.Bytes(), data) {
			b.refs++
			r := refTo(b, false)
			if !b.charged {
				b.charged = true
				r = refTo(b, true)
				s.uncharged.Add(-b.Size())
			}
			s.mu.Unlock()
			s.shared.Add(1)
			s.refs.Add(1)
			s.logical.Add(b.Len())
			return r
		}
		s.collide.Add(1)
	}
	b := newBody(Body{slot: s.keep(data, copyNew), store: s, next: head, hash: h, refs: 1, charged: true, indexed: true})
	if aux != nil {
		b.aux, b.extra = aux(b.Bytes())
	}
	s.index[h] = b
	s.mu.Unlock()
	s.added(b)
	return refTo(b, true)
}

// keep returns the memory a new body's bytes live in: a copy in the
// arena, else data itself or (copyNew) an exact-size heap copy.
func (s *Store) keep(data []byte, copyNew bool) arena.Slot {
	if s.arena != nil && len(data) > 0 {
		sl, err := s.arena.Alloc(len(data))
		if err == nil {
			copy(sl.Bytes(), data)
			return sl
		}
		s.fallback.Add(1)
		copyNew = true
	}
	if copyNew {
		data = append(Alloc(len(data)), data...)
	}
	return arena.Wrap(data)
}

// added counts a new body and its first reference.
func (s *Store) added(b *Body) {
	s.bodies.Add(1)
	s.bytes.Add(b.Size())
	s.data.Add(b.Len())
	s.refs.Add(1)
	s.logical.Add(b.Len())
}

// Release drops the reference. When it was the last one, the body leaves the
// store; when it carried the charge and others remain, the body becomes
// uncharged. Releasing the zero Ref does nothing.
func (r Ref) Release() {
	b := r.Body()
	if b == nil {
		return
	}
	charged := r.Charged()
	s := b.store
	size := b.Size()
	s.mu.Lock()
	b.refs--
	switch {
	case b.refs < 0:
		b.refs = 0
		s.mu.Unlock()
		s.badRel.Add(1)
		return
	case b.refs == 0:
		if b.indexed {
			s.unlink(b)
		}
		if !charged {
			s.uncharged.Add(-size)
		}
		b.charged = false
		s.mu.Unlock()
		s.bodies.Add(-1)
		s.bytes.Add(-size)
		s.data.Add(-b.Len())
		if s.arena != nil {
			s.arena.Free(b.slot) // the bytes may be reused from here on
		}
	case charged:
		b.charged = false
		s.uncharged.Add(size)
		s.mu.Unlock()
	default:
		s.mu.Unlock()
	}
	s.refs.Add(-1)
	s.logical.Add(-b.Len())
}

// unlink removes b from its hash chain. s.mu must be held.
func (s *Store) unlink(b *Body) {
	head := s.index[b.hash]
	if head == b {
		if b.next == nil {
			delete(s.index, b.hash)
		} else {
			s.index[b.hash] = b.next
		}
		return
	}
	for p := head; p != nil; p = p.next {
		if p.next == b {
			p.next = b.next
			return
		}
	}
}

// Stats is a snapshot of a [Store]'s counters. Fields are read one by one
// without a lock, so under concurrent use they may be mutually off by the
// operations in flight.
type Stats struct {
	Bodies         int64 // live bodies
	Bytes          int64 // memory of live bodies, each counted once (Size: capacity + aux)
	DataBytes      int64 // payload bytes of live bodies, each counted once (Len)
	Refs           int64 // live references
	LogicalBytes   int64 // payload bytes summed over live references (as if not shared)
	UnchargedBytes int64 // bytes of live bodies that no reference carries
	Puts           int64 // Put calls
	Shared         int64 // Put calls that found an equal stored body
	Collisions     int64 // hash matches whose bytes differed
	BadReleases    int64 // releases past zero: always 0 unless a caller is wrong
	HeapFallbacks  int64 // new bodies kept on the heap because the arena could not map memory
}

// Stats returns the current counters.
func (s *Store) Stats() Stats {
	return Stats{
		Bodies:         s.bodies.Load(),
		Bytes:          s.bytes.Load(),
		DataBytes:      s.data.Load(),
		Refs:           s.refs.Load(),
		LogicalBytes:   s.logical.Load(),
		UnchargedBytes: s.uncharged.Load(),
		Puts:           s.puts.Load(),
		Shared:         s.shared.Load(),
		Collisions:     s.collide.Load(),
		BadReleases:    s.badRel.Load(),
		HeapFallbacks:  s.fallback.Load(),
	}
}

// Bytes returns Stats().Bytes without building the rest.
func (s *Store) Bytes() int64 { return s.bytes.Load() }

// UnchargedBytes returns Stats().UnchargedBytes without building the rest.
func (s *Store) UnchargedBytes() int64 { return s.uncharged.Load() }

// Lookup returns the stored body with hash h and these bytes, without taking
// a reference: the answer may be stale by the time the caller uses it. It
// does not allocate.
func (s *Store) Lookup(data []byte, h uint64) (*Body, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for b := s.index[h]; b != nil; b = b.next {
		if bytes.Equal(b.Bytes(), data) {
			return b, true
		}
	}
	return nil, false
}

// Acquire returns a new, uncharged reference to a stored body with hash h
// and length n, if one has a live reference: a reader that knows a body
// only by its hash (another cache tier's) can read it safely until it
// releases the reference. Distinct bodies with the same hash and length are
// told apart only by the caller (check the bytes).
func (s *Store) Acquire(h uint64, n int64) (Ref, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for b := s.index[h]; b != nil; b = b.next {
		if b.refs > 0 && b.Len() == n {
			b.refs++
			s.refs.Add(1)
			s.logical.Add(n)
			return refTo(b, false), true
		}
	}
	return Ref{}, false
}

// Each calls fn for every indexed body under the store's lock, until fn
// returns false. fn must be quick and must not call the store.
func (s *Store) Each(fn func(b *Body, refs int) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, head := range s.index {
		for b := head; b != nil; b = b.next {
			if !fn(b, int(b.refs)) {
				return
			}
		}
	}
}

// Shared is one row of [Store.MostShared]: a body and the number of live
// references it had during the walk. Hold it as a value.
type Shared struct {
	Body *Body
	Refs int
}

// MostShared returns up to n bodies with at least minRefs live references,
// most referenced first (ties in no particular order). It holds the store's
// lock for one walk of the index that keeps the n best candidates in the
// result; it allocates nothing else, calls no callback and formats nothing
// under the lock, so a dashboard polling it delays Put and Release only by
// the walk itself. The counts are a snapshot and may be stale on return.
func (s *Store) MostShared(n, minRefs int) []Shared {
	if n <= 0 {
		return nil
	}
	top := make([]Shared, 0, n)
	s.mu.Lock()
	for _, head := range s.index {
		for b := head; b != nil; b = b.next {
			r := int(b.refs)
			if r < minRefs || (len(top) == n && r <= top[n-1].Refs) {
				continue
			}
			// Insert in order; when full, the last (least shared) row
			// falls off.
			if len(top) < n {
				top = append(top, Shared{})
			}
			i := len(top) - 1
			for ; i > 0 && top[i-1].Refs < r; i-- {
				top[i] = top[i-1]
			}
			top[i] = Shared{Body: b, Refs: r}
		}
	}
	s.mu.Unlock()
	return top
}

// Alloc returns a zero-length buffer with room for n bytes, whose capacity
// is the size the allocator really hands out for n (its size class), so
// that [Body.Size] counts the memory a body really takes.
func Alloc(n int) []byte { return slices.Grow([]byte(nil), n) }
