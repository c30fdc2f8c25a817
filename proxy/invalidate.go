package proxy

import (
	"net/http"
	"net/url"
	"strings"
)

// invalidateFor drops the stored responses that an unsafe request with a
// non-error response invalidates (RFC 9111 §4.4): its target URI and the
// same-origin URIs in Location and Content-Location, every variant included.
func (p *Proxy) invalidateFor(resp *http.Response, f *fill) {
	host := f.host
	p.invalidate(host, f.uri)
	for _, field := range []string{"Location", "Content-Location"} {
		v := resp.Header.Get(field)
		if v == "" {
			continue
		}
		if uri, ok := sameOrigin(host, f.uri, v); ok {
			p.invalidate(host, uri)
		}
	}
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

// sameOrigin resolves ref (a Location or Content-Location value) against
// the request target uri on host and returns its request target if it is
// on the same origin (RFC 9111 §4.4: a cache MUST NOT invalidate another
// host's URIs).
func sameOrigin(host, uri, ref string) (string, bool) {
	base, err := url.ParseRequestURI(uri)
	if err != nil {
		return "", false
	}
	u, err := base.Parse(ref)
	if err != nil {
		return "", false
	}
	if u.Host != "" && !strings.EqualFold(u.Host, host) {
		return "", false
	}
	if u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https" {
		return "", false
	}
	return u.RequestURI(), true
}
