package proxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"dedupcache/config"
	"dedupcache/rules"
)

// Issue 13: the operator's defaults and purges.

func TestDefaultTTL(t *testing.T) {
	tests := []struct {
		name   string
		hdr    []string
		second string // X-Cache of the second request
	}{
		{"no caching headers: default TTL", nil, "HIT"},
		{"max-age=0 is the origin's own word", []string{"Cache-Control", "max-age=0"}, "MISS"},
		{"no-store stays uncached", []string{"Cache-Control", "no-store"}, "BYPASS"},
		{"private stays uncached", []string{"Cache-Control", "private"}, "MISS"},
		{"Set-Cookie stays uncached", []string{"Set-Cookie", "a=b"}, "MISS"},
		{"5xx without explicit freshness stays uncached", []string{"X-Status", "500"}, "BYPASS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				status := 200
				for i := 0; i+1 < len(tt.hdr); i += 2 {
					if tt.hdr[i] == "X-Status" {
						status = 500
						continue
					}
					w.Header().Set(tt.hdr[i], tt.hdr[i+1])
				}
				w.WriteHeader(status)
				_, _ = io.WriteString(w, "plain")
			})
			p, srv := newTestProxy(t, o.URL, func(c *Config) { c.DefaultTTL = time.Minute })
			do(t, "GET", srv.URL+"/api")
			resp, _ := do(t, "GET", srv.URL+"/api")
			got := resp.Header.Get("X-Cache")
			if tt.second == "MISS" && (got == "MISS" || got == "BYPASS") {
				got = "MISS" // not stored, either way
			}
			if got != tt.second {
				t.Errorf("second request: X-Cache %q (%s); want %s", resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"), tt.second)
			}
			if tt.name == "Set-Cookie stays uncached" && resp.Header.Get("X-Cache") == "HIT" {
				t.Errorf("a Set-Cookie response was stored")
			}
			_ = p
		})
	}
	// Off by default: the same origin without the setting stores nothing.
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "plain") })
	_, srv := newTestProxy(t, o.URL, nil)
	do(t, "GET", srv.URL+"/api")
	if resp, _ := do(t, "GET", srv.URL+"/api"); resp.Header.Get("X-Cache") == "HIT" {
		t.Errorf("stored without default_ttl")
	}
}

func TestTrustedProxies(t *testing.T) {
	s := &scripted{}
	s.set(200, "x", "Cache-Control", "no-store")
	o := newOrigin(t, s.handler)
	tests := []struct {
		name    string
		trusted []netip.Prefix
		wantXFF string
		wantXFP string
	}{
		{"untrusted peer: replaced", nil, "127.0.0.1", "http"},
		{"trusted peer: appended and kept", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "203.0.113.7, 127.0.0.1", "https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestProxy(t, o.URL, func(c *Config) { c.TrustedProxies = tt.trusted })
			do(t, "GET", srv.URL+"/f", "X-Forwarded-For", "203.0.113.7", "X-Forwarded-Proto", "https")
			got := s.last()
			if v := got.Header.Get("X-Forwarded-For"); v != tt.wantXFF {
				t.Errorf("X-Forwarded-For %q; want %q", v, tt.wantXFF)
			}
			if v := got.Header.Get("X-Forwarded-Proto"); v != tt.wantXFP {
				t.Errorf("X-Forwarded-Proto %q; want %q", v, tt.wantXFP)
			}
		})
	}
}

func TestPurgeMethod(t *testing.T) {
	o := newOrigin(t, cacheable("p"))
	tests := []struct {
		name   string
		token  string // configured
		auth   string // sent
		status int
		purged bool
	}{
		{"off without a token: forwarded", "", "", http.StatusOK, false},
		{"no credentials", "s3cret", "", http.StatusUnauthorized, false},
		{"wrong token", "s3cret", "Bearer nope", http.StatusUnauthorized, false},
		{"right token", "s3cret", "Bearer s3cret", http.StatusOK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestProxy(t, o.URL, func(c *Config) { c.PurgeToken = tt.token })
			do(t, "GET", srv.URL+"/x")
			before := o.hits.Load()
			hdr := []string{}
			if tt.auth != "" {
				hdr = append(hdr, "Authorization", tt.auth)
			}
			resp, body := do(t, "PURGE", srv.URL+"/x", hdr...)
			if resp.StatusCode != tt.status {
				t.Errorf("PURGE: %d %q; want %d", resp.StatusCode, body, tt.status)
			}
			if tt.token != "" && o.hits.Load() != before {
				t.Errorf("PURGE with a token configured reached the origin")
			}
			resp, _ = do(t, "GET", srv.URL+"/x")
			if purged := resp.Header.Get("X-Cache") != "HIT"; purged != (tt.purged || tt.token == "") {
				// Without a token, PURGE is an unsafe method forwarded
				// upstream, and its 200 invalidates the URL (RFC 9111 §4.4).
				t.Errorf("after PURGE: X-Cache %s; want purged=%v", resp.Header.Get("X-Cache"), tt.purged)
			}
		})
	}
}

