// Package e2e runs the dedupcache binary as a process in front of a
// scriptable origin process (./origin) and checks what a client and the
// admin API see. TestMain builds both binaries once; every test starts its
// own pair on loopback ports and stops them with SIGTERM.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMissThenHit checks the verdict headers across a MISS, a HIT and a
// HEAD served from the stored GET.
func TestMissThenHit(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url})
	const size = 1500
	path := "/obj/7?distinct=100&size=" + strconv.Itoa(size)
	want := get(t, o.url+path).body

	steps := []struct {
		name    string
		method  string
		xCache  string
		age     bool // Age header expected
		csParam string
		body    bool
	}{
		{"first GET", http.MethodGet, "MISS", false, "fwd=", true},
		{"second GET", http.MethodGet, "HIT", true, "hit", true},
		{"HEAD after GET", http.MethodHead, "HIT", true, "hit", false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := do(s.method, c.url+path)
			if r.err != nil {
				t.Fatalf("%s %s: %v", s.method, path, r.err)
			}
			if r.status != http.StatusOK {
				t.Fatalf("status: got %d; want 200", r.status)
			}
			if got := r.header.Get("X-Cache"); got != s.xCache {
				t.Errorf("X-Cache: got %q; want %q", got, s.xCache)
			}
			cs := r.header.Get("Cache-Status")
			if !strings.HasPrefix(cs, "dedupcache") || !strings.Contains(cs, s.csParam) {
				t.Errorf("Cache-Status: got %q; want dedupcache; ...%s...", cs, s.csParam)
			}
			if age := r.header.Get("Age"); s.age {
				if n, err := strconv.Atoi(age); err != nil || n < 0 {
					t.Errorf("Age: got %q; want a non-negative integer", age)
				}
			}
			if r.length != size {
				t.Errorf("Content-Length: got %d; want %d", r.length, size)
			}
			switch {
			case s.body && !bytes.Equal(r.body, want):
				t.Errorf("body: got %d bytes differing from the origin's %d", len(r.body), len(want))
			case !s.body && len(r.body) != 0:
				t.Errorf("HEAD body: got %d bytes; want none", len(r.body))
			}
		})
	}
	if got := o.stats(t).Path["/obj/7"]; got != 2 { // one direct fetch, one miss
		t.Errorf("origin requests for /obj/7: got %d; want 2", got)
	}
}

// TestStorable checks which upstream responses are stored, scripted
// through the origin's /headers and /status routes: each URL is fetched
// twice and the origin counts how often it was asked. Bodies over
// cache.max_object_size (64KiB here) stream through whole but unstored.
func TestStorable(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	cfg := writeFile(t, "small.yaml", "cache:\n  max_object_size: \"64KiB\"\n")
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", cfg}})
	lastModified := time.Now().Add(-48 * time.Hour).UTC().Format(http.TimeFormat)
	headers := func(h ...string) string { return "/headers?" + url.Values{"h": h}.Encode() }

	tests := []struct {
		name       string
		path       string
		status     int
		stored     bool
		wantSecond string // X-Cache of the second request; "" = anything but HIT
	}{
		{"explicit max-age", headers("Cache-Control: public, max-age=60"), 200, true, "HIT"},
		{"heuristic from Last-Modified", headers("Last-Modified: " + lastModified), 200, true, "HIT"},
		{"404 with max-age", "/status/404?" + url.Values{"cc": {"public, max-age=60"}}.Encode(), 404, true, "HIT"},
		{"no-store", headers("Cache-Control: no-store"), 200, false, "BYPASS"},
		{"no freshness", headers("X-Scripted: yes"), 200, false, ""},
		{"at max_object_size", "/obj/1?size=65536", 200, true, "HIT"},
		{"over max_object_size", "/obj/2?size=65537", 200, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			originPath, _, _ := strings.Cut(tt.path, "?")
			before := o.stats(t).Path[originPath]
			var second result
			for n := range 2 {
				r := do(http.MethodGet, c.url+tt.path)
				if r.err != nil {
					t.Fatalf("GET #%d %s: %v", n+1, tt.path, r.err)
				}
				if r.status != tt.status {
					t.Errorf("GET #%d %s: status got %d; want %d", n+1, tt.path, r.status, tt.status)
				}
				if r.length >= 0 && int64(len(r.body)) != r.length {
					t.Errorf("GET #%d %s: got %d bytes; want Content-Length %d", n+1, tt.path, len(r.body), r.length)
				}
				second = r
			}
			xc := second.header.Get("X-Cache")
			switch {
			case tt.wantSecond == "" && xc == "HIT":
				t.Errorf("second GET %s: X-Cache got HIT; want anything else (not storable)", tt.path)
			case tt.wantSecond != "" && xc != tt.wantSecond:
				t.Errorf("second GET %s: X-Cache got %q; want %q (Cache-Status %q)", tt.path, xc, tt.wantSecond, second.header.Get("Cache-Status"))
			}
			wantAsked := int64(2)
			if tt.stored {
				wantAsked = 1
			}
			if got := o.stats(t).Path[originPath] - before; got != wantAsked {
				t.Errorf("origin requests for %s: got %d; want %d", tt.path, got, wantAsked)
			}
		})
	}
}

