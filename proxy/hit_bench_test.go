package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"dedupcache/config"
	"dedupcache/rules"
)

// discardWriter is a ResponseWriter that keeps one header map and drops
// the body, so that benchmarks count the handler's own allocations and
// not a recorder's.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(s int)   { w.status = s }
func (w *discardWriter) Write(b []byte) (int, error) {
	w.n += len(b)
	return len(b), nil
}
func (w *discardWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

// warmHit stores one 1 KiB response under /hit and returns the proxy and a
// request for it.
func warmHit(tb testing.TB) (*Proxy, *http.Request, []byte) {
	tb.Helper()
	body := []byte(strings.Repeat("x", 1024))
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", `"abc"`)
		_, _ = w.Write(body)
	}))
	tb.Cleanup(o.Close)
	p, srv := newTestProxy(tb, o.URL, nil)
	getDiscard(tb, srv.URL+"/hit")
	req := httptest.NewRequest("GET", "/hit", nil)
	req.Host = strings.TrimPrefix(srv.URL, "http://")
	req.RemoteAddr = "127.0.0.1:1"
	return p, req, body
}

func TestHitDoesNotAllocate(t *testing.T) {
	p, req, body := warmHit(t)
	w := &discardWriter{h: make(http.Header)}
	allocs := testing.AllocsPerRun(1000, func() {
		w.reset()
		p.serve(w, req)
	})
	if w.h.Get("X-Cache") != "HIT" || w.n != len(body) {
		t.Fatalf("not a hit: %v, %d bytes", w.h, w.n)
	}
	if allocs != 0 {
		t.Errorf("hit allocates %.1f times per request; want 0", allocs)
	}
}

// BenchmarkHit measures the hit path: p.Handler() (router included) from
// request to the body written, with a writer that allocates nothing.
func BenchmarkHit(b *testing.B) {
	p, req, body := warmHit(b)
	h := p.Handler()
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
	}
	if w.n != len(body) {
		b.Fatalf("wrote %d bytes; want %d", w.n, len(body))
	}
}

// BenchmarkStaticHandler is the baseline for BenchmarkHit: a plain handler
// writing the same header fields and body from memory.
func BenchmarkStaticHandler(b *testing.B) {
	p, req, body := warmHit(b)
	w := &discardWriter{h: make(http.Header)}
	p.serve(w, req)
	stored := w.h.Clone()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		for k, v := range stored {
			hdr[k] = v
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
	}
}

// TestVaryHitDoesNotAllocate: most origins send Vary: Accept-Encoding, so
// a hit through a Vary index must not allocate either.
func TestVaryHitDoesNotAllocate(t *testing.T) {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Vary", "Accept-Encoding, Accept-Language")
		_, _ = io.WriteString(w, "varied")
	}))
	t.Cleanup(o.Close)
	p, srv := newTestProxy(t, o.URL, nil)
	req, _ := http.NewRequest("GET", srv.URL+"/v", nil)
	req.Header.Set("Accept-Encoding", "gzip, br")
	req.Header.Set("Accept-Language", "en")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	in := httptest.NewRequest("GET", "/v", nil)
	in.Host = strings.TrimPrefix(srv.URL, "http://")
	in.Header = req.Header.Clone()
	w := &discardWriter{h: make(http.Header)}
	allocs := testing.AllocsPerRun(1000, func() {
		w.reset()
		p.serve(w, in)
	})
	if w.h.Get("X-Cache") != "HIT" || w.n != len("varied") {
		t.Fatalf("not a hit: %v", w.h)
	}
	if allocs != 0 && !raceEnabled { // the race detector's instrumentation moves the key buffer to the heap
		t.Errorf("Vary hit allocates %.1f times per request; want 0", allocs)
	}
}

// BenchmarkHitWithRules is BenchmarkHit with 20 rules configured, none of
// which matches /hit: the cost of rule matching on every request.
func BenchmarkHitWithRules(b *testing.B) {
	p, req, body := warmHit(b)
	var rs []config.Rule
	for i := range 20 {
		rs = append(rs, config.Rule{Name: fmt.Sprintf("r%d", i), PathPrefix: fmt.Sprintf("/api/v%d/", i), TTL: config.Duration(time.Minute)})
	}
	set, err := rules.Compile(rs)
	if err != nil {
		b.Fatal(err)
	}
	l := *p.live()
	l.Rules = set
	p.Reload(l)
	h := p.Handler()
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
	}
	if w.h.Get("X-Cache") != "HIT" {
		b.Fatalf("not a hit: %v", w.h)
	}
}
