package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"dedupcache/cachestore"
)

// Tests for the findings of the December 2026 security review, one or more
// per finding (F1..F14). Each failed before its fix.

// F1: a 304 never brings the revalidating user's Set-Cookie, nor private or
// no-store, into the shared entry; the tag header stays stripped.
func TestRevalidation304PerUserFields(t *testing.T) {
	tests := []struct {
		name      string
		extra     []string // fields of the 304
		wantStore bool     // the 304 refreshes the entry
	}{
		{"Set-Cookie", []string{"Set-Cookie", "session=alice-renewed; HttpOnly"}, true},
		{"private", []string{"Cache-Control", "private, max-age=30"}, false},
		{"no-store", []string{"Cache-Control", "no-store"}, false},
		{"Surrogate-Key", []string{"Surrogate-Key", "internal-tag"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTimed(t, nil)
			var notModified atomic.Bool
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Etag", `"v1"`)
				if r.Header.Get("If-None-Match") == `"v1"` && notModified.Load() {
					w.Header().Set("Cache-Control", "max-age=30")
					for i := 0; i+1 < len(tt.extra); i += 2 {
						w.Header().Set(tt.extra[i], tt.extra[i+1])
					}
					w.WriteHeader(http.StatusNotModified)
					return
				}
				w.Header().Set("Cache-Control", "max-age=1")
				_, _ = io.WriteString(w, "shared page")
			})
			p, srv := newTestProxy(t, o.URL, nil)
			setNow(p, tp.c)
			do(t, "GET", srv.URL+"/cookie")
			tp.c.Advance(5 * time.Second)
			notModified.Store(true)
			resp, body := do(t, "GET", srv.URL+"/cookie", "Cookie", "session=alice")
			if body != "shared page" {
				t.Fatalf("revalidating client: body %q", body)
			}
			if tt.name == "Set-Cookie" && resp.Header.Get("Set-Cookie") == "" {
				t.Errorf("the revalidating client lost its own Set-Cookie")
			}
			if got := resp.Header.Get("Surrogate-Key"); got != "" {
				t.Errorf("revalidating client got Surrogate-Key %q", got)
			}
			resp, _ = do(t, "GET", srv.URL+"/cookie") // another user
			if sc := resp.Header.Get("Set-Cookie"); sc != "" {
				t.Errorf("another client got Set-Cookie %q (X-Cache %s)", sc, resp.Header.Get("X-Cache"))
			}
			if sk := resp.Header.Get("Surrogate-Key"); sk != "" {
				t.Errorf("another client got Surrogate-Key %q", sk)
			}
			hit := resp.Header.Get("X-Cache") == "HIT"
			if hit != tt.wantStore {
				t.Errorf("after the 304: X-Cache %s (Cache-Status %q); want stored=%v", resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"), tt.wantStore)
			}
		})
	}
}