// TestDedupStats stores 100 URLs whose responses are 10 distinct bodies
// and checks the byte accounting exactly, then that every URL is a HIT with
// the origin's bytes and that the origin saw each URL once.
func TestDedupStats(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url})
	const (
		urls     = 100
		distinct = 10
		size     = 2000
	)
	path := func(i int) string { return fmt.Sprintf("/obj/%d?distinct=%d&size=%d", i, distinct, size) }

	// Every field the admin API promises is there.
	var doc map[string]json.RawMessage
	getJSON(t, c.adminURL+"/api/stats", &doc)
	for _, f := range statsFields {
		if _, ok := doc[f]; !ok {
			t.Errorf("/api/stats: no %q field", f)
		}
	}

	for i := range urls {
		r := get(t, c.url+path(i))
		if got := r.header.Get("X-Cache"); got != "MISS" {
			t.Errorf("first GET %s: X-Cache got %q; want MISS", path(i), got)
		}
		if len(r.body) != size {
			t.Fatalf("first GET %s: got %d bytes; want %d", path(i), len(r.body), size)
		}
	}
	s := c.waitStats(t, func(s stats) bool { return s.Entries >= urls })
	checks := []struct {
		name      string
		got, want int64
	}{
		{"entries", s.Entries, urls},
		{"bodies_unique", s.BodiesUnique, distinct},
		{"bytes_logical", s.BytesLogical, urls * size},
		{"bytes_stored", s.BytesStored, distinct * size},
		{"bytes_saved", s.BytesSaved, (urls - distinct) * size},
		{"misses", s.Misses, urls},
		{"hits", s.Hits, 0},
		{"responses_stored", s.ResponsesStored, urls},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("after %d misses, /api/stats %s: got %d; want %d", urls, ck.name, ck.got, ck.want)
		}
	}
	if want := float64(urls) / distinct; s.DedupRatio != want {
		t.Errorf("dedup_ratio: got %v; want %v", s.DedupRatio, want)
	}

	bodies := make([][]byte, urls)
	for i := range urls {
		r := get(t, c.url+path(i))
		if got := r.header.Get("X-Cache"); got != "HIT" {
			t.Errorf("second GET %s: X-Cache got %q; want HIT", path(i), got)
		}
		bodies[i] = r.body
	}
	if got := o.stats(t).Prefix["/obj"]; got != urls {
		t.Errorf("origin /obj requests after two passes: got %d; want %d", got, urls)
	}
	if s := c.stats(t); s.Hits != urls || s.Entries != urls {
		t.Errorf("after the HIT pass: hits %d, entries %d; want %d, %d", s.Hits, s.Entries, urls, urls)
	}
	for i := range urls {
		want := get(t, o.url+path(i)).body
		if !bytes.Equal(bodies[i], want) {
			t.Errorf("HIT body of %s: %d bytes differ from the origin's %d", path(i), len(bodies[i]), len(want))
		}
	}
	// The origin really returned 10 distinct bodies.
	if !bytes.Equal(bodies[3], bodies[13]) || bytes.Equal(bodies[3], bodies[4]) {
		t.Errorf("origin bodies: 3 and 13 should be equal, 3 and 4 different")
	}
}

