package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// newFastProxy starts a proxy in front of upstream behind its fast listener
// and returns it with the listener's base URL.
func newFastProxy(t testing.TB, upstream string, mod func(*Config)) (*Proxy, string) {
	t.Helper()
	p, _ := newTestProxy(t, upstream, mod) // the net/http server is not used
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := p.FastServer(FastLimits{MaxHeaderBytes: 64 << 10, MaxBodyBytes: 16 << 20})
	fs.MaxIdleWorkerDuration = 50 * time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fs.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = fs.Shutdown()
		_ = ln.Close() // Shutdown before Serve has taken it does nothing (see newTestProxy)
		<-done
	})
	return p, "http://" + ln.Addr().String()
}

// rawGet sends one request with the "Name", "value" header pairs given
// and returns the response with its body read. Unlike http.Client's, the
// header map has every field line as received.
func rawGet(t *testing.T, base, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	addr := strings.TrimPrefix(base, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := method + " " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n"
	for i := 0; i+1 < len(hdr); i += 2 {
		req += hdr[i] + ": " + hdr[i+1] + "\r\n"
	}
	_, _ = io.WriteString(c, req+"\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// fields returns the values of field name.
func fields(resp *http.Response, name string) []string {
	if name == "Content-Length" && resp.ContentLength >= 0 {
		return []string{fmt.Sprint(resp.ContentLength)}
	}
	return resp.Header[http.CanonicalHeaderKey(name)]
}

// TestFastHit checks what the fast listener's hit writer puts on the wire:
// the origin's status, fields and Date (once), our Age, X-Cache and
// Cache-Status, the exact body; HEAD gets the length and no body.
func TestFastHit(t *testing.T) {
	date := time.Now().Add(-30 * time.Second).UTC().Format(http.TimeFormat)
	body := strings.Repeat("b", 5000)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", date)
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "text/x-test")
		w.Header().Set("ETag", `"e1"`)
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		w.WriteHeader(203)
		_, _ = io.WriteString(w, body)
	})
	p, base := newFastProxy(t, o.URL, nil)
	for i, want := range []string{"MISS", "HIT", "HIT"} {
		head, got := rawGet(t, base, "GET", "/h")
		if head.Status != "203 Non-Authoritative Information" {
			t.Errorf("request %d: status %q", i, head.Status)
		}
		if x := fields(head, "X-Cache"); len(x) != 1 || x[0] != want {
			t.Errorf("request %d: X-Cache %q; want %s", i, x, want)
		}
		if d := fields(head, "Date"); len(d) != 1 || d[0] != date {
			t.Errorf("request %d: Date %q; want the origin's %q, once", i, d, date)
		}
		if got != body {
			t.Errorf("request %d: body of %d bytes; want %d", i, len(got), len(body))
		}
		if want != "HIT" {
			continue
		}
		for name, v := range map[string]string{
			"Content-Type": "text/x-test", "Etag": `"e1"`, "Content-Length": "5000", "Cache-Control": "max-age=600",
		} {
			if f := fields(head, name); len(f) != 1 || f[0] != v {
				t.Errorf("hit: %s %q; want %q", name, f, v)
			}
		}
		if f := fields(head, "X-Multi"); strings.Join(f, ",") != "one,two" {
			t.Errorf("hit: X-Multi %q", f)
		}
		if a := fields(head, "Age"); len(a) != 1 || a[0] < "30" || len(a[0]) != 2 {
			t.Errorf("hit: Age %q; want about 30", a)
		}
		if cs := fields(head, "Cache-Status"); len(cs) != 1 || !strings.HasPrefix(cs[0], "dedupcache; hit; ttl=5") {
			t.Errorf("hit: Cache-Status %q", cs)
		}
	}
	head, got := rawGet(t, base, "HEAD", "/h")
	if cl := fields(head, "Content-Length"); len(cl) != 1 || cl[0] != "5000" || got != "" {
		t.Errorf("HEAD hit: Content-Length %q, body %q", cl, got)
	}
	if o.hits.Load() != 1 {
		t.Errorf("origin saw %d requests; want 1", o.hits.Load())
	}
	if s := p.Stats(); s.Hits != 3 {
		t.Errorf("hits counted: %d; want 3", s.Hits)
	}
}