// F2, F7, F13, F14 and the one-outbound-path rule: every kind of fetch
// sends the origin the same request for the same client request.
func TestOneOutboundPath(t *testing.T) {
	type fetch struct {
		name string
		run  func(t *testing.T, tp timed, srv string, hdr []string)
	}
	client := []string{
		"X-Forwarded-Host", "evil.example", "X-Forwarded-For", "10.0.0.1", "X-Forwarded-Proto", "https",
		"Forwarded", "for=10.0.0.1", "X-Forwarded-Port", "1337", "X-Forwarded-Prefix", "/evil",
		"X-Original-URL", "/admin", "X-Rewrite-URL", "/admin", "X-HTTP-Method-Override", "DELETE",
		"X-Host", "evil.example", "X-Forwarded-Ssl", "on", "X-Forwarded-Scheme", "https",
		"If-None-Match", `"client"`, "If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT", "Range", "bytes=0-0",
		"Accept-Encoding", "br, gzip", "X-Custom", "kept",
	}
	const target = "/a%2Fb;c=%3B?q=%2B1&x=y"
	fetches := []fetch{
		{"miss", func(t *testing.T, tp timed, srv string, hdr []string) {
			do(t, "GET", srv+target, hdr...)
		}},
		{"HEAD fill", func(t *testing.T, tp timed, srv string, hdr []string) {
			do(t, "HEAD", srv+target, hdr...)
		}},
		{"revalidation", func(t *testing.T, tp timed, srv string, hdr []string) {
			do(t, "GET", srv+target)
			tp.c.Advance(2 * time.Second)
			do(t, "GET", srv+target, hdr...)
		}},
		{"stale-while-revalidate refresh", func(t *testing.T, tp timed, srv string, hdr []string) {
			tp.s.set(200, "body", "Cache-Control", "max-age=1, stale-while-revalidate=60", "Etag", `"v1"`)
			do(t, "GET", srv+target)
			tp.c.Advance(2 * time.Second)
			before := tp.o.hits.Load()
			do(t, "GET", srv+target, hdr...)
			for deadline := time.Now().Add(3 * time.Second); tp.o.hits.Load() == before && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
		}},
	}
	var want *http.Request
	for _, f := range fetches {
		t.Run(f.name, func(t *testing.T) {
			tp := newTimed(t, nil)
			tp.s.set(200, "body", "Cache-Control", "max-age=1", "Etag", `"v1"`)
			f.run(t, tp, tp.srv.URL, client)
			got := tp.s.last()
			if got == nil {
				t.Fatal("the origin saw no request")
			}
			if got.Method != http.MethodGet || got.RequestURI != target {
				t.Errorf("origin saw %s %s; want GET %s", got.Method, got.RequestURI, target)
			}
			for _, k := range []string{"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Original-Url", "X-Rewrite-Url",
				"X-Http-Method-Override", "X-Host", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "Forwarded", "Range", "If-Modified-Since"} {
				if v := got.Header.Get(k); v != "" {
					t.Errorf("origin saw the client's %s: %q", k, v)
				}
			}
			if v := got.Header.Get("X-Forwarded-Host"); v != strings.TrimPrefix(tp.srv.URL, "http://") {
				t.Errorf("origin saw X-Forwarded-Host %q; want the client's Host", v)
			}
			if v := got.Header.Get("X-Forwarded-For"); strings.Contains(v, "10.0.0.1") {
				t.Errorf("origin saw the client's X-Forwarded-For %q", v)
			}
			if v := got.Header.Get("X-Forwarded-Proto"); v != "http" {
				t.Errorf("X-Forwarded-Proto %q; want http (from the connection)", v)
			}
			inm := got.Header.Get("If-None-Match")
			if f.name == "revalidation" || f.name == "stale-while-revalidate refresh" {
				if inm != `"v1"` {
					t.Errorf("revalidation sent If-None-Match %q; want the stored \"v1\"", inm)
				}
			} else if inm != "" {
				t.Errorf("fill sent the client's If-None-Match %q", inm)
			}
			if got.Header.Get("Accept-Encoding") != "br, gzip" && !strings.Contains(got.Header.Get("Accept-Encoding"), "br") {
				t.Errorf("Accept-Encoding %q; want the key's bucket", got.Header.Get("Accept-Encoding"))
			}
			if got.Header.Get("X-Custom") != "kept" || !strings.Contains(got.Header.Get("Via"), "dedupcache") {
				t.Errorf("X-Custom %q Via %q; want the client's field and our Via", got.Header.Get("X-Custom"), got.Header.Get("Via"))
			}
			// The same request, whatever the kind of fetch.
			norm := got.Clone(context.Background())
			for _, k := range []string{"If-None-Match", "X-Forwarded-For", "X-Forwarded-Host"} {
				norm.Header.Del(k)
			}
			if want == nil {
				want = norm
				return
			}
			for k := range want.Header {
				if want.Header.Get(k) != norm.Header.Get(k) {
					t.Errorf("%s: %q; the miss sent %q", k, norm.Header.Get(k), want.Header.Get(k))
				}
			}
			for k := range norm.Header {
				if _, ok := want.Header[k]; !ok {
					t.Errorf("%s %q: the miss did not send it", k, norm.Header.Get(k))
				}
			}
		})
	}
}

