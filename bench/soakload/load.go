package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"
)

// A class is one kind of request in the mix.
type class int

// The classes. Every request of a class asks for an object of the bench
// origin and expects its exact body (checked against the body's hash) or,
// for condClass, a 304.
const (
	hitClass   class = iota // GET /obj/I, I among the -hot objects warmed first: hits
	missClass               // GET /obj/R?u=NONCE.SEQ, a key never asked before: misses
	revalClass              // GET /obj/I?max-age=S&tag=rG, I among -reval objects: revalidated every S seconds
	condClass               // GET /obj/I with If-None-Match: its ETag, I among the hot objects: 304
	nClasses
)

var classNames = [nClasses]string{"hit", "miss", "reval", "cond"}

func (c class) String() string { return classNames[c] }

// Ways a request fails.
const (
	errConnect = iota // no connection to the target
	errWrite          // the request could not be sent
	errRead           // the connection failed before a whole response arrived
	errTimeout        // no whole response within -timeout
	errStatus         // a status other than the class expects (200, or 304 for cond)
	errBody           // wrong length, wrong bytes (hash) or wrong ETag
	errCache          // a miss-class request not answered as a miss
	nErrs
)

var errNames = [nErrs]string{"connect", "write", "read", "timeout", "status", "body", "cache"}

// Values of the cache header a response is tallied under.
const (
	cacheHit = iota
	cacheMiss
	cacheStale
	cacheBypass
	cacheOther // absent or another value
	nCache
)

var cacheNames = [nCache]string{"HIT", "MISS", "STALE", "BYPASS", "other"}

// classStats is what one class of one phase saw.
type classStats struct {
	sent       atomic.Int64 // requests written (or attempted)
	ok         atomic.Int64 // answered as expected
	errs       [nErrs]atomic.Int64
	cache      [nCache]atomic.Int64 // responses by cache header value
	collapsed  atomic.Int64         // Cache-Status says collapsed (answered from another request's fetch)
	reval304   atomic.Int64         // Cache-Status says fwd-status=304 (this request revalidated)
	hit304     atomic.Int64         // ... and the cache header says HIT (the 304 freshened the entry)
	status304  atomic.Int64         // 304 answers
	relayed304 atomic.Int64         // 304 answers not HIT whose Cache-Status has fwd= but no fwd-status: the origin's own 304 to a forwarded conditional (RFC 9211 §2.3: fwd-status defaults to the response's status)
	lat        *hist                // latency of every response received (errors included)
}

// count classifies one response by its cache header value cv, its
// Cache-Status st and its status.
func (s *classStats) count(cv int, st []byte, status int) {
	s.cache[cv].Add(1)
	collapsed := bytes.Contains(st, collapsedMark)
	if collapsed {
		s.collapsed.Add(1)
	}
	// A waiter on another request's revalidation names the 304 too
	// (fwd-status=304; collapsed); only the request that revalidated counts.
	if bytes.Contains(st, reval304Mark) && !collapsed {
		s.reval304.Add(1)
		if cv == cacheHit {
			s.hit304.Add(1)
		}
	}
	if status == fasthttp.StatusNotModified {
		s.status304.Add(1)
		if cv != cacheHit && bytes.Contains(st, fwdMark) && !bytes.Contains(st, fwdStatusMark) {
			s.relayed304.Add(1)
		}
	}
}

func (s *classStats) errors() int64 {
	var n int64
	for i := range s.errs {
		n += s.errs[i].Load()
	}
	return n
}

// responses is how many requests got a response (whatever it was).
func (s *classStats) responses() int64 {
	var n int64
	for i := range s.cache {
		n += s.cache[i].Load()
	}
	return n
}

// phaseStats is what one phase (fill, load) saw, by class.
type phaseStats struct {
	name       string
	classes    [nClasses]classStats
	all        *hist        // every class
	reconnects atomic.Int64 // connections the target closed after a response
	firstErr   atomic.Pointer[string]

	mu         sync.Mutex
	other      map[string]int64 // cache header and Cache-Status of answers other than HIT and MISS
	start, end time.Time
}

func newPhaseStats(name string) *phaseStats {
	ps := &phaseStats{name: name, all: newHist()}
	for i := range ps.classes {
		ps.classes[i].lat = newHist()
	}
	return ps
}

func (ps *phaseStats) total(f func(*classStats) int64) int64 {
	var n int64
	for i := range ps.classes {
		n += f(&ps.classes[i])
	}
	return n
}

func (ps *phaseStats) noteErr(c class, kind int, detail string) {
	ps.classes[c].errs[kind].Add(1)
	if ps.firstErr.Load() == nil {
		msg := fmt.Sprintf("%s request, %s error: %s", c, errNames[kind], detail)
		ps.firstErr.CompareAndSwap(nil, &msg)
	}
}

// maxOther bounds the distinct answers phaseStats.other keeps.
const maxOther = 32

