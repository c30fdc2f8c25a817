package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time source for p.now.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func setNow(p *Proxy, c *clock)          { p.now = c.Now }
func expect(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %q; want %q", what, got, want)
	}
}

// scripted is an origin whose next responses a test sets.
type scripted struct {
	now     func() time.Time // Date of responses; real time if nil
	mu      sync.Mutex
	status  int
	header  http.Header
	body    string
	lastReq *http.Request
}

func (s *scripted) set(status int, body string, kv ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body, s.header = status, body, http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		s.header.Add(kv[i], kv[i+1])
	}
}

func (s *scripted) handler(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.lastReq = r.Clone(r.Context())
	status, body := s.status, s.body
	for k, v := range s.header {
		w.Header()[k] = v
	}
	if s.now != nil {
		w.Header().Set("Date", s.now().UTC().Format(http.TimeFormat))
	}
	s.mu.Unlock()
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == w.Header().Get("ETag") {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (s *scripted) last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastReq
}

// timed is a proxy in front of a scripted origin, both on a settable clock
// (the origin's Date follows it).
type timed struct {
	s   *scripted
	o   *origin
	p   *Proxy
	srv *httptest.Server
	c   *clock
}

func newTimed(t *testing.T, mod func(*Config)) timed {
	t.Helper()
	s := &scripted{}
	o := newOrigin(t, s.handler)
	p, srv := newTestProxy(t, o.URL, mod)
	c := newClock()
	setNow(p, c)
	s.now = c.Now
	return timed{s: s, o: o, p: p, srv: srv, c: c}
}

func TestRevalidation(t *testing.T) {
	tp := newTimed(t, nil)
	s, o, p, srv, c := tp.s, tp.o, tp.p, tp.srv, tp.c
	s.set(200, "v1", "Cache-Control", "max-age=10", "ETag", `"v1"`, "X-Version", "1")

	do(t, "GET", srv.URL+"/r")
	c.Advance(20 * time.Second) // stale
	s.set(200, "v1", "Cache-Control", "max-age=10", "ETag", `"v1"`, "X-Version", "2")
	resp, body := do(t, "GET", srv.URL+"/r")
	// RFC 9111 §4.3.1: the stored validator is sent; §4.3.4: the 304's
	// fields update the stored response, whose body is served.
	expect(t, "If-None-Match sent", s.last().Header.Get("If-None-Match"), `"v1"`)
	expect(t, "status", resp.Status, "200 OK")
	expect(t, "body", body, "v1")
	expect(t, "X-Cache", resp.Header.Get("X-Cache"), "HIT")
	expect(t, "Cache-Status", resp.Header.Get("Cache-Status"), "dedupcache; fwd=stale; fwd-status=304")
	expect(t, "updated field", resp.Header.Get("X-Version"), "2")
	if p.revalidated.Load() != 1 {
		t.Errorf("revalidated: got %d; want 1", p.revalidated.Load())
	}
	// Fresh again: a hit without going upstream.
	before := o.hits.Load()
	resp, _ = do(t, "GET", srv.URL+"/r")
	expect(t, "X-Cache after 304", resp.Header.Get("X-Cache"), "HIT")
	expect(t, "updated field on hit", resp.Header.Get("X-Version"), "2")
	if o.hits.Load() != before {
		t.Errorf("origin contacted for a fresh entry")
	}
	// A changed resource: 200 replaces the entry; identical bytes share one body.
	c.Advance(20 * time.Second)
	s.set(200, "v2", "Cache-Control", "max-age=10", "ETag", `"v2"`)
	_, body = do(t, "GET", srv.URL+"/r")
	expect(t, "new body", body, "v2")
	_, body = do(t, "GET", srv.URL+"/r")
	expect(t, "new body from cache", body, "v2")
	// The replaced entry's body goes once nothing pins it: the handlers
	// that served it may still be returning.
	eventually(t, func() bool { st := p.Stats(); return st.Entries == 1 && st.BodiesUnique == 1 }, func() string {
		st := p.Stats()
		return fmt.Sprintf("entries %d bodies %d; want 1 1", st.Entries, st.BodiesUnique)
	})
}

func TestClientConditional(t *testing.T) {
	lm := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	s := &scripted{}
	s.set(200, "body", "Cache-Control", "max-age=60", "ETag", `W/"w1"`, "Last-Modified", lm)
	o := newOrigin(t, s.handler)
	_, srv := newTestProxy(t, o.URL, nil)
	do(t, "GET", srv.URL+"/c")
	tests := []struct {
		name   string
		hdr    []string
		status int
	}{
		{"If-None-Match weak match (RFC 9110 §13.1.2)", []string{"If-None-Match", `"w1"`}, 304},
		{"If-None-Match list", []string{"If-None-Match", `"x", W/"w1"`}, 304},
		{"If-None-Match star", []string{"If-None-Match", `*`}, 304},
		{"If-None-Match other", []string{"If-None-Match", `"x"`}, 200},
		{"If-Modified-Since equal (§13.1.3)", []string{"If-Modified-Since", lm}, 304},
		{"If-Modified-Since older", []string{"If-Modified-Since", time.Now().Add(-2 * time.Hour).UTC().Format(http.TimeFormat)}, 200},
		{"If-None-Match wins over If-Modified-Since (§13.2.2)", []string{"If-None-Match", `"x"`, "If-Modified-Since", lm}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, "GET", srv.URL+"/c", tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Errorf("status: got %d; want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 304 && (body != "" || resp.Header.Get("ETag") != `W/"w1"`) {
				t.Errorf("304: body %q, ETag %q", body, resp.Header.Get("ETag"))
			}
		})
	}
	if o.hits.Load() != 1 {
		t.Errorf("origin requests: got %d; want 1", o.hits.Load())
	}
}