// TestCutOff checks that a body that ends early is passed on, the client's
// connection aborted, and nothing stored.
func TestCutOff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		path     string
		declared int64 // Content-Length the client should see; -1 for chunked
	}{
		{"content-length short", "/cut?len=10000&send=4000", 10000},
		{"chunked without final chunk", "/chunked-cut?send=4000", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := startOrigin(t)
			c := startCache(t, cacheOptions{upstream: o.url})
			before := c.stats(t)
			originPath, _, _ := strings.Cut(tt.path, "?")

			for n := 1; n <= 2; n++ {
				r := do(http.MethodGet, c.url+tt.path)
				if r.err == nil {
					t.Errorf("GET #%d %s: got status %d, %d bytes, no error; want the body cut off with an error", n, tt.path, r.status, len(r.body))
				}
				if r.status != 0 && r.status != http.StatusOK {
					t.Errorf("GET #%d %s: status got %d; want 200 (then an abort)", n, tt.path, r.status)
				}
				if r.status == http.StatusOK && r.length != tt.declared {
					t.Errorf("GET #%d %s: Content-Length got %d; want %d", n, tt.path, r.length, tt.declared)
				}
				if got := o.stats(t).Path[originPath]; got != int64(n) {
					t.Errorf("after GET #%d: origin requests for %s got %d; want %d (not stored)", n, originPath, got, n)
				}
			}
			s := c.waitStats(t, func(s stats) bool { return s.ResponsesCutOff >= before.ResponsesCutOff+2 })
			if got, want := s.ResponsesCutOff, before.ResponsesCutOff+2; got != want {
				t.Errorf("responses_cut_off: got %d; want %d", got, want)
			}
			if s.Entries != before.Entries || s.BodiesUnique != before.BodiesUnique {
				t.Errorf("entries, bodies_unique: got %d, %d; want unchanged %d, %d", s.Entries, s.BodiesUnique, before.Entries, before.BodiesUnique)
			}
			if s.ResponsesStored != before.ResponsesStored {
				t.Errorf("responses_stored: got %d; want unchanged %d", s.ResponsesStored, before.ResponsesStored)
			}
		})
	}
}

// TestUpstreamErrors checks that an unreachable upstream is a prompt 502
// and an upstream slower than the response-header timeout a 504.
func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		path    string
		setup   func(t *testing.T) *cache // returns a cache whose upstream will fail for path
		status  int
		minTook time.Duration
		maxTook time.Duration
	}{
		{
			name: "closed port", path: "/obj/1", status: http.StatusBadGateway, maxTook: 5 * time.Second,
			setup: func(t *testing.T) *cache {
				return startCache(t, cacheOptions{upstream: "http://" + freeAddr(t)})
			},
		},
		{
			name: "origin killed", path: "/obj/2", status: http.StatusBadGateway, maxTook: 5 * time.Second,
			setup: func(t *testing.T) *cache {
				o := startOrigin(t)
				c := startCache(t, cacheOptions{upstream: o.url})
				get(t, c.url+"/obj/1") // an idle upstream connection now exists
				o.kill()
				return c
			},
		},
		{
			name: "response header timeout", path: "/slow?ms=3000", status: http.StatusGatewayTimeout,
			minTook: 250 * time.Millisecond, maxTook: 2 * time.Second,
			setup: func(t *testing.T) *cache {
				o := startOrigin(t)
				cfg := writeFile(t, "timeouts.yaml", "upstream_timeouts: {response_header: \"300ms\"}\n")
				return startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", cfg}})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.setup(t)
			before := c.stats(t)
			r := do(http.MethodGet, c.url+tt.path)
			if r.err != nil {
				t.Fatalf("GET %s: %v", tt.path, r.err)
			}
			if r.status != tt.status {
				t.Errorf("GET %s: status got %d; want %d", tt.path, r.status, tt.status)
			}
			if len(r.body) == 0 || len(r.body) > 512 {
				t.Errorf("GET %s: body got %d bytes (%.100q); want a short message", tt.path, len(r.body), r.body)
			}
			if r.took < tt.minTook || r.took > tt.maxTook {
				t.Errorf("GET %s: took %v; want between %v and %v", tt.path, r.took, tt.minTook, tt.maxTook)
			}
			if s := c.stats(t); s.UpstreamErrors <= before.UpstreamErrors {
				t.Errorf("upstream_errors: got %d; want more than %d", s.UpstreamErrors, before.UpstreamErrors)
			}
		})
	}
}

