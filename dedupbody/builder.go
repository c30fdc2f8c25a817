package dedupbody

import (
	"math/bits"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Builder accumulates a buffer as it streams in and hashes it on the way, so
// that storing it needs no second pass over the bytes. The zero Builder is
// not usable: make one with [NewBuilder]. A Builder is not safe for
// concurrent use.
//
// The buffer is scratch space from a pool: [Builder.Put] stores a copy
// only when the body is new ([Store.PutCopy]) and returns the scratch
// buffer to the pool, so a body that turns out to be a duplicate (the
// common case dedup is for) leaves no garbage behind. Stored bodies are
// never pooled: the pool only ever holds scratch buffers that no reader
// has seen.
type Builder struct {
	buf      []byte
	digest   xxhash.Digest
	limit    int
	overflow bool
}

// Scratch buffers come in power-of-two classes from 1 KiB to 1 MiB;
// larger bodies get a buffer of their own.
const (
	minScratchShift = 10
	maxScratchShift = 20
)

var scratch [maxScratchShift - minScratchShift + 1]sync.Pool

// scratchClass returns the pool index for a buffer of at least n bytes, or
// -1 when n is past the largest class.
func scratchClass(n int) int {
	if n <= 1<<minScratchShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxScratchShift {
		return -1
	}
	return shift - minScratchShift
}

// getScratch returns an empty buffer with room for at least n bytes.
func getScratch(n int) []byte {
	c := scratchClass(n)
	if c < 0 {
		return make([]byte, 0, n)
	}
	if p, ok := scratch[c].Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 1<<(c+minScratchShift))
}

// putScratch returns a buffer to its pool (if it is exactly a class size).
func putScratch(b []byte) {
	c := scratchClass(cap(b))
	if c < 0 || cap(b) != 1<<(c+minScratchShift) {
		return
	}
	b = b[:0]
	scratch[c].Put(&b)
}

// NewBuilder returns a Builder that expects sizeHint bytes (negative or zero
// when unknown) and gives up keeping bytes once more than limit arrive.
func NewBuilder(sizeHint, limit int) *Builder {
	b := &Builder{limit: limit}
	if sizeHint <= 0 || sizeHint > limit {
		sizeHint = min(limit, 1<<minScratchShift)
	}
	b.buf = getScratch(sizeHint)
	b.digest.Reset()
	return b
}

// Write appends p and hashes it. It never fails: past the limit it drops
// the buffer and only counts (see [Builder.Overflowed]).
func (b *Builder) Write(p []byte) (int, error) {
	if b.overflow {
		return len(p), nil
	}
	if len(b.buf)+len(p) > b.limit {
		b.overflow = true
		putScratch(b.buf)
		b.buf = nil
		return len(p), nil
	}
	if len(b.buf)+len(p) > cap(b.buf) {
		grown := getScratch(max(2*cap(b.buf), len(b.buf)+len(p)))
		grown = append(grown, b.buf...)
		putScratch(b.buf)
		b.buf = grown
	}
	b.buf = append(b.buf, p...)
	_, _ = b.digest.Write(p)
	return len(p), nil
}

// Len returns the bytes kept so far.
func (b *Builder) Len() int { return len(b.buf) }

// Sum returns the xxhash64 of the bytes written so far.
func (b *Builder) Sum() uint64 { return b.digest.Sum64() }

// Overflowed reports whether more than the limit arrived.
func (b *Builder) Overflowed() bool { return b.overflow }

// Put stores the accumulated bytes in s (a copy of exactly their size when
// they are new, see [Store.PutCopy]) and returns the reference. If the
// Builder overflowed, nothing is stored and Put returns the zero Ref. The
// Builder must not be used after Put.
func (b *Builder) Put(s *Store, aux func([]byte) (any, int64)) Ref {
	if b.overflow {
		return Ref{}
	}
	r := s.PutCopy(b.buf, b.digest.Sum64(), aux)
	b.Discard()
	return r
}

// Discard gives the scratch buffer back without storing anything. The
// Builder must not be used after Discard.
func (b *Builder) Discard() {
	putScratch(b.buf)
	b.buf = nil
}