func TestRange(t *testing.T) {
	s := &scripted{}
	s.set(200, "0123456789", "Cache-Control", "max-age=60", "ETag", `"r1"`)
	o := newOrigin(t, s.handler)
	_, srv := newTestProxy(t, o.URL, nil)
	do(t, "GET", srv.URL+"/g")
	tests := []struct {
		name         string
		hdr          []string
		status       int
		body, crange string
	}{
		{"first bytes (RFC 9110 §14.1.2)", []string{"Range", "bytes=0-3"}, 206, "0123", "bytes 0-3/10"},
		{"suffix", []string{"Range", "bytes=-2"}, 206, "89", "bytes 8-9/10"},
		{"open end", []string{"Range", "bytes=7-"}, 206, "789", "bytes 7-9/10"},
		{"unsatisfiable (§15.5.17)", []string{"Range", "bytes=20-30"}, 416, "", "bytes */10"},
		{"multi-range answered whole", []string{"Range", "bytes=0-1,4-5"}, 200, "0123456789", ""},
		{"If-Range matching (§13.1.5)", []string{"Range", "bytes=0-0", "If-Range", `"r1"`}, 206, "0", "bytes 0-0/10"},
		{"If-Range not matching", []string{"Range", "bytes=0-0", "If-Range", `"old"`}, 200, "0123456789", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, "GET", srv.URL+"/g", tt.hdr...)
			if resp.StatusCode != tt.status || body != tt.body || resp.Header.Get("Content-Range") != tt.crange {
				t.Errorf("got %d %q %q; want %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"), tt.status, tt.body, tt.crange)
			}
		})
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	tp := newTimed(t, nil)
	s, srv, c := tp.s, tp.srv, tp.c
	s.set(200, "old", "Cache-Control", "max-age=1, stale-while-revalidate=60")
	do(t, "GET", srv.URL+"/s")
	c.Advance(10 * time.Second)
	s.set(200, "new", "Cache-Control", "max-age=100")
	resp, body := do(t, "GET", srv.URL+"/s")
	// RFC 5861 §3: the stale response is served at once...
	expect(t, "X-Cache", resp.Header.Get("X-Cache"), "STALE")
	expect(t, "body", body, "old")
	// ...and refreshed in the background.
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, body = do(t, "GET", srv.URL+"/s")
		if body == "new" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	expect(t, "after refresh", body, "new")
}

