package proxy

import (
	"net/http"

	"dedupcache/policy"
)

// invalidateFor drops the stored responses that an unsafe request with a
// non-error response invalidates (RFC 9111 §4.4): its target URI and the
// same-origin URIs in Location and Content-Location, every variant included,
// in every forwarded context they are stored for (keyHost).
func (p *Proxy) invalidateFor(resp *http.Response, f *fill) {
	host := baseHost(f.host)
	forms := p.index.hostForms(host)
	for _, h := range forms {
		p.invalidate(h, p.keyedURI(h, f.uri, f.reqHeader))
	}
	for _, field := range []string{"Location", "Content-Location"} {
		v := resp.Header.Get(field)
		if v == "" {
			continue
		}
		// The listener speaks plain HTTP, often behind a TLS terminator:
		// the public origin may be either scheme on the client's host.
		for _, scheme := range []string{"http", "https"} {
			if uri, ok := policy.SameOrigin(scheme, host, f.uri, v); ok {
				for _, h := range forms {
					p.invalidate(h, p.keyedURI(h, uri, f.reqHeader))
				}
				break
			}
		}
	}
}

// keyedURI returns uri as a GET for it is keyed: shaped by the rule that
// matches it, if that rule has a key block (the request's own fields fill
// the header and cookie parts).
func (p *Proxy) keyedURI(host, uri string, h http.Header) string {
	if rs := p.live().Rules; rs.Len() > 0 {
		if rule := rs.Request(baseHost(host), uriPath(uri), http.MethodGet); rule != nil && rule.Key != nil {
			return shapeKey(rule.Key, uri, h)
		}
	}
	return uri
}

// invalidate removes the response stored for host and uri, with its
// variants. It returns how many entries were removed.
func (p *Proxy) invalidate(host, uri string) int {
	h := keyHash(host, uri)
	n := 0
	if e, ok := p.store.Get(h); ok && keyIs(e.Key, host, uri) {
		p.store.Del(h)
		n++
	}
	for _, v := range p.index.takeVariants(h) {
		if _, ok := p.store.Get(v); ok {
			p.store.Del(v)
			n++
		}
	}
	p.invalidated.Add(int64(n))
	return n
}
