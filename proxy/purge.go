package proxy

import (
	"context"
	"net/url"
	"strings"
	"time"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
)

// PurgeResult is the JSON answer of /api/purge. FreedBytes counts the
// bodies that left memory by the time the purge returned: a body still used
// by another entry is not freed, and one a response being written is
// reading goes when that response ends.
type PurgeResult struct {
	PurgedEntries int   `json:"purged_entries"`
	FreedBytes    int64 `json:"freed_bytes"`
}

// PurgeRequest selects what [Proxy.Purge] removes: every URL, prefix and
// tag listed, or everything. Soft marks the entries stale instead of
// removing them, so that revalidation and stale-if-error still apply.
type PurgeRequest struct {
	URLs     []string `json:"url"`
	Prefixes []string `json:"prefix"`
	Tags     []string `json:"tag"`
	All      bool     `json:"all"`
	Soft     bool     `json:"soft"`
	// Keys are full cache keys ("host uri"), as the shared tier passes
	// purges between instances.
	Keys []string `json:"-"`
	// Local applies the purge here only: it came from the shared tier,
	// which has applied it already.
	Local bool `json:"-"`
}

// Purge carries out r. A URL that does not parse fails the whole request
// before anything is purged.
func (p *Proxy) Purge(r PurgeRequest) (PurgeResult, error) {
	for _, raw := range r.URLs {
		if _, err := url.Parse(raw); err != nil {
			return PurgeResult{}, err
		}
	}
	p.beginPurge(purgeRecOf(r)) // fetches already on their way store nothing it selects
	defer p.purgeShared(r)
	pg := p.newPurger()
	pg.soft = r.Soft
	if r.All {
		if !r.Soft {
			return p.PurgeAll(), nil
		}
		pg.each(func(string) bool { return true })
		return pg.result(), nil
	}
	for _, raw := range r.URLs {
		u, _ := url.Parse(raw)
		pg.url(u)
	}
	for _, k := range r.Keys {
		if host, uri, ok := strings.Cut(k, " "); ok {
			pg.key(host, uri)
		}
	}
	for _, prefix := range r.Prefixes {
		pg.each(func(uri string) bool { return strings.HasPrefix(uri, prefix) })
	}
	for _, tag := range r.Tags {
		for _, h := range p.index.taggedWith(tag) {
			pg.del(h)
		}
	}
	return pg.result(), nil
}

// purger collects the entries a purge removes (or softens) and the bodies
// they held.
type purger struct {
	p      *Proxy
	n      int
	soft   bool
	bodies map[*dedupbody.Body]struct{}
}

// del removes the entry under h, if any, remembering its body; a soft
// purge stores a stale copy instead.
func (pg *purger) del(h uint64) {
	e, ok := pg.p.store.Get(h)
	if !ok {
		return
	}
	if e.Body.Body() == nil {
		if !pg.soft {
			pg.p.store.Del(h) // a marker or a Vary index
		}
		return
	}
	pg.n++
	if pg.soft {
		pg.p.soften(h, e)
		return
	}
	pg.bodies[e.Body.Body()] = struct{}{}
	pg.p.store.Del(h) // releases the entry's refs before it returns
}

// url purges a URL's entry and its variants; without a host, on every host
// that has entries.
func (pg *purger) url(u *url.URL) {
	hosts := pg.p.index.hostForms(strings.ToLower(u.Host))
	if u.Host == "" {
		hosts = pg.p.index.knownHosts()
	}
	for _, host := range hosts {
		pg.key(host, pg.p.keyedURI(host, u.RequestURI(), nil))
	}
}

// key purges the entry of host and uri and its variants.
func (pg *purger) key(host, uri string) {
	h := keyHash(host, uri)
	for _, v := range pg.p.index.variantsOf(h, !pg.soft) {
		pg.del(v)
	}
	pg.del(h)
}

// each purges every entry whose request target matches.
func (pg *purger) each(match func(uri string) bool) {
	var hashes []uint64
	pg.p.store.Each(func(e *cachestore.Entry) bool {
		_, uri, _ := strings.Cut(e.Key, " ")
		if e.Body.Body() != nil && match(uri) {
			h, _, _ := entryHashes(e)
			hashes = append(hashes, h)
		}
		return true
	})
	for _, h := range hashes {
		pg.del(h)
	}
}

