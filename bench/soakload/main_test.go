package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v += 1 + v/100 {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("bucketOf(%d) = %d < bucketOf of a smaller value %d", v, b, prev)
		}
		prev = b
		hi := bucketHigh(b)
		if hi < v || float64(hi-v) > float64(v)/64+1 {
			t.Fatalf("value %d: bucket %d holds up to %d", v, b, hi)
		}
		if b > 0 && bucketHigh(b-1) >= v {
			t.Fatalf("value %d also fits bucket %d", v, b-1)
		}
	}
	if got := bucketOf(maxMicros); got != nBuckets-1 {
		t.Fatalf("bucketOf(max) = %d, want %d", got, nBuckets-1)
	}
	h := newHist()
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	h.record(time.Hour) // clamped
	p := percentiles(h.snapshot(), 50, 99, 100)
	for i, want := range []float64{500e3, 990e3, maxMicros} {
		if d := float64(p[i]) - want; d < 0 || d > want/64 {
			t.Errorf("percentile %d = %d µs, want %.0f (+1.6 %%)", i, p[i], want)
		}
	}
	if h.max.Load() != maxMicros {
		t.Errorf("max %d", h.max.Load())
	}
	if got := percentiles(make([]uint64, nBuckets), 99)[0]; got != 0 {
		t.Errorf("empty histogram: %d", got)
	}
}

func TestParseMix(t *testing.T) {
	m, err := parseMix("hit=80, miss=10,reval=8,cond=2")
	if err != nil || m.total != 100 || m.weight(hitClass) != 80 || m.weight(condClass) != 2 || m.String() != "hit=80,miss=10,reval=8,cond=2" {
		t.Fatalf("%+v %v", m, err)
	}
	m, err = parseMix("miss=1")
	if err != nil || m.weight(hitClass) != 0 || m.pick(rand.New(rand.NewPCG(1, 2))) != missClass {
		t.Fatalf("miss=1: %+v %v", m, err)
	}
	for _, bad := range []string{"", "hit", "hit=-1", "hot=1", "hit=0,miss=0"} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("parseMix(%q) accepted", bad)
		}
	}
}

