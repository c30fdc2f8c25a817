package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Misbehaving origins (issue 16, item 1), against the real binary on each
// engine, with faultOrigin scripting the upstream's bytes. For every
// fault: the client gets a clear error (502/504, the origin's own 5xx) or
// a response that visibly breaks off (short of its Content-Length, no last
// chunk, the connection dropped), never a short body presented as whole;
// the answer comes within the upstream timeouts; nothing broken is
// stored (the next request is no HIT of it, /api/stats shows no entry,
// body or in-flight byte for it); and the process's goroutines and open
// files come back to where they were.

// testEngines are the proxy listener's HTTP testEngines; every test here runs on
// each.
var testEngines = []string{"fasthttp", "net/http"}

// Upstream timeouts of the fault tests, short so that the tests are
// quick; faultMargin is what an answer may take beyond them (process
// scheduling on a loaded 2-core machine, -race). They leave the fault
// origin, in the test process, time to answer a burst of a hundred
// requests under -race: read bounds the wait for a bypass's response
// header too (see bugForwardHeaderRead).
const (
	faultHeaderTimeout = 2 * time.Second // upstream_timeouts.response_header
	faultReadTimeout   = time.Second     // upstream_timeouts.read
	faultMargin        = 2 * time.Second
)

// faultConfig is the cache's configuration for the fault tests on engine.
func faultConfig(engine string) string {
	return fmt.Sprintf(`upstream_timeouts:
  dial: "1s"
  response_header: %q
  read: %q
  idle: "1s"
server:
  engine: %q
cache:
  max_object_size: "16MiB"
`, faultHeaderTimeout, faultReadTimeout, engine)
}

// faultCase is one misbehaviour and what a client may see of it.
type faultCase struct {
	name      string
	behaviour string // the fault origin's path segment
	query     string // its parameters
	size      int    // the body the origin means to send

	statuses []int // error statuses the client may get (complete, short body)
	broken   bool  // a 200 that breaks off (or no answer at all) is acceptable
	whole    bool  // the whole, correct 200 is the answer (then it may be stored)
	// wantStored: a correct answer must be stored (the next request is a
	// HIT of the same bytes).
	wantStored bool
	// header checks the whole answer's fields, when whole.
	header func(http.Header) string
	// knownBug, if set, describes the proxy's bug that makes the case
	// fail: it is left out unless DEDUPCACHE_E2E_KNOWN_BUGS is set.
	knownBug string
}

// faultCases are the misbehaviours of issue 16, item 1.
var faultCases = []faultCase{
	{name: "reset mid-body", behaviour: "reset", size: 200 << 10, statuses: []int{502}, broken: true},
	{name: "reset mid-body, small", behaviour: "reset", size: 8 << 10, statuses: []int{502}, broken: true},
	{name: "reset before the header", behaviour: "reset-head", statuses: []int{502}},
	{name: "Content-Length longer than the body", behaviour: "cl-long", size: 200 << 10, statuses: []int{502}, broken: true},
	{name: "Content-Length longer than the body, small", behaviour: "cl-long", size: 8 << 10, statuses: []int{502}, broken: true},
	// A Content-Length shorter than the body: TestFaultyOriginExtraBytes
	// (the bytes after the message would reach other cases' requests).
	{name: "invalid chunk size", behaviour: "bad-chunk", size: 100 << 10, statuses: []int{502}, broken: true},
	{name: "chunk longer than its size", behaviour: "chunk-overrun", size: 100 << 10, statuses: []int{502}, broken: true},
	{name: "chunk longer than its size, small", behaviour: "chunk-overrun", size: 4 << 10, statuses: []int{502}, broken: true},
	{name: "header never ends", behaviour: "head-stall", statuses: []int{502, 504}},
	{name: "header trickles forever", behaviour: "head-trickle", statuses: []int{502, 504}},
	{name: "body stalls", behaviour: "stall", size: 200 << 10, statuses: []int{502, 504}, broken: true},
	{name: "body stalls, small", behaviour: "stall", size: 8 << 10, statuses: []int{502, 504}, broken: true},
	{name: "accepts, never answers", behaviour: "no-answer", statuses: []int{504}},
	{name: "not HTTP", behaviour: "garbage", statuses: []int{502}},
	{name: "503", behaviour: "5xx", statuses: []int{503}},
	{name: "500", behaviour: "5xx", query: "code=500", statuses: []int{500}},
	// Content-Encoding is the representation's (RFC 9110 §8.4): a cache
	// does not decode it, so bytes that are not gzip are the origin's
	// content, relayed and stored as they came, the field kept.
	{name: "Content-Encoding gzip over plain bytes", behaviour: "lying-ce", size: 2 << 10, whole: true, wantStored: true,
		header: func(h http.Header) string {
			if v := h.Get("Content-Encoding"); v != "gzip" {
				return fmt.Sprintf("Content-Encoding %q; want the origin's \"gzip\"", v)
			}
			return ""
		}},
	// A transfer coding is the connection's (RFC 9112 §7): the cache
	// decodes it, and a gzip coding over bytes that are not gzip is a
	// broken message.
	{name: "Transfer-Encoding gzip over plain bytes", behaviour: "lying-te", size: 2 << 10, statuses: []int{502}, broken: true},
}