// soften replaces the entry e under h with a copy that is already stale
// (its age is past its lifetime), keeping it for revalidation and
// stale-if-error. The copy takes its own references to the same header
// block and body.
func (p *Proxy) soften(h uint64, e *cachestore.Entry) {
	if entryAge(e, p.now()) >= time.Duration(e.Lifetime)*time.Second || !e.Pin() {
		return // stale already, or gone
	}
	defer p.store.Unpin(e)
	ne := &cachestore.Entry{
		Key:             e.Key,
		Header:          p.headers.Put(e.Header.Bytes(), e.Header.Body().Hash(), parseBlock),
		Body:            p.bodies.Put(e.Body.Bytes(), e.Body.Body().Hash(), nil),
		Extra:           e.Extra, // immutable: shared
		Stored:          p.now().UnixNano(),
		Date:            e.Date,
		Status:          e.Status,
		Flags:           e.Flags &^ flagIndexed,
		StaleRevalidate: e.StaleRevalidate,
		StaleError:      e.StaleError,
	}
	ttl := p.keepFor(entryFreshness(ne), 0, ne)
	tags := p.index.tagsOf(e)
	primary, _, _ := strings.Cut(e.Key, "\x00")
	host, _, _ := strings.Cut(primary, " ")
	p.index.stored(h, primaryHash(primary), host, ne, tags)
	p.store.Set(h, ne, ttl)
	p.store.Wait()
}

// result counts the bodies that no entry uses any more.
func (pg *purger) result() PurgeResult {
	var freed int64
	for b := range pg.bodies {
		if b.Refs() == 0 {
			freed += b.Len()
		}
	}
	pg.p.purged.Add(int64(pg.n))
	return PurgeResult{PurgedEntries: pg.n, FreedBytes: freed}
}

func (p *Proxy) newPurger() *purger {
	return &purger{p: p, bodies: make(map[*dedupbody.Body]struct{})}
}

// PurgeURL removes the response stored for a URL with every Vary variant.
// A URL without a host ("/path?q") is purged on every host seen.
func (p *Proxy) PurgeURL(raw string) (PurgeResult, error) {
	return p.Purge(PurgeRequest{URLs: []string{raw}})
}

// PurgePrefix removes every stored response whose path and query start
// with prefix, on any host. It walks the store, a shard at a time.
func (p *Proxy) PurgePrefix(prefix string) PurgeResult {
	res, _ := p.Purge(PurgeRequest{Prefixes: []string{prefix}})
	return res
}

// PurgeTag removes every stored response carrying surrogate key tag,
// through the tag index: it touches only those entries.
func (p *Proxy) PurgeTag(tag string) PurgeResult {
	res, _ := p.Purge(PurgeRequest{Tags: []string{tag}})
	return res
}

// PurgeAll removes every stored response.
func (p *Proxy) PurgeAll() PurgeResult {
	before := p.bodies.Stats()
	n := p.store.Stats().WithBody
	p.store.Clear()
	after := p.bodies.Stats()
	p.purged.Add(n)
	return PurgeResult{PurgedEntries: int(n), FreedBytes: before.DataBytes - after.DataBytes}
}

// purgeShared passes a purge made here to the shared tier, URLs as full
// keys (a URL without a host on every host this instance has entries for).
func (p *Proxy) purgeShared(r PurgeRequest) {
	sh := p.cfg.Shared
	if sh == nil || r.Local {
		return
	}
	keys := r.Keys
	for _, raw := range r.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		hosts := p.index.hostForms(strings.ToLower(u.Host))
		if u.Host == "" {
			hosts = p.index.knownHosts()
		}
		for _, host := range hosts {
			keys = append(keys, keyString(host, p.keyedURI(host, u.RequestURI(), nil)))
		}
	}
	ctx, cancel := context.WithTimeout(p.ctx, sharedTimeout)
	defer cancel()
	if err := sh.Purge(ctx, PurgeRequest{Keys: keys, Prefixes: r.Prefixes, Tags: r.Tags, All: r.All, Soft: r.Soft}); err != nil {
		p.log.Warn("shared tier purge failed", "err", err)
	}
}
