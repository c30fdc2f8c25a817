package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// origin is a test upstream that counts requests and serves what its
// handler says.
type origin struct {
	*httptest.Server
	hits atomic.Int64
}

func newOrigin(t testing.TB, h http.HandlerFunc) *origin {
	t.Helper()
	o := &origin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

// getDiscard GETs url, reads the body to its end and returns the response
// (its body closed), failing tb on a transport error.
func getDiscard(tb testing.TB, url string) *http.Response {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// testUnkeyed is config's default cache.unkeyed_headers.
var testUnkeyed = []string{
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Forwarded-Server",
	"X-Host", "X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override",
}

// newTestProxy starts a proxy in front of upstream and returns it with a
// server for it.
func newTestProxy(t testing.TB, upstream string, mod func(*Config)) (*Proxy, *httptest.Server) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Upstream: u, MaxMemory: 64 << 20, MaxObjectSize: 8 << 20,
		DialTimeout: 2 * time.Second, ResponseHeaderTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second,
		IdleConnTimeout: 30 * time.Second, MaxIdleConnsPerHost: 64,
		TagHeader: "Surrogate-Key", UnkeyedHeaders: slices.Clone(testUnkeyed),
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("DEDUPCACHE_TEST_ENGINE") == "fasthttp" {
		// The whole package's tests against the fast listener.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fs := p.FastServer(FastLimits{MaxHeaderBytes: 1 << 20, MaxBodyBytes: 64 << 20})
		fs.MaxIdleWorkerDuration = 50 * time.Millisecond // its cleaner outlives Shutdown by this much
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = fs.Serve(ln)
		}()
		t.Cleanup(func() {
			_ = fs.Shutdown()
			// Shutdown before Serve has taken the listener does nothing, and
			// Serve would then accept forever: closing it ends Serve either way.
			_ = ln.Close()
			<-done
			p.Close()
		})
		return p, &httptest.Server{URL: "http://" + ln.Addr().String(), Listener: ln}
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return p, srv
}

// getAsync GETs url on a goroutine of its own and sends its body, or the
// error's text, on the returned channel (unbuffered: the test receives it).
func getAsync(url string) <-chan string {
	done := make(chan string)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	return done
}

// get fetches url with method and returns status, headers and body.
func do(t *testing.T, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1] // the client sends req.Host, never a Host field
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, string(b)
}

func cacheable(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, body)
	}
}

func TestMissThenHit(t *testing.T) {
	o := newOrigin(t, cacheable("hello, cache"))
	_, srv := newTestProxy(t, o.URL, nil)

	resp, body := do(t, "GET", srv.URL+"/a")
	if got := resp.Header.Get("X-Cache"); got != "MISS" {
		t.Fatalf("first X-Cache: got %q; want MISS", got)
	}
	if cs := resp.Header.Get("Cache-Status"); cs != "dedupcache; fwd=uri-miss; stored" {
		t.Errorf("first Cache-Status: got %q", cs)
	}
	if body != "hello, cache" {
		t.Fatalf("first body: got %q", body)
	}
	resp, body = do(t, "GET", srv.URL+"/a")
	if got := resp.Header.Get("X-Cache"); got != "HIT" {
		t.Fatalf("second X-Cache: got %q; want HIT", got)
	}
	if body != "hello, cache" {
		t.Errorf("hit body: got %q", body)
	}
	if resp.ContentLength != int64(len("hello, cache")) {
		t.Errorf("hit Content-Length: got %d; want %d", resp.ContentLength, len("hello, cache"))
	}
	if resp.Header.Get("Age") == "" {
		t.Errorf("hit has no Age header (RFC 9111 §5.1)")
	}
	if resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("hit headers: got %v", resp.Header)
	}
	if !strings.HasPrefix(resp.Header.Get("Cache-Status"), "dedupcache; hit; ttl=") {
		t.Errorf("hit Cache-Status: got %q", resp.Header.Get("Cache-Status"))
	}
	if n := o.hits.Load(); n != 1 {
		t.Errorf("origin requests: got %d; want 1", n)
	}

	// HEAD on a cached GET is answered from the cache, with the length.
	resp, body = do(t, "HEAD", srv.URL+"/a")
	if got := resp.Header.Get("X-Cache"); got != "HIT" || body != "" || resp.ContentLength != 12 {
		t.Errorf("HEAD: X-Cache %q, body %q, Content-Length %d; want HIT, empty, 12", got, body, resp.ContentLength)
	}
	if n := o.hits.Load(); n != 1 {
		t.Errorf("origin requests after HEAD: got %d; want 1", n)
	}
}