// faultVariant is how a case's request reaches the upstream.
type faultVariant struct {
	name   string
	fields []string // request fields
	herd   int      // concurrent requests for the key
	probe  bool     // a request after it shows what was stored
}

var faultVariants = []faultVariant{
	{name: "fill", herd: 1, probe: true},                                                   // a miss that fills the cache
	{name: "waiters", herd: 4, probe: true},                                                // a miss with requests coalesced on it
	{name: "bypass", herd: 1, fields: []string{"Cache-Control: no-store"}},                 // straight upstream, never stored
	{name: "gzip client", herd: 1, fields: []string{"Accept-Encoding: gzip"}, probe: true}, // the gzip Accept-Encoding bucket
}

// faultOutcome is what one case and variant produced.
type faultOutcome struct {
	path    string
	answers []foResp
	probe   *foResp
	origin  int // requests the origin saw for the path
}

// knownBug skips t unless DEDUPCACHE_E2E_KNOWN_BUGS is set.
func knownBug(t *testing.T, bug string) {
	t.Helper()
	if os.Getenv("DEDUPCACHE_E2E_KNOWN_BUGS") == "" {
		t.Skip("known bug: " + bug + " (DEDUPCACHE_E2E_KNOWN_BUGS=1 runs it)")
	}
}

// TestFaultyOrigin runs faultCases, each in every faultVariants way, twice
// over, then checks the store's ledger and the process's goroutines and
// open files.
func TestFaultyOrigin(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			testFaultyOrigin(t, engine)
		})
	}
}