func TestStaleIfError(t *testing.T) {
	tests := []struct {
		name    string
		cc      string
		grace   time.Duration
		advance time.Duration
		status  int
		xcache  string
	}{
		{"stale-if-error on 503 (RFC 5861 §4)", "max-age=1, stale-if-error=60", 0, 10 * time.Second, 200, "STALE"},
		{"stale-if-error window passed", "max-age=1, stale-if-error=5", 0, 10 * time.Second, 503, "BYPASS"},
		{"no stale-if-error, no grace", "max-age=1", 0, 10 * time.Second, 503, "BYPASS"},
		{"operator grace", "max-age=1", time.Minute, 10 * time.Second, 200, "STALE"},
		{"must-revalidate beats grace (RFC 9111 §5.2.2.2)", "max-age=1, must-revalidate", time.Minute, 10 * time.Second, 503, "BYPASS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTimed(t, func(c *Config) { c.Grace = tt.grace })
			s, srv, c := tp.s, tp.srv, tp.c
			s.set(200, "good", "Cache-Control", tt.cc)
			do(t, "GET", srv.URL+"/e")
			c.Advance(tt.advance)
			s.set(503, "down")
			resp, body := do(t, "GET", srv.URL+"/e")
			if resp.StatusCode != tt.status || resp.Header.Get("X-Cache") != tt.xcache {
				t.Errorf("got %d %s %q; want %d %s", resp.StatusCode, resp.Header.Get("X-Cache"), body, tt.status, tt.xcache)
			}
			if tt.status == 200 && body != "good" {
				t.Errorf("body: got %q; want the stale one", body)
			}
		})
	}
}

func TestStaleIfErrorUpstreamDown(t *testing.T) {
	s := &scripted{}
	// With a validator: the outbound revalidation carries the cache's own
	// If-None-Match, which must not turn the stale answer into a 304.
	s.set(200, "good", "Cache-Control", "max-age=1, stale-if-error=60", "ETag", `"d1"`)
	o := newOrigin(t, s.handler)
	p, srv := newTestProxy(t, o.URL, nil)
	c := newClock()
	setNow(p, c)
	do(t, "GET", srv.URL+"/d")
	o.Close()
	c.Advance(5 * time.Second)
	resp, body := do(t, "GET", srv.URL+"/d")
	if resp.StatusCode != 200 || body != "good" || resp.Header.Get("X-Cache") != "STALE" {
		t.Errorf("got %d %q %s; want 200 good STALE", resp.StatusCode, body, resp.Header.Get("X-Cache"))
	}
}

// Waiters on a fetch whose upstream fails, answered with the stale entry
// (RFC 5861 stale-if-error), get a Cache-Status that says so, as the
// leader's does: for an upstream 5xx and for an upstream that cannot be
// reached.
func TestStaleIfErrorWaitersSayWhy(t *testing.T) {
	for _, fault := range []string{"503", "dropped"} {
		t.Run(fault, func(t *testing.T) {
			var failing atomic.Bool
			release := make(chan struct{})
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				if !failing.Load() {
					w.Header().Set("Cache-Control", "max-age=1, stale-if-error=60")
					_, _ = io.WriteString(w, "good")
					return
				}
				<-release
				if fault == "503" {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				c, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					c.Close()
				}
			})
			p, srv := newTestProxy(t, o.URL, nil)
			c := newClock()
			setNow(p, c)
			do(t, "GET", srv.URL+"/d")
			c.Advance(5 * time.Second)
			failing.Store(true)
			const n = 4
			answers := herd(t, srv.URL+"/d", n, func() bool { return o.hits.Load() == 2 }, release)
			for _, a := range answers {
				if a.status != 200 || a.body != "good" || !strings.Contains(a.cache, "detail=stale-if-error") {
					t.Errorf("%d %q, Cache-Status %q; want 200 \"good\", detail=stale-if-error", a.status, a.body, a.cache)
				}
			}
			if got := o.hits.Load(); got > 3 { // the fetch engine retries a dropped GET once
				t.Errorf("origin requests: %d; want the waiters coalesced", got)
			}
		})
	}
}

func TestCoalescing(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "shared")
	})
	p, srv := newTestProxy(t, o.URL, nil)
	const n = 1000
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	var bad atomic.Int64
	var started sync.WaitGroup
	started.Add(n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			resp, err := client.Get(srv.URL + "/cold")
			if err != nil {
				bad.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "shared" {
				bad.Add(1)
			}
		}()
	}
	started.Wait()
	// Let the requests reach the proxy and queue behind the leader.
	deadline := time.Now().Add(10 * time.Second)
	for o.hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	close(release)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d requests failed or got a wrong body", bad.Load())
	}
	if got := o.hits.Load(); got != 1 {
		t.Errorf("upstream requests for %d concurrent cold requests: got %d; want 1", n, got)
	}
	t.Logf("coalesced waiters: %d, hits: %d", p.coalesced.Load(), p.counts[StatusHit].Load())
	if st := p.Stats(); st.BodiesUnique != 1 {
		t.Errorf("bodies: got %d; want 1", st.BodiesUnique)
	}
}