// F3: the POST key is collision resistant and includes Content-Type. The
// two bodies are the review's: same xxhash64, different queries.
func TestPOSTKeyCollisionResistant(t *testing.T) {
	victim := `{"query":"query PublicCatalog { products(first: 20, category: \"shoes\") { id name price currency stock imageUrl description } }","variables":{"locale":"en-GB","currency":"EUR"}}`
	forged := `{"query":"{ promo: __typename }","x":"                           !B6     #6D     !82     #2;    .sI(S%pGn}(na&@noXI<{A[ea5t:Ho#v","variables":{"locale":"en-GB","currency":"EUR"}}`
	if xxhash.Sum64String(victim) != xxhash.Sum64String(forged) {
		t.Skip("the review's bodies no longer collide under xxhash64; nothing to show")
	}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Cache-Control", "max-age=300")
		fmt.Fprintf(w, "answer to %s as %s", b[:20], r.Header.Get("Content-Type"))
	})
	_, srv := newTestProxy(t, o.URL, func(c *Config) { c.CachePOSTPaths = []string{"/graphql"} })
	post := func(body, ctype string, hdr ...string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", srv.URL+"/graphql", strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	_, want := post(victim, "application/json")
	post(forged, "application/json", "Cache-Control", "no-cache")
	resp, got := post(victim, "application/json")
	if got != want || resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("victim after the forged POST: %s %q; want HIT %q", resp.Header.Get("X-Cache"), got, want)
	}
	resp, got = post(victim, "text/plain")
	if resp.Header.Get("X-Cache") == "HIT" || got == want {
		t.Errorf("same body as text/plain: %s %q; want its own entry", resp.Header.Get("X-Cache"), got)
	}
}

// slowReader is a client that sends a request and never reads the answer,
// with a tiny receive buffer.
func slowReader(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
	return c
}

// F4: a leader that never reads holds neither the fill nor its waiters.
func TestSlowLeaderDoesNotHoldWaiters(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 16<<20)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write(big)
	})
	_, srv := newTestProxy(t, o.URL, func(c *Config) { c.MaxMemory, c.MaxObjectSize = 256<<20, 32<<20 })
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := slowReader(t, addr, "/big")
	defer c.Close()
	time.Sleep(200 * time.Millisecond)
	cl := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", srv.URL+"/big", nil)
	req.Host = addr
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("waiter behind a leader that does not read: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != int64(len(big)) {
		t.Fatalf("waiter got %d bytes, %v; want %d", n, err, len(big))
	}
	if got := o.hits.Load(); got != 1 {
		t.Errorf("origin requests: %d; want 1 (the waiter shares the leader's fetch)", got)
	}
}

// F5: fills in flight are bounded in number and in bytes, and bytes are
// reserved as they arrive, not when Content-Length announces them.
func TestInflightBounded(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", fmt.Sprint(4<<20))
		_, _ = w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	p, srv := newTestProxy(t, o.URL, func(c *Config) { c.MaxInflight = 3 })
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "HEAD", fmt.Sprintf("%s/slow?%d", srv.URL, i), nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	deadline := time.Now().Add(3 * time.Second)
	for o.hits.Load() < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	bytesInUse, fills := p.budget.inUse()
	if fills > 3 {
		t.Errorf("fills in flight: %d; want at most 3", fills)
	}
	if bytesInUse > 3*(1<<20) {
		t.Errorf("in-flight bytes %d for 3 fills that received 64 KiB each: preallocated?", bytesInUse)
	}
	if bytesInUse > p.budget.maxBytes {
		t.Errorf("in-flight bytes %d over the budget %d", bytesInUse, p.budget.maxBytes)
	}
	cancel()
	close(release)
	wg.Wait()
}

// F6: a GET with a body bypasses the cache.
func TestGETWithBodyBypasses(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "body=%q", b)
	})
	_, srv := newTestProxy(t, o.URL, nil)
	req, _ := http.NewRequest("GET", srv.URL+"/fat", strings.NewReader("q=evil"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Cache") != "BYPASS" {
		t.Errorf("GET with a body: X-Cache %q; want BYPASS", resp.Header.Get("X-Cache"))
	}
	resp, body := do(t, "GET", srv.URL+"/fat")
	if strings.Contains(body, "evil") {
		t.Errorf("a plain GET got the answer to another's body: %s %q", resp.Header.Get("X-Cache"), body)
	}
}