func testFaultyOrigin(t *testing.T, engine string) {
	o := startFaultOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", writeFile(t, "faults.yaml", faultConfig(engine))}})
	addr := strings.TrimPrefix(c.url, "http://")
	cases := faultCases
	if os.Getenv("DEDUPCACHE_E2E_KNOWN_BUGS") == "" {
		cases = slices.DeleteFunc(slices.Clone(cases), func(fc faultCase) bool { return fc.knownBug != "" })
	}

	// Warm up to the concurrency of the fault phase (fetcher goroutines
	// are kept 30 s for reuse, fasthttp's server workers 10 s), and store
	// two entries the faults must leave alone.
	faultWarmUp(t, addr, len(faultCases)*len(faultVariants)*2)
	kept := []string{"/ok/kept-1?size=3000", "/ok/kept-2?size=70000"}
	for _, p := range kept {
		if r := rawRequest(addr, "GET", p, reqTimeout); !r.complete() || r.status != 200 {
			t.Fatalf("GET %s: %v", p, r)
		}
	}
	before := waitQuiet(t, c)
	t.Logf("%s: before the faults: %s", engine, before)

	// Two rounds of every case and variant at once, each on its own key:
	// what the first leaves running (pooled connections, idle fetchers)
	// the second reuses, so a leak shows as growth from one to the next.
	var stored []string // paths a whole answer was stored for
	var rounds [2]faultStats
	for round := range rounds {
		outcomes := make([][]faultOutcome, len(cases))
		var wg sync.WaitGroup
		start := time.Now()
		for i, fc := range cases {
			outcomes[i] = make([]faultOutcome, len(faultVariants))
			for j, v := range faultVariants {
				wg.Go(func() {
					outcomes[i][j] = runFault(o, addr, fmt.Sprintf("%d-%d-%s", round, i, strings.ReplaceAll(v.name, " ", "-")), fc, v)
				})
			}
		}
		wg.Wait()
		t.Logf("%s: fault round %d took %v", engine, round, time.Since(start).Round(time.Millisecond))
		for i, fc := range cases {
			t.Run(fmt.Sprintf("%s/round %d", fc.name, round), func(t *testing.T) {
				stored = append(stored, checkFault(t, fc, outcomes[i])...)
			})
		}
		rounds[round] = waitQuiet(t, c)
		t.Logf("%s: after round %d: %s", engine, round, rounds[round])
	}
	for _, fc := range faultCases {
		if fc.knownBug != "" && !slices.ContainsFunc(cases, func(x faultCase) bool { return x.name == fc.name }) {
			t.Run(fc.name, func(t *testing.T) { knownBug(t, fc.knownBug) })
		}
	}

	// Nothing else was stored, no body or in-flight byte is left behind:
	// once the entries the faults rightly stored are purged, the store is
	// as it was before, byte for byte.
	t.Run("store ledger", func(t *testing.T) {
		var prefixes []string
		for _, fc := range faultCases {
			prefixes = append(prefixes, "prefix=/"+fc.behaviour+"/")
		}
		slices.Sort(prefixes)
		prefixes = slices.Compact(prefixes)
		after := waitSettled(t, c, nil)
		t.Logf("after the faults: %s; stored rightly: %v", after, stored)
		if got, want := after.Entries, before.Entries+int64(len(stored)); got != want {
			t.Errorf("entries after the faults: got %d; want %d (%d before, %d whole answers stored)", got, want, before.Entries, len(stored))
		}
		t.Logf("purged %s", faultPurge(t, c, strings.Join(prefixes, "&")))
		final := waitSettled(t, c, func(s faultStats) bool { return s.ledger() == before.ledger() })
		if final.ledger() != before.ledger() {
			t.Errorf("store after purging the fault paths:\n got %s\nwant %s (as before the faults)", final, before)
		}
		for _, p := range kept {
			r := rawRequest(addr, "GET", p, reqTimeout)
			want := foBody(strings.Split(p, "?")[0], intQuery(p, "size", 0))
			if r.header.Get("X-Cache") != "HIT" || sameBytes(r.body, want) != "" {
				t.Errorf("GET %s after the faults: %v; want a HIT of its %d bytes", p, r, len(want))
			}
		}
	})

	t.Run("goroutines and files", func(t *testing.T) {
		checkNoGrowth(t, c, "before the faults", before, "after round 0", rounds[0])
		checkNoGrowth(t, c, "after round 0", rounds[0], "after round 1", rounds[1])
	})
}

// checkFault checks one case's outcomes, and returns the paths whose
// probe found a whole answer stored.
func checkFault(t *testing.T, fc faultCase, outcomes []faultOutcome) (stored []string) {
	t.Helper()
	for j, v := range faultVariants {
		out := outcomes[j]
		for k, r := range out.answers {
			t.Logf("%s %s #%d: %v", v.name, out.path, k, r)
			if msg := fc.check(r, out.path, true); msg != "" {
				t.Errorf("%s: GET %s #%d: %s", v.name, out.path, k, msg)
			}
		}
		if out.probe == nil {
			continue
		}
		p := *out.probe
		t.Logf("%s %s probe: %v; origin saw %d requests", v.name, out.path, p, out.origin)
		hit := p.header.Get("X-Cache") == "HIT"
		switch {
		case hit && !fc.whole:
			t.Errorf("%s: GET %s after the fault: %v; want no HIT (a broken answer was stored)", v.name, out.path, p)
		case hit:
			if msg := fc.check(p, out.path, false); msg != "" {
				t.Errorf("%s: GET %s after the fault, a HIT: %s", v.name, out.path, msg)
			}
			stored = append(stored, out.path)
		case fc.wantStored:
			t.Errorf("%s: GET %s after a whole answer: %v; want a HIT of it", v.name, out.path, p)
		default:
			if msg := fc.check(p, out.path, true); msg != "" {
				t.Errorf("%s: GET %s after the fault: %s", v.name, out.path, msg)
			}
		}
		if !hit && out.origin < 2 {
			t.Errorf("%s: the origin saw %s %d times; want the probe to reach it too", v.name, out.path, out.origin)
		}
	}
	return stored
}

