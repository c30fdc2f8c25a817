package proxy

import (
	"net/url"
	"slices"
	"strings"
	"sync"
)

// A purge keeps the responses of fetches already on their way out of the
// store: one of them may carry the content the purge removed. Only those
// the purge selects, though: a purge of one URL or tag used to spoil every
// fetch in flight, which under a steady stream of purges (a CMS purging on
// every edit) left a share of all misses unstored. purgeLog remembers what
// the last purges selected; a fetch that began before some of them stores
// its response unless one of those could have been meant for it.

// purgeLogSize is how many purges the log remembers. A fetch that began
// more purges ago than that stores nothing, as if every purge selected it.
const purgeLogSize = 256

// purgeRec is what one purge selected.
type purgeRec struct {
	gen      uint64
	all      bool
	urls     [][2]string // host ("" = any host) and request target, as purged
	prefixes []string
	tags     []string
}

// purgeLog is the ring of the last purges, by generation.
type purgeLog struct {
	mu   sync.Mutex
	recs [purgeLogSize]purgeRec
}

// beginPurge records r as the next purge and bumps p.purgeGen (under the log's
// lock, so that a fetch that sees the new generation finds the record).
func (p *Proxy) beginPurge(r purgeRec) {
	l := &p.purges
	l.mu.Lock()
	defer l.mu.Unlock()
	r.gen = p.purgeGen.Load() + 1
	l.recs[r.gen%purgeLogSize] = r
	p.purgeGen.Store(r.gen)
}

// purgeRecOf is the record of purge request r.
func purgeRecOf(r PurgeRequest) purgeRec {
	rec := purgeRec{all: r.All, prefixes: slices.Clone(r.Prefixes), tags: slices.Clone(r.Tags)}
	for _, raw := range r.URLs {
		if u, err := url.Parse(raw); err == nil {
			rec.urls = append(rec.urls, [2]string{strings.ToLower(u.Host), u.RequestURI()})
		}
	}
	for _, k := range r.Keys {
		if host, uri, ok := strings.Cut(k, " "); ok {
			rec.urls = append(rec.urls, [2]string{baseHost(host), uri})
		}
	}
	return rec
}

// purgedSince reports whether a purge after generation gen may have been
// meant for the response fill f fetched, which carries tags: its key's
// URL, a prefix of its target, one of its tags, or everything; or the
// purge is too old for the log to tell.
func (p *Proxy) purgedSince(gen uint64, f *fill, tags []string) bool {
	now := p.purgeGen.Load()
	if now == gen {
		return false
	}
	if now-gen > purgeLogSize {
		return true
	}
	host := baseHost(f.host)
	l := &p.purges
	l.mu.Lock()
	defer l.mu.Unlock()
	for g := gen + 1; g <= now; g++ {
		r := &l.recs[g%purgeLogSize]
		if r.gen != g || r.all {
			return true // overwritten meanwhile, or everything
		}
		for _, u := range r.urls {
			if (u[0] == "" || u[0] == host) && (u[1] == f.uri || p.keyedURI(host, u[1], nil) == f.uri) {
				return true
			}
		}
		for _, pre := range r.prefixes {
			if strings.HasPrefix(f.uri, pre) {
				return true
			}
		}
		for _, t := range r.tags {
			if slices.Contains(tags, t) {
				return true
			}
		}
	}
	return false
}
