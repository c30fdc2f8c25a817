package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Memory under attack (issue 16, item 4), against the real binary on each
// engine with attackOrigin, an origin in the test process, as the upstream:
//
//   - TestAttackUniqueFlood: thousands of distinct keys (distinct URLs,
//     an eighth on distinct Hosts, each with a distinct body and a
//     surrogate key of its own; 2-3 times max_memory in all) through a
//     16 MiB cache while a hot set of 256 keys keeps being requested: RSS within the stated bound, memory_bytes
//     within max_memory, the hot set still hit (TinyLFU admission), the
//     per-key indexes no larger than the store, and after a purge of
//     everything every count back to 0 and RSS down.
//   - TestAttackVaryFlood: thousands of Vary variants of a few URLs: the
//     same bounds, the variant index no larger than the variants stored,
//     and a URL purge taking every variant and link with it.
//   - TestAttackObjectSize: bodies at, just under and just over
//     max_object_size (with a Content-Length and chunked): stored and hit,
//     or streamed whole and never stored, also to requests coalesced on
//     one fetch; a burst of slow misses past max_inflight: at most
//     max_inflight fetches fill, the rest go upstream on their own; then a
//     flood of bodies four times max_object_size read slowly by 8 clients
//     at once: RSS stays within the bound (streamed through a window, not
//     buffered whole) and the in-flight bytes come back to 0.
//
// Every test also checks that the process's goroutines and open files
// come back to where they were. -short skips the two floods (smaller
// ones would not fill the cache) and sends fewer bodies over
// max_object_size. DEDUPCACHE_E2E_ATTACK_SCALE=N multiplies the floods'
// sizes; the big run (about 5 minutes) is
//
//	DEDUPCACHE_E2E_ATTACK_SCALE=10 go test -run Attack -v ./e2e

// The cache under attack.
const (
	attackMaxMemory = 16 << 20 // cache.max_memory
	attackMaxObject = 1 << 20  // cache.max_object_size
	attackInflight  = 64       // cache.max_inflight (the default)
	// attackInflightBudget is the in-flight budget the README states:
	// max_memory/8, at least max_object_size, at most max_memory/4.
	attackInflightBudget = attackMaxMemory / 8
)

// attackRSSSlack is what the process may hold beyond max_memory. The
// README states its parts: main sets the Go runtime's soft limit
// (GOMEMLIMIT) to max_memory + max(8 MiB, max_memory/8), lowered by what
// the arena maps, so that the Go heap (entries' metadata, fetches in
// flight, 256 KiB pass-through windows, connection buffers, garbage) and
// the arena stay near max_memory + that allowance; on top come the
// binary's text and data and what the runtime holds at start, which the
// idle RSS measures (14.1-14.7 MiB on linux/amd64), and a margin for the
// soft limit's overshoot while the collector catches up with a flood.
// For 16 MiB: 16 + 8 + ~14.4 + 4 = ~42.4 MiB; every flood here peaked at
// 32-34 MiB (the README's "1.1 x max_memory + 16 MiB" is 33.6 MiB).
func attackRSSSlack(idle int64) int64 {
	return max(8<<20, attackMaxMemory/8) + idle + attackRSSMargin
}

// attackRSSMargin: see attackRSSSlack.
const attackRSSMargin = 4 << 20

// attackScale is n times the floods' size factor,
// DEDUPCACHE_E2E_ATTACK_SCALE (default 1).
func attackScale(t *testing.T, n int) int {
	t.Helper()
	f := 1.0
	if s := os.Getenv("DEDUPCACHE_E2E_ATTACK_SCALE"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			t.Fatalf("DEDUPCACHE_E2E_ATTACK_SCALE=%q: want a positive number", s)
		}
		f = v
	}
	return max(1, int(float64(n)*f))
}

// attackConfig is the cache's configuration on engine.
func attackConfig(engine string) string {
	return fmt.Sprintf(`server:
  engine: %q
cache:
  max_memory: "%dMiB"
  max_object_size: "%dMiB"
  max_inflight: %d
upstream_timeouts:
  idle: "1s"
`, engine, attackMaxMemory>>20, attackMaxObject>>20, attackInflight)
}

// attackBlock is the source of every body attackOrigin serves: 9 MiB of
// pseudo-random bytes, the same in every run.
var attackBlock = sync.OnceValue(func() []byte {
	b := make([]byte, 9<<20)
	rand.NewChaCha8([32]byte{'a', 't', 't', 'a', 'c', 'k'}).Read(b)
	return b
})

// attackBody returns the body of name with size bytes (size at most 8
// MiB): name and a newline, then bytes of attackBlock at an offset taken
// from name's hash. Bodies of different names differ in their first
// bytes, so no two are shared.
func attackBody(name string, size int) (prefix, rest []byte) {
	block := attackBlock()
	prefix = []byte(name + "\n")
	if len(prefix) > size {
		prefix = prefix[:size]
	}
	h := fnv.New64a()
	io.WriteString(h, name)
	off := int(h.Sum64() % uint64(len(block)-size))
	return prefix, block[off : off+size-len(prefix)]
}

