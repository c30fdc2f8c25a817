package cachestore

import (
	"sync/atomic"

	"dedupcache/dedupbody"
)

// Entry is one stored response: plain data the proxy fills in before
// [Store.Set] and reads after [Store.Get]. It is meant to be held by pointer
// and never modified once stored; a replacement is a new Entry.
type Entry struct {
	// Key is the full cache key the entry was stored under. Store keys are
	// 64-bit hashes of it; readers compare Key to rule out a collision.
	Key string
	// Vary, on a variant-index entry, lists the request fields that select
	// the variant (empty on ordinary entries).
	Vary string
	// Header is a rendered header block shared through a dedupbody.Store.
	Header dedupbody.Ref
	// Body is the response body shared through a dedupbody.Store.
	Body dedupbody.Ref

	// Stored is when the response was received (unix nanoseconds).
	Stored int64
	// Date is the response's Date (unix seconds).
	Date int64
	// Status is the response status code.
	Status int32
	// Flags are the proxy's bits (revalidation rules and the like).
	Flags uint32
	// Lifetime, InitialAge, StaleRevalidate and StaleError are seconds:
	// the freshness lifetime, corrected initial age, and RFC 5861 windows.
	Lifetime, InitialAge, StaleRevalidate, StaleError int32

	cost     int64
	cause    atomic.Uint32
	released atomic.Bool
}

// ownBytes is what the entry costs without its refs' bytes.
func (e *Entry) ownBytes(overhead int64) int64 {
	return overhead + int64(len(e.Key)) + int64(len(e.Vary))
}

// Cost returns the bytes the entry was charged when stored.
func (e *Entry) Cost() int64 { return e.cost }

// Cause returns why the entry left the store (0 while it is stored).
func (e *Entry) Cause() ReleaseCause { return ReleaseCause(e.cause.Load()) }

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