// runFault runs variant v of case fc on the key named name: its
// requests (together), then the probe.
func runFault(o *faultOrigin, addr, name string, fc faultCase, v faultVariant) faultOutcome {
	path := "/" + fc.behaviour + "/" + name
	target := path + "?size=" + fmt.Sprint(fc.size)
	if fc.query != "" {
		target += "&" + fc.query
	}
	out := faultOutcome{path: path, answers: make([]foResp, v.herd)}
	var wg sync.WaitGroup
	for k := range v.herd {
		wg.Go(func() {
			if k > 0 {
				time.Sleep(50 * time.Millisecond) // after the first: waiters on its fetch
			}
			out.answers[k] = rawRequest(addr, "GET", target, 8*time.Second, v.fields...)
		})
	}
	wg.Wait()
	if v.probe {
		time.Sleep(100 * time.Millisecond) // a store completes just after its last byte
		p := rawRequest(addr, "GET", target, 8*time.Second, v.fields...)
		out.probe = &p
	}
	out.origin = o.count(path)
	return out
}

// check describes what is wrong with r as an answer for fc at path, or
// returns "". timed: r must come within the upstream timeouts.
func (fc faultCase) check(r foResp, path string, timed bool) string {
	want := foBody(path, fc.size)
	if timed && r.took > faultHeaderTimeout+faultReadTimeout+faultMargin {
		return fmt.Sprintf("%v; want an answer within %v", r, faultHeaderTimeout+faultReadTimeout+faultMargin)
	}
	switch {
	case r.status == 0:
		if !fc.broken {
			return fmt.Sprintf("%v; want a response", r)
		}
	case slices.Contains(fc.statuses, r.status):
		if r.err != nil {
			return fmt.Sprintf("%v; want the %d whole", r, r.status)
		}
		if r.header.Get("X-Cache") == "HIT" {
			return fmt.Sprintf("%v; want the error not served from the cache", r)
		}
	case r.status == 200 && r.err != nil:
		if !fc.broken {
			return fmt.Sprintf("%v; want a whole response", r)
		}
		if !bytes.HasPrefix(want, r.body) {
			return fmt.Sprintf("%v: the bytes before the break are not the origin's", r)
		}
	case r.status == 200:
		if !fc.whole {
			return fmt.Sprintf("%v, presented as whole; want an error or a response that breaks off", r)
		}
		if msg := sameBytes(r.body, want); msg != "" {
			return fmt.Sprintf("%v: body %s", r, msg)
		}
		if fc.header != nil {
			if msg := fc.header(r.header); msg != "" {
				return msg
			}
		}
	default:
		return fmt.Sprintf("%v; want one of %v, or a 200 (broken off: %v, whole: %v)", r, fc.statuses, fc.broken, fc.whole)
	}
	return ""
}