// attackOrigin is the upstream of the attack tests, in the test process:
// a raw HTTP/1.1 server (keep-alive, GET only) that writes each answer
// with one writev, so that the floods cost the test process little.
//
//	/u/{i}?size=S             body "/u/{i}" of S bytes; Surrogate-Key "flood u{i}"
//	/hot/{i}?size=S           body "/hot/{i}"; Surrogate-Key "hot"; requests counted
//	/vary/{j}?size=S          Vary: X-Foo; body "/vary/{j}|{X-Foo}"; Surrogate-Key "vary"
//	/big/{name}?size=S[&chunked=1]   body "/big/{name}", with a Content-Length
//	                          or chunked (64 KiB chunks)
//
// delay_ms=D delays any answer by D ms.
// Every answer is public, max-age=300, so that everything is storable
// unless too big.
type attackOrigin struct {
	ln  net.Listener
	url string
	wg  sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	hot    int // requests for /hot/ paths
	total  int // requests
}

func startAttackOrigin(t *testing.T) *attackOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	attackBlock()
	o := &attackOrigin{ln: ln, url: "http://" + ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	o.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			if o.closed {
				o.mu.Unlock()
				c.Close()
				return
			}
			o.conns[c] = struct{}{}
			o.wg.Add(1)
			o.mu.Unlock()
			go o.serve(c)
		}
	})
	t.Cleanup(func() {
		ln.Close()
		o.mu.Lock()
		o.closed = true
		for c := range o.conns {
			c.Close()
		}
		o.mu.Unlock()
		o.wg.Wait()
	})
	return o
}

// serve answers the requests on c until it closes.
func (o *attackOrigin) serve(c net.Conn) {
	defer o.wg.Done()
	defer func() {
		o.mu.Lock()
		delete(o.conns, c)
		o.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReaderSize(c, 8<<10)
	for {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		f := strings.Fields(string(line))
		if len(f) != 3 {
			return
		}
		method, target := f[0], f[1]
		foo := ""
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(l) <= 2 {
				break
			}
			if name, v, ok := strings.Cut(string(l), ":"); ok && strings.EqualFold(name, "X-Foo") {
				foo = strings.TrimSpace(v)
			}
		}
		if !o.answer(c, method, target, foo) {
			return
		}
	}
}

// answer writes the response to one request; false ends the connection.
func (o *attackOrigin) answer(c net.Conn, method, target, foo string) bool {
	path, query, _ := strings.Cut(target, "?")
	q, _ := url.ParseQuery(query)
	size, err := strconv.Atoi(q.Get("size"))
	first, rest, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	var head strings.Builder
	head.WriteString("HTTP/1.1 200 OK\r\nCache-Control: public, max-age=300\r\nContent-Type: application/octet-stream\r\n")
	name := path
	o.mu.Lock()
	o.total++
	if first == "hot" {
		o.hot++
	}
	o.mu.Unlock()
	switch {
	case err != nil || size < 1 || size > 8<<20 || method != http.MethodGet:
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return false
	case first == "u":
		head.WriteString("Surrogate-Key: flood u" + rest + "\r\n")
	case first == "hot":
		head.WriteString("Surrogate-Key: hot\r\n")
	case first == "vary":
		head.WriteString("Vary: X-Foo\r\nSurrogate-Key: vary\r\n")
		name += "|" + foo
	case first == "big":
	default:
		io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
		return true
	}
	if ms, _ := strconv.Atoi(q.Get("delay_ms")); ms > 0 {
		time.Sleep(time.Duration(min(ms, 5000)) * time.Millisecond)
	}
	prefix, body := attackBody(name, size)
	c.SetWriteDeadline(time.Now().Add(time.Minute))
	if q.Get("chunked") == "" {
		head.WriteString("Content-Length: " + strconv.Itoa(size) + "\r\n\r\n")
		bufs := net.Buffers{[]byte(head.String()), prefix, body}
		_, err := bufs.WriteTo(c)
		return err == nil
	}
	head.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	bufs := net.Buffers{[]byte(head.String()), []byte(fmt.Sprintf("%x\r\n", len(prefix))), prefix, []byte("\r\n")}
	for len(body) > 0 {
		n := min(len(body), 64<<10)
		bufs = append(bufs, []byte(fmt.Sprintf("%x\r\n", n)), body[:n], []byte("\r\n"))
		body = body[n:]
	}
	bufs = append(bufs, []byte("0\r\n\r\n"))
	_, err = bufs.WriteTo(c)
	return err == nil
}

// hotRequests returns how many requests the /hot/ paths received.
func (o *attackOrigin) hotRequests() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hot
}

// attackClient sends the floods: a keep-alive connection per worker,
// requests written whole and answers read with http.ReadResponse (the
// cost of net/http's client under -race would make the test process the
// bottleneck).
type attackClient struct {
	addr string // the proxy's host:port

	mu   sync.Mutex
	idle []*attackConn
}

type attackConn struct {
	c  net.Conn
	br *bufio.Reader
}

func newAttackClient(t *testing.T, c *cache) *attackClient {
	ac := &attackClient{addr: strings.TrimPrefix(c.url, "http://")}
	t.Cleanup(ac.closeIdle)
	return ac
}

// closeIdle closes the connections not in use.
func (ac *attackClient) closeIdle() {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	for _, c := range ac.idle {
		c.c.Close()
	}
	ac.idle = nil
}

