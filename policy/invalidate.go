package policy

import (
	"net/http"
	"net/url"
	"strings"
)

// Invalidates reports whether a response to method with status invalidates
// the stored responses for its target URI (RFC 9111 §4.4): the method is not
// known to be safe (RFC 9110 §9.2.1), that is anything but GET, HEAD,
// OPTIONS and TRACE, extension methods such as PURGE, LOCK or M-SEARCH
// included (method names are case-sensitive, §9.1, so "get" is unknown and
// unsafe), and the status is non-error (2xx or 3xx). The caller may apply
// the same to the URIs in Location and Content-Location: see [SameOrigin].
func Invalidates(method string, status int) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return status >= 200 && status < 400
}

// SameOrigin resolves ref, a Location or Content-Location field value of a
// response to an unsafe request, against the request's target URI, and
// returns the resolved URI's request-target (absolute path and query, as
// [net/url.URL.RequestURI] writes it) when a cache may invalidate it: RFC
// 9111 §4.4 forbids invalidating a URI whose origin differs from the target
// URI's. The target URI is given as scheme ("http" or "https", the scheme
// the client used), host (the request's host, with or without a port, e.g.
// the cache key's lower-cased host) and requestURI (the request-target in
// origin-form, e.g. "/a/b?x=1").
//
// ok is true only when ref parses as a URI reference, and the resolved URI
// has the same scheme and host as the target (both compared
// case-insensitively, RFC 9110 §4.2.3) and the same port once a missing
// port is read as the scheme's default (80 for http, 443 for https). A
// userinfo part and a fragment are ignored. An empty ref, an opaque URI
// (mailto:...) or an unparsable requestURI give false.
func SameOrigin(scheme, host, requestURI, ref string) (uri string, ok bool) {
	ref = trimOWS(ref)
	if ref == "" {
		return "", false
	}
	base, err := url.ParseRequestURI(requestURI)
	if err != nil || base.Scheme != "" || base.Host != "" || base.Opaque != "" {
		return "", false
	}
	base.Scheme, base.Host = strings.ToLower(scheme), host
	r, err := url.Parse(ref)
	if err != nil {
		return "", false
	}
	u := base.ResolveReference(r)
	if u.Opaque != "" || !strings.EqualFold(u.Scheme, base.Scheme) ||
		!strings.EqualFold(u.Hostname(), base.Hostname()) || u.Hostname() == "" ||
		effectivePort(u) != effectivePort(base) {
		return "", false
	}
	return u.RequestURI(), true
}

// effectivePort returns u's port, or its scheme's default when it has none
// (RFC 9110 §4.2.1, §4.2.2).
func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}