func TestAgeCountsUpstreamAge(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Age", "100")
		_, _ = io.WriteString(w, "x")
	})
	_, srv := newTestProxy(t, o.URL, nil)
	do(t, "GET", srv.URL+"/")
	resp, _ := do(t, "GET", srv.URL+"/")
	age, _ := strconv.Atoi(resp.Header.Get("Age"))
	if age < 100 || age > 102 {
		t.Errorf("Age: got %q; want about 100 (RFC 9111 §4.2.3)", resp.Header.Get("Age"))
	}
}

func TestDedupCounts(t *testing.T) {
	const urls, distinct = 100, 10
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/obj/"))
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, strings.Repeat(strconv.Itoa(i%distinct), 1000+i%distinct))
	})
	p, srv := newTestProxy(t, o.URL, nil)
	var logical, stored int64
	for i := 0; i < urls; i++ {
		_, body := do(t, "GET", fmt.Sprintf("%s/obj/%d", srv.URL, i))
		logical += int64(len(body))
		if i < distinct {
			stored += int64(len(body))
		}
	}
	st := p.Stats()
	if st.Entries != urls || st.BodiesUnique != distinct {
		t.Errorf("entries %d, bodies_unique %d; want %d, %d", st.Entries, st.BodiesUnique, urls, distinct)
	}
	if st.BytesLogical != logical || st.BytesStored != stored || st.BytesSaved != logical-stored {
		t.Errorf("bytes logical %d stored %d saved %d; want %d %d %d", st.BytesLogical, st.BytesStored, st.BytesSaved, logical, stored, logical-stored)
	}
	if st.MemoryBytes > st.MemoryLimitBytes || st.MemoryBytes < stored {
		t.Errorf("memory_bytes %d out of range [%d, %d]", st.MemoryBytes, stored, st.MemoryLimitBytes)
	}
	for i := 0; i < urls; i++ {
		resp, body := do(t, "GET", fmt.Sprintf("%s/obj/%d", srv.URL, i))
		want := strings.Repeat(strconv.Itoa(i%distinct), 1000+i%distinct)
		if resp.Header.Get("X-Cache") != "HIT" || body != want {
			t.Fatalf("/obj/%d: X-Cache %q, body ok %v", i, resp.Header.Get("X-Cache"), body == want)
		}
	}
	if n := o.hits.Load(); n != urls {
		t.Errorf("origin requests: got %d; want %d", n, urls)
	}
}