// F8: a leader that hangs up mid-body leaves its waiters served from the
// one fetch, and the entry stored.
func TestLeaderHangsUpWaitersServed(t *testing.T) {
	chunk := bytes.Repeat([]byte("y"), 64<<10)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", fmt.Sprint(16*len(chunk)))
		for range 16 {
			_, _ = w.Write(chunk)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	})
	p, srv := newTestProxy(t, o.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/herd", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body) // cut off by the context
		resp.Body.Close()
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/herd")
			if err != nil {
				bad.Add(1)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != int64(16*len(chunk)) {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d waiters failed", bad.Load())
	}
	if got := o.hits.Load(); got != 1 {
		t.Errorf("origin requests: %d; want 1", got)
	}
	if resp, _ := do(t, "GET", srv.URL+"/herd"); resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("after the fill: X-Cache %q; want HIT", resp.Header.Get("X-Cache"))
	}
	_ = p
}

// F9: stale-while-revalidate costs no goroutine per stale answer while the
// one refresh runs.
func TestSWRNoPerRequestWork(t *testing.T) {
	tp := newTimed(t, nil)
	var refreshes atomic.Int64
	block := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=600")
		w.Header().Set("Etag", `"s1"`)
		if r.Header.Get("If-None-Match") != "" {
			refreshes.Add(1)
			<-block
		}
		_, _ = io.WriteString(w, "swr")
	})
	p, srv := newTestProxy(t, o.URL, func(c *Config) { c.ResponseHeaderTimeout = 10 * time.Second })
	setNow(p, tp.c)
	do(t, "GET", srv.URL+"/swr")
	tp.c.Advance(5 * time.Second)
	do(t, "GET", srv.URL+"/swr")
	before := runtime.NumGoroutine()
	for range 200 {
		if resp, _ := do(t, "GET", srv.URL+"/swr"); resp.Header.Get("X-Cache") != "STALE" {
			t.Fatalf("X-Cache %q; want STALE", resp.Header.Get("X-Cache"))
		}
	}
	after := runtime.NumGoroutine()
	close(block)
	if after-before > 10 {
		t.Errorf("goroutines grew by %d over 200 stale answers", after-before)
	}
	if got := refreshes.Load(); got != 1 {
		t.Errorf("refreshes: %d; want 1", got)
	}
}

// F11: Upgrade requests are tunnelled, each on its own, never coalesced.
func TestUpgradeNotCoalesced(t *testing.T) {
	hold := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond) // both requests arrive before the first 101
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		select {
		case <-hold:
		case <-time.After(10 * time.Second):
		}
	})
	_, srv := newTestProxy(t, o.URL, nil)
	addr := strings.TrimPrefix(srv.URL, "http://")
	open := func() (net.Conn, int) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return c, 0
		}
		return c, resp.StatusCode
	}
	var wg sync.WaitGroup
	status := make([]int, 2)
	conns := make([]net.Conn, 2)
	for i := range status {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i], status[i] = open() // kept open: the tunnels last
		}()
	}
	wg.Wait()
	close(hold)
	for _, c := range conns {
		c.Close()
	}
	s1, s2 := status[0], status[1]
	if s1 != 101 || s2 != 101 {
		t.Errorf("two concurrent upgrades: %d and %d; want 101 and 101", s1, s2)
	}
}

