// Package cachestore maps cache keys to entries (metadata plus references to
// a header block and a body in a [dedupbody.Store]) on top of ristretto, and
// keeps everything the entries hold under one byte budget.
//
// # Ownership
//
// Every [dedupbody.Ref] inside an [Entry] given to [Store.Set] belongs to the
// store from that call on, whatever happens next: it is released exactly once,
// when the entry leaves (eviction, admission rejection, TTL expiry, Del,
// overwrite, a Set dropped by ristretto's buffers, Clear, Close). Callers
// build a fresh Entry for every Set and never modify one after passing it in.
//
// # Accounting
//
// An entry costs [Config.EntryOverhead] + len(Key) + Extra.Size() plus the size
// of each of its refs that is charged (see package dedupbody): a body shared
// by n entries is charged to one of them. Bytes of bodies whose charged
// entry left while others still refer to them are uncharged; the store lowers
// ristretto's capacity by that amount, so that at every insertion
//
//	entry bytes + unique body and header bytes <= MaxMemory
//
// up to the slack documented on [Store.Stats].
package cachestore

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"dedupcache/dedupbody"
)

// DefaultEntryOverhead is the heap an entry costs beyond its key, its Extra
// and its refs' bytes in a store that is full and keeps replacing entries,
// which is where a cache spends its life: the Entry struct (96 B size
// class), ristretto's map slot and policy counters, and the slack those
// maps keep under churn (Go maps do not shrink: the slots of removed keys
// are reused, not returned), plus the key's rounding to its size class.
// TestChurnHeapIsBounded measures about 372 B (412 B per entry with a
// 40-byte key; 384 B before the Entry shrank from 112 to 96 B, which this
// constant keeps as its margin) and fails if this constant under-charges
// it; an entry in a store that has not churned takes about 206 B
// (TestEntryOverhead).
const DefaultEntryOverhead = 384

// ErrConfig reports an invalid [Config].
var ErrConfig = errors.New("cachestore: invalid config")

// Config configures a [Store].
type Config struct {
	// MaxMemory is the byte budget for entries and the bytes they charge.
	MaxMemory int64
	// ExpectedEntries sizes ristretto's admission counters (NumCounters is
	// set to about twice this). Default MaxMemory / 2048.
	ExpectedEntries int64
	// EntryOverhead is charged per entry on top of its key. Default
	// [DefaultEntryOverhead].
	EntryOverhead int64
	// Stores are the body stores the entries' refs come from. Their
	// uncharged bytes are taken off the capacity left for entries.
	Stores []*dedupbody.Store
	// OnRelease, if set, is called once for every entry that leaves, after
	// its refs were released, with the cause.
	//
	// WARNING: it runs on ristretto's policy goroutine or on the goroutine
	// calling Set, Del, Clear or Close. It must be quick, must not block,
	// and must not call the Store.
	OnRelease func(e *Entry, cause ReleaseCause)
	// Slack, if set, returns bytes the body stores hold beyond what their
	// bodies are charged (an arena's free slots and partly used slabs);
	// they are taken off the capacity like uncharged bytes. It is called
	// on every release: one or two atomic loads.
	Slack func() int64
	// Hash returns the key hash an entry was stored under (what the
	// caller gave Set). The store's sweep needs it to remove entries whose
	// TTL has passed; without it they are invisible to Get but stay until
	// evicted, replaced or deleted.
	Hash func(e *Entry) uint64
}

// Store is the entry store. All methods may be called concurrently.
type Store struct {
	cache     *ristretto.Cache[uint64, *Entry]
	max       int64
	overhead  int64
	stores    []*dedupbody.Store
	onRelease func(*Entry, ReleaseCause)
	slack     func() int64
	hash      func(*Entry) uint64

	stop     chan struct{} // closed by Close: the sweep goroutine returns
	sweeping sync.WaitGroup
	expiring atomic.Int64 // stored entries with a TTL

	entries    atomic.Int64
	withBody   atomic.Int64
	entryBytes atomic.Int64
	sets       atomic.Int64
	causes     [numCauses]atomic.Int64
	doubleRel  atomic.Int64
	deferred   atomic.Int64 // entries released while pinned, refs not yet released
	clearing   atomic.Int32 // > 0 while Clear or Close drains ristretto
}

