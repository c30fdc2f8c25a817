package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"

	"dedupcache/internal/testutil"
)

// TestMemPerKey stores DEDUP_MEM_N responses (4 KiB bodies, DEDUP_MEM_K
// distinct, origin headers like the peer harness's origin) through the handler
// and logs the live heap per stored key after GC (what RSS per key is before
// the GC's headroom). DEDUP_MEM_PROFILE writes a heap profile. Measurement
// only: runs when DEDUP_MEM_N is set. DEDUP_MEM_MAX (bytes) sets max_memory
// (default 2 GiB), for the heap per key of a full cache.
func TestMemPerKey(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("DEDUP_MEM_N"))
	if n == 0 {
		t.Skip("set DEDUP_MEM_N (and DEDUP_MEM_K) to measure")
	}
	k, _ := strconv.Atoi(os.Getenv("DEDUP_MEM_K"))
	if k == 0 {
		k = n
	}
	bodies := make([][]byte, k)
	etags := make([]string, k)
	for i := range bodies {
		b := make([]byte, 4096)
		for j := range b {
			b[j] = byte('a' + (i+j)%26)
		}
		copy(b, fmt.Sprintf("%08d", i))
		bodies[i] = b
		etags[i] = fmt.Sprintf(`"%016x"`, i*7919)
	}
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var i int
		fmt.Sscanf(r.URL.Path, "/obj/%d", &i)
		b := i % k
		h := w.Header()
		h["Cache-Control"] = []string{"public, max-age=3600"}
		h["Etag"] = []string{etags[b]}
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = []string{"4096"}
		_, _ = w.Write(bodies[b])
	}))
	defer o.Close()
	maxMem := int64(2 << 30)
	if m, _ := strconv.ParseInt(os.Getenv("DEDUP_MEM_MAX"), 10, 64); m > 0 {
		maxMem = m // a full cache: keys are evicted as they come
	}
	p, _ := newTestProxy(t, o.URL, func(c *Config) { c.MaxMemory = maxMem })
	h := p.Handler()
	get := func(i int) {
		r := httptest.NewRequest("GET", "/obj/"+strconv.Itoa(i), nil)
		r.Host = "127.0.0.1:28083"
		w := &discardWriter{h: make(http.Header)}
		h.ServeHTTP(w, r)
	}
	get(0)
	before := testutil.HeapAlloc()
	for i := 1; i <= n; i++ {
		get(i)
	}
	after := testutil.HeapAlloc()
	p.store.Wait()
	st := p.store.Stats()
	t.Logf("N=%d K=%d max_memory %d: live heap %.0f B per stored key; %d entries stored, charged %d B (%.0f B per entry)",
		n, k, maxMem, float64(after-before)/float64(st.Entries), st.Entries, st.EntryBytes, float64(st.EntryBytes)/float64(st.Entries))
	if f := os.Getenv("DEDUP_MEM_PROFILE"); f != "" {
		out, _ := os.Create(f)
		_ = pprof.WriteHeapProfile(out)
		out.Close()
	}
	_ = io.Discard
}
