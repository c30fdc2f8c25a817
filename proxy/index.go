package proxy

import (
	"strings"
	"sync"

	"dedupcache/cachestore"
)

// keyIndex lists, for each primary key hash that has a Vary index, the
// hashes of its stored variants, so that invalidating a URL reaches every
// variant (RFC 9111 §4.4) without scanning the store.
type keyIndex struct {
	mu       sync.Mutex
	variants map[uint64]map[uint64]struct{}
}

func newKeyIndex() *keyIndex {
	return &keyIndex{variants: make(map[uint64]map[uint64]struct{})}
}

// addVariant records variant hash v under primary hash h.
func (x *keyIndex) addVariant(h, v uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	set := x.variants[h]
	if set == nil {
		set = make(map[uint64]struct{}, 2)
		x.variants[h] = set
	}
	set[v] = struct{}{}
}

// take removes and returns the variant hashes of primary hash h.
func (x *keyIndex) take(h uint64) []uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	set := x.variants[h]
	delete(x.variants, h)
	out := make([]uint64, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	return out
}

// released forgets a variant that left the store. It runs in the entry
// store's release callback: quick, no store calls.
func (x *keyIndex) released(e *cachestore.Entry, cause cachestore.ReleaseCause) {
	primary, _, isVariant := strings.Cut(e.Key, "\x00")
	if !isVariant || cause == cachestore.Replaced {
		return
	}
	h := keyHashString(e.Key)
	ph := primaryHash(primary)
	x.mu.Lock()
	defer x.mu.Unlock()
	if set := x.variants[ph]; set != nil {
		delete(set, h)
		if len(set) == 0 {
			delete(x.variants, ph)
		}
	}
}

// primaryHash hashes a primary key string "host uri".
func primaryHash(key string) uint64 {
	host, uri, _ := strings.Cut(key, " ")
	return keyHash(host, uri)
}