// noteOther tallies an answer that was neither a HIT nor a MISS by its
// cache header and Cache-Status.
func (ps *phaseStats) noteOther(value, cacheStatus string) {
	k := fmt.Sprintf("%s | %s", value, cacheStatus)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.other == nil {
		ps.other = map[string]int64{}
	}
	if _, ok := ps.other[k]; ok || len(ps.other) < maxOther {
		ps.other[k]++
	}
}

// objects knows what the bench origin serves: the hash and ETag of each of
// its k bodies, made as bench/origin makes them (a ChaCha8 stream keyed by
// seed and body number).
type objects struct {
	n, k, size int
	hashes     []uint64
	etags      []string
}

func newObjects(n, k, size int, seed uint64) *objects {
	if k <= 0 || k > n {
		k = n
	}
	o := &objects{n: n, k: k, size: size, hashes: make([]uint64, k), etags: make([]string, k)}
	b := make([]byte, size)
	for j := range k {
		originBody(b, seed, j)
		o.hashes[j] = xxhash.Sum64(b)
		o.etags[j] = fmt.Sprintf("%q", strconv.FormatUint(o.hashes[j], 16))
	}
	return o
}

// originBody fills b with body j as bench/origin makes it for seed.
func originBody(b []byte, seed uint64, j int) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(j))
	_, _ = rand.NewChaCha8(key).Read(b)
}

// mix is the request mix: cumulative weights by class.
type mix struct {
	cum   [nClasses]int
	total int
}

// parseMix reads "hit=80,miss=10,reval=8,cond=2" (classes left out weigh 0).
func parseMix(s string) (mix, error) {
	var m mix
	var w [nClasses]int
	for part := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(val)
		if !ok || err != nil || n < 0 {
			return m, fmt.Errorf("mix: %q is not class=weight", part)
		}
		found := false
		for c, cn := range classNames {
			if cn == name {
				w[c], found = n, true
			}
		}
		if !found {
			return m, fmt.Errorf("mix: unknown class %q (want hit, miss, reval, cond)", name)
		}
	}
	for c := range w {
		m.total += w[c]
		m.cum[c] = m.total
	}
	if m.total == 0 {
		return m, errors.New("mix: every weight is 0")
	}
	return m, nil
}

func (m mix) weight(c class) int {
	if c == 0 {
		return m.cum[0]
	}
	return m.cum[c] - m.cum[c-1]
}

func (m mix) pick(r *rand.Rand) class {
	x := r.IntN(m.total)
	for c := range nClasses {
		if x < m.cum[c] {
			return c
		}
	}
	return nClasses - 1
}

func (m mix) String() string {
	var parts []string
	for c := range nClasses {
		if w := m.weight(c); w > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", c, w))
		}
	}
	return strings.Join(parts, ",")
}

// loadConfig is what the workers need.
type loadConfig struct {
	addr        string // host:port of the target
	host        string // Host header
	conns       int
	timeout     time.Duration
	mix         mix
	hot         int // hot objects: /obj/0 .. /obj/hot-1
	reval       int // revalidated objects: /obj/0 .. /obj/reval-1 with ?max-age
	revalMaxAge int
	revalTags   int    // reval objects carry tag r(I mod revalTags)
	nonce       string // makes miss keys unique to this run
	cacheHeader string // X-Cache (ours), X-Cache-Status (HAProxy)
	objs        *objects
	missSeq     *atomic.Int64 // shared by every phase of a run
}

// request renders the request line and header of one request of class c
// into buf, and returns it with the object's number.
func (lc *loadConfig) request(buf []byte, c class, r *rand.Rand) ([]byte, int) {
	buf = append(buf[:0], "GET /obj/"...)
	var i int
	switch c {
	case hitClass, condClass:
		i = r.IntN(lc.hot)
		buf = strconv.AppendInt(buf, int64(i), 10)
	case missClass:
		i = r.IntN(lc.objs.n)
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, "?u="...)
		buf = append(buf, lc.nonce...)
		buf = append(buf, '.')
		buf = strconv.AppendInt(buf, lc.missSeq.Add(1), 10)
	case revalClass:
		i = r.IntN(lc.reval)
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, "?max-age="...)
		buf = strconv.AppendInt(buf, int64(lc.revalMaxAge), 10)
		buf = append(buf, "&tag=r"...)
		buf = strconv.AppendInt(buf, int64(i%lc.revalTags), 10)
	}
	buf = append(buf, " HTTP/1.1\r\nHost: "...)
	buf = append(buf, lc.host...)
	buf = append(buf, "\r\nUser-Agent: soakload\r\n"...)
	if c == condClass {
		buf = append(buf, "If-None-Match: "...)
		buf = append(buf, lc.objs.etags[i%lc.objs.k]...)
		buf = append(buf, "\r\n"...)
	}
	return append(buf, "\r\n"...), i
}

// revalPath is the path of revalidated object i (for warming and purges).
func (lc *loadConfig) revalPath(i int) string {
	return fmt.Sprintf("/obj/%d?max-age=%d&tag=r%d", i, lc.revalMaxAge, i%lc.revalTags)
}