// faultWarmUp runs n concurrent misses that take 300 ms at the origin and
// n concurrent bypasses, so that the process has the fetchers and server
// workers the fault phase will use before the baseline is taken.
func faultWarmUp(t *testing.T, addr string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, 2*n)
	for i := range 2 * n {
		wg.Go(func() {
			var fields []string
			if i%2 == 1 {
				fields = []string{"Cache-Control: no-store"}
			}
			path := fmt.Sprintf("/ok/warm-%d?size=100&delay_ms=300", i)
			if r := rawRequest(addr, "GET", path, reqTimeout, fields...); r.status != 200 || !r.complete() {
				errs <- fmt.Sprintf("warm-up GET %s: %v", path, r)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// faultStats is the part of /api/stats the ledger compares.
type faultStats struct {
	Entries      int64 `json:"entries"`
	BodiesUnique int64 `json:"bodies_unique"`
	BytesLogical int64 `json:"bytes_logical"`
	BytesStored  int64 `json:"bytes_stored"`
	HeaderBlocks int64 `json:"header_blocks"`
	HeaderBytes  int64 `json:"header_bytes"`
	EntryBytes   int64 `json:"entry_bytes"`
	MemoryBytes  int64 `json:"memory_bytes"`
	CutOff       int64 `json:"responses_cut_off"`
	Upstream5    int64 `json:"upstream_errors"`

	goroutines, files float64 // from /metrics
}

// faultLedger is what must come back after the faults: the store's
// contents, and body memory plus in-flight bytes (memory_bytes without
// the entries, which hit-for-miss markers also use).
type faultLedger struct {
	entries, bodies, logical, stored, blocks, headerBytes, bodyAndInflight int64
}

func (s faultStats) ledger() faultLedger {
	return faultLedger{s.Entries, s.BodiesUnique, s.BytesLogical, s.BytesStored, s.HeaderBlocks, s.HeaderBytes,
		s.MemoryBytes - s.EntryBytes - s.HeaderBytes}
}

func (s faultStats) String() string {
	l := s.ledger()
	return fmt.Sprintf("entries %d, bodies %d, bytes logical %d stored %d, header blocks %d (%d B), body+in-flight memory %d, cut off %d, upstream errors %d, goroutines %.0f, open files %.0f",
		l.entries, l.bodies, l.logical, l.stored, l.blocks, l.headerBytes, l.bodyAndInflight, s.CutOff, s.Upstream5, s.goroutines, s.files)
}

// readFaultStats reads /api/stats and the process figures of /metrics.
func readFaultStats(t *testing.T, c *cache) faultStats {
	t.Helper()
	var s faultStats
	getJSON(t, c.adminURL+"/api/stats", &s)
	r := do("GET", c.adminURL+"/metrics")
	if r.err != nil || r.status != 200 {
		t.Fatalf("GET /metrics: %v %d", r.err, r.status)
	}
	var ok1, ok2 bool
	s.goroutines, ok1 = metricValue(string(r.body), "go_goroutines")
	s.files, ok2 = metricValue(string(r.body), "process_open_fds")
	if !ok1 || !ok2 {
		t.Fatalf("/metrics lacks go_goroutines (%v) or process_open_fds (%v)", ok1, ok2)
	}
	return s
}

// waitSettled returns the stats once two readings 200 ms apart agree on
// the ledger (and cond holds, if given), or after 5 s.
func waitSettled(t *testing.T, c *cache, cond func(faultStats) bool) faultStats {
	t.Helper()
	client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	last := readFaultStats(t, c)
	for {
		time.Sleep(200 * time.Millisecond)
		s := readFaultStats(t, c)
		if (s.ledger() == last.ledger() && (cond == nil || cond(s))) || time.Now().After(deadline) {
			return s
		}
		last = s
	}
}

// faultPurge purges through the admin API (no token configured).
func faultPurge(t *testing.T, c *cache, query string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", c.adminURL+"/api/purge?"+query, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("purge %s: %v", query, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("purge %s: %s %q", query, resp.Status, b.Bytes())
	}
	return strings.TrimSpace(b.String())
}

// Goroutines and open files may exceed their baseline by this much once
// everything is closed (the admin request reading them, timers, GC).
const (
	leakSlackGoroutines = 12
	leakSlackFiles      = 6
)

// waitQuiet waits, up to 8 s, for c's goroutines and open files to stop
// falling (idle upstream connections close after upstream_timeouts.idle,
// 1 s here), and returns the last reading.
func waitQuiet(t *testing.T, c *cache) faultStats {
	t.Helper()
	client.CloseIdleConnections()
	start := time.Now()
	last := readFaultStats(t, c)
	for {
		time.Sleep(300 * time.Millisecond)
		s := readFaultStats(t, c)
		falling := s.goroutines < last.goroutines-1 || s.files < last.files
		if (!falling && time.Since(start) > 1500*time.Millisecond) || time.Since(start) > 8*time.Second {
			return s
		}
		last = s
	}
}

// checkNoGrowth fails if the goroutines or open files of after exceed
// those of before by more than the slack, and still do in a reading of c
// up to 5 s later (connections may still be closing on a loaded machine).
func checkNoGrowth(t *testing.T, c *cache, whenBefore string, before faultStats, whenAfter string, after faultStats) {
	t.Helper()
	grown := func(s faultStats) bool {
		return s.goroutines > before.goroutines+leakSlackGoroutines || s.files > before.files+leakSlackFiles
	}
	for deadline := time.Now().Add(5 * time.Second); grown(after) && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		after = readFaultStats(t, c)
	}
	t.Logf("goroutines %.0f %s, %.0f %s; open files %.0f, %.0f", before.goroutines, whenBefore, after.goroutines, whenAfter, before.files, after.files)
	if after.goroutines > before.goroutines+leakSlackGoroutines {
		t.Errorf("goroutines %s: %.0f; want at most %.0f+%d (%s)", whenAfter, after.goroutines, before.goroutines, leakSlackGoroutines, whenBefore)
	}
	if after.files > before.files+leakSlackFiles {
		t.Errorf("open files %s: %.0f; want at most %.0f+%d (%s)", whenAfter, after.files, before.files, leakSlackFiles, whenBefore)
	}
}

// TestFaultyOriginExtraBytes: an origin whose Content-Length is shorter
// than the body it sends. The message ends where the Content-Length says
// (RFC 9112 §6.3): the client gets those bytes, whole, and they may be
// stored; the bytes after it (here a whole response nobody asked for,
// sent with the body or a little later) are never the answer to another
// request, nor stored under its key.
func TestFaultyOriginExtraBytes(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			o := startFaultOrigin(t)
			c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", writeFile(t, "faults.yaml", faultConfig(engine))}})
			addr := strings.TrimPrefix(c.url, "http://")
			for i, behaviour := range []string{"cl-short", "cl-short-late", "cl-short", "cl-short-late"} {
				short := fmt.Sprintf("/%s/%d", behaviour, i)
				r := rawRequest(addr, "GET", short+"?size=1000&late=100", reqTimeout)
				if msg := sameBytes(r.body, foBody(short, 1000)); r.status != 200 || !r.complete() || msg != "" {
					t.Errorf("GET %s: %v; want the 1000 bytes its Content-Length declares (%s)", short, r, msg)
				}
				time.Sleep(300 * time.Millisecond) // the late bytes are in
				for _, next := range []string{"a", "b", "c"} {
					path := fmt.Sprintf("/ok/%d-%s", i, next)
					for n := range 2 { // a miss, then what was stored
						r := rawRequest(addr, "GET", path+"?size=10", reqTimeout)
						t.Logf("after %s: GET %s: %v, %q", short, path, r, r.body)
						if r.status == 200 && sameBytes(r.body, foBody(path, 10)) != "" {
							t.Errorf("after %s: GET %s #%d: %v, body %q; want its own %q (another response's bytes%s)",
								short, path, n, r, r.body, foBody(path, 10), map[bool]string{true: ", stored", false: ""}[r.header.Get("X-Cache") == "HIT" || strings.Contains(r.header.Get("Cache-Status"), "stored")])
						}
					}
				}
			}
		})
	}
}