// attackResp is one answer.
type attackResp struct {
	status int
	xcache string
	cs     string // Cache-Status
	body   []byte
	err    error
}

// get sends a GET for target (Host host, or the proxy's address when
// empty, and fields as name, value pairs) and reads the whole answer.
func (ac *attackClient) get(target, host string, fields ...string) attackResp {
	return ac.do(target, host, 0, fields...)
}

// do is get, reading the body in 256 KiB pieces with pause after each
// when pause is not 0 (a slow client).
func (ac *attackClient) do(target, host string, pause time.Duration, fields ...string) attackResp {
	ac.mu.Lock()
	var cn *attackConn
	if n := len(ac.idle); n > 0 {
		cn, ac.idle = ac.idle[n-1], ac.idle[:n-1]
	}
	ac.mu.Unlock()
	if cn == nil {
		c, err := net.DialTimeout("tcp", ac.addr, time.Second)
		if err != nil {
			return attackResp{err: err}
		}
		cn = &attackConn{c: c, br: bufio.NewReaderSize(c, 64<<10)}
	}
	if host == "" {
		host = ac.addr
	}
	var req strings.Builder
	req.WriteString("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n")
	for i := 0; i+1 < len(fields); i += 2 {
		req.WriteString(fields[i] + ": " + fields[i+1] + "\r\n")
	}
	req.WriteString("\r\n")
	cn.c.SetDeadline(time.Now().Add(20 * time.Second))
	r := attackResp{}
	if _, err := io.WriteString(cn.c, req.String()); err != nil {
		cn.c.Close()
		return attackResp{err: err}
	}
	resp, err := http.ReadResponse(cn.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		cn.c.Close()
		return attackResp{err: err}
	}
	r.status, r.xcache, r.cs = resp.StatusCode, resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status")
	if pause == 0 {
		r.body, r.err = io.ReadAll(resp.Body)
	} else {
		buf := make([]byte, 256<<10)
		r.body = make([]byte, 0, max(resp.ContentLength, 0))
		for {
			n, err := io.ReadFull(resp.Body, buf)
			r.body = append(r.body, buf[:n]...)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				r.err = err
				break
			}
			time.Sleep(pause)
		}
	}
	resp.Body.Close()
	if r.err != nil || resp.Close {
		cn.c.Close()
		return r
	}
	ac.mu.Lock()
	ac.idle = append(ac.idle, cn)
	ac.mu.Unlock()
	return r
}

// check describes what is wrong with r as the answer for the body of
// name with size bytes, or returns "".
func (r attackResp) check(name string, size int) string {
	if r.err != nil || r.status != http.StatusOK {
		return fmt.Sprintf("status %d, err %v", r.status, r.err)
	}
	prefix, rest := attackBody(name, size)
	if len(r.body) != size || string(r.body[:len(prefix)]) != string(prefix) || string(r.body[len(prefix):]) != string(rest) {
		return fmt.Sprintf("%d body bytes (%.40q...); want the %d bytes of %s", len(r.body), r.body, size, name)
	}
	return ""
}

// attackStats is the part of /api/stats the attack tests read.
type attackStats struct {
	Hits             int64            `json:"hits"`
	Misses           int64            `json:"misses"`
	Entries          int64            `json:"entries"`
	BodiesUnique     int64            `json:"bodies_unique"`
	BytesStored      int64            `json:"bytes_stored"`
	HeaderBlocks     int64            `json:"header_blocks"`
	HeaderBytes      int64            `json:"header_bytes"`
	EntryBytes       int64            `json:"entry_bytes"`
	MemoryBytes      int64            `json:"memory_bytes"`
	MemoryLimitBytes int64            `json:"memory_limit_bytes"`
	Stored           int64            `json:"responses_stored"`
	TooBig           int64            `json:"responses_too_big"`
	Released         map[string]int64 `json:"entries_released"`
	Index            *attackIndex     `json:"index"`
}

// attackIndex is /api/stats "index": the per-key structures beside the
// entry store.
type attackIndex struct {
	VaryKeys      int64 `json:"vary_keys"`
	VaryLinks     int64 `json:"vary_links"`
	Tags          int64 `json:"tags"`
	TaggedEntries int64 `json:"tagged_entries"`
	Hosts         int64 `json:"hosts"`
	Fetches       int64 `json:"fetches"`
	Fills         int64 `json:"fills"`
	InflightBytes int64 `json:"inflight_bytes"`
}

func (s attackStats) String() string {
	x := s.Index
	if x == nil {
		x = &attackIndex{}
	}
	return fmt.Sprintf("entries %d, bodies %d (%s stored), header blocks %d, memory %s (entries %s, headers %s) of %s; "+
		"index: vary %d keys %d links, %d tags on %d entries, %d hosts; %d fetches, %d fills, %d in-flight bytes",
		s.Entries, s.BodiesUnique, mib(s.BytesStored), s.HeaderBlocks, mib(s.MemoryBytes), mib(s.EntryBytes), mib(s.HeaderBytes), mib(s.MemoryLimitBytes),
		x.VaryKeys, x.VaryLinks, x.Tags, x.TaggedEntries, x.Hosts, x.Fetches, x.Fills, x.InflightBytes)
}