func TestNotStored(t *testing.T) {
	tests := []struct {
		name   string
		method string
		reqHdr []string
		h      http.HandlerFunc
		detail string
	}{
		{"no-store (RFC 9111 §5.2.2.5)", "GET", nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			_, _ = io.WriteString(w, "x")
		}, "no-store"},
		{"private (§5.2.2.7)", "GET", nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "private, max-age=60")
			_, _ = io.WriteString(w, "x")
		}, "private"},
		{"Set-Cookie", "GET", nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Set-Cookie", "a=b")
			_, _ = io.WriteString(w, "x")
		}, "set-cookie"},
		{"Authorization without public (§3.5)", "GET", []string{"Authorization", "Bearer x"}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			_, _ = io.WriteString(w, "x")
		}, "authorization"},
		{"Vary: * (§4.1)", "GET", nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "*")
			_, _ = io.WriteString(w, "x")
		}, ""},
		{"POST", "POST", nil, cacheable("x"), ""},
		{"request no-store (§5.2.1.5)", "GET", []string{"Cache-Control", "no-store"}, cacheable("x"), "request-no-store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t, tt.h)
			_, srv := newTestProxy(t, o.URL, nil)
			for i := 0; i < 2; i++ {
				resp, _ := do(t, tt.method, srv.URL+"/x", tt.reqHdr...)
				if got := resp.Header.Get("X-Cache"); got != "BYPASS" {
					t.Errorf("request %d: X-Cache got %q; want BYPASS", i, got)
				}
				// The first response says why; a response-side reason then
				// marks the URL hit-for-miss for the next ones.
				cs := resp.Header.Get("Cache-Status")
				if tt.detail != "" && !strings.Contains(cs, "detail="+tt.detail) && (i == 0 || !strings.Contains(cs, "detail=hit-for-miss")) {
					t.Errorf("request %d: Cache-Status: got %q; want detail=%s", i, cs, tt.detail)
				}
			}
			if n := o.hits.Load(); n != 2 {
				t.Errorf("origin requests: got %d; want 2", n)
			}
		})
	}
}

// rawOrigin is an upstream that writes raw bytes on the connection.
func rawOrigin(t *testing.T, raw string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			_, _ = http.ReadRequest(br)
			_, _ = io.WriteString(c, raw)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return "http://" + ln.Addr().String()
}

func TestBrokenBodyNotStored(t *testing.T) {
	tests := []struct{ name, raw string }{
		{"short Content-Length", "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\nonly twenty bytes..."},
		{"chunked without last chunk", "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, srv := newTestProxy(t, rawOrigin(t, tt.raw), nil)
			for i := 0; i < 2; i++ {
				resp, err := http.Get(srv.URL + "/cut")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err == nil {
					t.Errorf("request %d: the client got a complete response; want the connection aborted", i)
				}
			}
			st := p.Stats()
			if st.Entries != 0 || st.CutOff != 2 {
				t.Errorf("entries %d, cut off %d; want 0, 2", st.Entries, st.CutOff)
			}
		})
	}
}

func TestChunkedStored(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		for i := 0; i < 3; i++ {
			_, _ = io.WriteString(w, "chunk")
			w.(http.Flusher).Flush()
		}
	})
	_, srv := newTestProxy(t, o.URL, nil)
	do(t, "GET", srv.URL+"/c")
	resp, body := do(t, "GET", srv.URL+"/c")
	if resp.Header.Get("X-Cache") != "HIT" || body != "chunkchunkchunk" || resp.ContentLength != 15 {
		t.Errorf("got X-Cache %q body %q length %d", resp.Header.Get("X-Cache"), body, resp.ContentLength)
	}
}

func TestTooBigStreamsThrough(t *testing.T) {
	big := strings.Repeat("b", 4096)
	tests := []struct {
		name   string
		length bool   // origin sends Content-Length
		xcache string // known too big up front: BYPASS; found out while streaming: MISS
	}{
		{"Content-Length", true, "BYPASS"},
		{"chunked", false, "MISS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				if tt.length {
					w.Header().Set("Content-Length", strconv.Itoa(len(big)))
				}
				_, _ = io.WriteString(w, big)
			})
			p, srv := newTestProxy(t, o.URL, func(c *Config) { c.MaxObjectSize = 1024 })
			for i := 0; i < 2; i++ {
				resp, body := do(t, "GET", srv.URL+"/big")
				if body != big || resp.Header.Get("X-Cache") != tt.xcache {
					t.Errorf("request %d: X-Cache %q, body intact %v; want %s, true", i, resp.Header.Get("X-Cache"), body == big, tt.xcache)
				}
			}
			if st := p.Stats(); st.Entries != 0 || st.TooBig != 2 {
				t.Errorf("entries %d, too big %d; want 0, 2", st.Entries, st.TooBig)
			}
		})
	}
}