var (
	collapsedMark = []byte("collapsed")
	reval304Mark  = []byte("fwd-status=304")
	fwdMark       = []byte("fwd=")
	fwdStatusMark = []byte("fwd-status=")
)

// conn is one keep-alive client connection.
type conn struct {
	lc   *loadConfig
	c    net.Conn
	br   *bufio.Reader
	resp fasthttp.Response
}

func (w *conn) close() {
	if w.c != nil {
		_ = w.c.Close()
		w.c = nil
	}
}

// do sends one request of class c and checks its answer. It returns false
// when the connection is gone (the caller reconnects).
func (w *conn) do(ps *phaseStats, c class, req []byte, obj int) bool {
	cs := &ps.classes[c]
	cs.sent.Add(1)
	if w.c == nil {
		nc, err := net.DialTimeout("tcp", w.lc.addr, w.lc.timeout)
		if err != nil {
			ps.noteErr(c, errConnect, err.Error())
			return false
		}
		w.c = nc
		if w.br == nil {
			w.br = bufio.NewReaderSize(nc, 32<<10)
		} else {
			w.br.Reset(nc)
		}
	}
	start := time.Now()
	_ = w.c.SetDeadline(start.Add(w.lc.timeout))
	if _, err := w.c.Write(req); err != nil {
		ps.noteErr(c, kindOf(err, errWrite), err.Error())
		w.close()
		return false
	}
	w.resp.Reset()
	err := w.resp.Read(w.br)
	lat := time.Since(start)
	if err != nil {
		ps.noteErr(c, kindOf(err, errRead), err.Error())
		w.close()
		return false
	}
	cs.lat.record(lat)
	ps.all.record(lat)
	h := &w.resp.Header
	v := h.Peek(w.lc.cacheHeader)
	cv := cacheOther
	for i, name := range cacheNames[:cacheOther] {
		if string(v) == name {
			cv = i
		}
	}
	st := h.Peek("Cache-Status")
	if cv != cacheHit && cv != cacheMiss {
		ps.noteOther(string(v), string(st))
	}
	status := w.resp.StatusCode()
	cs.count(cv, st, status)
	good := w.check(ps, c, obj, status, string(v))
	if good {
		cs.ok.Add(1)
	}
	if w.resp.ConnectionClose() {
		ps.reconnects.Add(1)
		w.close()
	}
	return true
}

// check tells whether a response is what class c expects of object obj,
// noting an error if not.
func (w *conn) check(ps *phaseStats, c class, obj, status int, cacheValue string) bool {
	objs := w.lc.objs
	want := fasthttp.StatusOK
	if c == condClass {
		want = fasthttp.StatusNotModified
	}
	if status != want {
		ps.noteErr(c, errStatus, fmt.Sprintf("object %d: status %d, want %d", obj, status, want))
		return false
	}
	etag := string(w.resp.Header.Peek("ETag"))
	if etag != objs.etags[obj%objs.k] {
		ps.noteErr(c, errBody, fmt.Sprintf("object %d: ETag %q, want %q", obj, etag, objs.etags[obj%objs.k]))
		return false
	}
	if c == condClass {
		if len(w.resp.Body()) != 0 {
			ps.noteErr(c, errBody, fmt.Sprintf("object %d: a 304 with %d body bytes", obj, len(w.resp.Body())))
			return false
		}
		return true
	}
	body := w.resp.Body()
	if len(body) != objs.size || xxhash.Sum64(body) != objs.hashes[obj%objs.k] {
		ps.noteErr(c, errBody, fmt.Sprintf("object %d: %d bytes, not its body", obj, len(body)))
		return false
	}
	if c == missClass && w.lc.cacheHeader != "" && cacheValue != "MISS" {
		ps.noteErr(c, errCache, fmt.Sprintf("object %d, a key never asked before: %s %q", obj, w.lc.cacheHeader, cacheValue))
		return false
	}
	return true
}

// kindOf classifies a connection error: a timeout, or def.
func kindOf(err error, def int) int {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	return def
}

// runPhase holds lc.conns connections, each sending requests drawn from m
// one after another, until ctx is done; a request under way then
// finishes. It returns when every worker has stopped and closed its
// connection.
func runPhase(ctx context.Context, lc *loadConfig, m mix, ps *phaseStats, seed uint64) {
	ps.start = time.Now()
	var wg sync.WaitGroup
	for id := range lc.conns {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(id)))
			w := &conn{lc: lc}
			defer w.close()
			buf := make([]byte, 0, 256)
			for ctx.Err() == nil {
				c := m.pick(r)
				req, obj := lc.request(buf, c, r)
				buf = req
				if !w.do(ps, c, req, obj) {
					// back off a little so that a refused connection does
					// not spin
					select {
					case <-ctx.Done():
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		})
	}
	wg.Wait()
	ps.end = time.Now()
}