// readAttackStats reads /api/stats without failing the test (it runs on
// the sampler's goroutine too).
func readAttackStats(c *cache) (attackStats, error) {
	var s attackStats
	r := do(http.MethodGet, c.adminURL+"/api/stats")
	if r.err != nil || r.status != http.StatusOK {
		return s, fmt.Errorf("GET /api/stats: %d %v", r.status, r.err)
	}
	if err := json.Unmarshal(r.body, &s); err != nil {
		return s, err
	}
	if s.Index == nil {
		return s, fmt.Errorf("/api/stats has no index section")
	}
	return s, nil
}

func mustAttackStats(t *testing.T, c *cache) attackStats {
	t.Helper()
	s, err := readAttackStats(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sampler follows a cache process during a flood: its RSS every 20 ms
// and /api/stats every 100 ms, keeping the highest figures and whether
// an invariant check ever failed.
type sampler struct {
	c    *cache
	pid  int
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	peakRSS  int64
	maxMem   int64 // memory_bytes
	maxIdx   attackIndex
	samples  int
	errs     []string // invariant failures, the first few
	failures int
	check    func(attackStats) string // an invariant of every sample, "" when it holds
}

func startSampler(c *cache, check func(attackStats) string) *sampler {
	s := &sampler{c: c, pid: c.cmd.Process.Pid, stop: make(chan struct{}), check: check}
	s.wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			if rss, err := vmRSS(s.pid); err == nil {
				s.mu.Lock()
				s.peakRSS = max(s.peakRSS, rss)
				s.mu.Unlock()
			}
			if i%5 == 0 {
				s.stats()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	})
	return s
}

func (s *sampler) stats() {
	st, err := readAttackStats(s.c)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.fail(err.Error())
		return
	}
	s.samples++
	s.maxMem = max(s.maxMem, st.MemoryBytes)
	x, m := st.Index, &s.maxIdx
	m.VaryKeys, m.VaryLinks = max(m.VaryKeys, x.VaryKeys), max(m.VaryLinks, x.VaryLinks)
	m.Tags, m.TaggedEntries, m.Hosts = max(m.Tags, x.Tags), max(m.TaggedEntries, x.TaggedEntries), max(m.Hosts, x.Hosts)
	m.Fetches, m.Fills, m.InflightBytes = max(m.Fetches, x.Fetches), max(m.Fills, x.Fills), max(m.InflightBytes, x.InflightBytes)
	if s.check != nil {
		if msg := s.check(st); msg != "" {
			s.fail(msg + " in " + st.String())
		}
	}
}

// fail records an invariant failure; s.mu must be held.
func (s *sampler) fail(msg string) {
	s.failures++
	if len(s.errs) < 3 {
		s.errs = append(s.errs, msg)
	}
}

// end stops sampling (after one last reading of each kind) and checks
// what was seen: the peak RSS against max_memory plus the slack, the
// charged memory against max_memory, the coalescing table against
// max_inflight, the in-flight bytes against their budget, and the
// invariant.
func (s *sampler) end(t *testing.T, idle int64) {
	t.Helper()
	close(s.stop)
	s.wg.Wait()
	if rss, err := vmRSS(s.pid); err == nil {
		s.peakRSS = max(s.peakRSS, rss)
	}
	s.stats()
	bound := attackMaxMemory + attackRSSSlack(idle)
	t.Logf("peak RSS %s (idle %s; bound %s = max_memory %s + runtime allowance %s + idle + margin %s); highest memory_bytes %d (%s) of %d; %d stats samples",
		mib(s.peakRSS), mib(idle), mib(bound), mib(attackMaxMemory), mib(max(8<<20, attackMaxMemory/8)), mib(attackRSSMargin),
		s.maxMem, mib(s.maxMem), attackMaxMemory, s.samples)
	t.Logf("highest index figures: vary %d keys %d links, %d tags on %d entries, %d hosts; %d fetches, %d fills, %d in-flight bytes",
		s.maxIdx.VaryKeys, s.maxIdx.VaryLinks, s.maxIdx.Tags, s.maxIdx.TaggedEntries, s.maxIdx.Hosts, s.maxIdx.Fetches, s.maxIdx.Fills, s.maxIdx.InflightBytes)
	if s.peakRSS > bound {
		t.Errorf("peak RSS %s; want at most %s (max_memory %s + slack %s)", mib(s.peakRSS), mib(bound), mib(attackMaxMemory), mib(attackRSSSlack(idle)))
	}
	if s.maxMem > attackMaxMemory {
		t.Errorf("memory_bytes reached %d; want at most max_memory %d", s.maxMem, attackMaxMemory)
	}
	if s.maxIdx.Fetches > attackInflight || s.maxIdx.Fills > attackInflight {
		t.Errorf("fetches in flight reached %d (fills %d); want at most max_inflight %d", s.maxIdx.Fetches, s.maxIdx.Fills, attackInflight)
	}
	if s.maxIdx.InflightBytes > attackInflightBudget {
		t.Errorf("in-flight bytes reached %d; want at most the budget %d", s.maxIdx.InflightBytes, attackInflightBudget)
	}
	if s.failures > 0 {
		t.Errorf("%d of %d stats samples broke an invariant: %s", s.failures, s.samples, strings.Join(s.errs, "; "))
	}
}

