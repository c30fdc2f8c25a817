package arena

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
)

// PoisonByte is the byte Free writes over a slot in poison builds (see
// [Poisoned]).
const PoisonByte = 0xDB

// Poisoned reports whether the package was built with the arenapoison tag:
// Free then fills each slot with [PoisonByte] and holds it in quarantine
// before reuse. Other packages' tests use it to decide whether a read
// through a released buffer must show poison.
func Poisoned() bool { return poison }

var (
	// ErrMap is returned (wrapped, with the size and the errno, such as
	// syscall.ENOMEM) when the OS refuses a mapping.
	ErrMap = errors.New("arena: cannot map memory")
	// ErrClosed is returned by Alloc after [Arena.Close].
	ErrClosed = errors.New("arena: closed")
)

// Config configures an [Arena]. The zero Config is valid: every field has a
// default.
type Config struct {
	// SlabSize is the size of the largest slabs: a power of two from 16 KiB
	// to 1 GiB. Zero means 1 MiB. The largest size class is SlabSize/8;
	// a larger allocation gets a mapping of its own. Smaller classes use
	// smaller slabs (see the package doc). SlabSize is a tuning knob for the
	// program, not a user setting: New panics if it is invalid.
	SlabSize int

	// MinSlab is the size of the smallest slabs: a power of two from the
	// page size up to SlabSize. Zero means 64 KiB (or SlabSize, if
	// smaller). A small cache takes small slabs: every size class in use
	// holds at least one slab, most of it free at first.
	MinSlab int

	// RetainBytes is how many bytes of empty slabs stay mapped, and
	// resident, for reuse by a class with the same slab size instead of
	// going back to the OS at once; they count in [Stats].Mapped. Zero
	// means 2 MiB; negative means none.
	RetainBytes int64

	// Quarantine is, in poison builds, how many freed slots each size class
	// holds back from reuse (and how many freed dedicated mappings stay
	// mapped), filled with PoisonByte. Zero means 256. Ignored without the
	// arenapoison tag.
	Quarantine int

	// QuarantineBytes caps the bytes each class's quarantine (and the
	// dedicated mappings' one) holds, in poison builds. Zero means 1 MiB.
	// The newest freed slot is always held, whatever its size.
	QuarantineBytes int64
}

// Arena hands out byte slices backed by memory it maps itself. All methods
// may be called concurrently. An Arena must not be copied.
type Arena struct {
	maxClass int // largest class size: SlabSize/8
	page     int
	retain   int64 // bytes of spare slabs to keep
	classes  []class
	big      bigMaps

	mapped atomic.Int64 // bytes mapped now: slabs (in use and spare) and dedicated maps

	mu         sync.Mutex // guards spare, spareBytes and closed
	spare      []*slab    // empty slabs kept mapped
	spareBytes int64
	closed     bool
}

// class is one size class: the slabs cut into slots of its size.
type class struct {
	mu        sync.Mutex
	size      int      // slot size
	slabSize  int      // bytes per slab
	slots     int      // slots per slab
	partial   slabList // slabs with a free slot
	full      slabList // slabs without
	live      int64    // slots held by callers
	requested int64    // sum of len over live slots
	q         quarantine
	closed    bool
	_         [40]byte // keep neighbouring classes' locks off one cache line
}

// bigMaps holds the dedicated mappings of allocations larger than the
// largest class.
type bigMaps struct {
	mu        sync.Mutex
	list      slabList // live and quarantined mappings
	live      int64
	requested int64
	inUse     int64 // mapped bytes of live mappings
	q         quarantine
	closed    bool
}