// F12: the hosts index follows the entries; Host is bounded.
func TestHostsIndexBounded(t *testing.T) {
	o := newOrigin(t, cacheable("p"))
	p, srv := newTestProxy(t, o.URL, nil)
	get := func(host string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+"/p", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i := range 1100 {
		if resp := get(fmt.Sprintf("h%d.invalid", i)); resp.Header.Get("X-Cache") != "MISS" {
			t.Errorf("h%d: %s %s", i, resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"))
		}
	}
	get("real.example")
	if n, _ := p.PurgeURL("/p"); n.PurgedEntries < 1101 {
		t.Errorf("purge url=/p removed %d entries; want all 1101 hosts' (a host seen late was skipped)", n.PurgedEntries)
	}
	p.store.Wait()
	if h := p.index.knownHosts(); len(h) != 0 {
		t.Errorf("hosts indexed after every entry left: %d (%.3q); want 0", len(h), h)
	}
	if resp := get(strings.Repeat("a", 300)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("300-byte Host: %d; want 400", resp.StatusCode)
	}
}

// F13: a Range or conditional request on a cold key fills the cache with
// the full response and leaves no hit-for-miss marker.
func TestColdRangeAndConditionalFill(t *testing.T) {
	s := &scripted{}
	s.set(200, "0123456789", "Cache-Control", "max-age=60", "Etag", `"v1"`)
	o := newOrigin(t, s.handler)
	_, srv := newTestProxy(t, o.URL, nil)
	resp, body := do(t, "GET", srv.URL+"/range", "Range", "bytes=0-0")
	if resp.StatusCode != http.StatusPartialContent || body != "0" {
		t.Errorf("cold Range: %d %q; want 206 \"0\"", resp.StatusCode, body)
	}
	if s.last().Header.Get("Range") != "" {
		t.Errorf("the fill forwarded the client's Range")
	}
	resp, body = do(t, "GET", srv.URL+"/range")
	if resp.Header.Get("X-Cache") != "HIT" || body != "0123456789" {
		t.Errorf("after a cold Range: %s %q (Cache-Status %q); want a HIT of the whole body", resp.Header.Get("X-Cache"), body, resp.Header.Get("Cache-Status"))
	}
	resp, _ = do(t, "GET", srv.URL+"/cond", "If-None-Match", `"v1"`)
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("cold If-None-Match: %d; want 304 from the fill", resp.StatusCode)
	}
	if resp, _ = do(t, "GET", srv.URL+"/cond"); resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("after a cold conditional: X-Cache %q (Cache-Status %q); want HIT", resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"))
	}
	if got := o.hits.Load(); got != 2 {
		t.Errorf("origin requests: %d; want 2", got)
	}
}

// F14: a HEAD with a validator on a cold key fills from one GET, without a
// panic or a second request.
func TestHeadConditionalCold(t *testing.T) {
	var logs syncBuf
	var methods []string
	var mu sync.Mutex
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Cache-Control", "max-age=60")
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, "cond")
	})
	_, srv := newTestProxy(t, o.URL, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	resp, _ := do(t, "HEAD", srv.URL+"/cond", "If-None-Match", `"v1"`)
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("HEAD If-None-Match: %d; want 304", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", srv.URL+"/cond"); resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("GET after the HEAD: X-Cache %q; want HIT", resp.Header.Get("X-Cache"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(methods) != 1 || methods[0] != "GET" {
		t.Errorf("origin saw %v; want one GET", methods)
	}
	if strings.Contains(logs.String(), "panic") {
		t.Errorf("log: %s", logs.String())
	}
}

// RFC 9112 §6.1, §7: a response with transfer codings net/http does not
// decode itself is relayed with them removed, not answered 502.
func TestTransferCodingsRelayed(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("hello, coded world"))
	_ = zw.Close()
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", gz.Len(), gz.Bytes())
	tests := []struct {
		name, raw, want string
		status          int
	}{
		{"gzip, chunked", "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunked, "hello, coded world", 200},
		{"gzip to the close", "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: gzip\r\n\r\n" + gz.String(), "hello, coded world", 200},
		{"chunked with Content-Length", "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "hello", 200},
		{"unknown coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: zstd2, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "", 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestProxy(t, rawOrigin(t, tt.raw), nil)
			resp, body := do(t, "GET", srv.URL+"/te")
			if resp.StatusCode != tt.status || (tt.status == 200 && body != tt.want) {
				t.Errorf("got %d %q; want %d %q", resp.StatusCode, body, tt.status, tt.want)
			}
			if tt.status == 200 {
				if resp, body = do(t, "GET", srv.URL+"/te"); resp.Header.Get("X-Cache") != "HIT" || body != tt.want {
					t.Errorf("second request: %s %q; want a HIT of the decoded body", resp.Header.Get("X-Cache"), body)
				}
			}
		})
	}
}

