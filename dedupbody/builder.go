package dedupbody

import "github.com/cespare/xxhash/v2"

// Builder accumulates a buffer as it streams in and hashes it on the way, so
// that storing it needs no second pass over the bytes. The zero Builder is
// not usable: make one with [NewBuilder]. A Builder is not safe for
// concurrent use.
type Builder struct {
	buf      []byte
	digest   xxhash.Digest
	limit    int
	hint     int // the size buf was allocated for by NewBuilder, or -1
	overflow bool
}

// NewBuilder returns a Builder that expects sizeHint bytes (negative or zero
// when unknown) and gives up keeping bytes once more than limit arrive.
func NewBuilder(sizeHint, limit int) *Builder {
	b := &Builder{limit: limit, hint: -1}
	if sizeHint > 0 && sizeHint <= limit {
		b.buf = Alloc(sizeHint)
		b.hint = sizeHint
	}
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
		b.buf = nil
		return len(p), nil
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

// Put stores the accumulated bytes in s and returns the reference (see
// [Store.Put]). A buffer that grew past its final length by more than an
// eighth is copied to an exact-size one first, so the store does not pay for
// growth slack. If the Builder overflowed, nothing is stored and Put
// returns the zero Ref. The Builder must not be used after Put.
func (b *Builder) Put(s *Store, aux func([]byte) (any, int64)) Ref {
	if b.overflow {
		return Ref{}
	}
	data := b.buf
	// A buffer allocated for exactly its final length is already as small as
	// the allocator makes it (its size class, or whole pages past 32 KiB,
	// which can exceed an eighth): copying it would buy nothing.
	if len(data) != b.hint && cap(data)-len(data) > len(data)/8 {
		data = append(Alloc(len(data)), data...)
	}
	b.buf = nil
	return s.Put(data, b.digest.Sum64(), aux)
}