// New returns an empty Arena. It maps nothing until the first Alloc.
func New(cfg Config) *Arena {
	if cfg.SlabSize == 0 {
		cfg.SlabSize = 1 << 20
	}
	if cfg.SlabSize < 16<<10 || cfg.SlabSize > 1<<30 || cfg.SlabSize&(cfg.SlabSize-1) != 0 {
		panic(fmt.Sprintf("arena: SlabSize %d is not a power of two from 16 KiB to 1 GiB", cfg.SlabSize))
	}
	if cfg.MinSlab == 0 {
		cfg.MinSlab = min(minSlab, cfg.SlabSize)
	}
	if cfg.MinSlab < os.Getpagesize() || cfg.MinSlab > cfg.SlabSize || cfg.MinSlab&(cfg.MinSlab-1) != 0 {
		panic(fmt.Sprintf("arena: MinSlab %d is not a power of two from the page size to SlabSize", cfg.MinSlab))
	}
	switch {
	case cfg.RetainBytes == 0:
		cfg.RetainBytes = 2 << 20
	case cfg.RetainBytes < 0:
		cfg.RetainBytes = 0
	}
	if cfg.Quarantine <= 0 {
		cfg.Quarantine = 256
	}
	if cfg.QuarantineBytes <= 0 {
		cfg.QuarantineBytes = 1 << 20
	}
	a := &Arena{
		maxClass: cfg.SlabSize / 8,
		page:     os.Getpagesize(),
		retain:   cfg.RetainBytes,
		spare:    make([]*slab, 0, min(cfg.RetainBytes/int64(cfg.MinSlab), 64)),
	}
	sizes := classSizes(a.maxClass)
	a.classes = make([]class, len(sizes))
	for i, size := range sizes {
		c := &a.classes[i]
		c.size, c.slabSize = size, slabFor(size, cfg.MinSlab, cfg.SlabSize)
		c.slots = c.slabSize / size
		if poison {
			c.q.init(min(int64(cfg.Quarantine), max(1, cfg.QuarantineBytes/int64(size))), cfg.QuarantineBytes)
		}
	}
	if poison {
		a.big.q.init(int64(cfg.Quarantine), cfg.QuarantineBytes)
	}
	return a
}

// Slot is one allocation: its bytes and what Free needs to return them in
// O(1). It is a small value (40 bytes): hold it by value, copy it freely,
// and pass exactly one copy to [Arena.Free]. The zero Slot, returned for a
// zero-length Alloc, holds nothing; freeing it does nothing.
type Slot struct {
	b   []byte
	s   *slab
	i   int32  // slot index in s
	gen uint32 // s.gen at Alloc
}

// Bytes returns the slot's memory: len is the size asked of Alloc, cap the
// size of its class (or of its dedicated mapping), which is what the slot
// takes from the arena. The bytes are valid until the slot is freed; the
// caller must not read or write them afterwards (see the package doc).
func (s Slot) Bytes() []byte { return s.b }

// Wrap returns a Slot over memory the arena does not own (a heap slice, for
// a caller that stores some bytes outside the arena behind the same type):
// Bytes returns b, and Free ignores it.
func Wrap(b []byte) Slot { return Slot{b: b} }

// Owned reports whether the slot's memory is the arena's (not made by Wrap
// and not the zero Slot).
func (s Slot) Owned() bool { return s.s != nil }

// RoundSize returns the bytes an allocation of n takes: the size of n's
// class, or n rounded up to the page size above the largest class; 0 for
// n <= 0. It is the cap of the slice Alloc(n) would return.
func (a *Arena) RoundSize(n int) int {
	switch {
	case n <= 0:
		return 0
	case n > a.maxClass:
		return (n + a.page - 1) &^ (a.page - 1)
	}
	return a.classes[classOf(n)].size
}