// TestFastRequestOwned checks, on both listeners, that a leader hanging up
// mid-body leaves the fill to finish: while the body is still coming other
// requests run, and the entry is then stored under the leader's key with
// the leader's response. (This fetch reads its request before the leader
// leaves, so it passes without ownRequest too; TestFastRefreshOwnsRequest
// is the one that fails without it.)
func TestFastRequestOwned(t *testing.T) {
	for _, engine := range []string{"net/http", "fasthttp"} {
		t.Run(engine, func(t *testing.T) { testRequestOwned(t, engine) })
	}
}

func testRequestOwned(t *testing.T, engine string) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600") // no length: streamed
		_, _ = io.WriteString(w, r.URL.Path[:4])
		w.(http.Flusher).Flush()
		if r.URL.Path == "/aaaa" {
			<-release
		}
		_, _ = io.WriteString(w, (r.Header.Get("X-Tag") + "----")[:4])
	})
	p, base := newFastProxy(t, o.URL, nil)
	if engine == "net/http" {
		var srv *httptest.Server
		p, srv = newTestProxy(t, o.URL, nil)
		base = srv.URL
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /aaaa HTTP/1.1\r\nHost: %s\r\nX-Tag: AAAA\r\n\r\n", strings.TrimPrefix(base, "http://"))
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("leader: %q, %v", line, err)
	}
	c.Close() // the leader hangs up; the fetch goes on
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/b%03d", base, i), nil)
			req.Header.Set("X-Tag", "BBBB")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Stored < 21 && time.Now().Before(deadline) {
		// The leader's fill, then the 20 others.
		time.Sleep(10 * time.Millisecond)
	}
	for {
		resp, got := do(t, "GET", base+"/aaaa")
		if resp.Header.Get("X-Cache") == "HIT" {
			if got != "/aaaAAAA" {
				t.Errorf("stored body %q; want /aaaAAAA (origin saw %d requests; stats %+v)", got, o.hits.Load(), p.Stats())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/aaaa never stored (last: %s %q); stats %+v", resp.Header.Get("X-Cache"), got, p.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fastCtx returns a request context for a GET of path, as the server would
// hand it to the handler.
func fastCtx(path string, extra ...string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	raw := "GET " + path + " HTTP/1.1\r\nHost: test\r\nAccept-Encoding: gzip\r\n" + strings.Join(extra, "") + "\r\n"
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		panic(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	return ctx
}

// warmFast stores a 1 KiB response under /hit (and a Vary variant under
// /vary) through the fast listener.
func warmFast(tb testing.TB) *Proxy {
	tb.Helper()
	body := strings.Repeat("x", 1024)
	o := newOrigin(tb, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", `"abc"`)
		if r.URL.Path == "/vary" {
			w.Header().Set("Vary", "Accept-Encoding")
		}
		_, _ = io.WriteString(w, body)
	})
	p, base := newFastProxy(tb, o.URL, nil)
	// Twice: the miss stores, the hit through the server builds the
	// block's fast form with the server's settings.
	for _, path := range []string{"/hit", "/vary", "/hit", "/vary"} {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Host = "test"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return p
}

func TestFastHitDoesNotAllocate(t *testing.T) {
	p := warmFast(t)
	for _, tt := range []struct{ path, extra string }{
		{"/hit", ""}, {"/vary", ""}, {"/hit", "If-None-Match: \"abc\"\r\n"},
	} {
		path := tt.path + " " + tt.extra
		ctx := fastCtx(tt.path, tt.extra)
		l := p.live()
		if !p.fastHit(ctx, l, false) {
			t.Fatalf("%s: not a fast hit", path)
		}
		if want := map[bool]int{true: 304, false: 200}[tt.extra != ""]; ctx.Response.StatusCode() != want {
			t.Fatalf("%s: status %d; want %d", path, ctx.Response.StatusCode(), want)
		}
		ctx.ResetUserValues() // unpins, as the server does after the write
		allocs := testing.AllocsPerRun(1000, func() {
			ctx.Response.Reset()
			if !p.fastHit(ctx, l, false) {
				t.Fatal("not a hit")
			}
			ctx.ResetUserValues()
		})
		if allocs != 0 && !raceEnabled { // under -race, sync.Pool drops items at random
			t.Errorf("%s: fast hit allocates %.1f times per request; want 0", path, allocs)
		}
	}
}

// BenchmarkFastHit measures a hit on the fast listener from the parsed
// request to the response written into the connection's buffer.
func BenchmarkFastHit(b *testing.B) {
	p := warmFast(b)
	ctx := fastCtx("/hit")
	l := p.live()
	bw := bufio.NewWriterSize(io.Discard, 4096)
	b.ReportAllocs()
	b.SetBytes(1024)
	for b.Loop() {
		ctx.Response.Reset()
		if !p.fastHit(ctx, l, false) {
			b.Fatal("not a hit")
		}
		_ = ctx.Response.Write(bw)
		ctx.ResetUserValues() // unpins, as the server does after the write
	}
}

// TestFastRefreshOwnsRequest checks that a background refresh (RFC 5861
// stale-while-revalidate), which runs after its request's handler has
// returned, sends that request's fields and not those of the next request
// on the connection, which fasthttp parses into the same buffers.
func TestFastRefreshOwnsRequest(t *testing.T) {
	var mu sync.Mutex
	var tags []string
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/s" {
			mu.Lock()
			tags = append(tags, r.Header.Get("X-Tag"))
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		_, _ = io.WriteString(w, "ok")
	})
	p, base := newFastProxy(t, o.URL, nil)
	host := strings.TrimPrefix(base, "http://")
	req, _ := http.NewRequest("GET", base+"/s", nil)
	req.Header.Set("X-Tag", "first")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(1100 * time.Millisecond) // stale, within stale-while-revalidate
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Pipelined: the stale hit starts the refresh; the next requests
	// reuse the buffers at once.
	var raw strings.Builder
	fmt.Fprintf(&raw, "GET /s HTTP/1.1\r\nHost: %s\r\nX-Tag: AAAA-refresh\r\n\r\n", host)
	for i := range 20 {
		fmt.Fprintf(&raw, "GET /o%02d HTTP/1.1\r\nHost: %s\r\nX-Tag: BBBB-other-\r\n\r\n", i, host)
	}
	if _, err := io.WriteString(c, raw.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := range 21 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	deadline := time.Now().Add(3 * time.Second)
	for p.Stats().Refreshes == 0 || len(snapshot(&mu, &tags)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no refresh seen (tags %q, stats %+v)", snapshot(&mu, &tags), p.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := snapshot(&mu, &tags); got[1] != "AAAA-refresh" {
		t.Errorf("the refresh sent X-Tag %q; want the stale request's AAAA-refresh", got[1])
	}
}

func snapshot(mu *sync.Mutex, s *[]string) []string {
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), *s...)
}

// TestFastEngine runs this package's tests again with newTestProxy serving
// through the fast listener (DEDUPCACHE_TEST_ENGINE=fasthttp), so that every
// behaviour tested on net/http is tested on fasthttp too.
func TestFastEngine(t *testing.T) {
	if os.Getenv("DEDUPCACHE_TEST_ENGINE") != "" {
		t.Skip("this is the fast engine's run")
	}
	if testing.Short() {
		t.Skip("the whole package again: not in -short")
	}
	args := []string{"-test.run", "^Test", "-test.skip", "^TestFastEngine$", "-test.count=1"}
	if d, ok := t.Deadline(); ok {
		// The run times out before this one does, so that a test that
		// hangs there is named, with every goroutine's stack, below.
		args = append(args, "-test.timeout", max(time.Until(d)-30*time.Second, time.Minute).String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "DEDUPCACHE_TEST_ENGINE=fasthttp")
	out, err := cmd.CombinedOutput()
	if err != nil {
		lines := strings.Split(string(out), "\n")
		var keep []string
		for _, l := range lines {
			if !strings.Contains(l, " WARN ") && !strings.Contains(l, " INFO ") {
				keep = append(keep, l)
			}
		}
		t.Fatalf("the package's tests on the fast listener: %v\n%s", err, strings.Join(keep, "\n"))
	}
}

// TestFastConditionalAndRange checks the wire form of the 304, 206 and 416
// the fast listener answers from a stored response.
func TestFastConditionalAndRange(t *testing.T) {
	date := time.Now().Add(-10 * time.Second).UTC().Format(http.TimeFormat)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", date)
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("ETag", `"r1"`)
		_, _ = io.WriteString(w, "0123456789")
	})
	p, base := newFastProxy(t, o.URL, nil)
	do(t, "GET", base+"/c")
	resp, body := rawGet(t, base, "GET", "/c", "If-None-Match", `"r1"`)
	if resp.StatusCode != 304 || body != "" || resp.Header.Get("Etag") != `"r1"` || resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("304: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	for _, k := range []string{"Content-Length", "Content-Type"} {
		if _, ok := resp.Header[k]; ok {
			t.Errorf("304 carries %s", k)
		}
	}
	if d := resp.Header["Date"]; len(d) != 1 || d[0] != date {
		t.Errorf("304 Date %q; want the origin's %q", d, date)
	}
	for _, tt := range []struct {
		method, rng      string
		status           int
		body, crange, cl string
	}{
		{"GET", "bytes=2-4", 206, "234", "bytes 2-4/10", "3"},
		{"HEAD", "bytes=2-4", 206, "", "bytes 2-4/10", "3"},
		{"GET", "bytes=20-", 416, "", "bytes */10", "0"},
		{"GET", "bytes=0-1,4-5", 200, "0123456789", "", "10"},
	} {
		resp, body := rawGet(t, base, tt.method, "/c", "Range", tt.rng)
		cl := fmt.Sprint(resp.ContentLength)
		if resp.StatusCode != tt.status || body != tt.body || resp.Header.Get("Content-Range") != tt.crange || cl != tt.cl {
			t.Errorf("%s %s: got %d %q range %q length %s; want %d %q %q %s", tt.method, tt.rng, resp.StatusCode, body, resp.Header.Get("Content-Range"), cl, tt.status, tt.body, tt.crange, tt.cl)
		}
	}
	if s := p.Stats(); s.NotModified != 1 || s.Ranges != 2 || o.hits.Load() != 1 {
		t.Errorf("not modified %d, ranges %d, origin requests %d; want 1, 2, 1", s.NotModified, s.Ranges, o.hits.Load())
	}
}

// TestFastMissKeepsConnection checks that misses answered on the fast
// listener keep the client's connection open, whatever the framing of the
// origin's response (a chunked one was once sent with Connection: close:
// fasthttp read the header it was given as "body until close").
func TestFastMissKeepsConnection(t *testing.T) {
	body := strings.Repeat("c", 4096)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.URL.Path == "/length" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		_, _ = io.WriteString(w, body) // over net/http's 2 KiB: chunked without a length
	})
	_, base := newFastProxy(t, o.URL, nil)
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for i, path := range []string{"/chunked/1", "/chunked/2", "/length", "/chunked/1", "/length"} {
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != body || resp.Close {
			t.Errorf("request %d %s: %d bytes, Connection: close %v; want the body on a kept connection", i, path, len(got), resp.Close)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("client dialled %d times; want 1", n)
	}
}