func TestHitForMiss(t *testing.T) {
	var inflight, maxInflight atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			m := maxInflight.Load()
			if n <= m || maxInflight.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		w.Header().Set("Cache-Control", "private")
		_, _ = io.WriteString(w, "mine")
	})
	_, srv := newTestProxy(t, o.URL, nil)
	do(t, "GET", srv.URL+"/p") // the leader finds out: not storable
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := do(t, "GET", srv.URL+"/p")
			if !strings.Contains(resp.Header.Get("Cache-Status"), "hit-for-miss") {
				t.Errorf("Cache-Status: got %q; want detail=hit-for-miss", resp.Header.Get("Cache-Status"))
			}
		}()
	}
	wg.Wait()
	if maxInflight.Load() < 2 {
		t.Errorf("requests for a hit-for-miss key were serialised (max in flight %d)", maxInflight.Load())
	}
}

func TestInvalidation(t *testing.T) {
	s := &scripted{}
	s.set(200, "v", "Cache-Control", "max-age=60", "Vary", "Accept-Language")
	o := newOrigin(t, s.handler)
	p, srv := newTestProxy(t, o.URL, nil)
	for _, lang := range []string{"en", "fr"} {
		do(t, "GET", srv.URL+"/doc", "Accept-Language", lang)
	}
	do(t, "GET", srv.URL+"/other")
	if st := p.Stats(); st.Entries != 3 {
		t.Fatalf("entries: got %d; want 3", st.Entries)
	}
	// RFC 9111 §4.4: a non-error response to an unsafe method invalidates
	// the target URI (every variant) and same-origin Location.
	s.set(201, "created", "Location", "/other")
	resp, _ := do(t, "POST", srv.URL+"/doc")
	expect(t, "POST X-Cache", resp.Header.Get("X-Cache"), "BYPASS")
	p.store.Wait()
	if st := p.Stats(); st.Entries != 0 {
		t.Errorf("entries after POST: got %d; want 0", st.Entries)
	}
	s.set(200, "v", "Cache-Control", "max-age=60")
	resp, _ = do(t, "GET", srv.URL+"/doc", "Accept-Language", "en")
	expect(t, "after invalidation", resp.Header.Get("X-Cache"), "MISS")

	// An error response invalidates nothing.
	s.set(500, "boom")
	do(t, "DELETE", srv.URL+"/doc")
	s.set(200, "v", "Cache-Control", "max-age=60")
	resp, _ = do(t, "GET", srv.URL+"/doc", "Accept-Language", "en")
	expect(t, "after failed DELETE", resp.Header.Get("X-Cache"), "HIT")
}

