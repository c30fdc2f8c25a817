package cachestore

import (
	"sync/atomic"
	"time"

	"dedupcache/dedupbody"
)

// Entry is one stored response: plain data the proxy fills in before
// [Store.Set] and reads after [Store.Get]. It is meant to be held by pointer
// and never modified once stored; a replacement is a new Entry.
type Entry struct {
	// Key is the full cache key the entry was stored under. Store keys are
	// 64-bit hashes of it; readers compare Key to rule out a collision.
	Key string
	// Header is a rendered header block shared through a dedupbody.Store.
	Header dedupbody.Ref
	// Body is the response body shared through a dedupbody.Store.
	Body dedupbody.Ref
	// Extra is what the user of the store keeps for this entry alone,
	// beside the shared header block and body (nil: nothing). It is
	// immutable once stored and charged at its Size.
	Extra Extra

	// Stored is when the response was received (unix nanoseconds).
	Stored int64
	// Date is the response's Date (unix seconds).
	Date int64
	// Status is the response status code.
	Status int16
	// Flags are the proxy's bits (revalidation rules and the like).
	Flags uint16
	// expires is when Get stops returning the entry and the store's sweep
	// releases it: unix seconds, rounded up (0: never). See [Store.Set].
	expires uint32
	// Lifetime, InitialAge, StaleRevalidate and StaleError are seconds:
	// the freshness lifetime, corrected initial age, and RFC 5861 windows.
	Lifetime, InitialAge, StaleRevalidate, StaleError int32

	// state packs what the store keeps about the entry into one word, so
	// that Entry fits the 96-byte size class (with one-word refs, see
	// dedupbody.Ref; TestEntrySize): bits 0-3 the release cause, bit 4
	// released, bits 8-27 the pins, bits 28-63 the cost.
	state atomic.Uint64
}

const (
	causeMask   = 1<<4 - 1
	releasedBit = 1 << 4
	pinShift    = 8
	pinUnit     = 1 << pinShift
	pinMask     = (1<<20 - 1) << pinShift
	costShift   = 28
)

// Pin keeps the entry's header block and body valid until [Store.Unpin]:
// their references are not released while the entry is pinned, even if it
// leaves the store meanwhile (they are released at the last Unpin). A
// reader pins an entry it got from [Store.Get] before it reads the bytes,
// and unpins it once it is done with them (a hit: once the response is
// written). Pin reports false if the entry has left the store already: its
// bytes may be gone, and the caller must not read them.
func (e *Entry) Pin() bool {
	for {
		v := e.state.Load()
		if v&releasedBit != 0 {
			return false
		}
		if v&pinMask == pinMask {
			panic("cachestore: more than 2^20 pins on one entry")
		}
		if e.state.CompareAndSwap(v, v+pinUnit) {
			return true
		}
	}
}

// Pins returns the number of pins held (a snapshot, for tests and
// diagnostics).
func (e *Entry) Pins() int { return int(e.state.Load() & pinMask >> pinShift) }

// setCost records the cost, keeping the cause, released and pin bits (a
// caller breaking the one-Set-per-Entry rule must still be counted as a
// double release, not have its flags wiped).
func (e *Entry) setCost(c int64) {
	for {
		v := e.state.Load()
		if e.state.CompareAndSwap(v, uint64(c)<<costShift|v&(1<<costShift-1)) {
			return
		}
	}
}

// markCause records c as the release cause unless one is recorded.
func (e *Entry) markCause(c ReleaseCause) {
	for {
		v := e.state.Load()
		if v&causeMask != 0 || e.state.CompareAndSwap(v, v|uint64(c)) {
			return
		}
	}
}

// markReleased sets the released bit; it reports false if it was set,
// and whether the entry was pinned at that moment (then the last Unpin
// releases its refs).
func (e *Entry) markReleased() (ok, pinned bool) {
	for {
		v := e.state.Load()
		if v&releasedBit != 0 {
			return false, false
		}
		if e.state.CompareAndSwap(v, v|releasedBit) {
			return true, v&pinMask != 0
		}
	}
}

// ownBytes is what the entry costs without its refs' bytes.
func (e *Entry) ownBytes(overhead int64) int64 {
	n := overhead + int64(len(e.Key))
	if e.Extra != nil {
		n += e.Extra.Size()
	}
	return n
}

// Extra is per-entry data (see [Entry.Extra]).
type Extra interface {
	// Size is the heap the value takes, charged to its entry.
	Size() int64
}

// Cost returns the bytes the entry was charged when stored.
func (e *Entry) Cost() int64 { return int64(e.state.Load() >> costShift) }

// Cause returns why the entry left the store (0 while it is stored).
func (e *Entry) Cause() ReleaseCause { return ReleaseCause(e.state.Load() & causeMask) }

// ReleaseCause says why an entry left the store.
type ReleaseCause uint8

// The causes. Dropped: ristretto's set buffer was full, so Set returned false.
const (
	_ ReleaseCause = iota
	Evicted
	Rejected
	Expired
	Deleted
	Replaced
	Cleared
	Dropped
	numCauses
)

var causeNames = [numCauses]string{"", "evicted", "rejected", "expired", "deleted", "replaced", "cleared", "dropped"}

// String returns the cause as a metric label value.
func (c ReleaseCause) String() string {
	if c < numCauses {
		return causeNames[c]
	}
	return "unknown"
}

// Causes lists every cause, for metrics.
func Causes() []ReleaseCause {
	return []ReleaseCause{Evicted, Rejected, Expired, Deleted, Replaced, Cleared, Dropped}
}

// isReleased reports whether the store released the entry's refs.
func (e *Entry) isReleased() bool { return e.state.Load()&releasedBit != 0 }

// Expires returns when the entry's TTL passes, in unix seconds (0: it has
// none): what a snapshot keeps to give the entry the rest of its TTL.
func (e *Entry) Expires() int64 { return int64(e.expires) }

// expiredAt reports whether the entry's TTL (see [Store.Set]) has passed at
// now.
func (e *Entry) expiredAt(now time.Time) bool {
	return e.expires != 0 && now.Unix() >= int64(e.expires)
}