// TestFaultyOriginStale: an entry stored with stale-if-error, then an
// origin that fails. RFC 5861 §4: a failure before the response header
// (an error status, a reset, silence, garbage) is answered with the stale
// entry, to the request that fetched and to its waiters; a failure after
// a 200's header may instead break off that response. Either way the
// stale entry is still there afterwards, unchanged, and nothing else is
// stored.
func TestFaultyOriginStale(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			testFaultyOriginStale(t, engine)
		})
	}
}

func testFaultyOriginStale(t *testing.T, engine string) {
	o := startFaultOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", writeFile(t, "faults.yaml", faultConfig(engine))}})
	addr := strings.TrimPrefix(c.url, "http://")
	const size = 5000
	staleCodes := []int{500, 502, 503, 504} // the errors of RFC 5861 §4
	type staleCase struct {
		behaviour string
		early     bool // fails before the response header
	}
	cases := []staleCase{
		{"5xx", true}, {"reset-head", true}, {"no-answer", true}, {"head-stall", true}, {"garbage", true},
		{"reset", false}, {"stall", false}, {"cl-long", false}, {"bad-chunk", false}, {"chunk-overrun", false}, {"lying-te", false},
	}
	target := func(i int) (path, target string) {
		path = fmt.Sprintf("/mode/stale-%d", i)
		return path, path + fmt.Sprintf("?size=%d&code=%d&cc=max-age=1,%%20stale-if-error=60", size, staleCodes[i%len(staleCodes)])
	}
	for i := range cases {
		_, tg := target(i)
		if r := rawRequest(addr, "GET", tg, reqTimeout); r.status != 200 || !r.complete() {
			t.Fatalf("seeding GET %s: %v", tg, r)
		}
	}
	seeded := waitSettled(t, c, func(s faultStats) bool { return s.Entries == int64(len(cases)) })
	if seeded.Entries != int64(len(cases)) {
		t.Fatalf("after seeding: %s; want %d entries", seeded, len(cases))
	}
	time.Sleep(2100 * time.Millisecond) // max-age=1 has passed

	type outcome struct{ answers, after []foResp }
	outcomes := make([]outcome, len(cases))
	var wg sync.WaitGroup
	for i, sc := range cases {
		path, tg := target(i)
		o.setMode(path, sc.behaviour)
		wg.Go(func() {
			out := &outcomes[i]
			out.answers = make([]foResp, 3)
			var herd sync.WaitGroup
			for k := range out.answers {
				herd.Go(func() {
					time.Sleep(time.Duration(k) * 50 * time.Millisecond)
					out.answers[k] = rawRequest(addr, "GET", tg, 8*time.Second)
				})
			}
			herd.Wait()
			o.setMode(path, "5xx")
			out.after = []foResp{rawRequest(addr, "GET", tg, 8*time.Second)}
		})
	}
	wg.Wait()

	for i, sc := range cases {
		t.Run(sc.behaviour, func(t *testing.T) {
			path, _ := target(i)
			want := foBody(path, size)
			isStale := func(r foResp) bool {
				return r.status == 200 && r.complete() && r.header.Get("X-Cache") == "STALE" && sameBytes(r.body, want) == ""
			}
			for k, r := range outcomes[i].answers {
				t.Logf("GET %s #%d (origin: %s): %v", path, k, sc.behaviour, r)
				switch {
				case r.took > faultHeaderTimeout+faultReadTimeout+faultMargin:
					t.Errorf("GET %s #%d: %v; want an answer within %v", path, k, r, faultHeaderTimeout+faultReadTimeout+faultMargin)
				case isStale(r):
					if cs := r.header.Get("Cache-Status"); !strings.Contains(cs, "fwd=stale") {
						t.Errorf("GET %s #%d: Cache-Status %q; want fwd=stale", path, k, cs)
					}
				case sc.early:
					t.Errorf("GET %s #%d: %v; want the stale entry (X-Cache STALE, its %d bytes)", path, k, r, size)
				case r.status == 0 || (r.status == 200 && r.err != nil && bytes.HasPrefix(want, r.body)):
					// broken off after the new response's header
				default:
					t.Errorf("GET %s #%d: %v; want the stale entry, or a 200 that breaks off", path, k, r)
				}
			}
			r := outcomes[i].after[0]
			t.Logf("GET %s with the origin answering 5xx: %v", path, r)
			if !isStale(r) {
				t.Errorf("GET %s after the fault, the origin answering %d: %v; want the stale entry, still intact", path, staleCodes[i%len(staleCodes)], r)
			}
		})
	}
	after := waitSettled(t, c, nil)
	if after.ledger() != seeded.ledger() {
		t.Errorf("store after the faults:\n got %s\nwant %s (as seeded)", after, seeded)
	}
}