func TestFreshnessRules(t *testing.T) {
	tests := []struct {
		name    string
		cc      []string // response fields
		reqHdr  []string // second request's fields
		advance time.Duration
		want    string // X-Cache of the second request
	}{
		{"max-age fresh (RFC 9111 §4.2.1)", []string{"Cache-Control", "max-age=60"}, nil, 30 * time.Second, "HIT"},
		{"max-age stale", []string{"Cache-Control", "max-age=60"}, nil, 90 * time.Second, "MISS"},
		{"s-maxage beats max-age (§5.2.2.10)", []string{"Cache-Control", "max-age=1000, s-maxage=10"}, nil, 30 * time.Second, "MISS"},
		{"Expires in the future (§5.3)", []string{"Expires", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, nil, 30 * time.Second, "HIT"},
		{"no-cache revalidates every time (§5.2.2.4)", []string{"Cache-Control", "no-cache", "ETag", `"n"`}, nil, 0, "HIT"},
		{"request max-age=0 (§5.2.1.1)", []string{"Cache-Control", "max-age=60", "ETag", `"m"`}, []string{"Cache-Control", "max-age=0"}, 5 * time.Second, "HIT"},
		{"request min-fresh (§5.2.1.3)", []string{"Cache-Control", "max-age=60"}, []string{"Cache-Control", "min-fresh=50"}, 30 * time.Second, "MISS"},
		{"request max-stale (§5.2.1.2)", []string{"Cache-Control", "max-age=60"}, []string{"Cache-Control", "max-stale=100"}, 90 * time.Second, "HIT"},
		{"request no-cache (§5.2.1.4)", []string{"Cache-Control", "max-age=60"}, []string{"Cache-Control", "no-cache"}, 0, "MISS"},
		{"Pragma no-cache (§5.4)", []string{"Cache-Control", "max-age=60"}, []string{"Pragma", "no-cache"}, 0, "MISS"},
		{"heuristic from Last-Modified (§4.2.2)", []string{"Last-Modified", time.Now().Add(-100 * time.Hour).UTC().Format(http.TimeFormat)}, nil, time.Hour, "HIT"},
		{"CDN-Cache-Control overrides (RFC 9213)", []string{"Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60"}, nil, 10 * time.Second, "HIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTimed(t, nil)
			s, srv, c := tp.s, tp.srv, tp.c
			s.set(200, "x", tt.cc...)
			do(t, "GET", srv.URL+"/f")
			c.Advance(tt.advance)
			resp, _ := do(t, "GET", srv.URL+"/f", tt.reqHdr...)
			if got := resp.Header.Get("X-Cache"); got != tt.want {
				t.Errorf("X-Cache: got %s; want %s (Cache-Status %q)", got, tt.want, resp.Header.Get("Cache-Status"))
			}
		})
	}
}

func TestSynthesizedETag(t *testing.T) {
	o := newOrigin(t, cacheable("no validator"))
	_, srv := newTestProxy(t, o.URL, func(c *Config) { c.SynthesizeETag = true })
	do(t, "GET", srv.URL+"/e")
	resp, _ := do(t, "GET", srv.URL+"/e")
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"dc-`) {
		t.Fatalf("ETag: got %q; want a synthesized strong ETag", etag)
	}
	resp, _ = do(t, "GET", srv.URL+"/e", "If-None-Match", etag)
	if resp.StatusCode != 304 {
		t.Errorf("conditional on synthesized ETag: got %d; want 304", resp.StatusCode)
	}
	_ = fmt.Sprint()
}

func TestCachePOST(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, r.URL.Path+" answers "+string(b))
	})
	_, srv := newTestProxy(t, o.URL, func(c *Config) { c.CachePOSTPaths = []string{"/graphql"} })
	post := func(path, body string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	steps := []struct{ path, body, xcache, want string }{
		{"/graphql", `{"q":1}`, "MISS", "/graphql answers {\"q\":1}"},
		{"/graphql", `{"q":1}`, "HIT", "/graphql answers {\"q\":1}"},
		{"/graphql", `{"q":2}`, "MISS", "/graphql answers {\"q\":2}"}, // another body, another key
		{"/graphql", `{"q":2}`, "HIT", "/graphql answers {\"q\":2}"},
		{"/other", `{"q":1}`, "BYPASS", "/other answers {\"q\":1}"}, // not listed
	}
	for i, s := range steps {
		resp, body := post(s.path, s.body)
		if resp.Header.Get("X-Cache") != s.xcache || body != s.want {
			t.Errorf("step %d: got %s %q; want %s %q", i, resp.Header.Get("X-Cache"), body, s.xcache, s.want)
		}
	}
	// A GET of the same URL is a different key.
	resp, _ := do(t, "GET", srv.URL+"/graphql")
	expect(t, "GET after POST", resp.Header.Get("X-Cache"), "MISS")
}

// TestCoalescedWaiterCancellation: a waiter whose client gives up returns
// at once, while the leader goes on and stores the response.
func TestCoalescedWaiterCancellation(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "late")
	})
	p, srv := newTestProxy(t, o.URL, nil)
	leaderDone := getAsync(srv.URL + "/slow")
	for o.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/slow", nil)
	start := time.Now()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("waiter got a response while the leader was still waiting")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled waiter returned after %v", d)
	}
	close(release)
	if got := <-leaderDone; got != "late" {
		t.Errorf("leader: got %q; want the body", got)
	}
	if o.hits.Load() != 1 || p.Stats().Entries != 1 {
		t.Errorf("origin requests %d, entries %d; want 1, 1", o.hits.Load(), p.Stats().Entries)
	}
}