// Alloc returns a slot of n bytes. Its contents are unspecified (zero in a
// fresh mapping, earlier data in a reused slot): write every byte that will
// be read. Alloc(0) returns the zero Slot; a negative n panics. The error is
// ErrClosed after Close, or wraps ErrMap when the OS refuses memory.
func (a *Arena) Alloc(n int) (Slot, error) {
	if n <= 0 {
		if n < 0 {
			panic(fmt.Sprintf("arena: Alloc(%d)", n))
		}
		return Slot{}, nil
	}
	if n > a.maxClass {
		return a.allocBig(n)
	}
	ci := classOf(n)
	c := &a.classes[ci]
	c.mu.Lock()
	s := c.partial.head
	if s == nil {
		if c.closed {
			c.mu.Unlock()
			return Slot{}, ErrClosed
		}
		// Map (or take a spare) without the lock: another goroutine may
		// add a slab meanwhile, which only leaves one more partial slab.
		c.mu.Unlock()
		ns, err := a.newSlab(ci, c)
		if err != nil {
			return Slot{}, err
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			a.unmap(ns)
			return Slot{}, ErrClosed
		}
		c.partial.push(ns)
		s = ns
	}
	i := s.take()
	if s.live == s.n {
		c.partial.remove(s)
		c.full.push(s)
	}
	c.live++
	c.requested += int64(n)
	gen := s.gen.Load()
	c.mu.Unlock()
	off := i * c.size
	return Slot{b: s.mem[off : off+n : off+c.size], s: s, i: int32(i), gen: gen}, nil
}

// Free returns the slot to the arena. The caller, and anyone it lent the
// bytes to, must be done with them: the memory is reused by a later Alloc,
// or unmapped, after which touching it crashes the process. Freeing a slot
// twice panics; freeing after Close does nothing. Without the arenapoison
// tag, Free does not touch the bytes.
func (a *Arena) Free(sl Slot) {
	s := sl.s
	if s == nil {
		return
	}
	if s.owner != a {
		panic("arena: Free of a Slot from another Arena")
	}
	ci := s.cls.Load()
	if ci == dedicated {
		a.freeBig(sl)
		return
	}
	c := &a.classes[ci]
	i := int(sl.i)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if s.gen.Load() != sl.gen || !s.isUsed(i) || (poison && s.quar[i/64]&(1<<(i%64)) != 0) {
		c.mu.Unlock()
		panic(fmt.Sprintf("arena: double Free of a %d-byte slot (slot %d of its slab), or Free of a stale Slot", c.size, i))
	}
	c.live--
	c.requested -= int64(len(sl.b))
	if !poison {
		empty := c.release(s, i)
		c.mu.Unlock()
		if empty != nil {
			a.dropSlab(empty)
		}
		return
	}
	// Keep the slot allocated, poisoned, until it leaves quarantine; free
	// for real the oldest slot the quarantine pushes out (one: the ring's
	// length keeps it under its byte cap).
	s.quar[i/64] |= 1 << (i % 64)
	fill(sl.b[:cap(sl.b)])
	var buf [1]qentry
	var empties [1]*slab
	out, es := c.q.admit(qentry{s: s, i: i, size: int64(c.size)}, buf[:0]), empties[:0]
	for _, e := range out {
		e.s.quar[e.i/64] &^= 1 << (e.i % 64)
		if empty := c.release(e.s, e.i); empty != nil {
			es = append(es, empty)
		}
	}
	c.mu.Unlock()
	for _, e := range es {
		a.dropSlab(e)
	}
}

// release frees slot i of s, which belongs to c, whose lock is held. When s
// becomes empty it leaves the class and is returned for the caller to drop
// after unlocking; a Slot still naming it no longer matches its gen.
func (c *class) release(s *slab, i int) *slab {
	if s.live == s.n {
		c.full.remove(s)
		c.partial.push(s)
	}
	s.put(i)
	if s.live > 0 {
		return nil
	}
	c.partial.remove(s)
	s.gen.Add(1)
	return s
}

// newSlab returns a slab of c's slots, all free: a spare one of the same
// size if any, else a new mapping.
func (a *Arena) newSlab(ci int, c *class) (*slab, error) {
	a.mu.Lock()
	for i := len(a.spare) - 1; i >= 0; i-- {
		if s := a.spare[i]; len(s.mem) == c.slabSize {
			a.spare = slices.Delete(a.spare, i, i+1)
			a.spareBytes -= int64(len(s.mem))
			a.mu.Unlock()
			s.reset(ci, c.slots)
			return s, nil
		}
	}
	a.mu.Unlock()
	mem, err := mmap(c.slabSize)
	if err != nil {
		return nil, err
	}
	a.mapped.Add(int64(len(mem)))
	s := &slab{mem: mem, owner: a}
	s.reset(ci, c.slots) // allocates the bitmaps for this class's slots
	return s, nil
}