// floodLimit bounds the time of a flood of n requests: far more than one
// takes on an idle 2-core machine (under 1 ms a request, 2 ms for 4 MiB
// read slowly), so that only a hang reaches it.
func floodLimit(n int) time.Duration { return time.Minute + time.Duration(n)*20*time.Millisecond }

// flood runs n requests on workers goroutines, req(i) being the i-th; it
// stops early after the first few failures, or after limit. It returns
// how many requests ran.
func flood(t *testing.T, n, workers int, limit time.Duration, req func(i int) string) int {
	t.Helper()
	var next, ran, failed atomic.Int64
	deadline := time.Now().Add(limit)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) && failed.Load() < 5 {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				ran.Add(1)
				if msg := req(i); msg != "" {
					failed.Add(1)
					mu.Lock()
					t.Errorf("request %d: %s", i, msg)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if got := int(ran.Load()); got < n && failed.Load() == 0 {
		t.Errorf("flood: %d of %d requests within %v", got, n, limit)
	}
	return int(ran.Load())
}

// startAttack starts an origin and a cache on engine, and returns the
// cache's idle RSS.
func startAttack(t *testing.T, engine string) (*attackOrigin, *cache, int64) {
	t.Helper()
	o := startAttackOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", writeFile(t, "attack.yaml", attackConfig(engine))}})
	idle, err := vmRSS(c.cmd.Process.Pid)
	if err != nil {
		t.Skipf("needs /proc to read VmRSS: %v", err)
	}
	return o, c, idle
}

// quiet closes ac's idle connections and waits for c's goroutines and
// files to settle (waitQuiet).
func quiet(t *testing.T, ac *attackClient, c *cache) faultStats {
	t.Helper()
	ac.closeIdle()
	return waitQuiet(t, c)
}

// purgeAll purges everything and waits until the store is empty, then
// checks that every count is 0 and that RSS fell from before by at least
// half the body bytes the purge freed.
func purgeAll(t *testing.T, c *cache, query string) {
	t.Helper()
	before := mustAttackStats(t, c)
	rssBefore, _ := vmRSS(c.cmd.Process.Pid)
	t.Logf("purge %s: %s", query, faultPurge(t, c, query))
	var s attackStats
	deadline := time.Now().Add(5 * time.Second)
	for {
		s = mustAttackStats(t, c)
		if (s.Entries == 0 && s.MemoryBytes == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(pollEvery)
	}
	time.Sleep(300 * time.Millisecond) // the runtime returns freed pages in the background
	rssAfter, _ := vmRSS(c.cmd.Process.Pid)
	t.Logf("after the purge: %s; RSS %s -> %s (%s of bodies were stored)", s, mib(rssBefore), mib(rssAfter), mib(before.BytesStored))
	x := s.Index
	if s.Entries != 0 || s.BodiesUnique != 0 || s.HeaderBlocks != 0 || s.MemoryBytes != 0 {
		t.Errorf("after purging everything: entries %d, bodies %d, header blocks %d, memory_bytes %d; want all 0", s.Entries, s.BodiesUnique, s.HeaderBlocks, s.MemoryBytes)
	}
	if *x != (attackIndex{}) {
		t.Errorf("after purging everything: index %+v; want every count 0", *x)
	}
	if fell := rssBefore - rssAfter; fell < before.BytesStored/2 {
		t.Errorf("RSS fell by %s after purging %s of bodies; want at least half of them returned", mib(fell), mib(before.BytesStored))
	}
}

// TestAttackUniqueFlood: a flood of unique URLs with distinct bodies and
// distinct surrogate keys (an eighth on distinct Hosts) through a 16 MiB
// cache, a small hot set requested all along.
func TestAttackUniqueFlood(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			testAttackUniqueFlood(t, engine)
		})
	}
}