func TestSoftPurge(t *testing.T) {
	tp := newTimed(t, nil)
	tp.s.set(200, "good", "Cache-Control", "max-age=600, stale-if-error=600", "Etag", `"g"`)
	do(t, "GET", tp.srv.URL+"/soft")
	res, err := tp.p.Purge(PurgeRequest{URLs: []string{"/soft"}, Soft: true})
	if err != nil || res.PurgedEntries != 1 {
		t.Fatalf("soft purge: %+v %v; want 1 entry", res, err)
	}
	tp.s.set(503, "down")
	resp, body := do(t, "GET", tp.srv.URL+"/soft")
	if resp.StatusCode != 200 || body != "good" || resp.Header.Get("X-Cache") != "STALE" {
		t.Errorf("after a soft purge, origin down: %d %s %q; want the stale entry", resp.StatusCode, resp.Header.Get("X-Cache"), body)
	}
	tp.s.set(200, "new", "Cache-Control", "max-age=600", "Etag", `"n"`)
	if resp, body = do(t, "GET", tp.srv.URL+"/soft"); body != "new" {
		t.Errorf("after a soft purge, origin up: %s %q; want the new body", resp.Header.Get("X-Cache"), body)
	}
}

func TestPurgeRequestSeveral(t *testing.T) {
	o := purgeOrigin(t)
	p, srv := newTestProxy(t, o.URL, nil)
	for _, u := range []string{"/alpha/0", "/alpha/1", "/beta/0", "/apple/0"} {
		do(t, "GET", srv.URL+u)
	}
	res, err := p.Purge(PurgeRequest{URLs: []string{"/alpha/0", "/alpha/1"}, Tags: []string{"group-beta"}})
	if err != nil || res.PurgedEntries != 3 {
		t.Errorf("purge of two URLs and a tag: %+v %v; want 3", res, err)
	}
	if _, err := p.Purge(PurgeRequest{URLs: []string{"/ok", "http://[bad"}}); err == nil {
		t.Errorf("a bad URL among several: no error")
	}
	if resp, _ := do(t, "GET", srv.URL+"/apple/0"); !strings.Contains(resp.Header.Get("X-Cache"), "HIT") {
		t.Errorf("an entry not named was purged")
	}
}

