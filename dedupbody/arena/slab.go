package arena

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"syscall"
)

// slab describes one mapping: a slab cut into slots of one class, or a
// dedicated mapping holding one large slot. The descriptor lives on the Go
// heap; the mapping holds only the caller's bytes.
type slab struct {
	mem   []byte // the mapping, exactly as mmap returned it
	owner *Arena
	cls   atomic.Int32  // class index, or dedicated; changes when a spare slab is reused
	gen   atomic.Uint32 // bumped when the slab is emptied: a Slot from before no longer matches

	// Guarded by the lock of the slab's class (or of the dedicated maps;
	// a dedicated mapping has n == live == 1, no bitmap, and is marked freed
	// by its gen alone, since its descriptor is never reused).
	used       []uint64 // bit i: slot i is allocated or in quarantine; bits past n are set
	quar       []uint64 // poison builds: bit i: slot i is in quarantine
	n          int      // slots
	live       int      // bits set in used below n
	hint       int      // no word of used before hint has a free bit
	prev, next *slab    // the class's partial or full list
}

// dedicated is the cls of a dedicated mapping.
const dedicated = -1

// reset prepares s to hold n slots of class cls: all free.
func (s *slab) reset(cls, n int) {
	s.cls.Store(int32(cls))
	words := (n + 63) / 64
	if cap(s.used) < words { // a spare slab taken by a class of smaller slots
		s.used = make([]uint64, words)
		if poison {
			s.quar = make([]uint64, words)
		}
	}
	s.used = s.used[:words]
	clear(s.used)
	if tail := n % 64; tail != 0 {
		s.used[words-1] = ^uint64(0) << tail
	}
	if poison {
		s.quar = s.quar[:words]
		clear(s.quar)
	}
	s.n, s.live, s.hint = n, 0, 0
}

// take marks the lowest free slot used and returns its index. The slab must
// have a free slot. Taking the lowest keeps the touched part of a slab dense.
func (s *slab) take() int {
	for w := s.hint; ; w++ {
		if x := s.used[w]; x != ^uint64(0) {
			b := bits.TrailingZeros64(^x)
			s.used[w] = x | 1<<b
			s.hint = w
			s.live++
			return w*64 + b
		}
	}
}

// put marks slot i free.
func (s *slab) put(i int) {
	w := i / 64
	s.used[w] &^= 1 << (i % 64)
	s.live--
	s.hint = min(s.hint, w)
}

// isUsed reports whether slot i is allocated or in quarantine.
func (s *slab) isUsed(i int) bool { return s.used[i/64]&(1<<(i%64)) != 0 }

// slabList is an intrusive doubly linked list of slabs.
type slabList struct {
	head *slab
	len  int
}

func (l *slabList) push(s *slab) {
	s.prev, s.next = nil, l.head
	if l.head != nil {
		l.head.prev = s
	}
	l.head = s
	l.len++
}

func (l *slabList) remove(s *slab) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
	l.len--
}

// drain empties the list and appends its slabs to out.
func (l *slabList) drain(out []*slab) []*slab {
	for s := l.head; s != nil; {
		next := s.next
		s.prev, s.next = nil, nil
		out = append(out, s)
		s = next
	}
	l.head, l.len = nil, 0
	return out
}

// mmap maps size bytes of private anonymous memory, readable and writable.
// The kernel hands out zeroed pages on first touch.
func mmap(size int) ([]byte, error) {
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, fmt.Errorf("%w (%d bytes): %w", ErrMap, size, err)
	}
	return mem, nil
}

// fill writes PoisonByte over p.
func fill(p []byte) {
	if len(p) == 0 {
		return
	}
	p[0] = PoisonByte
	for i := 1; i < len(p); i *= 2 {
		copy(p[i:], p[:i])
	}
}
