package proxy

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
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
