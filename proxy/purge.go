package proxy

import (
	"net/url"
	"strings"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
)

// PurgeResult is the JSON answer of /api/purge. FreedBytes counts the
// bodies that left memory: a body still used by another entry is not freed.
type PurgeResult struct {
	PurgedEntries int   `json:"purged_entries"`
	FreedBytes    int64 `json:"freed_bytes"`
}

// purger collects the entries a purge removes and the bodies they held.
type purger struct {
	p      *Proxy
	n      int
	bodies map[*dedupbody.Body]struct{}
}

// del removes the entry under h, if any, remembering its body.
func (pg *purger) del(h uint64) {
	e, ok := pg.p.store.Get(h)
	if !ok {
		return
	}
	if b := e.Body.Body(); b != nil {
		pg.bodies[b] = struct{}{}
		pg.n++
	}
	pg.p.store.Del(h) // releases the entry's refs before it returns
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
	u, err := url.Parse(raw)
	if err != nil {
		return PurgeResult{}, err
	}
	hosts := []string{strings.ToLower(u.Host)}
	if u.Host == "" {
		hosts = p.index.knownHosts()
	}
	uri := u.RequestURI()
	pg := p.newPurger()
	for _, host := range hosts {
		h := keyHash(host, uri)
		for _, v := range p.index.takeVariants(h) {
			pg.del(v)
		}
		pg.del(h)
	}
	return pg.result(), nil
}

// PurgePrefix removes every stored response whose path and query start
// with prefix, on any host. It walks the store, a shard at a time.
func (p *Proxy) PurgePrefix(prefix string) PurgeResult {
	var hashes []uint64
	p.store.Each(func(e *cachestore.Entry) bool {
		_, uri, _ := strings.Cut(e.Key, " ")
		if strings.HasPrefix(uri, prefix) {
			if primary, _, isVariant := strings.Cut(e.Key, "\x00"); isVariant {
				hashes = append(hashes, keyHashString(e.Key))
			} else {
				hashes = append(hashes, primaryHash(primary))
			}
		}
		return true
	})
	pg := p.newPurger()
	for _, h := range hashes {
		pg.del(h)
	}
	return pg.result()
}

// PurgeTag removes every stored response carrying surrogate key tag,
// through the tag index: it touches only those entries.
func (p *Proxy) PurgeTag(tag string) PurgeResult {
	pg := p.newPurger()
	for _, h := range p.index.taggedWith(tag) {
		pg.del(h)
	}
	return pg.result()
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