// ruleSet compiles rules for a test.
func ruleSet(t *testing.T, rs ...config.Rule) *rules.Set {
	t.Helper()
	set, err := rules.Compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestRules(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/zero"):
			w.Header().Set("Cache-Control", "max-age=0")
		case strings.HasPrefix(r.URL.Path, "/cookie"):
			w.Header().Set("Set-Cookie", "s=1")
		case strings.HasPrefix(r.URL.Path, "/private"):
			w.Header().Set("Cache-Control", "private")
		case strings.HasPrefix(r.URL.Path, "/missing"):
			w.WriteHeader(http.StatusNotFound)
		case strings.HasPrefix(r.URL.Path, "/broken"):
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = io.WriteString(w, r.URL.RequestURI()+" "+r.Header.Get("Accept-Language"))
	})
	set := ruleSet(t,
		config.Rule{Name: "me", PathPrefix: "/me", Bypass: true},
		config.Rule{Name: "search", PathPrefix: "/search", TTL: config.Duration(time.Minute),
			Key: &config.RuleKey{Query: "sort", QueryParams: []string{"q", "page"}, QueryMode: "only", Headers: []string{"Accept-Language"}}},
		config.Rule{Name: "all-query", PathPrefix: "/ignore", TTL: config.Duration(time.Minute), Key: &config.RuleKey{Query: "ignore"}},
		config.Rule{Name: "force", PathPrefix: "/zero", ForceTTL: config.Duration(time.Minute)},
		config.Rule{Name: "errors", Status: []int{503}, TTL: config.Duration(time.Minute)},
		config.Rule{Name: "plain", TTL: config.Duration(time.Minute)},
	)
	_, srv := newTestProxy(t, o.URL, func(c *Config) { c.Rules = set; c.DebugHeaders = true })
	tests := []struct {
		name   string
		first  string // URL of the first request
		second string // URL of the second request
		hdr    []string
		xcache string // of the second request
		detail string // in the first request's Cache-Status
	}{
		{"ttl for a response with no headers", "/plain", "/plain", nil, "HIT", "rule:plain"},
		{"bypass", "/me", "/me", nil, "BYPASS", "rule:me"},
		{"query params kept and sorted", "/search?q=a&page=2&utm=x", "/search?page=2&q=a&utm=y", nil, "HIT", "rule:search"},
		{"another q is another entry", "/search?q=a", "/search?q=b", nil, "MISS", "rule:search"},
		{"query ignored", "/ignore?a=1", "/ignore?b=2", nil, "HIT", "rule:all-query"},
		{"force_ttl over max-age=0", "/zero", "/zero", nil, "HIT", "rule:force"},
		{"never a Set-Cookie response", "/cookie", "/cookie", nil, "MISS", ""},
		{"never a private response", "/private", "/private", nil, "MISS", ""},
		{"a status rule caches a 503", "/broken", "/broken", nil, "HIT", "rule:errors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := do(t, "GET", srv.URL+tt.first, tt.hdr...)
			if cs := resp.Header.Get("Cache-Status"); tt.detail != "" && !strings.Contains(cs, "detail="+tt.detail) {
				t.Errorf("first: Cache-Status %q; want detail=%s", cs, tt.detail)
			}
			resp, body := do(t, "GET", srv.URL+tt.second, tt.hdr...)
			got := resp.Header.Get("X-Cache")
			if tt.xcache == "MISS" && got == "BYPASS" {
				got = "MISS"
			}
			if got != tt.xcache {
				t.Errorf("second: X-Cache %s (%s, key %q, body %q); want %s", resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"), resp.Header.Get("X-Cache-Key"), body, tt.xcache)
			}
		})
	}
	// A header in the key: another Accept-Language is another entry.
	do(t, "GET", srv.URL+"/search?q=z", "Accept-Language", "fr")
	if resp, _ := do(t, "GET", srv.URL+"/search?q=z", "Accept-Language", "de"); resp.Header.Get("X-Cache") == "HIT" {
		t.Errorf("Accept-Language in the key: a de request got the fr entry")
	}
	if resp, body := do(t, "GET", srv.URL+"/search?q=z", "Accept-Language", "fr"); resp.Header.Get("X-Cache") != "HIT" || !strings.HasSuffix(body, " fr") {
		t.Errorf("Accept-Language in the key: fr again got %s %q", resp.Header.Get("X-Cache"), body)
	}
}

// RFC 9111 §4.4 reaches entries whose key a rule shaped.
func TestInvalidationShapedKey(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "v") })
	set := ruleSet(t, config.Rule{Name: "s", PathPrefix: "/s", TTL: config.Duration(time.Minute), Key: &config.RuleKey{Query: "sort"}})
	_, srv := newTestProxy(t, o.URL, func(c *Config) { c.Rules = set })
	do(t, "GET", srv.URL+"/s?b=2&a=1")
	if resp, _ := do(t, "GET", srv.URL+"/s?a=1&b=2"); resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("sorted query: X-Cache %s; want HIT", resp.Header.Get("X-Cache"))
	}
	do(t, "POST", srv.URL+"/s?b=2&a=1")
	if resp, _ := do(t, "GET", srv.URL+"/s?a=1&b=2"); resp.Header.Get("X-Cache") == "HIT" {
		t.Errorf("after a POST to the URL: still a HIT")
	}
}

