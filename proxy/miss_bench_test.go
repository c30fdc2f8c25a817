package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkMiss measures a miss through the handler: a fetch from a
// loopback origin (4 KiB body), stored, answered. The origin's own cost is
// in the figure; compare with BenchmarkOriginDirect.
func BenchmarkMiss(b *testing.B) {
	body := strings.Repeat("m", 4096)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(o.Close)
	p, _ := newTestProxy(b, o.URL, func(c *Config) { c.MaxMemory = 1 << 30 })
	h := p.Handler()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		req := httptest.NewRequest("GET", "/m/"+strconv.Itoa(i), nil)
		req.Host = "bench.example"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Body.Len() != len(body) {
			b.Fatalf("short body: %d", rec.Body.Len())
		}
	}
}

// BenchmarkOriginDirect is the same request straight to the origin, with
// net/http's client: what BenchmarkMiss costs beyond it is the proxy's.
func BenchmarkOriginDirect(b *testing.B) {
	body := strings.Repeat("m", 4096)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(o.Close)
	c := o.Client()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		resp, err := c.Get(o.URL + "/m/" + strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkFastMiss measures a miss on the fast listener end to end: a
// fasthttp client asks for a new URL each time, the proxy fetches it (4 KiB)
// from a loopback origin, stores it and answers. Client and origin costs
// are in the figure (allocations too: run with -benchmem and compare with
// BenchmarkOriginDirect).
func BenchmarkFastMiss(b *testing.B) {
	body := strings.Repeat("m", 4096)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(o.Close)
	_, base := newFastProxy(b, o.URL, func(c *Config) { c.MaxMemory = 1 << 30 })
	dials := 0 // one connection: a miss must not close it
	c := &fasthttp.HostClient{
		Addr: strings.TrimPrefix(base, "http://"),
		Dial: func(addr string) (net.Conn, error) { dials++; return net.Dial("tcp", addr) },
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		req.SetRequestURI(base + "/m/" + strconv.Itoa(i))
		req.Header.SetHost("bench.example")
		if err := c.Do(req, resp); err != nil || len(resp.Body()) != len(body) {
			b.Fatalf("miss %d: %v, %d bytes", i, err, len(resp.Body()))
		}

	}
	c.CloseIdleConnections()
	if dials != 1 {
		b.Errorf("the client dialled %d times; want 1", dials)
	}
}