func testAttackUniqueFlood(t *testing.T, engine string) {
	if testing.Short() {
		t.Skip("floods the cache with 2-3 times max_memory; skipped with -short")
	}
	o, c, idle := startAttack(t, engine)
	const (
		workers = 8
		hotKeys = 256
		hotSize = 4 << 10
		// hotEvery: one request in hotEvery is for the hot set.
		hotEvery = 4
		// minHotRatio is the least hit ratio of the hot set during the
		// flood. Each hot key comes back every hotEvery*hotKeys = 1024
		// requests, while ~770 new keys are offered to a store that
		// holds ~1 800: an admission that did not count (ristretto's
		// sketch cut to 2 counters) measured 0.54; TinyLFU measured
		// 0.997-1.000 on both engines (the flood's keys, seen once, lose
		// to the hot ones, seen ~10 times).
		minHotRatio = 0.9
	)
	n := attackScale(t, 6000)
	ac := newAttackClient(t, c)
	hotPath := func(i int) string { return fmt.Sprintf("/hot/%d", i%hotKeys) }
	unique := func(i int) (path string, size int) {
		return fmt.Sprintf("/u/%d", i), 2048 + (i*7919)%(12<<10) // 2-14 KiB, 8 KiB on average
	}

	// The hot set is hot before the flood: each key asked four times.
	for range 4 {
		for i := range hotKeys {
			if r := ac.get(hotPath(i)+"?size="+strconv.Itoa(hotSize), ""); r.check(hotPath(i), hotSize) != "" {
				t.Fatalf("GET %s: %s", hotPath(i), r.check(hotPath(i), hotSize))
			}
		}
	}
	// Warm up to the flood's concurrency (fetchers, server workers and
	// connections are kept a while for reuse) before the baseline.
	flood(t, 400, workers, floodLimit(400), func(i int) string {
		return ac.get(fmt.Sprintf("/u/warm-%d?size=1000", i), "").check(fmt.Sprintf("/u/warm-%d", i), 1000)
	})
	before := quiet(t, ac, c)
	originHot := o.hotRequests()

	var hotHits, hotReqs, missesSeen atomic.Int64
	smp := startSampler(c, func(s attackStats) string {
		// Every tagged entry is one stored entry (tags index only entries
		// with bodies); every tag but "flood" and "hot" names one entry;
		// a host leaves with its last entry. Entries still in ristretto's
		// set buffer, or in a fetch about to store them, may be indexed
		// before they are counted: max_inflight of them.
		x := s.Index
		switch {
		case x.TaggedEntries > s.Entries+attackInflight:
			return fmt.Sprintf("tagged entries %d > entries %d + %d", x.TaggedEntries, s.Entries, attackInflight)
		case x.Tags > x.TaggedEntries+2:
			return fmt.Sprintf("tags %d > tagged entries %d + 2", x.Tags, x.TaggedEntries)
		case x.Hosts > s.Entries+attackInflight+1:
			return fmt.Sprintf("hosts %d > entries %d + %d", x.Hosts, s.Entries, attackInflight+1)
		}
		return ""
	})
	start, cpu0, self0 := time.Now(), procCPU(c.cmd.Process.Pid), procCPU(os.Getpid())
	ran := flood(t, n, workers, floodLimit(n), func(i int) string {
		if i%hotEvery == 0 {
			p := hotPath(i / hotEvery)
			r := ac.get(p+"?size="+strconv.Itoa(hotSize), "")
			hotReqs.Add(1)
			if r.xcache == "HIT" {
				hotHits.Add(1)
			}
			return r.check(p, hotSize)
		}
		p, size := unique(i)
		host := ""
		if i%8 == 1 {
			host = fmt.Sprintf("h%d.attack.test", i)
		}
		r := ac.get(p+"?size="+strconv.Itoa(size), host)
		if r.xcache == "MISS" {
			missesSeen.Add(1)
		}
		if r.xcache == "HIT" {
			return fmt.Sprintf("GET %s (asked once): X-Cache HIT", p)
		}
		return r.check(p, size)
	})
	took := time.Since(start)
	t.Logf("CPU during the flood: cache %v, test process %v", procCPU(c.cmd.Process.Pid)-cpu0, procCPU(os.Getpid())-self0)
	smp.end(t, idle)
	s := mustAttackStats(t, c)
	ratio := float64(hotHits.Load()) / float64(max(1, hotReqs.Load()))
	t.Logf("%s: %d requests in %v (%d unique misses, %s of distinct bodies); hot set: %d of %d requests hit (%.4f), the origin asked %d times for it during the flood",
		engine, ran, took.Round(time.Millisecond), missesSeen.Load(), mib(int64(ran-ran/hotEvery)*8<<10), hotHits.Load(), hotReqs.Load(), ratio, o.hotRequests()-originHot)
	t.Logf("after the flood: %s; released %v", s, s.Released)

	if ratio < minHotRatio {
		t.Errorf("hot set hit ratio during the flood: %.4f (%d of %d); want at least %.2f", ratio, hotHits.Load(), hotReqs.Load(), minHotRatio)
	}
	if s.Entries == 0 || s.Entries >= int64(n/2) {
		t.Errorf("entries after the flood: %d; want some, far fewer than the %d keys (evicting)", s.Entries, n)
	}

	after := quiet(t, ac, c)
	t.Run("fetches drained", func(t *testing.T) {
		s := mustAttackStats(t, c)
		if x := s.Index; x.Fetches != 0 || x.Fills != 0 || x.InflightBytes != 0 {
			t.Errorf("after the flood: %d fetches, %d fills, %d in-flight bytes; want 0", x.Fetches, x.Fills, x.InflightBytes)
		}
	})
	t.Run("goroutines and files", func(t *testing.T) {
		checkNoGrowth(t, c, "before the flood", before, "after it", after)
	})
	t.Run("purge everything", func(t *testing.T) {
		// Every entry carries the tag "flood" or "hot": the tag index
		// finds them all.
		purgeAll(t, c, "tag=flood&tag=hot")
		p := hotPath(0)
		if r := ac.get(p+"?size="+strconv.Itoa(hotSize), ""); r.xcache == "HIT" || r.check(p, hotSize) != "" {
			t.Errorf("GET %s after the purge: X-Cache %q, %s; want a MISS of its bytes", p, r.xcache, r.check(p, hotSize))
		}
	})
}

// procCPU returns the CPU time (user + system) process pid has used.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ 100
}

// TestAttackVaryFlood: clients sending thousands of distinct values of
// the field a few URLs vary on (Vary: X-Foo), each variant a distinct
// body, through a 16 MiB cache.
func TestAttackVaryFlood(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			testAttackVaryFlood(t, engine)
		})
	}
}

