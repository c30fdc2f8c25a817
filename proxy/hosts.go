package proxy

import (
	"net/http"

	"github.com/valyala/fasthttp"
)

// The host allow-list (server.allowed_hosts, [Live.AllowedHosts]). The host
// is part of every key, and the origin never sees it (outbound sends the
// upstream's own Host): without a list any Host a client makes up gets
// entries of its own. With one, a request whose host is not listed gets
// 421 Misdirected Request (RFC 9110 §15.5.20) before anything else looks
// at it: no lookup, no fetch, no forward, nothing stored or indexed.
//
// The host checked is the one the key uses: r.Host on net/http (the Host
// field, or the host of an absolute-form target, which RFC 9112 §3.2.2
// says wins), and on the fast listener the Host field for the origin-form
// requests fastHit answers; every other request there (absolute-form
// included) goes to serve through the adaptor, whose r.Host is the
// target's host, and is checked there. So both engines refuse in one
// place, serve, and the refusal is access-logged like any request.

// hostServed reports whether the proxy answers requests for host under l.
// No list: every host. It allocates nothing.
func hostServed(l *Live, host string) bool {
	return l.AllowedHosts == nil || l.AllowedHosts.Allows(host)
}

// fastHostServed reports whether the fast listener may look the request up
// itself (fastHit); if not, serve refuses it.
func fastHostServed(l *Live, h *fasthttp.RequestHeader) bool {
	return l.AllowedHosts == nil || l.AllowedHosts.Allows(b2s(h.Host()))
}

// refuseHost answers a request for a host not in l's list with 421 and a
// short text body, and reports whether it did. The host is not echoed.
func (p *Proxy) refuseHost(w http.ResponseWriter, r *http.Request, l *Live) bool {
	if hostServed(l, r.Host) {
		return false
	}
	p.misdirected.Add(1)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Cache-Status", cacheName+"; detail=misdirected")
	http.Error(w, "misdirected request: this cache does not serve that host", http.StatusMisdirectedRequest)
	return true
}
