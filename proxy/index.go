package proxy

import (
	"strings"
	"sync"

	"dedupcache/cachestore"
)

// keyIndex is what invalidation and purges need that the entry store
// cannot answer without a scan:
//   - for each primary key with a Vary index, its stored variants, so that
//     invalidating a URL reaches every variant (RFC 9111 §4.4);
//   - for each surrogate key (tag), the entries carrying it, so that purging
//     a tag touches only those;
//   - the hosts of stored entries, each with the number of entries under
//     it, so that a purge of a path reaches it on every host; a host leaves
//     with its last entry, so clients cannot grow the set beyond the store.
//
// Entries without Vary or tags cost it nothing. It is updated when entries
// are stored and when they leave the store (release callback).
type keyIndex struct {
	mu       sync.Mutex
	variants map[uint64]map[uint64]*cachestore.Entry // primary hash -> variant hash -> the entry indexed
	tags     map[string]map[uint64]struct{}          // tag -> entry hashes
	tagged   map[uint64]tagged                       // entry hash -> its entry and tags
	hosts    map[string]int                          // host -> entries stored under it
	contexts int                                     // hosts with a forwarded context
}

// tagged is a tagged entry as the index knows it.
type tagged struct {
	e    *cachestore.Entry
	tags []string
}

func newKeyIndex() *keyIndex {
	return &keyIndex{
		variants: make(map[uint64]map[uint64]*cachestore.Entry),
		tags:     make(map[string]map[uint64]struct{}),
		tagged:   make(map[uint64]tagged),
		hosts:    make(map[string]int),
	}
}

// stored records an entry stored under hash h: its host, the variant link
// to primary hash ph (when h != ph), and its tags.
func (x *keyIndex) stored(h, ph uint64, host string, e *cachestore.Entry, tags []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e.Flags |= flagIndexed
	if x.hosts[host]++; x.hosts[host] == 1 && strings.Contains(host, fwdSep) {
		x.contexts++
	}
	if h != ph {
		set := x.variants[ph]
		if set == nil {
			set = make(map[uint64]*cachestore.Entry, 2)
			x.variants[ph] = set
		}
		set[h] = e
	}
	x.untagLocked(h)
	if len(tags) > 0 {
		x.tagged[h] = tagged{e: e, tags: tags}
		for _, t := range tags {
			set := x.tags[t]
			if set == nil {
				set = make(map[uint64]struct{})
				x.tags[t] = set
			}
			set[h] = struct{}{}
		}
	}
}

// untagLocked forgets the tags of the entry under h. x.mu must be held.
func (x *keyIndex) untagLocked(h uint64) {
	old, ok := x.tagged[h]
	if !ok {
		return
	}
	delete(x.tagged, h)
	for _, t := range old.tags {
		if set := x.tags[t]; set != nil {
			delete(set, h)
			if len(set) == 0 {
				delete(x.tags, t)
			}
		}
	}
}

// takeVariants removes and returns the variant hashes of primary hash h.
func (x *keyIndex) takeVariants(h uint64) []uint64 { return x.variantsOf(h, true) }

// variantsOf returns the variant hashes of primary hash h, removing them
// from the index if take.
func (x *keyIndex) variantsOf(h uint64, take bool) []uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	set := x.variants[h]
	if take {
		delete(x.variants, h)
	}
	out := make([]uint64, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	return out
}

// taggedWith returns the hashes of the entries carrying tag.
func (x *keyIndex) taggedWith(tag string) []uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	set := x.tags[tag]
	out := make([]uint64, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	return out
}

// tagsOf returns the tags indexed for entry e.
func (x *keyIndex) tagsOf(e *cachestore.Entry) []string {
	h, _, _ := entryHashes(e)
	x.mu.Lock()
	defer x.mu.Unlock()
	if t, ok := x.tagged[h]; ok && t.e == e {
		return t.tags
	}
	return nil
}

// hostForms returns host and the key host parts stored for it in other
// forwarded contexts (host + fwdSep + ..., see Proxy.keyHost).
func (x *keyIndex) hostForms(host string) []string {
	out := []string{host}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.contexts == 0 {
		return out
	}
	for h := range x.hosts {
		if len(h) > len(host) && h[len(host)] == fwdSep[0] && h[:len(host)] == host {
			out = append(out, h)
		}
	}
	return out
}

// knownHosts returns the hosts seen.
func (x *keyIndex) knownHosts() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]string, 0, len(x.hosts))
	for h := range x.hosts {
		out = append(out, h)
	}
	return out
}

// released forgets an entry that left the store. It runs in the entry
// store's release callback: quick, no store calls. An entry replaced by a
// newer one under the same hash is left to stored(), which already ran or
// runs next for the newer entry.
func (x *keyIndex) released(e *cachestore.Entry, cause cachestore.ReleaseCause) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e.Flags&flagIndexed != 0 {
		// Every entry stored through stored() is released exactly once,
		// replaced ones included.
		host, _, _ := strings.Cut(e.Key, " ")
		if x.hosts[host]--; x.hosts[host] <= 0 {
			delete(x.hosts, host)
			if strings.Contains(host, fwdSep) {
				x.contexts--
			}
		}
	}
	if cause == cachestore.Replaced {
		return
	}
	h, ph, isVariant := entryHashes(e)
	if t, ok := x.tagged[h]; ok && t.e == e {
		x.untagLocked(h)
	}
	if !isVariant {
		return
	}
	// Only if the link is still this entry's: a newer variant stored
	// under the same hash (stored() runs before its Set) keeps its link.
	if set := x.variants[ph]; set != nil && set[h] == e {
		delete(set, h)
		if len(set) == 0 {
			delete(x.variants, ph)
		}
	}
}