// A response that is not stored streams through the stream's window at
// the client's pace: the fetch waits for room and wakes as soon as the
// reader makes it (not on a timer).
func TestLargeResponsesStreamThrough(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 8<<20)
	tests := []struct {
		name, path string
		pause      time.Duration // before the client reads
	}{
		{"not storable", "/private", 0},
		{"over max_object_size, length unknown", "/chunked", 0},
		{"over max_object_size, a client slow to start", "/chunked?slow", 300 * time.Millisecond},
	}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/private" {
			w.Header().Set("Cache-Control", "private")
		} else {
			w.Header().Set("Cache-Control", "max-age=60")
		}
		for i := 0; i < len(big); i += 64 << 10 {
			_, _ = w.Write(big[i : i+64<<10])
			w.(http.Flusher).Flush()
		}
	})
	_, srv := newTestProxy(t, o.URL, func(c *Config) { c.MaxObjectSize = 1 << 20 })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			cl := &http.Client{Timeout: 8 * time.Second}
			resp, err := cl.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(tt.pause)
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != int64(len(big)) {
				t.Fatalf("got %d bytes, %v, after %v; want %d", n, err, time.Since(start), len(big))
			}
			if x := resp.Header.Get("X-Cache"); x != "BYPASS" && tt.name == "not storable" {
				t.Errorf("X-Cache %q; want BYPASS", x)
			}
		})
	}
}

// A client that got a whole response finds it stored on its next request
// (not the fetch still finishing, and not a miss).
func TestReadYourWrites(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.URL.Query().Has("empty") {
			return
		}
		_, _ = io.WriteString(w, "body "+r.URL.RawQuery)
	})
	_, srv := newTestProxy(t, o.URL, nil)
	for i := range 200 {
		u := fmt.Sprintf("%s/ryw?%d", srv.URL, i)
		if i%2 == 1 {
			u += "&empty"
		}
		do(t, "GET", u)
		resp, _ := do(t, "GET", u)
		if cs := resp.Header.Get("Cache-Status"); resp.Header.Get("X-Cache") != "HIT" || strings.Contains(cs, "collapsed") {
			t.Fatalf("request %d again: %s %q; want a plain HIT", i, resp.Header.Get("X-Cache"), cs)
		}
	}
}

// A fetch that fails answers every request that waited for it with its
// error: a failing origin is not asked again once per waiter.
func TestFailedFetchAnswersWaiters(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	_, srv := newTestProxy(t, o.URL, func(c *Config) { c.ResponseHeaderTimeout = 300 * time.Millisecond })
	var wg sync.WaitGroup
	codes := make([]int, 6)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/down")
			if err != nil {
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusGatewayTimeout {
			t.Errorf("request %d: %d; want 504", i, c)
		}
	}
	if got := o.hits.Load(); got != 1 {
		t.Errorf("origin requests: %d; want 1", got)
	}
}

// The variant index keeps the link of a newer variant when an older entry
// under the same hash leaves late (the review's "variant links can be lost
// in a race"): a url purge or §4.4 invalidation must still reach it.
func TestVariantLinkSurvivesOldRelease(t *testing.T) {
	x := newKeyIndex()
	key := variantKey("h.example /x", "a")
	h, ph := keyHashString(key), primaryHash("h.example /x")
	older := &cachestore.Entry{Key: key}
	newer := &cachestore.Entry{Key: key}
	x.stored(h, ph, "h.example", older, nil)
	x.stored(h, ph, "h.example", newer, nil)
	x.released(older, cachestore.Evicted) // the old one leaves after the new one was indexed
	if got := x.variantsOf(ph, false); len(got) != 1 || got[0] != h {
		t.Errorf("variants after the older entry left: %v; want [%d]", got, h)
	}
	x.released(newer, cachestore.Evicted)
	if got := x.variantsOf(ph, false); len(got) != 0 {
		t.Errorf("variants after both left: %v; want none", got)
	}
}