// New returns an empty Store. Close it to stop ristretto's goroutines and
// release every entry.
func New(cfg Config) (*Store, error) {
	if cfg.MaxMemory <= 0 {
		return nil, errors.Join(ErrConfig, errors.New("cachestore: MaxMemory must be positive"))
	}
	if cfg.EntryOverhead <= 0 {
		cfg.EntryOverhead = DefaultEntryOverhead
	}
	if cfg.ExpectedEntries <= 0 {
		cfg.ExpectedEntries = max(cfg.MaxMemory/2048, 1024)
	}
	s := &Store{
		max:       cfg.MaxMemory,
		overhead:  cfg.EntryOverhead,
		stores:    cfg.Stores,
		onRelease: cfg.OnRelease,
		slack:     cfg.Slack,
		hash:      cfg.Hash,
		stop:      make(chan struct{}),
	}
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *Entry]{
		NumCounters:        2 * cfg.ExpectedEntries,
		MaxCost:            cfg.MaxMemory,
		BufferItems:        64,
		IgnoreInternalCost: true,
		// Keys are already 64-bit hashes; the entry holds the full key,
		// which the caller compares (see Entry.Key).
		KeyToHash: func(k uint64) (uint64, uint64) { return k, 0 },
		OnEvict:   s.onEvict,
		OnReject:  func(it *ristretto.Item[*Entry]) { s.mark(it.Value, Rejected) },
		OnExit:    s.onExit,
		// Called under ristretto's shard lock just before an overwrite
		// replaces prev (OnExit(prev) follows, synchronously in Set).
		ShouldUpdate: func(_, prev *Entry) bool {
			s.mark(prev, Replaced)
			return true
		},
	})
	if err != nil {
		return nil, errors.Join(ErrConfig, err)
	}
	s.cache = c
	if s.hash != nil {
		s.sweeping.Add(1)
		go s.sweep()
	}
	return s, nil
}

// sweepEvery is how often the sweep looks for expired entries when the
// store holds few; it walks every entry, so with more than sweepBatch
// entries it waits proportionally longer (a million: 10 s).
const (
	sweepEvery = 2500 * time.Millisecond
	sweepBatch = 250_000
)

// sweep removes entries whose TTL has passed until Close. TTLs are kept in
// the entries rather than given to ristretto: ristretto files every TTL'd
// key in a per-interval map that a removal (eviction, overwrite, Del) does
// not shrink, so a full cache with long TTLs grew its heap with every
// insertion until the TTLs passed (BENCHMARKS.md, issue 12).
func (s *Store) sweep() {
	defer s.sweeping.Done()
	wait := sweepEvery
	var expired []*Entry
	for {
		select {
		case <-s.stop:
			return
		case <-time.After(wait):
		}
		if s.expiring.Load() == 0 {
			continue
		}
		now := time.Now()
		expired = expired[:0]
		s.cache.IterValues(func(e *Entry) bool {
			if e.expiredAt(now) {
				expired = append(expired, e)
			}
			return false
		})
		for _, e := range expired {
			if e.state.Load()&releasedBit != 0 {
				continue // left meanwhile
			}
			// A Set for the same key between the walk and this Del is
			// removed too: one more miss, nothing served wrong.
			s.mark(e, Expired)
			s.cache.Del(s.hash(e))
		}
		clear(expired)
		if len(expired) > 4096 {
			expired = nil
		}
		wait = sweepEvery * time.Duration(max(1, s.entries.Load()/sweepBatch))
	}
}

// Get returns the entry stored under the key hash h, unless its TTL has
// passed. The entry is read-only and carries no reference: a caller that
// reads its header block or body pins it first ([Entry.Pin]). The caller
// must compare Entry.Key with the key it hashed. Get does not allocate.
func (s *Store) Get(h uint64) (*Entry, bool) {
	e, ok := s.cache.Get(h)
	if ok && e.expires != 0 && e.expiredAt(time.Now()) {
		return nil, false
	}
	return e, ok
}

// Set stores e under the key hash h for ttl (0: until evicted; a TTL is
// rounded up to whole seconds, and a negative one is a second at most)
// and takes ownership of its refs (see the package doc). Once the TTL has
// passed, Get misses and the sweep releases the entry (see
// [Config.Hash]). It reports whether the
// entry was handed to ristretto; false means it was released already.
// Admission may still be refused later, and then e is released then.
func (s *Store) Set(h uint64, e *Entry, ttl time.Duration) bool {
	cost := e.ownBytes(s.overhead) + e.Header.ChargedSize() + e.Body.ChargedSize()
	e.setCost(cost)
	s.entries.Add(1)
	if e.Body.Body() != nil {
		s.withBody.Add(1)
	}
	s.entryBytes.Add(e.ownBytes(s.overhead))
	s.sets.Add(1)
	s.updateCapacity()
	if ttl != 0 {
		// Whole seconds, rounded up: the entry lives at least ttl (at
		// most a second more) and Get stops returning it after that.
		e.expires = uint32(min(max(time.Now().Add(max(ttl, time.Nanosecond)).Add(time.Second-1).Unix(), 1), 1<<32-1))
		s.expiring.Add(1)
	}
	if !s.cache.SetWithTTL(h, e, cost, 0) {
		// Dropped by ristretto's full set buffer (or the store is closed):
		// no callback will ever fire for e.
		s.mark(e, Dropped)
		s.onExit(e)
		return false
	}
	return true
}

// Del removes the entry under h, if any. The removal is visible to Get at once.
// A Set of h still in ristretto's buffer is removed once it is applied.
func (s *Store) Del(h uint64) {
	// No Get to mark the entry: it would miss an expired entry not yet
	// cleaned up and a Set not yet applied, and would count as an access in
	// the admission policy. Every release without a cause is a deletion (see
	// onExit).
	s.cache.Del(h)
}