// TestClientHangsUp: a client that leaves mid-response neither corrupts
// nor loses the entry: the (coalescing) leader's fetch goes on without it
// and stores the complete body for the next clients.
func TestClientHangsUp(t *testing.T) {
	// Halves above 64 KiB: the fast listener holds back a body of known
	// length up to 64 KiB until it is complete, so the client would see
	// nothing of a shorter one before it hangs up.
	half := strings.Repeat("1", 70<<10)
	rest := strings.Repeat("2", 70<<10)
	release := make(chan struct{})
	var first atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", strconv.Itoa(len(half)+len(rest)))
		_, _ = io.WriteString(w, half)
		w.(http.Flusher).Flush()
		if first.CompareAndSwap(false, true) {
			<-release // the rest comes after the client has gone
		}
		_, _ = io.WriteString(w, rest)
	})
	p, srv := newTestProxy(t, o.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/slow", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	time.Sleep(50 * time.Millisecond) // let the proxy see the hang-up
	close(release)
	deadline := time.Now().Add(2 * time.Second)
	for p.Stats().Stored == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	resp2, body := do(t, "GET", srv.URL+"/slow")
	if body != half+rest || resp2.Header.Get("X-Cache") != "HIT" {
		t.Errorf("after hang-up: X-Cache %q, body of %d bytes; want HIT and the whole %d", resp2.Header.Get("X-Cache"), len(body), len(half)+len(rest))
	}
	if st := p.Stats(); st.Entries != 1 || o.hits.Load() != 1 {
		t.Errorf("entries %d, origin requests %d; want 1, 1", st.Entries, o.hits.Load())
	}
}

func TestUpstreamFailures(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()
	slow := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	tests := []struct {
		name     string
		upstream string
		want     int
	}{
		{"refused", down, http.StatusBadGateway},
		{"timeout", slow.URL, http.StatusGatewayTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestProxy(t, tt.upstream, func(c *Config) { c.ResponseHeaderTimeout = 200 * time.Millisecond })
			start := time.Now()
			resp, body := do(t, "GET", srv.URL+"/")
			if resp.StatusCode != tt.want || body == "" {
				t.Errorf("got %d %q; want %d with a body", resp.StatusCode, body, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v; the proxy must not hang", d)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	var got http.Header
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "secret")
		_, _ = io.WriteString(w, "x")
	})
	_, srv := newTestProxy(t, o.URL, nil)
	resp, _ := do(t, "GET", srv.URL+"/", "Connection", "X-Client-Hop", "X-Client-Hop", "1", "Keep-Alive", "timeout=5")
	if got.Get("X-Forwarded-For") != "127.0.0.1" || got.Get("X-Forwarded-Proto") != "http" || got.Get("X-Forwarded-Host") == "" {
		t.Errorf("X-Forwarded-*: got %v", got)
	}
	if !strings.Contains(got.Get("Via"), "dedupcache") {
		t.Errorf("request Via: got %q", got.Get("Via"))
	}
	if got.Get("X-Client-Hop") != "" || got.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop request fields forwarded: %v", got)
	}
	if resp.Header.Get("X-Hop") != "" {
		t.Errorf("hop-by-hop response field forwarded: %v", resp.Header)
	}
	// RFC 9110 §7.6.3: a gateway MUST send Via on requests and MAY on
	// responses; dedupcache does not add itself to responses.
	if resp.Header.Get("Via") != "" {
		t.Errorf("response Via: got %q; want none", resp.Header.Get("Via"))
	}
}

func TestVary(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		_, _ = io.WriteString(w, "lang="+r.Header.Get("Accept-Language"))
	})
	_, srv := newTestProxy(t, o.URL, nil)
	steps := []struct{ lang, xcache, body string }{
		{"en", "MISS", "lang=en"},
		{"en", "HIT", "lang=en"},
		{"fr", "MISS", "lang=fr"},
		{"fr", "HIT", "lang=fr"},
		{"en", "HIT", "lang=en"},
	}
	for i, s := range steps {
		resp, body := do(t, "GET", srv.URL+"/v", "Accept-Language", s.lang)
		if resp.Header.Get("X-Cache") != s.xcache || body != s.body {
			t.Errorf("step %d (%s): got %s %q; want %s %q", i, s.lang, resp.Header.Get("X-Cache"), body, s.xcache, s.body)
		}
	}
}

