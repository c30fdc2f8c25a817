package proxy

import (
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"

	"dedupcache/cachestore"
	"dedupcache/policy"
)

// outbound builds every upstream request: the ReverseProxy's Rewrite, for
// requests forwarded as they are and for fetches alike (see fetchRequest),
// so that a miss, a revalidation, a HEAD answered from a GET and a
// background refresh send the same thing. Before it runs, ReverseProxy has
// removed hop-by-hop fields (and those named in Connection) and the
// client's Forwarded and X-Forwarded-For/-Host/-Proto.
//
//   - The target: the upstream URL joined with the request's escaped path
//     (RawPath kept: /a%2Fb stays /a%2Fb) and its query.
//   - X-Forwarded-For/-Host/-Proto from the client connection, and Via.
//   - Surrogate-Capability: this cache's (Config.Policy.SurrogateToken),
//     after a trusted peer's.
//   - The unkeyed request fields (Config.UnkeyedHeaders) removed: they
//     could change the response without being part of the key (with
//     Config.UnkeyedBypass, from fetches only: see unkeyed.go).
//   - A fetch: Accept-Encoding reduced to the bucket the key uses; the
//     client's conditional fields and Range removed (the full response is
//     fetched and the client's fields are evaluated against it), and the
//     stored response's validators added when it revalidates one.
func (p *Proxy) outbound(pr *httputil.ProxyRequest) {
	pr.SetURL(p.cfg.Upstream)
	trusted := p.trustedPeer(pr.In.RemoteAddr)
	if trusted {
		if v := pr.In.Header["X-Forwarded-For"]; len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v // SetXForwarded appends the peer
		}
	}
	pr.SetXForwarded()
	if trusted {
		for _, k := range []string{"X-Forwarded-Proto", "X-Forwarded-Host"} {
			if v := pr.In.Header[k]; len(v) > 0 {
				pr.Out.Header[k] = v
			}
		}
	}
	out := pr.Out.Header
	out.Add("Via", via(pr.In.ProtoMajor, pr.In.ProtoMinor))
	if !trusted {
		// Only a trusted balancer speaks for surrogates in front: a
		// client's claim (say, ESI for this cache) could make the origin
		// answer with what every other client then gets from the cache.
		delete(out, "Surrogate-Capability")
	}
	if p.surrogateCap != nil {
		// A trusted surrogate's capabilities come first (Edge
		// Architecture 1.0 §2.2: each surrogate appends its own). Alone,
		// the shared value (full: an append copies).
		if v := out["Surrogate-Capability"]; len(v) > 0 {
			out["Surrogate-Capability"] = append(v, p.surrogateCap...)
		} else {
			out["Surrogate-Capability"] = p.surrogateCap
		}
	}
	f, _ := pr.In.Context().Value(fillKey{}).(*fill)
	p.dropUnkeyed(out, f) // unkeyed.go
	if f == nil || f.status == StatusBypass {
		return
	}
	// Responses are keyed by the Accept-Encoding bucket (policy.VaryKey),
	// so the upstream must see the bucket, not the client's own list:
	// otherwise a br-only client could be served a gzip body stored for
	// a "gzip, br" client.
	if ae := policy.AcceptEncodingBucket(f.reqHeader); ae != "" {
		out.Set("Accept-Encoding", ae)
	}
	if f.fetch {
		policy.StripConditionals(out)
		if f.stale != nil && !f.unconditional {
			setValidators(out, f.stale)
		}
	}
}

// setValidators adds the stored response's validators to an outbound
// request (RFC 9111 §4.3.1).
func setValidators(h http.Header, e *cachestore.Entry) {
	etag, lm := entryValidators(e)
	if etag != "" && e.Flags&flagSynthETag == 0 {
		h.Set("If-None-Match", etag)
	}
	if lm != "" {
		h.Set("If-Modified-Since", lm)
	}
}

// surrogateCapability is the Surrogate-Capability value for token, nil if
// it is empty.
func surrogateCapability(token string) []string {
	if token == "" {
		return nil
	}
	return []string{policy.SurrogateCapability(token)} // len == cap: an append copies
}

// trustedPeer reports whether the connection's peer is one of
// Config.TrustedProxies.
func (p *Proxy) trustedPeer(remoteAddr string) bool {
	if len(p.cfg.TrustedProxies) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, pfx := range p.cfg.TrustedProxies {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// isUpgrade reports whether r asks to switch protocols (WebSocket): such a
// request is tunnelled to the upstream, never looked up or coalesced.
func isUpgrade(r *http.Request) bool {
	if len(r.Header["Upgrade"]) == 0 {
		return false
	}
	for _, line := range r.Header["Connection"] {
		for _, t := range strings.Split(line, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}