// TestBadConfig checks that a bad file stops the process with status 2 and
// a message naming the file, line and field, before anything listens.
func TestBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string   // %s is the listen address
		want []string // substrings of stderr, after the file name
	}{
		{
			name: "bad size",
			yaml: "listen: %q\nupstream: \"http://127.0.0.1:9\"\ncache:\n  max_memory: \"12XB\"\n",
			want: []string{`:4: cache.max_memory: "12XB"`},
		},
		{
			name: "unknown field",
			yaml: "listen: %q\nupstream: \"http://127.0.0.1:9\"\ncache:\n  max_memory: \"64MiB\"\n  max_memroy: \"1GiB\"\n",
			want: []string{":5: cache.max_memroy"},
		},
		{
			name: "both reported",
			yaml: "listen: %q\nupstream: \"http://127.0.0.1:9\"\ncache:\n  max_memory: \"12XB\"\n  max_memroy: \"1GiB\"\n",
			want: []string{`:4: cache.max_memory: "12XB"`, ":5: cache.max_memroy"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			listen, admin := freeAddrs(t)
			file := writeFile(t, "bad.yaml", fmt.Sprintf(tt.yaml, listen))

			// Nothing may accept a connection on either port while the
			// process runs.
			var accepted atomic.Int64
			stopDial := make(chan struct{})
			var dialing sync.WaitGroup
			dialing.Go(func() {
				for i := 0; i < 5000; i++ { // 5000 x 2ms bounds it at about 10 s
					select {
					case <-stopDial:
						return
					default:
					}
					for _, a := range []string{listen, admin} {
						if conn, err := net.DialTimeout("tcp", a, 50*time.Millisecond); err == nil {
							conn.Close()
							accepted.Add(1)
						}
					}
					time.Sleep(2 * time.Millisecond)
				}
			})

			p := startProc(t, "dedupcache", cacheBin, []string{"-config", file, "-admin", admin}, nil)
			code, ok := p.exitCode(10 * time.Second)
			close(stopDial)
			dialing.Wait()
			if !ok {
				p.kill()
				t.Fatalf("dedupcache with %s still running after 10 s; want exit 2", filepath.Base(file))
			}
			defer func() {
				if t.Failed() {
					p.logOutput(t)
				}
			}()
			if code != 2 {
				t.Errorf("exit code: got %d; want 2", code)
			}
			stderr := p.stderr.String()
			for _, w := range tt.want {
				if !strings.Contains(stderr, "bad.yaml"+w) {
					t.Errorf("stderr: got %q; want it to contain %q", stderr, "bad.yaml"+w)
				}
			}
			if n := accepted.Load(); n != 0 {
				t.Errorf("connections accepted on %s or %s while starting: got %d; want 0", listen, admin, n)
			}
			if strings.Contains(stderr, "listening") {
				t.Errorf("stderr mentions listening: %q", stderr)
			}
		})
	}
}