func testAttackVaryFlood(t *testing.T, engine string) {
	if testing.Short() {
		t.Skip("floods the cache with 2 times max_memory; skipped with -short")
	}
	_, c, idle := startAttack(t, engine)
	const (
		workers = 8
		urls    = 4
	)
	n := attackScale(t, 5000)
	ac := newAttackClient(t, c)
	target := func(j int) (path string, size int) {
		return fmt.Sprintf("/vary/%d", j), 4096 + j*2048 // 4-10 KiB, one size per URL
	}
	req := func(i int) string {
		p, size := target(i % urls)
		foo := "v" + strconv.Itoa(i)
		r := ac.get(p+"?size="+strconv.Itoa(size), "", "X-Foo", foo)
		return r.check(p+"|"+foo, size)
	}
	flood(t, 400, workers, floodLimit(400), req) // the warm-up: fetchers, connections
	before := quiet(t, ac, c)

	smp := startSampler(c, func(s attackStats) string {
		// Each link is a stored variant (or one a fetch is storing), and
		// the variants are indexed under their URLs only.
		x := s.Index
		switch {
		case x.VaryLinks > s.Entries+attackInflight:
			return fmt.Sprintf("vary links %d > entries %d + %d", x.VaryLinks, s.Entries, attackInflight)
		case x.VaryKeys > urls:
			return fmt.Sprintf("vary keys %d > %d URLs", x.VaryKeys, urls)
		case x.Tags > 1 || x.TaggedEntries > s.Entries+attackInflight:
			return fmt.Sprintf("%d tags on %d entries; want 1 (vary) on at most entries %d + %d", x.Tags, x.TaggedEntries, s.Entries, attackInflight)
		}
		return ""
	})
	start, cpu0 := time.Now(), procCPU(c.cmd.Process.Pid)
	ran := flood(t, n, workers, floodLimit(n), func(i int) string { return req(i + 400) })
	took := time.Since(start)
	t.Logf("%s: %d requests in %v (~%s of distinct variants), cache CPU %v", engine, ran, took.Round(time.Millisecond), mib(int64(ran)*7<<10), procCPU(c.cmd.Process.Pid)-cpu0)
	smp.end(t, idle)

	after := quiet(t, ac, c)
	s := mustAttackStats(t, c)
	t.Logf("after the flood: %s; released %v", s, s.Released)
	if s.Entries == 0 || s.Entries >= int64(n/2) {
		t.Errorf("entries after the flood: %d; want some, far fewer than the %d variants (evicting)", s.Entries, n)
	}
	// At rest every stored entry is a variant, indexed once.
	if x := s.Index; x.VaryLinks != s.Entries || x.TaggedEntries != s.Entries || x.Fetches != 0 || x.Fills != 0 || x.InflightBytes != 0 {
		t.Errorf("after the flood: %d vary links, %d tagged entries for %d entries; %d fetches, %d fills, %d in-flight bytes; want links = tagged = entries and no fetch",
			x.VaryLinks, x.TaggedEntries, s.Entries, x.Fetches, x.Fills, x.InflightBytes)
	}
	t.Run("goroutines and files", func(t *testing.T) {
		checkNoGrowth(t, c, "before the flood", before, "after it", after)
	})
	t.Run("purge the URLs", func(t *testing.T) {
		// A URL purge takes every variant, and its links, with it.
		var q []string
		for j := range urls {
			p, size := target(j)
			q = append(q, "url="+url.QueryEscape(p+"?size="+strconv.Itoa(size)))
		}
		purgeAll(t, c, strings.Join(q, "&"))
	})
}

// TestAttackObjectSize: bodies at the edge of max_object_size, then a
// flood of bodies four times over it read by slow clients.
func TestAttackObjectSize(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			testAttackObjectSize(t, engine)
		})
	}
}

