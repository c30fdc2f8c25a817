package proxy

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// echoFields is an origin that answers with the forwarding-style fields it
// received (so that a response shaped by them shows it) and keeps the
// header of every request.
type echoFields struct {
	mu   sync.Mutex
	seen []http.Header
}

func (e *echoFields) origin(t *testing.T) string {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen = append(e.seen, r.Header.Clone())
		e.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=60")
		var b strings.Builder
		b.WriteString("page " + r.URL.Path + "\n")
		for k, vs := range r.Header {
			if strings.HasPrefix(k, "X") && k != "X-Forwarded-For" {
				b.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
			}
		}
		_, _ = io.WriteString(w, b.String())
	}).URL
}

func (e *echoFields) requests() []http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]http.Header(nil), e.seen...)
}

// poisoning are the request fields a client could steer an origin with,
// in the spellings a client may use: the configured names, another case,
// and '_' for '-' (which CGI-style origins read as the same field).
var poisoning = []string{
	"X-Forwarded-Scheme", "nothttp",
	"x-original-url", "/admin",
	"X_Rewrite_URL", "/admin2",
	"X-HTTP-Method-Override", "DELETE",
	"X-Forwarded-Port", "1337",
	"X_Forwarded_Prefix", "/evil",
}

// checkNoPoison reports a poisoning field in what the origin received or
// in a body.
func checkNoPoison(t *testing.T, what string, h http.Header, body string) {
	t.Helper()
	for k := range h {
		for i := 0; i < len(poisoning); i += 2 {
			if sameFieldName(k, poisoning[i]) {
				t.Errorf("%s: the origin saw %s: %q", what, k, h[k])
			}
		}
	}
	for i := 1; i < len(poisoning); i += 2 {
		if strings.Contains(body, ": "+poisoning[i]+"\n") {
			t.Errorf("%s: the body shows %q:\n%s", what, poisoning[i], body)
		}
	}
}

// TestUnkeyedStrip: with cache.unkeyed_action strip (the default), the
// unkeyed fields, in any case and with '_' for '-', never reach the origin
// on a miss or a forward, and the response cached from a request that
// carried them is the one a plain request gets. The client's
// X-Forwarded-Host is replaced by the keyed Host.
func TestUnkeyedStrip(t *testing.T) {
	var e *echoFields
	eachEngine(t, func(t *testing.T) string { e = &echoFields{}; return e.origin(t) }, nil, func(t *testing.T, p *Proxy, base string) {
		hdr := append([]string{"X-Forwarded-Host", "evil.example"}, poisoning...)
		resp, body := rawGet(t, base, "GET", "/s", hdr...)
		if resp.Header.Get("X-Cache") != "MISS" {
			t.Errorf("first user: X-Cache %q; want MISS (stripped, then cached)", resp.Header.Get("X-Cache"))
		}
		checkNoPoison(t, "miss", e.requests()[0], body)
		if xfh := e.requests()[0].Get("X-Forwarded-Host"); xfh != strings.TrimPrefix(base, "http://") {
			t.Errorf("the origin saw X-Forwarded-Host %q; want the request's Host", xfh)
		}
		settle(t, p)
		resp, body2 := rawGet(t, base, "GET", "/s")
		if resp.Header.Get("X-Cache") != "HIT" || body2 != body {
			t.Errorf("second user: X-Cache %q, body %q; want a HIT of %q", resp.Header.Get("X-Cache"), body2, body)
		}
		// A forward (POST) strips them too.
		resp, body = rawGet(t, base, "POST", "/f", append(hdr, "Content-Length", "0")...)
		if resp.StatusCode != 200 {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
		reqs := e.requests()
		checkNoPoison(t, "forward", reqs[len(reqs)-1], body)
	})
}

// TestUnkeyedBypass: with cache.unkeyed_action bypass, a request carrying
// an unkeyed field (any spelling) goes upstream with it, is answered
// BYPASS with detail=unkeyed-header, is not served from a stored entry
// (the fast listener's hit path included) and stores nothing; a second
// user never sees what the field caused, and the entry stays the plain
// request's.
func TestUnkeyedBypass(t *testing.T) {
	var e *echoFields
	eachEngine(t, func(t *testing.T) string { e = &echoFields{}; return e.origin(t) }, func(c *Config) {
		c.UnkeyedBypass = true
	}, func(t *testing.T, p *Proxy, base string) {
		for i := 0; i < len(poisoning); i += 2 {
			name, value := poisoning[i], poisoning[i+1]
			path := "/b" + string(rune('a'+i/2))
			before := len(e.requests())
			resp, body := rawGet(t, base, "GET", path, name, value)
			if resp.Header.Get("X-Cache") != "BYPASS" || !strings.Contains(resp.Header.Get("Cache-Status"), "detail=unkeyed-header") {
				t.Errorf("%s on a cold key: X-Cache %q, Cache-Status %q; want BYPASS, detail=unkeyed-header",
					name, resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"))
			}
			if got := e.requests()[before].Values(name); len(got) != 1 || got[0] != value {
				t.Errorf("%s: the origin saw %q; want the client's %q (bypass forwards it)", name, got, value)
			}
			if !strings.Contains(body, value) {
				t.Errorf("%s: body %q; want the origin's answer to it", name, body)
			}
			settle(t, p)
			resp, plain := rawGet(t, base, "GET", path) // a second user
			if resp.Header.Get("X-Cache") != "MISS" {
				t.Errorf("%s: second user: X-Cache %q; want MISS (nothing stored by the bypass)", name, resp.Header.Get("X-Cache"))
			}
			checkNoPoison(t, name+": second user", e.requests()[len(e.requests())-1], plain)
			settle(t, p)
			// With the plain answer stored, the field still bypasses
			// (no HIT) and leaves the entry alone.
			resp, _ = rawGet(t, base, "GET", path, name, value)
			if resp.Header.Get("X-Cache") != "BYPASS" {
				t.Errorf("%s on a stored key: X-Cache %q; want BYPASS", name, resp.Header.Get("X-Cache"))
			}
			settle(t, p)
			resp, again := rawGet(t, base, "GET", path)
			if resp.Header.Get("X-Cache") != "HIT" || again != plain {
				t.Errorf("%s: third user: X-Cache %q, body %q; want a HIT of the plain answer %q", name, resp.Header.Get("X-Cache"), again, plain)
			}
		}
		if st := p.Stats(); st.Bypasses != int64(len(poisoning)) {
			t.Errorf("bypasses = %d; want %d", st.Bypasses, len(poisoning))
		}
		// Fields outside the list are not a reason to bypass: the
		// client's X-Forwarded-Host is replaced, and the answer cached.
		resp, _ := rawGet(t, base, "GET", "/xfh", "X-Forwarded-Host", "evil.example")
		if resp.Header.Get("X-Cache") != "MISS" {
			t.Errorf("X-Forwarded-Host: X-Cache %q; want MISS", resp.Header.Get("X-Cache"))
		}
		reqs := e.requests()
		if xfh := reqs[len(reqs)-1].Get("X-Forwarded-Host"); xfh == "evil.example" {
			t.Errorf("the origin saw the client's X-Forwarded-Host")
		}
	})
}

func TestSameFieldName(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"X-Original-Url", "X-Original-URL", true},
		{"x_original_url", "X-Original-URL", true},
		{"X-Original-Urls", "X-Original-URL", false},
		{"X-Original.URL", "X-Original-URL", false},
		{"", "", true},
	}
	for _, tt := range tests {
		if got := sameFieldName(tt.a, tt.b); got != tt.want {
			t.Errorf("sameFieldName(%q, %q) = %v; want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