// TestDemo checks -demo: curl hints on stdout, a MISS then HIT, and two
// users whose bodies are shared.
func TestDemo(t *testing.T) {
	t.Parallel()
	c := startCache(t, cacheOptions{args: []string{"-demo"}})

	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(c.stdout.String(), c.url+"/users/999") && time.Now().Before(deadline) {
		time.Sleep(pollEvery)
	}
	if out := c.stdout.String(); !strings.Contains(out, "curl") || !strings.Contains(out, c.url+"/users/999") {
		t.Errorf("stdout: got %q; want curl hints naming %s/users/999", out, c.url)
	}

	// The demo has 50 users: 999 and 1000 are both answered with its one
	// cacheable "not found" document, so their bodies are the same.
	var first result
	for i, want := range []string{"MISS", "HIT"} {
		r := do(http.MethodGet, c.url+"/users/999")
		if r.err != nil {
			t.Fatalf("GET /users/999 #%d: %v", i+1, r.err)
		}
		if got := r.header.Get("X-Cache"); got != want {
			t.Errorf("GET /users/999 #%d: X-Cache got %q; want %q", i+1, got, want)
		}
		if i == 0 {
			first = r
		} else if r.status != first.status || !bytes.Equal(r.body, first.body) {
			t.Errorf("GET /users/999 #2: got %d %q; want the first answer %d %q", r.status, r.body, first.status, first.body)
		}
	}
	s1 := c.waitStats(t, func(s stats) bool { return s.Entries >= 1 })
	r := do(http.MethodGet, c.url+"/users/1000")
	if r.err != nil {
		t.Fatalf("GET /users/1000: %v", r.err)
	}
	if got := r.header.Get("X-Cache"); got != "MISS" {
		t.Errorf("GET /users/1000: X-Cache got %q; want MISS", got)
	}
	if r.status != first.status || !bytes.Equal(r.body, first.body) {
		t.Errorf("GET /users/1000: got %d %q; want the same answer as /users/999, %d %q", r.status, r.body, first.status, first.body)
	}
	s2 := c.waitStats(t, func(s stats) bool { return s.Entries > s1.Entries })
	if s2.Entries != s1.Entries+1 {
		t.Errorf("entries after /users/1000: got %d; want %d", s2.Entries, s1.Entries+1)
	}
	if s2.BodiesUnique != s1.BodiesUnique {
		t.Errorf("bodies_unique after /users/1000: got %d; want %d (shared with /users/999)", s2.BodiesUnique, s1.BodiesUnique)
	}
	if s2.BytesSaved <= s1.BytesSaved {
		t.Errorf("bytes_saved after /users/1000: got %d; want more than %d", s2.BytesSaved, s1.BytesSaved)
	}
}

// TestGracefulShutdown sends SIGTERM while a request waits on a slow
// upstream: the request completes and the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url})

	const path = "/slow?ms=1500"
	resc := make(chan result, 1)
	var finished atomic.Int64 // UnixNano when the response was read
	go func() {
		r := do(http.MethodGet, c.url+path)
		finished.Store(time.Now().UnixNano())
		resc <- r
	}()
	deadline := time.Now().Add(5 * time.Second)
	for o.stats(t).Prefix["/slow"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow request did not reach the origin within 5 s")
		}
		time.Sleep(pollEvery)
	}

	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, ok := c.exitCode(stopTimeout)
	exited := time.Now()
	if !ok {
		t.Fatalf("dedupcache did not exit within %v of SIGTERM", stopTimeout)
	}
	if code != 0 {
		t.Errorf("exit code: got %d; want 0", code)
	}
	var r result
	select {
	case r = <-resc:
	case <-time.After(reqTimeout):
		t.Fatal("the in-flight request did not return")
	}
	if r.err != nil || r.status != http.StatusOK || string(r.body) != "slow 1500\n" {
		t.Errorf("in-flight GET %s: got status %d, body %q, err %v; want 200 \"slow 1500\\n\"", path, r.status, r.body, r.err)
	}
	if f := time.Unix(0, finished.Load()); exited.Before(f.Add(-100 * time.Millisecond)) {
		t.Errorf("process exited at %v, before the response finished at %v", exited.Format(time.StampMilli), f.Format(time.StampMilli))
	}
	if r := do(http.MethodGet, c.adminURL+"/healthz"); r.err == nil {
		t.Errorf("GET /healthz after exit: got status %d; want a connection error", r.status)
	}
}