// TestRequestNoStoreLeavesStaleEntry: RFC 9111 §5.2.1.5 — a request with
// no-store does not revalidate (and so update) a stale stored response.
func TestRequestNoStoreLeavesStaleEntry(t *testing.T) {
	tp := newTimed(t, nil)
	s, p, srv, c := tp.s, tp.p, tp.srv, tp.c
	s.set(200, "v1", "Cache-Control", "max-age=10", "ETag", `"v1"`, "X-Version", "1")
	do(t, "GET", srv.URL+"/n")
	c.Advance(20 * time.Second)
	s.set(200, "v1", "Cache-Control", "max-age=10", "ETag", `"v1"`, "X-Version", "2")
	resp, body := do(t, "GET", srv.URL+"/n", "Cache-Control", "no-store")
	expect(t, "no-store request", resp.Header.Get("X-Cache")+" "+body, "BYPASS v1")
	expect(t, "no validator sent", s.last().Header.Get("If-None-Match"), "")
	if p.revalidated.Load() != 0 {
		t.Errorf("stale entry was freshened by a no-store request")
	}
}

// TestHeadFillsCache: a HEAD miss fetches the GET (as nginx and Varnish
// do), stores it, and answers the HEAD from it; the next GET is a hit.
func TestHeadFillsCache(t *testing.T) {
	var methods []string
	var mu sync.Mutex
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "twelve bytes")
	})
	_, srv := newTestProxy(t, o.URL, nil)
	resp, body := do(t, "HEAD", srv.URL+"/h")
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != 12 || resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("HEAD: %d %q length %d %s; want 200, no body, 12, MISS", resp.StatusCode, body, resp.ContentLength, resp.Header.Get("X-Cache"))
	}
	expect(t, "HEAD Cache-Status", resp.Header.Get("Cache-Status"), "dedupcache; fwd=uri-miss; stored")
	resp, body = do(t, "GET", srv.URL+"/h")
	expect(t, "GET after HEAD", resp.Header.Get("X-Cache")+" "+body, "HIT twelve bytes")
	mu.Lock()
	defer mu.Unlock()
	if len(methods) != 1 || methods[0] != "GET" {
		t.Errorf("origin saw %v; want [GET]", methods)
	}
}

// TestWaitersOfUnsharedResponseSayWhy: waiters on a fetch whose response
// may not be shared (private) each fetch their own, answered BYPASS with
// detail=not-shared, never with a reason the client did not give
// (request-no-store).
func TestWaitersOfUnsharedResponseSayWhy(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "private, max-age=60")
		_, _ = io.WriteString(w, "mine")
	})
	_, srv := newTestProxy(t, o.URL, nil)
	const n = 4
	answers := herd(t, srv.URL+"/p", n, func() bool { return o.hits.Load() == 1 }, release)
	waiters := 0
	for _, a := range answers {
		if a.status != 200 || a.body != "mine" || strings.Contains(a.cache, "request-no-store") {
			t.Errorf("%d %q, Cache-Status %q; want 200 \"mine\", no request-no-store", a.status, a.body, a.cache)
		}
		if strings.Contains(a.cache, "detail=not-shared") {
			waiters++
		}
	}
	if waiters != n-1 {
		t.Errorf("%d answers say detail=not-shared; want the %d waiters'", waiters, n-1)
	}
}

// herdAnswer is what one client of herd got.
type herdAnswer struct {
	status      int
	body, cache string
}