// TestForwardedContextIsKeyed: the scheme and forwarded host the upstream
// sees are part of the key (keyHost). A trusted front proxy's requests for
// https or for another public host get responses of their own, never one
// built for another context (an http-to-https redirect served to TLS
// clients loops; a page built for one host must not reach another); an
// untrusted client's X-Forwarded-* cannot split or steer the key at all.
// Purges and invalidations reach every context.
func TestForwardedContextIsKeyed(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		if r.Method == http.MethodPost {
			return
		}
		_, _ = io.WriteString(w, r.Header.Get("X-Forwarded-Proto")+" "+r.Header.Get("X-Forwarded-Host"))
	})
	type step struct {
		hdr    []string
		xCache string
		body   string // "" = the proxy's own host as forwarded host, http
	}
	run := func(t *testing.T, srv *httptest.Server, path string, steps []step) {
		t.Helper()
		self := strings.TrimPrefix(srv.URL, "http://")
		for i, s := range steps {
			resp, body := do(t, "GET", srv.URL+path, s.hdr...)
			want := s.body
			if want == "" {
				want = "http " + self
			}
			if got := resp.Header.Get("X-Cache"); got != s.xCache || body != want {
				t.Errorf("step %d %v: X-Cache %s, body %q; want %s, %q", i, s.hdr, got, body, s.xCache, want)
			}
		}
	}
	front := []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "lb.example"}
	other := []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "other.example"}

	t.Run("trusted front proxy", func(t *testing.T) {
		p, srv := newTestProxy(t, o.URL, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
		self := strings.TrimPrefix(srv.URL, "http://")
		steps := []step{
			{front, "MISS", "https lb.example"},
			{nil, "MISS", ""},
			{other, "MISS", "https other.example"},
			{front, "HIT", "https lb.example"},
			{nil, "HIT", ""},
			{other, "HIT", "https other.example"},
			{[]string{"X-Forwarded-Host", self}, "HIT", ""}, // the defaults, said out loud
			{[]string{"X-Forwarded-Proto", "HTTPS"}, "MISS", "HTTPS " + self},
			{[]string{"X-Forwarded-Host", "a.example, b.example"}, "MISS", "http a.example, b.example"},
			{[]string{"X-Forwarded-Host", "A.example,b.example"}, "HIT", "http a.example, b.example"},
		}
		run(t, srv, "/r", steps)
		if res, err := p.Purge(PurgeRequest{URLs: []string{srv.URL + "/r"}}); err != nil || res.PurgedEntries != 5 {
			t.Errorf("purge of the URL: %+v, %v; want its 5 contexts purged", res, err)
		}
		run(t, srv, "/r", []step{{front, "MISS", "https lb.example"}, {nil, "MISS", ""}, {other, "MISS", "https other.example"}})
		// An unsafe request in one context invalidates the URL in all (RFC 9111 §4.4).
		if resp, _ := do(t, "POST", srv.URL+"/r", front...); resp.StatusCode != http.StatusOK {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
		run(t, srv, "/r", []step{{front, "MISS", "https lb.example"}, {nil, "MISS", ""}, {other, "MISS", "https other.example"}})
	})
	t.Run("untrusted client", func(t *testing.T) {
		_, srv := newTestProxy(t, o.URL, nil)
		run(t, srv, "/u", []step{
			{front, "MISS", ""}, // replaced before the upstream: the defaults
			{nil, "HIT", ""},
			{other, "HIT", ""},
		})
	})
	t.Run("TLS listener", func(t *testing.T) {
		p, _ := newTestProxy(t, o.URL, nil)
		h := p.Handler()
		get := func(secure bool) (string, string) {
			r := httptest.NewRequest("GET", "/s", nil)
			r.Host = "cache.example"
			if secure {
				r.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Header().Get("X-Cache"), w.Body.String()
		}
		for i, want := range []struct {
			secure      bool
			xCache, out string
		}{
			{true, "MISS", "https cache.example"},
			{false, "MISS", "http cache.example"},
			{true, "HIT", "https cache.example"},
			{false, "HIT", "http cache.example"},
		} {
			if x, body := get(want.secure); x != want.xCache || body != want.out {
				t.Errorf("request %d (TLS %v): X-Cache %s, body %q; want %s, %q", i, want.secure, x, body, want.xCache, want.out)
			}
		}
	})
}