// TestRSSBound streams about ten times -max-memory of distinct bodies
// through the cache and checks its own accounting and the process's
// resident memory against the bound.
func TestRSSBound(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 320MiB; skipped with -short")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read VmRSS")
	}
	const (
		maxMemory = 32 << 20
		objSize   = 65536
		requests  = 5120 // 320MiB, 10x maxMemory
		workers   = 4
		timeLimit = 60 * time.Second
		// rssOverhead is what the process may hold beyond -max-memory:
		// runtime, binary (idle RSS ~12MiB), in-flight buffers and
		// garbage not yet collected. main sets GOMEMLIMIT to max-memory
		// + 16MiB for a cache this small. Measured (linux/amd64, 2 CPUs,
		// 4 clients): peak RSS 53.4-53.5MiB, i.e. 21.4-21.5MiB over
		// -max-memory; the bound leaves about 6MiB of headroom.
		rssOverhead = 28 << 20
	)
	o := startOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-max-memory", "32MiB"}})
	pid := c.cmd.Process.Pid

	idleRSS, err := vmRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := vmRSS(pid); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	})

	start := time.Now()
	deadline := start.Add(timeLimit)
	var next, done, failed atomic.Int64
	var firstErr sync.Once
	var workersWG sync.WaitGroup
	for range workers {
		workersWG.Go(func() {
			for time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= requests {
					return
				}
				r := do(http.MethodGet, fmt.Sprintf("%s/random?size=%d&n=%d", c.url, objSize, i))
				if r.err != nil || r.status != http.StatusOK || len(r.body) != objSize {
					failed.Add(1)
					firstErr.Do(func() {
						t.Errorf("GET /random #%d: status %d, %d bytes, err %v; want 200 with %d bytes", i, r.status, len(r.body), r.err, objSize)
					})
					continue
				}
				done.Add(1)
			}
		})
	}
	workersWG.Wait()
	elapsed := time.Since(start)
	s := c.stats(t)
	finalRSS, err := vmRSS(pid)
	close(stopSampling)
	sampling.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if finalRSS > peak.Load() {
		peak.Store(finalRSS)
	}

	t.Logf("streamed %d x %d bytes (%s) with %d clients in %v (%d failed)",
		done.Load(), objSize, mib(done.Load()*objSize), workers, elapsed.Round(time.Millisecond), failed.Load())
	t.Logf("RSS: idle %s, peak %s, final %s; -max-memory %s, overhead at peak %s",
		mib(idleRSS), mib(peak.Load()), mib(finalRSS), mib(maxMemory), mib(peak.Load()-maxMemory))
	t.Logf("/api/stats: memory_bytes %d (%s), memory_limit_bytes %d, entries %d, bodies_unique %d, bytes_stored %d, responses_stored %d",
		s.MemoryBytes, mib(s.MemoryBytes), s.MemoryLimitBytes, s.Entries, s.BodiesUnique, s.BytesStored, s.ResponsesStored)

	if got := done.Load(); got != requests {
		t.Errorf("completed requests: got %d; want %d within %v", got, requests, timeLimit)
	}
	if s.MemoryLimitBytes != maxMemory {
		t.Errorf("memory_limit_bytes: got %d; want %d", s.MemoryLimitBytes, maxMemory)
	}
	if s.MemoryBytes > s.MemoryLimitBytes+objSize {
		t.Errorf("memory_bytes: got %d; want at most memory_limit_bytes %d + one object %d", s.MemoryBytes, s.MemoryLimitBytes, objSize)
	}
	if s.Entries == 0 || s.Entries >= requests {
		t.Errorf("entries: got %d; want some, but far fewer than %d (evicting)", s.Entries, requests)
	}
	if p := peak.Load(); p > maxMemory+rssOverhead {
		t.Errorf("peak RSS: got %s; want at most %s (-max-memory) + %s", mib(p), mib(maxMemory), mib(rssOverhead))
	}
	if s.ResponsesStored == 0 {
		t.Errorf("responses_stored: got 0; want the cache to have stored some")
	}
}

// writeFile writes content to name in a fresh temporary directory and
// returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