// TestFaultyOrigin5xxStorm: hundreds of concurrent requests on keys the
// origin answers 503 to. Each client gets the origin's 503 (or, for the
// key with a stale-if-error entry, that entry), nothing is stored, hits
// on other keys stay fast meanwhile, and the process comes back to its
// goroutines and files afterwards.
func TestFaultyOrigin5xxStorm(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			testFaultyOrigin5xxStorm(t, engine)
		})
	}
}

func testFaultyOrigin5xxStorm(t *testing.T, engine string) {
	o := startFaultOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", writeFile(t, "faults.yaml", faultConfig(engine))}})
	addr := strings.TrimPrefix(c.url, "http://")
	const (
		keys    = 5 // key 0 has a stale-if-error entry
		perKey  = 40
		hitPath = "/ok/storm-hit?size=4000"
		stale   = "/mode/storm-stale"
	)
	staleTarget := stale + "?size=3000&cc=max-age=1,%20stale-if-error=60"
	for _, p := range []string{hitPath, staleTarget} {
		if r := rawRequest(addr, "GET", p, reqTimeout); r.status != 200 || !r.complete() {
			t.Fatalf("seeding GET %s: %v", p, r)
		}
	}
	faultWarmUp(t, addr, keys*perKey/2)
	time.Sleep(1100 * time.Millisecond) // max-age=1 has passed (the warm-up took some)
	before := waitQuiet(t, c)
	o.setMode(stale, "5xx")

	targets := make([]string, keys)
	targets[0] = staleTarget
	for k := 1; k < keys; k++ {
		targets[k] = fmt.Sprintf("/5xx/storm-%d?delay_ms=50", k)
	}
	answers := make([][]foResp, keys)
	var wg sync.WaitGroup
	start := time.Now()
	for k := range keys {
		answers[k] = make([]foResp, perKey)
		for n := range perKey {
			wg.Go(func() { answers[k][n] = rawRequest(addr, "GET", targets[k], 8*time.Second) })
		}
	}
	var hits []foResp
	for time.Since(start) < 500*time.Millisecond || len(hits) < 10 {
		hits = append(hits, rawRequest(addr, "GET", hitPath, 8*time.Second))
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("%s: %d requests in %v, %d hits meanwhile", engine, keys*perKey, time.Since(start).Round(time.Millisecond), len(hits))

	var slowest time.Duration
	for _, r := range hits {
		slowest = max(slowest, r.took)
		if r.header.Get("X-Cache") != "HIT" || sameBytes(r.body, foBody("/ok/storm-hit", 4000)) != "" {
			t.Errorf("GET %s during the storm: %v; want a HIT of its bytes", hitPath, r)
		}
	}
	if slowest > 2*time.Second {
		t.Errorf("slowest hit during the storm: %v; want under 2s", slowest)
	}
	for k := range keys {
		bad := 0
		for n, r := range answers[k] {
			var ok bool
			if k == 0 {
				ok = r.status == 200 && r.complete() && r.header.Get("X-Cache") == "STALE" && sameBytes(r.body, foBody(stale, 3000)) == ""
			} else {
				ok = r.status == 503 && r.complete() && string(r.body) == "origin error 503\n" && r.header.Get("X-Cache") != "HIT"
			}
			if ok && r.took > faultHeaderTimeout+faultMargin {
				ok = false
			}
			if !ok {
				if bad++; bad <= 3 {
					t.Errorf("GET %s #%d: %v; want %s within %v", targets[k], n, r,
						map[bool]string{true: "the stale entry", false: "the origin's 503"}[k == 0], faultHeaderTimeout+faultMargin)
				}
			}
		}
		path, _, _ := strings.Cut(targets[k], "?")
		t.Logf("%s: origin saw %d requests for %d clients; %d bad answers", path, o.count(path), perKey, bad)
	}
	after := waitQuiet(t, c)
	if after.ledger() != before.ledger() {
		t.Errorf("store after the storm:\n got %s\nwant %s (nothing stored)", after, before)
	}
	checkNoGrowth(t, c, "before the storm", before, "after it", after)
}

// TestFaultyOriginSlowHeader: an origin that takes longer than
// upstream_timeouts.read, but less than response_header, to send its
// response header is waited for, whether the request fills the cache or
// goes straight upstream (README: past response_header the client gets
// 504; read bounds a silence while reading a response).
func TestFaultyOriginSlowHeader(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			o := startFaultOrigin(t)
			cfg := strings.NewReplacer(fmt.Sprintf("response_header: %q", faultHeaderTimeout.String()), `response_header: "3s"`,
				fmt.Sprintf("read: %q", faultReadTimeout.String()), `read: "500ms"`).Replace(faultConfig(engine))
			c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", writeFile(t, "slow-header.yaml", cfg)}})
			addr := strings.TrimPrefix(c.url, "http://")
			variants := []struct {
				name, method string
				fields       []string
				bug          string
			}{
				{"fill", "GET", nil, ""},
				{"bypass", "GET", []string{"Cache-Control: no-store"}, ""},
				{"POST", "POST", []string{"Content-Length: 0"}, ""},
			}
			for _, v := range variants {
				t.Run(v.name, func(t *testing.T) {
					if v.bug != "" {
						knownBug(t, v.bug)
					}
					t.Parallel()
					path := "/ok/slow-header-" + v.name
					r := rawRequest(addr, v.method, path+"?size=100&delay_ms=1200", 8*time.Second, v.fields...)
					t.Logf("%s %s (the origin answers after 1.2 s; read 500ms, response_header 3s): %v", v.method, path, r)
					if r.status != 200 || !r.complete() || sameBytes(r.body, foBody(path, 100)) != "" {
						t.Errorf("%s %s: %v; want the origin's 200 after 1.2 s", v.method, path, r)
					}
				})
			}
		})
	}
}