// The bodies and ETags are the ones bench/origin serves (its /obj/0 and
// /obj/2 with -n 10 -k 3 -size 1000 -seed 1).
func TestObjectsMatchOrigin(t *testing.T) {
	o := newObjects(10, 3, 1000, 1)
	if o.etags[0] != `"aea57a797062fb52"` || o.etags[2] != `"26a9a36334a79a52"` {
		t.Fatalf("ETags %s %s", o.etags[0], o.etags[2])
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"-target", "http://127.0.0.1:1", "-d", "30s", "-warmup", "10s"})
	if err != nil || o.conns != 256 || o.duration != 30*time.Second {
		t.Fatalf("%+v %v", o, err)
	}
	for _, args := range [][]string{
		{},
		{"-target", "http://10.0.0.1:80"},
		{"-target", "http://127.0.0.1:1", "-admin", "http://example.com:1"},
		{"-target", "http://127.0.0.1:1", "-check"},
		{"-target", "http://127.0.0.1:1", "-admin", "http://127.0.0.1:2", "-check"},
		{"-target", "http://127.0.0.1:1", "-d", "10s", "-warmup", "10s"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// toyCache answers like a cache in front of bench/origin: the first
// request for a target is a MISS, later ones HIT; If-None-Match with the
// object's ETag gets 304. corrupt names an object whose body it damages.
func toyCache(objs *objects, seed uint64, corrupt int) http.Handler {
	var mu sync.Mutex
	seen := map[string]bool{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/obj/"))
		if err != nil || i < 0 || i >= objs.n {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		hit := seen[r.URL.RequestURI()]
		seen[r.URL.RequestURI()] = true
		mu.Unlock()
		w.Header().Set("X-Cache", map[bool]string{true: "HIT", false: "MISS"}[hit])
		w.Header().Set("ETag", objs.etags[i%objs.k])
		if r.Header.Get("If-None-Match") == objs.etags[i%objs.k] {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		b := make([]byte, objs.size)
		originBody(b, seed, i%objs.k)
		if i == corrupt {
			b[0] ^= 1
		}
		w.Write(b)
	})
}

func testLoad(t *testing.T, h http.Handler, objs *objects, m mix) *phaseStats {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	lc := &loadConfig{addr: addr, host: addr, conns: 8, timeout: 5 * time.Second, mix: m, hot: 20, reval: 5,
		revalMaxAge: 1, revalTags: 2, nonce: "t", cacheHeader: "X-Cache", objs: objs, missSeq: new(atomic.Int64)}
	ps := newPhaseStats("load")
	warm(lc, m, newPhaseStats("warm"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	runPhase(ctx, lc, m, ps, 1)
	return ps
}

func TestLoadAgainstToyCache(t *testing.T) {
	objs := newObjects(100, 7, 300, 3)
	m, _ := parseMix("hit=70,miss=10,reval=10,cond=10")
	ps := testLoad(t, toyCache(objs, 3, -1), objs, m)
	if n := ps.total((*classStats).errors); n != 0 {
		t.Fatalf("%d errors, first: %s", n, *ps.firstErr.Load())
	}
	for c := range nClasses {
		cs := &ps.classes[c]
		if cs.ok.Load() == 0 || cs.ok.Load() != cs.responses() {
			t.Errorf("%s: %d responses, %d as expected", c, cs.responses(), cs.ok.Load())
		}
	}
	if miss := &ps.classes[missClass]; miss.cache[cacheMiss].Load() != miss.responses() {
		t.Errorf("miss class: %d MISS of %d", miss.cache[cacheMiss].Load(), miss.responses())
	}
	if hit := &ps.classes[hitClass]; hit.cache[cacheHit].Load() != hit.responses() {
		t.Errorf("hit class after the warm pass: %d HIT of %d", hit.cache[cacheHit].Load(), hit.responses())
	}
	if cond := &ps.classes[condClass]; cond.status304.Load() != cond.responses() {
		t.Errorf("cond class: %d 304s of %d", cond.status304.Load(), cond.responses())
	}
}

func TestLoadFindsWrongBodies(t *testing.T) {
	objs := newObjects(100, 7, 300, 3)
	m, _ := parseMix("hit=1")
	ps := testLoad(t, toyCache(objs, 3, 4), objs, m)
	if ps.classes[hitClass].errs[errBody].Load() == 0 {
		t.Fatal("a damaged body went unnoticed")
	}
	if !strings.Contains(*ps.firstErr.Load(), "object 4") {
		t.Fatalf("first error %q", *ps.firstErr.Load())
	}
	// A target that answers a never-asked key as a hit is caught too.
	m, _ = parseMix("miss=1")
	hitAlways := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		toyCache(objs, 3, -1).ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("X-Cache", "HIT")
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
	ps = testLoad(t, hitAlways, objs, m)
	if ps.classes[missClass].errs[errCache].Load() == 0 {
		t.Fatal("a never-asked key answered HIT went unnoticed")
	}
}

func TestRefusedConnectionsAreErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	objs := newObjects(10, 1, 10, 1)
	m, _ := parseMix("hit=1")
	lc := &loadConfig{addr: addr, host: addr, conns: 2, timeout: time.Second, mix: m, hot: 5, reval: 1,
		revalTags: 1, nonce: "t", cacheHeader: "X-Cache", objs: objs, missSeq: new(atomic.Int64)}
	ps := newPhaseStats("load")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	runPhase(ctx, lc, m, ps, 1)
	if ps.classes[hitClass].errs[errConnect].Load() == 0 {
		t.Fatal("refused connections not counted")
	}
}

func TestProbeParsing(t *testing.T) {
	metrics := "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines_total 3\ngo_goroutines 731\n"
	if v, err := metricValue(strings.NewReader(metrics), "go_goroutines"); err != nil || v != 731 {
		t.Fatalf("go_goroutines: %d %v", v, err)
	}
	if _, err := metricValue(strings.NewReader("x 1\n"), "go_goroutines"); err == nil {
		t.Fatal("missing metric accepted")
	}
	if v, err := vmRSS([]byte("Name:\tx\nVmPeak:\t 100 kB\nVmRSS:\t   56068 kB\n")); err != nil || v != 56068 {
		t.Fatalf("VmRSS: %d %v", v, err)
	}
}

// judge fails a run whose RSS or goroutines grew past the plateau, whose
// stats do not add up, or that had errors; and passes a clean one.
func TestJudge(t *testing.T) {
	mk := func(rss, gor []int64, idle int64, hitsDelta int64, errs int64) *result {
		o := &options{name: "t", rssMarginPct: 10, rssMarginMiB: 16, goroutineMargin: 64, idleMargin: 16, idleWait: time.Second,
			check: true, cacheHeader: "X-Cache", sample: time.Second, warmup: 2 * time.Second}
		m, _ := parseMix("hit=1")
		res := &result{opts: o, mix: m, load: newPhaseStats("load"), purges: newPurgeStats()}
		res.before = sample{goroutines: 10}
		res.idleGoroutines = idle
		for i := range rss {
			phase := "load"
			if i < 2 {
				phase = "warmup"
			}
			res.samples = append(res.samples, sample{phase: phase, rssKiB: rss[i], goroutines: gor[i]})
		}
		cs := &res.load.classes[hitClass]
		cs.sent.Add(100)
		cs.ok.Add(100)
		cs.cache[cacheHit].Add(100)
		if errs > 0 {
			cs.errs[errRead].Add(errs)
			msg := "boom"
			res.load.firstErr.Store(&msg)
		}
		res.proxyAfter.Hits = hitsDelta
		res.judge()
		return res
	}
	flat := []int64{50000, 51000, 50500, 51200}
	gor := []int64{700, 720, 690, 710}
	if res := mk(flat, gor, 20, 100, 0); len(res.failures) != 0 {
		t.Fatalf("clean run failed: %v", res.failures)
	}
	cases := map[string]*result{
		"VmRSS":              mk([]int64{50000, 51000, 60000, 80000}, gor, 20, 100, 0),
		"goroutines at the":  mk(flat, []int64{700, 720, 760, 800}, 20, 100, 0),
		"after the load":     mk(flat, gor, 30, 100, 0),
		"do not add up":      mk(flat, gor, 20, 99, 0),
		"failed requests in": mk(flat, gor, 20, 100, 3),
	}
	for want, res := range cases {
		if !strings.Contains(strings.Join(res.failures, "; "), want) {
			t.Errorf("want a failure about %q, got %v", want, res.failures)
		}
		if !strings.Contains(res.markdown(), "**FAIL**") || !strings.Contains(res.resultLine(), "verdict=FAIL") {
			t.Errorf("%q: report does not say FAIL", want)
		}
	}
	if line := mk(flat, gor, 20, 100, 0).resultLine(); !strings.Contains(line, "rss_max_kb=51200 ") || !strings.Contains(line, fmt.Sprintf("identities=%d/%d", 19, 19)) {
		t.Errorf("RESULT line %s", line)
	}
}

// TestRelayed304Counted: a 304 answered BYPASS whose Cache-Status has fwd=
// but no fwd-status (the origin's own 304 to a conditional forwarded as
// sent; fwd-status defaults to the response's status, RFC 9211 §2.3) is
// counted as relayed, and a cache's own 304 (HIT) or one labelled
// fwd-status=304 is not.
func TestRelayed304Counted(t *testing.T) {
	objs := newObjects(100, 7, 300, 3)
	m, _ := parseMix("cond=100")
	toy := toyCache(objs, 3, -1)
	var n atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 3 {
		case 0:
			w.Header().Set("Cache-Status", "dedupcache; fwd=miss; detail=fill-limit")
		case 1:
			w.Header().Set("Cache-Status", "dedupcache; fwd=stale; fwd-status=304")
		}
		toy.ServeHTTP(bypassWriter{w}, r)
	})
	ps := testLoad(t, h, objs, m)
	cond := &ps.classes[condClass]
	relayed, fwd := cond.relayed304.Load(), cond.reval304.Load()
	if relayed == 0 || fwd == 0 || relayed+fwd >= cond.status304.Load() {
		t.Fatalf("%d 304s: %d relayed, %d fwd-status=304; want some of each and some the cache's own", cond.status304.Load(), relayed, fwd)
	}
}

// bypassWriter marks a response that carries a Cache-Status BYPASS as it
// goes out.
type bypassWriter struct{ http.ResponseWriter }

func (b bypassWriter) WriteHeader(code int) {
	if b.Header().Get("Cache-Status") != "" {
		b.Header().Set("X-Cache", "BYPASS")
	}
	b.ResponseWriter.WriteHeader(code)
}

func (b bypassWriter) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.ResponseWriter.Write(p)
}

// TestCountCacheStatus: how one response is counted from its cache header
// and Cache-Status (the identities in report.go rest on these counts).
func TestCountCacheStatus(t *testing.T) {
	for _, tc := range []struct {
		name                                   string
		cv                                     int
		cs                                     string
		status                                 int
		collapsed, reval, hit304, s304, relayd int64
	}{
		{"revalidated leader", cacheHit, "dedupcache; fwd=stale; fwd-status=304", 200, 0, 1, 1, 0, 0},
		{"its waiter", cacheHit, "dedupcache; fwd=stale; fwd-status=304; collapsed", 200, 1, 0, 0, 0, 0},
		{"purged before its answer", cacheBypass, "dedupcache; fwd=stale; fwd-status=304; detail=not-stored", 200, 0, 1, 0, 0, 0},
		{"own 304 on a miss", cacheMiss, "dedupcache; fwd=uri-miss; fwd-status=200; stored", 304, 0, 0, 0, 1, 0},
		{"relayed origin 304", cacheBypass, "dedupcache; fwd=miss; detail=fill-limit", 304, 0, 0, 0, 1, 1},
		{"hit 304", cacheHit, "dedupcache; hit; ttl=10", 304, 0, 0, 0, 1, 0},
		{"collapsed 304", cacheHit, "dedupcache; fwd=uri-miss; collapsed", 304, 1, 0, 0, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s classStats
			s.count(tc.cv, []byte(tc.cs), tc.status)
			got := [5]int64{s.collapsed.Load(), s.reval304.Load(), s.hit304.Load(), s.status304.Load(), s.relayed304.Load()}
			if want := [5]int64{tc.collapsed, tc.reval, tc.hit304, tc.s304, tc.relayd}; got != want {
				t.Fatalf("collapsed, reval304, hit304, status304, relayed304 = %v, want %v", got, want)
			}
		})
	}
}