func TestOnlyIfCached(t *testing.T) {
	o := newOrigin(t, cacheable("x"))
	_, srv := newTestProxy(t, o.URL, nil)
	resp, _ := do(t, "GET", srv.URL+"/o", "Cache-Control", "only-if-cached")
	if resp.StatusCode != http.StatusGatewayTimeout || o.hits.Load() != 0 {
		t.Errorf("got %d with %d origin requests; want 504, 0 (RFC 9111 §5.2.1.7)", resp.StatusCode, o.hits.Load())
	}
}

func TestUpstreamStallsMidBody(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "12345")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // stall until the proxy gives up
	})
	p, srv := newTestProxy(t, o.URL, func(c *Config) { c.ReadTimeout = 200 * time.Millisecond })
	start := time.Now()
	resp, err := http.Get(srv.URL + "/stall")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Errorf("client got a complete response from a stalled upstream")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v; the read timeout is 200ms", d)
	}
	if st := p.Stats(); st.Entries != 0 || st.CutOff != 1 {
		t.Errorf("entries %d, cut off %d; want 0, 1", st.Entries, st.CutOff)
	}
}

func TestBadRequests(t *testing.T) {
	o := newOrigin(t, cacheable("x"))
	_, srv := newTestProxy(t, o.URL, nil)
	tests := []struct {
		name string
		raw  string
		want int
	}{
		{"CONNECT (RFC 9110 §9.3.6: not for a reverse proxy)", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405},
		{"header too large (RFC 6585 §5)", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431},
		{"no Host in HTTP/1.1 (RFC 9112 §3.2)", "GET / HTTP/1.1\r\n\r\n", 400},
		{"malformed request line", "GARBAGE\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			go func() { _, _ = io.WriteString(c, tt.raw) }()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("got %d; want %d", resp.StatusCode, tt.want)
			}
		})
	}
	if o.hits.Load() != 0 {
		t.Errorf("bad requests reached the origin %d times", o.hits.Load())
	}
}

func TestVia(t *testing.T) {
	for _, tt := range []struct {
		major, minor int
		want         string
	}{
		{1, 1, "1.1 dedupcache"},
		{1, 0, "1.0 dedupcache"},
		{2, 0, "2 dedupcache"}, // RFC 9113 §3.1: the version is "2"
		{3, 0, "3 dedupcache"},
	} {
		if got := via(tt.major, tt.minor); got != tt.want {
			t.Errorf("via(%d, %d) = %q; want %q", tt.major, tt.minor, got, tt.want)
		}
	}
}

// TestStoredDateRobust: a Date the cache's own date parser reads (names in
// any case, RFC 9110 §5.6.7 recipients' leniency) is the Date served from
// the entry, not the time the cache received the response, so that Date
// and Age agree on hits (RFC 9111 §4.2.3 computes the age from it).
func TestStoredDateRobust(t *testing.T) {
	date := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", strings.ToLower(date.Format(http.TimeFormat)))
		w.Header().Set("Cache-Control", "max-age=7200")
		_, _ = io.WriteString(w, "dated")
	}))
	defer origin.Close()
	_, srv := newTestProxy(t, origin.URL, nil)
	do(t, "GET", srv.URL+"/d")
	resp, _ := do(t, "GET", srv.URL+"/d")
	if got := resp.Header.Get("X-Cache"); got != "HIT" {
		t.Fatalf("X-Cache %q, want HIT", got)
	}
	if got, want := resp.Header.Get("Date"), date.Format(http.TimeFormat); got != want {
		t.Errorf("Date %q, want the origin's %q", got, want)
	}
	if age, _ := strconv.Atoi(resp.Header.Get("Age")); age < 3600 || age > 3660 {
		t.Errorf("Age %q, want about 3600 (the Date is an hour old)", resp.Header.Get("Age"))
	}
}
