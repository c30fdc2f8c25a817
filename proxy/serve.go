package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"dedupcache/cachestore"
	"dedupcache/policy"
	"dedupcache/rules"
)

// serve answers one proxied request: from the cache when it holds a usable
// response, from a fetch (miss) otherwise, or straight from the upstream
// when the request bypasses the cache.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	live := p.live() // one snapshot of the reloadable settings per request
	switch {
	case p.refuseHost(w, r, live): // hosts.go: 421 before anything else
		return
	case r.Method == http.MethodConnect:
		// A reverse proxy for one upstream does not open tunnels.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		http.Error(w, "CONNECT is not supported", http.StatusMethodNotAllowed)
		return
	case len(r.Host) > maxHostLen:
		http.Error(w, "Host too long", http.StatusBadRequest)
		return
	case r.Method == "PURGE" && live.PurgeToken != "":
		p.servePurge(w, r, live.PurgeToken)
		return
	case isUpgrade(r):
		p.forward(w, r, &fill{status: StatusBypass, fwd: "request", detail: "upgrade"})
		return
	case p.unkeyedBypass(r): // unkeyed.go
		p.forward(w, r, &fill{status: StatusBypass, fwd: "request", detail: detailUnkeyed})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		var ok bool
		if r, ok = p.cacheablePOST(r); !ok {
			p.forward(w, r, &fill{status: StatusBypass, fwd: "method"})
			return
		}
	} else if r.ContentLength != 0 {
		// A body on GET or HEAD is not part of the key, yet some origins
		// answer by it: bypass the cache, body and all.
		p.forward(w, r, &fill{status: StatusBypass, fwd: "request", detail: "request-body"})
		return
	}
	host, uri := p.requestKey(r)
	rule, uri := requestRule(live.Rules, r.Method, host, uri, r.Header)
	if rule != nil && rule.Bypass {
		p.forward(w, r, &fill{status: StatusBypass, fwd: "request", detail: "rule:" + rule.String()})
		return
	}
	ruleName := ""
	if rule != nil {
		ruleName = rule.String()
	}
	h := keyHash(host, uri)
	if live.DebugHeaders {
		w.Header()["X-Cache-Key"] = []string{printableKey(keyString(host, uri))}
	}
	e, fwd := p.lookup(r.Header, host, uri, h)
	if e != nil {
		// Pinned while this request uses it (served, revalidated): its
		// bytes stay until then, even if it is evicted meanwhile.
		if !e.Pin() {
			e, fwd = nil, "uri-miss" // evicted since the lookup
		} else {
			defer p.store.Unpin(e)
		}
	}
	req := noDirectives
	hasDirectives := len(r.Header["Cache-Control"]) > 0 || len(r.Header["Pragma"]) > 0
	if hasDirectives {
		req = policy.ParseRequest(r.Header)
	}
	var stale *cachestore.Entry
	if e != nil {
		if e.Flags&flagHitForMiss != 0 {
			p.missAlone(w, r, &fill{status: StatusMiss, fwd: "uri-miss", detail: "hit-for-miss", host: host, uri: uri, hash: h, req: req, rule: ruleName})
			return
		}
		now := p.now()
		age := entryAge(e, now)
		fr := entryFreshness(e)
		if !hasDirectives && age < fr.Lifetime && !fr.NoCache {
			p.serveEntry(w, r, e, age, hitValue(fr.Lifetime-age), StatusHit) // the common hit
			return
		}
		action, why := policy.Evaluate(req, fr, age)
		switch action {
		case policy.Serve:
			cs := hitValue(fr.Lifetime - age)
			if age >= fr.Lifetime {
				cs = []string{cacheName + "; hit; ttl=" + strconv.FormatInt(int64((fr.Lifetime-age)/time.Second), 10) + "; detail=max-stale"}
			}
			p.serveEntry(w, r, e, age, cs, StatusHit)
			return
		case policy.ServeStale:
			p.serveEntry(w, r, e, age, []string{cacheName + "; hit; ttl=" + strconv.FormatInt(int64((fr.Lifetime-age)/time.Second), 10) + "; detail=stale-while-revalidate"}, StatusStale)
			if !isCachedPOST(r) { // a POST's refresh would need its body kept
				p.refresh(r, e, &fill{host: host, uri: uri, hash: h, req: req, rule: ruleName})
			}
			return
		}
		stale = e
		fwd = "stale"
		switch why {
		case policy.ReasonRequestNoCache, policy.ReasonRequestMaxAge, policy.ReasonRequestMinFresh:
			if age < fr.Lifetime {
				fwd = "request" // RFC 9211 §2.2: fresh, but the request did not allow it
			}
		}
	}
	f := &fill{status: StatusMiss, fwd: fwd, host: host, uri: uri, hash: h, stale: stale, req: req, rule: ruleName}
	if hasDirectives && req.CC.OnlyIfCached {
		// RFC 9111 §5.2.1.7: nothing usable is stored.
		p.counts[StatusMiss].Add(1)
		w.Header()["X-Cache"] = xCache[StatusMiss]
		w.Header().Set("Cache-Status", cacheName+"; detail=only-if-cached") // nothing went forward
		http.Error(w, "not cached (only-if-cached)", http.StatusGatewayTimeout)
		return
	}
	if hasDirectives && req.CC.NoStore {
		// RFC 9111 §5.2.1.5: store no part of this request or of any
		// response to it, so a stale entry is not revalidated (a 304
		// would update it) but bypassed.
		f.noStore, f.stale = true, nil
		if stale == nil {
			f.fwd = "request"
		}
		p.forward(w, r, f)
		return
	}
	if body, ok := r.Context().Value(postKey{}).(postBody); ok {
		f.post, f.postBody = true, body.body
	}
	p.miss(w, r, f)
}

