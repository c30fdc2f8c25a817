package proxy

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
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

// handlePurge serves POST /api/purge?url=|prefix=|tag=|all=1.
func (p *Proxy) handlePurge(w http.ResponseWriter, r *http.Request) {
	if !p.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dedupcache admin"`)
		http.Error(w, "admin token required", http.StatusUnauthorized)
		return
	}
	q := r.URL.Query()
	var res PurgeResult
	switch {
	case q.Get("url") != "":
		var err error
		if res, err = p.PurgeURL(q.Get("url")); err != nil {
			http.Error(w, "bad url: "+err.Error(), http.StatusBadRequest)
			return
		}
	case q.Get("prefix") != "":
		res = p.PurgePrefix(q.Get("prefix"))
	case q.Get("tag") != "":
		res = p.PurgeTag(q.Get("tag"))
	case q.Get("all") == "1" || q.Get("all") == "true":
		res = p.PurgeAll()
	default:
		http.Error(w, "want one of url=, prefix=, tag= or all=1", http.StatusBadRequest)
		return
	}
	p.log.Info("purge", "query", r.URL.RawQuery, "purged_entries", res.PurgedEntries, "freed_bytes", res.FreedBytes)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(res)
}

// authorized checks the bearer token of a mutating admin request.
func (p *Proxy) authorized(r *http.Request) bool {
	if p.live().AdminToken == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(p.live().AdminToken)) == 1
}