// dropSlab keeps the empty slab s as a spare, or unmaps it when the spares
// would take more than RetainBytes.
func (a *Arena) dropSlab(s *slab) {
	n := int64(len(s.mem))
	a.mu.Lock()
	if !a.closed && a.spareBytes+n <= a.retain {
		a.spare = append(a.spare, s)
		a.spareBytes += n
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	a.unmap(s)
}

// unmap returns s's memory to the OS. Munmap of a mapping we made cannot
// fail unless the process is already corrupt.
func (a *Arena) unmap(s *slab) {
	if err := a.munmap(s); err != nil {
		panic(err)
	}
}

func (a *Arena) munmap(s *slab) error {
	n := int64(len(s.mem))
	if err := syscall.Munmap(s.mem); err != nil {
		return fmt.Errorf("arena: munmap (%d bytes): %w", n, err)
	}
	a.mapped.Add(-n)
	return nil
}

// allocBig maps a dedicated region for n bytes, rounded up to the page size.
func (a *Arena) allocBig(n int) (Slot, error) {
	mem, err := mmap(a.RoundSize(n))
	if err != nil {
		return Slot{}, err
	}
	s := &slab{mem: mem, owner: a, n: 1, live: 1}
	s.cls.Store(dedicated)
	b := &a.big
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = syscall.Munmap(mem) // never counted in mapped
		return Slot{}, ErrClosed
	}
	b.list.push(s)
	b.live++
	b.requested += int64(n)
	b.inUse += int64(len(mem))
	b.mu.Unlock()
	a.mapped.Add(int64(len(mem)))
	return Slot{b: mem[:n:len(mem)], s: s}, nil
}

// freeBig unmaps a dedicated mapping, or in poison builds fills it and
// holds it in quarantine. A dedicated slab is never reused, so bumping its
// gen marks it freed for good.
func (a *Arena) freeBig(sl Slot) {
	s, b := sl.s, &a.big
	size := int64(len(s.mem))
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	if s.gen.Load() != sl.gen {
		b.mu.Unlock()
		panic(fmt.Sprintf("arena: double Free of a %d-byte dedicated mapping", size))
	}
	s.gen.Add(1)
	b.live--
	b.requested -= int64(len(sl.b))
	b.inUse -= size
	if !poison {
		b.list.remove(s)
		b.mu.Unlock()
		a.unmap(s)
		return
	}
	b.mu.Unlock()
	fill(s.mem) // nobody else may touch s now: no lock needed
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	out := b.q.admit(qentry{s: s, size: size}, nil)
	for _, e := range out {
		b.list.remove(e.s)
	}
	b.mu.Unlock()
	for _, e := range out {
		a.unmap(e.s)
	}
}

// Mapped returns the bytes mapped from the OS now ([Stats].Mapped) with one
// atomic load, for a budget check on every store.
func (a *Arena) Mapped() int64 { return a.mapped.Load() }

// Close unmaps all memory. Every slice the arena handed out becomes invalid
// at once: touching one crashes the process, so Close only when no slot is
// in use (tests, shutdown). Alloc then returns ErrClosed and Free does
// nothing. Close returns the munmap errors, if any; calling it again does
// nothing.
func (a *Arena) Close() error {
	var all []*slab
	for i := range a.classes {
		c := &a.classes[i]
		c.mu.Lock()
		c.closed = true
		all = c.full.drain(c.partial.drain(all))
		c.q.reset()
		c.live, c.requested = 0, 0
		c.mu.Unlock()
	}
	a.big.mu.Lock()
	a.big.closed = true
	all = a.big.list.drain(all)
	a.big.q.reset()
	a.big.live, a.big.requested, a.big.inUse = 0, 0, 0
	a.big.mu.Unlock()
	a.mu.Lock()
	a.closed = true
	all = append(all, a.spare...)
	a.spare, a.spareBytes = a.spare[:0], 0
	a.mu.Unlock()
	var errs []error
	for _, s := range all {
		s.gen.Add(1)
		if err := a.munmap(s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