// herd sends n GETs of url: the first, the leader, until leading (its
// fetch has reached the origin) holds, then the others, which join its
// fetch; then it closes release (the origin answers) and returns every
// client's answer.
func herd(t *testing.T, url string, n int, leading func() bool, release chan struct{}) []herdAnswer {
	t.Helper()
	answers := make(chan herdAnswer, n)
	for i := range n {
		go func() {
			resp, err := http.Get(url)
			if err != nil {
				answers <- herdAnswer{}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- herdAnswer{resp.StatusCode, string(b), resp.Header.Get("Cache-Status")}
		}()
		if i == 0 {
			eventually(t, leading, func() string { return "the leader's fetch never reached the origin" })
		}
	}
	time.Sleep(200 * time.Millisecond) // the waiters join the fetch
	close(release)
	out := make([]herdAnswer, 0, n)
	for range n {
		out = append(out, <-answers)
	}
	return out
}

// TestCacheAnswerNamesUpstreamStatus: when the cache answers a miss with a
// status of its own (a 304 for the client's conditional, a 206 for its
// Range) cut from the upstream's 200, Cache-Status says fwd-status=200:
// without it, RFC 9211 §2.3 reads fwd-status as the status sent.
func TestCacheAnswerNamesUpstreamStatus(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"v1"`)
		_, _ = io.WriteString(w, "0123456789")
	})
	_, srv := newTestProxy(t, o.URL, nil)
	for _, tc := range []struct {
		name, field, value string
		status             int
	}{
		{"conditional", "If-None-Match", `"v1"`, http.StatusNotModified},
		{"range", "Range", "bytes=0-3", http.StatusPartialContent},
		{"plain", "", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/"+tc.name, nil)
			if tc.field != "" {
				req.Header.Set(tc.field, tc.value)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			cs := resp.Header.Get("Cache-Status")
			if resp.StatusCode != tc.status || !strings.Contains(cs, "fwd=uri-miss") {
				t.Fatalf("%d, Cache-Status %q; want %d and a miss", resp.StatusCode, cs, tc.status)
			}
			if got := strings.Contains(cs, "fwd-status=200"); got != (tc.status != http.StatusOK) {
				t.Fatalf("Cache-Status %q: fwd-status=200 present %v, want %v", cs, got, tc.status != http.StatusOK)
			}
		})
	}
}

func TestWithFwdStatus(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{[]string{"dedupcache; fwd=uri-miss; stored"}, []string{"dedupcache; fwd=uri-miss; fwd-status=200; stored"}},
		{[]string{"dedupcache; fwd=miss"}, []string{"dedupcache; fwd=miss; fwd-status=200"}},
		{[]string{"dedupcache; fwd=stale; fwd-status=304"}, []string{"dedupcache; fwd=stale; fwd-status=304"}},
		{[]string{"dedupcache; hit"}, []string{"dedupcache; hit"}},
		{[]string{"other; fwd=uri-miss", "dedupcache; fwd=uri-miss; collapsed"}, []string{"other; fwd=uri-miss", "dedupcache; fwd=uri-miss; fwd-status=200; collapsed"}},
		{[]string{"other; fwd=uri-miss"}, []string{"other; fwd=uri-miss"}},
		{nil, nil},
	} {
		in := slices.Clone(tc.in)
		if got := withFwdStatus(in, 200); !slices.Equal(got, tc.want) {
			t.Errorf("withFwdStatus(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("withFwdStatus modified its argument: %q", in)
		}
	}
}

// TestRevalidationWaitersNameThe304: requests that wait on another's
// revalidation get the freshened entry, collapsed, and their Cache-Status
// names the upstream's 304 (fwd-status), not the 200 they receive.
func TestRevalidationWaitersNameThe304(t *testing.T) {
	release := make(chan struct{})
	var conditionals atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=0")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") != "" {
			conditionals.Add(1)
			<-release
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, "body")
	})
	_, srv := newTestProxy(t, o.URL, nil)
	getDiscard(t, srv.URL+"/r") // stored, and stale at once (max-age=0)

	const n = 3 // a leader revalidates, two wait on it
	waiters := 0
	for _, a := range herd(t, srv.URL+"/r", n, func() bool { return conditionals.Load() == 1 }, release) {
		if a.status != 200 || a.body != "body" || !strings.Contains(a.cache, "fwd-status=304") {
			t.Fatalf("answer %+v: want the freshened 200, naming the upstream's 304", a)
		}
		if strings.Contains(a.cache, "collapsed") {
			waiters++
		}
	}
	if waiters != n-1 {
		t.Fatalf("%d collapsed answers, want %d", waiters, n-1)
	}
	if got := o.hits.Load(); got != 2 {
		t.Fatalf("upstream requests %d, want 2", got)
	}
}

// TestRevalidationMisfit304: a 304 whose ETag is not the stored response's
// updates nothing (RFC 9111 §4.3.4), and the client, whose request had no
// conditional, gets the full response: the cache asks again without
// validators instead of relaying a body-less 304.
func TestRevalidationMisfit304(t *testing.T) {
	c := newClock()
	var mu sync.Mutex
	etag, body := `"old"`, "old body"
	var conditional, plain int
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		h := w.Header()
		h.Set("Date", c.Now().UTC().Format(http.TimeFormat))
		h.Set("Cache-Control", "max-age=10")
		h.Set("ETag", etag)
		if r.Header.Get("If-None-Match") != "" {
			conditional++
			w.WriteHeader(http.StatusNotModified) // whatever it was asked: a misbehaving origin
			return
		}
		plain++
		_, _ = io.WriteString(w, body)
	})
	p, srv := newTestProxy(t, o.URL, nil)
	setNow(p, c)
	do(t, "GET", srv.URL+"/m")
	c.Advance(20 * time.Second)
	mu.Lock()
	etag, body = `"new"`, "new body"
	mu.Unlock()
	resp, got := do(t, "GET", srv.URL+"/m")
	expect(t, "status", resp.Status, "200 OK")
	expect(t, "body", got, "new body")
	expect(t, "ETag", resp.Header.Get("Etag"), `"new"`)
	mu.Lock()
	if conditional != 1 || plain != 2 {
		t.Errorf("origin saw %d conditional and %d plain requests; want 1 and 2", conditional, plain)
	}
	mu.Unlock()
	// The new response is stored: the next request is a hit of it.
	resp, got = do(t, "GET", srv.URL+"/m")
	expect(t, "X-Cache after", resp.Header.Get("X-Cache"), "HIT")
	expect(t, "body after", got, "new body")
	if p.revalidated.Load() != 0 {
		t.Errorf("revalidated %d; want 0 (the 304 fitted nothing)", p.revalidated.Load())
	}
}

// TestSurrogateControl: the cache advertises its device token upstream
// (Surrogate-Capability; a client's own claim is dropped, a trusted
// balancer's kept first) and obeys a Surrogate-Control for it over
// Cache-Control, which downstream caches still get as the origin sent it;
// the consumed Surrogate-Control is not passed on.
func TestSurrogateControl(t *testing.T) {
	s := &scripted{}
	o := newOrigin(t, s.handler)
	for _, tt := range []struct {
		name    string
		trusted bool
		wantCap string
	}{
		{"untrusted client", false, `dedupcache="Surrogate/1.0"`},
		{"trusted balancer", true, `lb="Surrogate/1.0", dedupcache="Surrogate/1.0"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestProxy(t, o.URL, func(c *Config) {
				if tt.trusted {
					c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
				}
			})
			s.set(200, "sc", "Cache-Control", "no-store", "Surrogate-Control", "max-age=600;dedupcache")
			path := "/sc-" + strconv.FormatBool(tt.trusted)
			resp, _ := do(t, "GET", srv.URL+path, "Surrogate-Capability", `lb="Surrogate/1.0"`)
			if got := strings.Join(s.last().Header.Values("Surrogate-Capability"), ", "); got != tt.wantCap {
				t.Errorf("origin's Surrogate-Capability %q; want %q", got, tt.wantCap)
			}
			expect(t, "client's Cache-Control", resp.Header.Get("Cache-Control"), "no-store")
			expect(t, "client's Surrogate-Control", resp.Header.Get("Surrogate-Control"), "")
			resp, body := do(t, "GET", srv.URL+path)
			expect(t, "X-Cache", resp.Header.Get("X-Cache"), "HIT")
			expect(t, "body", body, "sc")
			expect(t, "hit's Cache-Control", resp.Header.Get("Cache-Control"), "no-store")
			expect(t, "hit's Surrogate-Control", resp.Header.Get("Surrogate-Control"), "")
		})
	}
	t.Run("no-store for this cache", func(t *testing.T) {
		_, srv := newTestProxy(t, o.URL, nil)
		s.set(200, "ns", "Cache-Control", "max-age=600", "Surrogate-Control", "no-store")
		do(t, "GET", srv.URL+"/sc-ns")
		resp, _ := do(t, "GET", srv.URL+"/sc-ns")
		expect(t, "X-Cache", resp.Header.Get("X-Cache"), "BYPASS")
	})
}