func testAttackObjectSize(t *testing.T, engine string) {
	_, c, idle := startAttack(t, engine)
	ac := newAttackClient(t, c)
	framings := []struct{ name, query string }{{"length", ""}, {"chunked", "&chunked=1"}}

	// At and just under the limit: stored, the next request a HIT of the
	// same bytes. Just over: streamed whole and never stored.
	for _, f := range framings {
		for _, size := range []int{attackMaxObject - 1, attackMaxObject, attackMaxObject + 1, attackMaxObject + 64<<10} {
			p := fmt.Sprintf("/big/%s-%d", f.name, size)
			stored := size <= attackMaxObject
			for k := range 2 {
				r := ac.get(p+"?size="+strconv.Itoa(size)+f.query, "")
				t.Logf("GET %s (%s, %d bytes) #%d: X-Cache %s, Cache-Status %q, %d bytes", p, f.name, size, k, r.xcache, r.cs, len(r.body))
				if msg := r.check(p, size); msg != "" {
					t.Errorf("GET %s #%d: %s", p, k, msg)
				}
				switch {
				case k == 0 && r.xcache != "MISS" && (stored || r.xcache != "BYPASS"):
					t.Errorf("GET %s #%d: X-Cache %q; want MISS", p, k, r.xcache)
				case k == 1 && stored && r.xcache != "HIT":
					t.Errorf("GET %s #%d (%d bytes, max_object_size %d): X-Cache %q; want HIT (stored)", p, k, size, attackMaxObject, r.xcache)
				case k == 1 && !stored && r.xcache == "HIT":
					t.Errorf("GET %s #%d (%d bytes, max_object_size %d): X-Cache HIT; want it not stored", p, k, size, attackMaxObject)
				}
			}
		}
	}
	// Over the limit with requests coalesced on one fetch: each gets
	// every byte.
	for _, f := range framings {
		p := fmt.Sprintf("/big/herd-%s", f.name)
		size := attackMaxObject + 1
		var wg sync.WaitGroup
		for k := range 4 {
			wg.Go(func() {
				r := ac.get(p+"?size="+strconv.Itoa(size)+f.query, "")
				if msg := r.check(p, size); msg != "" {
					t.Errorf("GET %s (one of 4 at once) #%d: %s", p, k, msg)
				}
			})
		}
		wg.Wait()
	}
	s := mustAttackStats(t, c)
	t.Logf("after the edge cases: %s; too big %d", s, s.TooBig)

	// A burst of slow misses, more than max_inflight at once: at most
	// max_inflight fetches fill the cache, the others go upstream on
	// their own (detail=fill-limit), and every fill ends.
	t.Run("fill limit", func(t *testing.T) {
		const burst = attackInflight + 32
		smp := startSampler(c, nil)
		var wg sync.WaitGroup
		var limited atomic.Int64
		for i := range burst {
			wg.Go(func() {
				p := fmt.Sprintf("/u/burst-%d", i)
				r := ac.get(p+"?size=1000&delay_ms=500", "")
				if strings.Contains(r.cs, "fill-limit") {
					limited.Add(1)
				}
				if msg := r.check(p, 1000); msg != "" {
					t.Errorf("GET %s: %s", p, msg)
				}
			})
		}
		wg.Wait()
		smp.end(t, idle)
		t.Logf("%d slow misses at once: %d went upstream past the fill limit; at most %d fetches and %d fills were seen", burst, limited.Load(), smp.maxIdx.Fetches, smp.maxIdx.Fills)
		if limited.Load() == 0 {
			t.Errorf("none of %d slow misses at once was past the fill limit (max_inflight %d)", burst, attackInflight)
		}
		ac.closeIdle()
		s := mustAttackStats(t, c)
		if x := s.Index; x.Fetches != 0 || x.Fills != 0 || x.InflightBytes != 0 {
			t.Errorf("after the burst: %d fetches, %d fills, %d in-flight bytes; want 0", x.Fetches, x.Fills, x.InflightBytes)
		}
		faultPurge(t, c, "prefix=/u/burst-")
	})
	if s.Entries != int64(2*len(framings)) {
		t.Errorf("entries after the edge cases: %d; want %d (the bodies at and under max_object_size)", s.Entries, 2*len(framings))
	}

	// A flood of bodies 4x max_object_size, 8 slow clients at once (64
	// KiB, then a millisecond's pause): buffered whole, they would hold
	// 32 MiB; streamed, a window each.
	const (
		workers = 8
		bigSize = 4 * attackMaxObject
	)
	n := attackScale(t, 24)
	if testing.Short() {
		n = workers
	}
	get := func(i int, pause time.Duration) string {
		f := framings[i%2]
		p := fmt.Sprintf("/big/flood-%d", i)
		r := ac.do(p+"?size="+strconv.Itoa(bigSize)+f.query, "", pause)
		if r.xcache == "HIT" {
			return fmt.Sprintf("GET %s (%d bytes): X-Cache HIT", p, bigSize)
		}
		return r.check(p, bigSize)
	}
	flood(t, workers, workers, floodLimit(workers), func(i int) string { return get(n+i, 0) }) // the warm-up
	before := quiet(t, ac, c)
	tooBig := mustAttackStats(t, c).TooBig
	smp := startSampler(c, nil)
	start, cpu0 := time.Now(), procCPU(c.cmd.Process.Pid)
	ran := flood(t, n, workers, floodLimit(n), func(i int) string { return get(i, 2*time.Millisecond) })
	t.Logf("%s: %d bodies of %s (%s) in %v, cache CPU %v", engine, ran, mib(bigSize), mib(int64(ran)*bigSize), time.Since(start).Round(time.Millisecond), procCPU(c.cmd.Process.Pid)-cpu0)
	smp.end(t, idle)

	after := quiet(t, ac, c)
	s = mustAttackStats(t, c)
	t.Logf("after the flood: %s; too big %d", s, s.TooBig)
	if x := s.Index; x.Fetches != 0 || x.Fills != 0 || x.InflightBytes != 0 {
		t.Errorf("after the flood: %d fetches, %d fills, %d in-flight bytes; want 0", x.Fetches, x.Fills, x.InflightBytes)
	}
	if s.Entries != int64(2*len(framings)) {
		t.Errorf("entries after the flood: %d; want still %d", s.Entries, 2*len(framings))
	}
	if s.TooBig-tooBig < int64(ran) {
		t.Errorf("responses_too_big grew by %d in the flood of %d bodies of %d bytes; want at least %d", s.TooBig-tooBig, ran, bigSize, ran)
	}
	t.Run("goroutines and files", func(t *testing.T) {
		checkNoGrowth(t, c, "before the flood", before, "after it", after)
	})
	t.Run("purge everything", func(t *testing.T) {
		purgeAll(t, c, "all=1")
	})
}
