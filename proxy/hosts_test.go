package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"dedupcache/rules"
)

// eachEngine runs test against a proxy made by newTestProxy with mod, once
// behind the net/http engine and once behind the fast listener, whatever
// DEDUPCACHE_TEST_ENGINE says.
func eachEngine(t *testing.T, upstream func(t *testing.T) string, mod func(*Config), test func(t *testing.T, p *Proxy, base string)) {
	t.Run("net/http", func(t *testing.T) {
		p, _ := newTestProxy(t, upstream(t), mod)
		test(t, p, "http://"+netHTTPServer(t, p, 0))
	})
	t.Run("fasthttp", func(t *testing.T) {
		p, base := newFastProxy(t, upstream(t), mod)
		test(t, p, base)
	})
}

// rawExchange sends raw (a whole request: line, fields, blank line) on a
// new connection and reads the response.
func rawExchange(t *testing.T, base, method, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: reading the body: %v", raw, err)
	}
	return resp, string(b)
}

// pathLog is an origin that records the paths it was asked for and
// answers each with a cacheable body naming the path.
type pathLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *pathLog) origin(t *testing.T) string {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.paths = append(l.paths, r.URL.Path)
		l.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "page "+r.URL.Path)
	}).URL
}

func (l *pathLog) saw(path string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.paths {
		if p == path {
			return true
		}
	}
	return false
}

func mustHosts(t *testing.T, list ...string) *rules.Hosts {
	t.Helper()
	h, err := rules.CompileHosts("server.allowed_hosts", list)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestAllowedHosts: with server.allowed_hosts set, a request for another
// host (by its Host field or by an absolute-form target, which wins over
// the field, RFC 9112 §3.2.2) gets 421 with a short text body on both
// engines, and is neither forwarded nor stored; listed hosts (any case,
// any port, wildcards) are served as before.
func TestAllowedHosts(t *testing.T) {
	tests := []struct {
		name, method, target, host string // host "": no Host field
		proto                      string
		want                       int
	}{
		{"listed", "GET", "/listed", "allowed.example", "HTTP/1.1", 200},
		{"listed, other case and a port", "GET", "/case", "ALLOWED.Example:8080", "HTTP/1.1", 200},
		{"wildcard", "GET", "/wild", "x.apps.example", "HTTP/1.1", 200},
		{"unlisted", "GET", "/unlisted", "evil.example", "HTTP/1.1", 421},
		{"listed name as a prefix", "GET", "/suffix", "allowed.example.evil.example", "HTTP/1.1", 421},
		{"wildcard's own name", "GET", "/apex", "apps.example", "HTTP/1.1", 421},
		{"unlisted HEAD", "HEAD", "/head", "evil.example", "HTTP/1.1", 421},
		{"unlisted POST", "POST", "/post", "evil.example", "HTTP/1.1", 421},
		{"unlisted PURGE", "PURGE", "/purge", "evil.example", "HTTP/1.1", 421},
		{"no Host (HTTP/1.0)", "GET", "/nohost", "", "HTTP/1.0", 421},
		{"absolute-form naming an unlisted host", "GET", "http://evil.example/absolute", "allowed.example", "HTTP/1.1", 421},
		{"absolute-form naming a listed host", "GET", "http://allowed.example/absolute-ok", "evil.example", "HTTP/1.1", 200},
	}
	var log *pathLog
	eachEngine(t, func(t *testing.T) string { log = &pathLog{}; return log.origin(t) }, func(c *Config) {
		c.AllowedHosts = mustHosts(t, "allowed.example", "*.apps.example")
		c.PurgeToken = "tok"
	}, func(t *testing.T, p *Proxy, base string) {
		refused, stored := 0, 0
		for _, tt := range tests {
			raw := tt.method + " " + tt.target + " " + tt.proto + "\r\n"
			if tt.host != "" {
				raw += "Host: " + tt.host + "\r\n"
			}
			if tt.method == "POST" {
				raw += "Content-Length: 2\r\n"
			}
			if tt.method == "PURGE" {
				raw += "Authorization: Bearer tok\r\n"
			}
			raw += "Connection: close\r\n\r\n"
			if tt.method == "POST" {
				raw += "{}"
			}
			resp, body := rawExchange(t, base, tt.method, raw)
			path := tt.target[strings.LastIndexByte(tt.target, '/'):]
			if resp.StatusCode != tt.want {
				t.Errorf("%s: %s %s Host %q: status %d; want %d (body %q)", tt.name, tt.method, tt.target, tt.host, resp.StatusCode, tt.want, body)
				continue
			}
			if tt.want == 200 {
				stored++
				if body != "page "+path {
					t.Errorf("%s: body %q; want the origin's", tt.name, body)
				}
				continue
			}
			refused++
			if tt.method != "HEAD" && !strings.Contains(body, "misdirected request") {
				t.Errorf("%s: body %q; want a short text naming the refusal", tt.name, body)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("%s: Cache-Control %q; want no-store", tt.name, cc)
			}
			if strings.Contains(body, "evil") {
				t.Errorf("%s: the refusal echoes the host: %q", tt.name, body)
			}
			if log.saw(path) {
				t.Errorf("%s: the origin saw %s; a refused request must not be forwarded", tt.name, path)
			}
		}
		settle(t, p)
		st := p.Stats()
		if st.Misdirected != int64(refused) {
			t.Errorf("misdirected = %d; want %d", st.Misdirected, refused)
		}
		if st.Entries != int64(stored) {
			t.Errorf("entries = %d; want %d (only the listed hosts' responses)", st.Entries, stored)
		}
		if st.Bypasses != 0 {
			t.Errorf("bypasses = %d; want 0 (a refusal is not a bypass)", st.Bypasses)
		}
	})
}

// TestAllowedHostsReload: the list is live. An entry stored for a host
// before the list named it is refused once the list excludes it, on the
// fast listener's hit path too (no HIT), and served again when the list
// goes away.
func TestAllowedHostsReload(t *testing.T) {
	var log *pathLog
	eachEngine(t, func(t *testing.T) string { log = &pathLog{}; return log.origin(t) }, nil, func(t *testing.T, p *Proxy, base string) {
		get := func(host string) *http.Response {
			resp, _ := rawExchange(t, base, "GET", "GET /r HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
			return resp
		}
		get("old.example")
		settle(t, p)
		if r := get("old.example"); r.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("before the list: X-Cache %q; want HIT", r.Header.Get("X-Cache"))
		}
		l := *p.live()
		l.AllowedHosts = mustHosts(t, "new.example")
		p.Reload(l)
		if r := get("old.example"); r.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("after the reload: %d, X-Cache %q; want 421 (the stored entry must not be served)", r.StatusCode, r.Header.Get("X-Cache"))
		}
		if r := get("new.example"); r.StatusCode != 200 || r.Header.Get("X-Cache") != "MISS" {
			t.Errorf("listed host after the reload: %d, X-Cache %q; want a 200 MISS", r.StatusCode, r.Header.Get("X-Cache"))
		}
		l.AllowedHosts = nil
		p.Reload(l)
		if r := get("old.example"); r.Header.Get("X-Cache") != "HIT" {
			t.Errorf("list removed: X-Cache %q; want HIT again", r.Header.Get("X-Cache"))
		}
	})
}
