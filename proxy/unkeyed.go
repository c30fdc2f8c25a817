package proxy

import (
	"net/http"

	"github.com/valyala/fasthttp"
)

// Unkeyed request fields (cache.unkeyed_headers): fields outside the key
// that an origin may build its answer from (X-Forwarded-Port,
// X-Original-URL, X-HTTP-Method-Override, ...). What a request carrying
// one gets is Config.UnkeyedBypass's choice:
//
//   - strip (the default): outbound removes them from every request sent
//     upstream, fetches and forwards alike, and the request is cached as
//     usual;
//   - bypass: the request is forwarded with them intact and is neither
//     looked up nor stored (X-Cache BYPASS, Cache-Status
//     detail=unkeyed-header); fetches, which only requests without them
//     lead, still strip them.
//
// Names match case-insensitively and with '_' taken for '-': CGI-style
// origins (PHP, nginx's underscores_in_headers) read X_Original_URL as
// X-Original-URL.

// detailUnkeyed is the Cache-Status detail of a request bypassed for an
// unkeyed field.
const detailUnkeyed = "unkeyed-header"

// isUnkeyed reports whether name is one of the unkeyed fields.
func (p *Proxy) isUnkeyed(name string) bool {
	for _, k := range p.cfg.UnkeyedHeaders {
		if sameFieldName(name, k) {
			return true
		}
	}
	return false
}

// hasUnkeyed reports whether h holds an unkeyed field.
func (p *Proxy) hasUnkeyed(h http.Header) bool {
	for k := range h {
		if p.isUnkeyed(k) {
			return true
		}
	}
	return false
}

// fastHasUnkeyed reports whether the fast listener's request header h
// holds an unkeyed field: with bypass, fastHit leaves such a request to
// serve, which bypasses the cache.
func (p *Proxy) fastHasUnkeyed(h *fasthttp.RequestHeader) bool {
	for k := range h.All() {
		if p.isUnkeyed(b2s(k)) {
			return true
		}
	}
	return false
}

// unkeyedBypass reports whether r bypasses the cache for an unkeyed field.
func (p *Proxy) unkeyedBypass(r *http.Request) bool {
	return p.cfg.UnkeyedBypass && p.hasUnkeyed(r.Header)
}

// dropUnkeyed removes the unkeyed fields from the outbound header out of
// the request f describes (nil: unknown), unless, with bypass, it is a
// forward: never stored, it carries what its client sent.
func (p *Proxy) dropUnkeyed(out http.Header, f *fill) {
	if p.cfg.UnkeyedBypass && f != nil && !f.fetch {
		return
	}
	for _, k := range p.cfg.UnkeyedHeaders {
		delete(out, k)
	}
	for k := range out {
		if hasUnderscore(k) && p.isUnkeyed(k) {
			delete(out, k)
		}
	}
}

// sameFieldName reports whether field names a and b are equal ignoring
// ASCII case, with '_' equal to '-'.
func sameFieldName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// hasUnderscore reports whether s holds '_'.
func hasUnderscore(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '_' {
			return true
		}
	}
	return false
}
