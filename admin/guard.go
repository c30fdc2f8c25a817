package admin

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// hostCheck decides which Host values the admin listener answers.
//
// The rule: a request's Host name (its port is ignored) must be localhost,
// 127.0.0.1, ::1, the host of the listen address, or one of
// admin.allowed_hosts. A DNS-rebinding page reaches the listener under the
// attacker's own name, so it fails this check.
//
// One exception: when the listener is exposed (a wildcard such as
// 0.0.0.0:9091 or [::]:9091, or any non-loopback address or name) and a
// token is set, any Host is accepted. An exposed listener already answers
// anyone who can reach it under whatever name they use, the config refuses
// to start one without a token, and the token guards everything a rebinding
// page could gain beyond what a direct request gets: purges and cache keys.
// Requests without a Host (HTTP/1.0) are accepted too: browsers always send
// one.
type hostCheck struct {
	names   map[string]bool
	exposed bool
}

// newHostCheck builds the check for a listener on listen.
func newHostCheck(listen string, allowed []string) hostCheck {
	c := hostCheck{names: map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}}
	host := listen
	if h, _, err := net.SplitHostPort(listen); err == nil {
		host = h
	}
	host = hostName(host)
	switch ip, err := netip.ParseAddr(host); {
	case listen == "":
		// loopback only
	case host == "" || err == nil && ip.IsUnspecified():
		c.exposed = true
	case err == nil:
		c.names[host] = true
		c.exposed = !ip.IsLoopback()
	default:
		c.names[host] = true
		c.exposed = host != "localhost"
	}
	for _, h := range allowed {
		if n := hostName(h); n != "" {
			c.names[n] = true
		}
	}
	return c
}

// hostName returns the host name of a Host value or address without port,
// brackets, trailing dot or upper case.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimPrefix(strings.TrimSuffix(host, "]"), "[")
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// allows reports whether a request with this Host may be answered.
func (c hostCheck) allows(host string, tokenSet bool) bool {
	return host == "" || c.exposed && tokenSet || c.names[hostName(host)]
}

// crossSite reports whether r is an unsafe request (any method but GET and
// HEAD) that a browser sent on another site's behalf: Sec-Fetch-Site says
// cross-site or same-site, or an Origin is present that is not this
// listener's own (http, or https behind TLS, and the request's Host).
// Requests with neither header, from curl and scripts, are not.
func crossSite(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return !strings.EqualFold(origin, scheme+r.Host)
}

// guard wraps h with the checks every admin route needs: the Host check
// ([hostCheck]; 421 Misdirected Request) and, for methods other than GET,
// HEAD, the cross-site check ([crossSite]; 403).
func (a *Admin) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.hosts.allows(r.Host, *a.token.Load() != "") {
			a.refused(r, "host")
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, fmt.Sprintf("admin: Host %q is not served here: use localhost or the listen address, or add the name to admin.allowed_hosts", r.Host),
				http.StatusMisdirectedRequest)
			return
		}
		if crossSite(r) {
			a.refused(r, "cross-site")
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "admin: cross-site "+r.Method+" refused (Origin or Sec-Fetch-Site names another site); send it from the dashboard's own origin or without a browser",
				http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// refused logs a request the guard turned away (a DNS-rebinding or
// cross-site attempt leaves a record): who sent it and what it named, each
// value cut as purge records cut theirs.
func (a *Admin) refused(r *http.Request, why string) {
	a.log.Warn("admin request refused", "reason", why, "remote", r.RemoteAddr, "method", r.Method,
		"path", loggedTargets([]string{r.URL.Path})[0], "host", loggedTargets([]string{r.Host})[0],
		"origin", loggedTargets([]string{r.Header.Get("Origin")})[0], "sec_fetch_site", loggedTargets([]string{r.Header.Get("Sec-Fetch-Site")})[0])
}

// authorized reports whether r carries the bearer token, when one is set;
// if not, it answers 401 itself.
func (a *Admin) authorized(w http.ResponseWriter, r *http.Request) bool {
	want := *a.token.Load()
	if want == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="dedupcache admin"`)
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, "admin token required", http.StatusUnauthorized)
	return false
}