// TestPurgeRacingFillIsScoped: a purge that runs while a fetch is on its
// way keeps that fetch's response out of the store (it may be the content
// the purge removed), but only if it selects that response (its URL on its host or
// any host, a prefix of its target, one of its tags, everything); a fetch
// for another URL or tag stores as usual, so that steady purges do not
// leave misses unstored.
func TestPurgeRacingFillIsScoped(t *testing.T) {
	// {host} stands for the proxy's own host (the key's).
	tests := []struct {
		name   string
		req    PurgeRequest
		stored bool
	}{
		{"its URL", PurgeRequest{URLs: []string{"http://{host}/scoped/a?q=1"}}, false},
		{"its path on any host", PurgeRequest{URLs: []string{"/scoped/a?q=1"}}, false},
		{"its URL, soft", PurgeRequest{URLs: []string{"http://{host}/scoped/a?q=1"}, Soft: true}, false},
		{"a prefix of it", PurgeRequest{Prefixes: []string{"/scoped/"}}, false},
		{"its tag", PurgeRequest{Tags: []string{"t-a"}}, false},
		{"everything", PurgeRequest{All: true}, false},
		{"its key from the shared tier", PurgeRequest{Keys: []string{"{host} /scoped/a?q=1"}, Local: true}, false},
		{"another URL", PurgeRequest{URLs: []string{"http://{host}/scoped/b"}}, true},
		{"the same path on another host", PurgeRequest{URLs: []string{"http://other.example/scoped/a?q=1"}}, true},
		{"another prefix", PurgeRequest{Prefixes: []string{"/other/"}}, true},
		{"another tag", PurgeRequest{Tags: []string{"t-b"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			var n atomic.Int64
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Surrogate-Key", "t-a")
				if n.Add(1) == 1 {
					w.Header().Set("Content-Length", "3")
					w.WriteHeader(200)
					w.(http.Flusher).Flush()
					<-release
					_, _ = io.WriteString(w, "old")
					return
				}
				_, _ = io.WriteString(w, "new")
			})
			p, srv := newTestProxy(t, o.URL, nil)
			host := strings.TrimPrefix(srv.URL, "http://")
			done := getAsync(srv.URL + "/scoped/a?q=1")
			for n.Load() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			req := tt.req
			req.URLs = slices.Clone(req.URLs)
			req.Keys = slices.Clone(req.Keys)
			for _, list := range [][]string{req.URLs, req.Keys} {
				for i := range list {
					list[i] = strings.ReplaceAll(list[i], "{host}", host)
				}
			}
			if _, err := p.Purge(req); err != nil {
				t.Fatal(err)
			}
			close(release)
			if got := <-done; got != "old" {
				t.Fatalf("the request in flight got %q; want its own response, old", got)
			}
			want := "new" // refetched: the old response was kept out
			if tt.stored {
				want = "old"
			}
			if _, body := do(t, "GET", srv.URL+"/scoped/a?q=1"); body != want {
				t.Errorf("after the purge: %q; want %q (stored: %v)", body, want, tt.stored)
			}
		})
	}
}

// TestFetchRequestsShareNothing: the outbound requests of fetches are built
// in pooled buffers; a field one client sent never reaches the upstream
// request of another. Concurrent misses, every other one carrying its own
// X-Who, and the origin records what each path came with.
func TestFetchRequestsShareNothing(t *testing.T) {
	var seen sync.Map // path -> the X-Who values the origin saw
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.Path, strings.Join(r.Header.Values("X-Who"), ","))
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	defer origin.Close()
	_, srv := newTestProxy(t, origin.URL, nil)
	const n = 400
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < n; i += 8 {
				var hdr []string
				if i%2 == 1 {
					hdr = []string{"X-Who", strconv.Itoa(i)}
				}
				do(t, "GET", fmt.Sprintf("%s/u/%d", srv.URL, i), hdr...)
			}
		})
	}
	wg.Wait()
	for i := range n {
		v, ok := seen.Load(fmt.Sprintf("/u/%d", i))
		want := ""
		if i%2 == 1 {
			want = strconv.Itoa(i)
		}
		if !ok || v.(string) != want {
			t.Errorf("/u/%d: origin saw X-Who %q (fetched %v); want %q", i, v, ok, want)
		}
	}
}