// Wait blocks until every Set so far has been applied (admitted or
// rejected). Tests use it for read-your-writes.
func (s *Store) Wait() { s.cache.Wait() }

// Clear releases every entry, including Sets not yet applied.
func (s *Store) Clear() {
	s.clearing.Add(1)
	defer s.clearing.Add(-1)
	s.cache.Clear()
}

// Close releases every entry and stops ristretto's goroutines. The Store
// must not be used afterwards (Set returns false, Get misses).
func (s *Store) Close() {
	s.clearing.Add(1)
	defer s.clearing.Add(-1)
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.sweeping.Wait()
	s.cache.Close()
}

// Each calls fn for stored entries until fn returns false. The set visited
// is a snapshot of no particular moment. fn must not call the Store.
func (s *Store) Each(fn func(e *Entry) bool) {
	s.cache.IterValues(func(e *Entry) bool { return !fn(e) })
}

func (s *Store) mark(e *Entry, c ReleaseCause) {
	if e != nil {
		e.markCause(c)
	}
}

func (s *Store) onEvict(it *ristretto.Item[*Entry]) {
	switch {
	// Clear and Close report stored items with cost 0 (ours are never 0),
	// and the Sets they drain from the buffer with their own cost. An
	// eviction or TTL cleanup that was running when Clear began may be
	// counted as cleared too.
	case it.Cost == 0 || s.clearing.Load() > 0:
		s.mark(it.Value, Cleared)
	case it.Value != nil && it.Value.expires != 0 && it.Value.expiredAt(time.Now()):
		s.mark(it.Value, Expired) // evicted after its TTL, before the sweep
	default:
		s.mark(it.Value, Evicted)
	}
}

// onExit releases an entry's refs. ristretto calls it exactly once for every
// value it took (and with nil for deletions, which carry no value). Every
// path but a deletion marks the entry first: OnEvict, OnReject,
// ShouldUpdate (overwrite) and Set (dropped).
func (s *Store) onExit(e *Entry) {
	if e == nil {
		return
	}
	ok, pinned := e.markReleased()
	if !ok {
		s.doubleRel.Add(1)
		return
	}
	// Only Del reaches OnExit without a cause: synchronously for a stored
	// entry, or from ristretto's goroutine for a Set applied after the Del.
	s.mark(e, Deleted)
	cause := e.Cause()
	if pinned {
		s.deferred.Add(1) // the last Unpin releases the refs
	} else {
		e.Header.Release()
		e.Body.Release()
	}
	s.entries.Add(-1)
	if e.expires != 0 {
		s.expiring.Add(-1)
	}
	if e.Body.Body() != nil {
		s.withBody.Add(-1)
	}
	s.entryBytes.Add(-e.ownBytes(s.overhead))
	s.causes[cause].Add(1)
	s.updateCapacity()
	if s.onRelease != nil {
		s.onRelease(e, cause)
	}
}

// Unpin ends a pin taken with [Entry.Pin]. The last Unpin of an entry that
// left the store meanwhile releases its header block and body.
func (s *Store) Unpin(e *Entry) {
	v := e.state.Add(^uint64(pinUnit - 1)) // minus one pin
	if v&pinMask == pinMask {
		panic("cachestore: Unpin without Pin")
	}
	if v&releasedBit != 0 && v&pinMask == 0 {
		e.Header.Release()
		e.Body.Release()
		s.deferred.Add(-1)
		s.updateCapacity()
	}
}

// updateCapacity gives ristretto what the budget leaves once uncharged
// bytes are taken off.
func (s *Store) updateCapacity() {
	c := s.max
	for _, b := range s.stores {
		c -= b.UnchargedBytes()
	}
	if s.slack != nil {
		c -= s.slack()
	}
	s.cache.UpdateMaxCost(max(c, 1))
}

// Stats is a snapshot of the store's counters.
//
// MemoryBytes = EntryBytes + the unique bytes of the body stores. It stays
// within MaxMemory at every insertion, plus a slack: entries in flight in
// ristretto's set buffer are counted here before ristretto counts them, and
// an overwrite with a larger entry does not evict until the next insertion.
type Stats struct {
	Entries        int64 // entries handed to ristretto and not yet released
	WithBody       int64 // those of them that hold a body ref
	EntryBytes     int64 // overhead + key + vary bytes of those entries
	Sets           int64 // Set calls
	Released       [numCauses]int64
	DoubleReleases int64 // always 0 unless ristretto broke its contract
	Pinned         int64 // entries that left while pinned and still hold their refs
	Capacity       int64 // ristretto's current MaxCost
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Entries:        s.entries.Load(),
		WithBody:       s.withBody.Load(),
		EntryBytes:     s.entryBytes.Load(),
		Sets:           s.sets.Load(),
		DoubleReleases: s.doubleRel.Load(),
		Pinned:         s.deferred.Load(),
		Capacity:       s.cache.MaxCost(),
	}
	for i := range s.causes {
		st.Released[i] = s.causes[i].Load()
	}
	return st
}

// MaxMemory returns the configured budget.
func (s *Store) MaxMemory() int64 { return s.max }