// requestRule returns the first rule matching a request (nil: none) and
// the key's uri as that rule shapes it. Both listeners key requests with it.
func requestRule(rs *rules.Set, method, host, uri string, h policy.Fields) (*rules.Rule, string) {
	if rs.Len() == 0 {
		return nil, uri
	}
	if method == http.MethodHead {
		method = http.MethodGet // a HEAD is answered from the GET
	}
	rule := rs.Request(baseHost(host), uriPath(uri), method)
	if rule != nil && !rule.Bypass && rule.Key != nil {
		uri = shapeKey(rule.Key, uri, h)
	}
	return rule, uri
}

// maxHostLen bounds the Host of a request (a DNS name is at most 253
// characters): the Host is part of every key.
const maxHostLen = 255

// lookup returns the entry stored for r (resolving Vary), or nil and the
// Cache-Status fwd reason.
func (p *Proxy) lookup(hdr policy.Fields, host, uri string, h uint64) (*cachestore.Entry, string) {
	e, ok := p.store.Get(h)
	if !ok || !keyIs(e.Key, host, uri) {
		return nil, "uri-miss" // absent, or a 64-bit hash collision
	}
	if vi, isIndex := e.Extra.(varyIndex); isIndex {
		if e, ok = p.variant(e, string(vi), hdr); !ok {
			return nil, "vary-miss"
		}
	}
	return e, ""
}

// variant resolves a Vary index entry to the variant for r.
// Most real responses vary (Vary: Accept-Encoding above all), so this is
// on the hit path too: the variant key is built in a stack buffer and
// compared without making a string.
func (p *Proxy) variant(index *cachestore.Entry, vary string, hdr policy.Fields) (*cachestore.Entry, bool) {
	var buf [256]byte
	vk := append(buf[:0], index.Key...)
	vk = append(vk, 0)
	vk = policy.AppendVaryKey(vk, p.varyNames(vary), hdr)
	e, ok := p.store.Get(xxhash.Sum64(vk))
	if !ok || e.Key != string(vk) {
		return nil, false
	}
	return e, true
}

// varyNames returns the field names of a Vary index entry's list, parsed
// once per distinct list (a handful per upstream; past maxVaryLists they
// are parsed per request).
func (p *Proxy) varyNames(list string) []string {
	if v, ok := p.varyLists.Load(list); ok {
		return v.([]string)
	}
	names := strings.Split(list, ",")
	if p.varyListN.Add(1) <= maxVaryLists {
		p.varyLists.Store(list, names)
	}
	return names
}

// maxVaryLists bounds the parsed Vary lists kept by varyNames.
const maxVaryLists = 1024

// noDirectives is the policy view of a request without Cache-Control or
// Pragma (the zero policy.Request would read as "max-age=0").
var noDirectives = policy.ParseRequest(http.Header{})
