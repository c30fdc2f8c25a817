package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultOrigin is a misbehaving upstream for the fault tests: a raw TCP
// listener on loopback, in the test process, that speaks just enough
// HTTP/1.1 to read requests (keep-alive, Content-Length or chunked bodies)
// and answers each as the first segment of its path scripts, byte by byte,
// including answers no HTTP library would write. The path is
// /{behaviour}/{name}[?params]; name makes the cache key (each test uses
// its own), params tune the behaviour:
//
//	ok             200, public, max-age=300 (cc= overrides), Content-Length, size= bytes
//	               of foBody(path) (default 1000), after delay_ms=
//	slow           ok's answer written in chunks= pieces, ms= apart
//	mode           the behaviour set for the path with setMode (default ok)
//	reset          a Content-Length header and half the body, then a TCP reset
//	reset-head     the request read, then a TCP reset (no answer)
//	cl-long        Content-Length size, half the body, then the connection closed
//	cl-short       Content-Length size, the body followed at once by a whole second
//	               response (foPoison) that nobody asked for; the connection stays open
//	cl-short-late  the same, the second response sent late= ms after the body
//	bad-chunk      chunked: one good chunk, then a chunk size that is not hex
//	chunk-overrun  chunked: a chunk carrying more bytes than its size says
//	head-stall     a status line and some fields, then silence
//	head-trickle   a status line, then one more field every 100 ms, never the end
//	stall          a Content-Length header and a quarter of the body, then silence
//	5xx            status code= (default 503), no caching fields, after delay_ms=
//	no-answer      the request read, then silence
//	garbage        bytes that are not HTTP, then the connection closed
//	lying-ce       200, Content-Encoding: gzip over bytes that are not gzip
//	lying-te       200, Transfer-Encoding: gzip, chunked over chunks that are not gzip
//	echo           200, no-store: "method target body_len=N" (for forwarded requests)
//
// Silences last until the cache closes the connection or foHold passes.
// The origin counts requests by path and keeps the head of every request
// it read, to check how the cache frames what it forwards.
type faultOrigin struct {
	ln   net.Listener
	url  string
	addr string

	mu     sync.Mutex
	counts map[string]int    // by path, query excluded
	modes  map[string]string // mode behaviour by path
	heads  []foHead          // every request read, in order
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	closed bool
}

// foHead is one request the origin read.
type foHead struct {
	Method, Target string
	Fields         []string // "Name: value" as received, in order
	BodyLen        int
	BodyErr        error
	BodyDone       bool // the body was read to its end or its error
}

// foHold bounds every silence and trickle, so that a cache that never
// gives up cannot hold a test past its own deadline.
const foHold = 10 * time.Second

// foPoison is the response a misbehaving origin sends that no request
// asked for: a cache that reads it as the answer to its next request on
// the connection stores it (RFC 9112 §6.3 forbids that).
const foPoison = "HTTP/1.1 200 OK\r\nCache-Control: public, max-age=300\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nPOISONED"

// startFaultOrigin starts a fault origin on a free loopback port; it is
// closed, with every connection it holds, at cleanup.
func startFaultOrigin(t *testing.T) *faultOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &faultOrigin{ln: ln, addr: ln.Addr().String(), url: "http://" + ln.Addr().String(),
		counts: map[string]int{}, modes: map[string]string{}, conns: map[net.Conn]struct{}{}}
	o.wg.Add(1)
	go o.accept()
	t.Cleanup(o.close)
	return o
}

func (o *faultOrigin) accept() {
	defer o.wg.Done()
	for {
		c, err := o.ln.Accept()
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
}

// close stops the listener and every connection, and waits for their
// goroutines.
func (o *faultOrigin) close() {
	o.ln.Close()
	o.mu.Lock()
	o.closed = true
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

// count returns how many requests path (without query) received.
func (o *faultOrigin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[path]
}

// setMode sets the behaviour of /mode/... path (a behaviour name of the
// table above).
func (o *faultOrigin) setMode(path, behaviour string) {
	o.mu.Lock()
	o.modes[path] = behaviour
	o.mu.Unlock()
}

// requests returns the heads read for path or a path under it (path/...),
// whatever their query.
func (o *faultOrigin) requests(path string) []foHead {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []foHead
	for _, h := range o.heads {
		p, _, _ := strings.Cut(h.Target, "?")
		if p == path || strings.HasPrefix(p, path+"/") {
			out = append(out, h)
		}
	}
	return out
}

// foBody is the deterministic body of path (query excluded) with size
// bytes: printable, different per path.
func foBody(path string, size int) []byte {
	var seed [32]byte
	copy(seed[:], path)
	r := rand.NewChaCha8(seed)
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, size)
	r.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return b
}

// serve reads requests off c until the connection ends or a behaviour
// ends it.
func (o *faultOrigin) serve(c net.Conn) {
	defer o.wg.Done()
	defer func() {
		c.Close()
		o.mu.Lock()
		delete(o.conns, c)
		o.mu.Unlock()
	}()
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(foHold))
		h, err := readHead(br)
		if err != nil {
			return
		}
		c.SetReadDeadline(time.Now().Add(foHold)) // for the body
		path, _, _ := strings.Cut(h.Target, "?")
		o.mu.Lock()
		o.counts[path]++
		o.heads = append(o.heads, h)
		i := len(o.heads) - 1
		o.mu.Unlock()
		h.BodyLen, h.BodyErr = readBodyOf(br, h)
		o.mu.Lock()
		o.heads[i].BodyLen, o.heads[i].BodyErr, o.heads[i].BodyDone = h.BodyLen, h.BodyErr, true
		o.mu.Unlock()
		if h.BodyErr != nil {
			return
		}
		c.SetReadDeadline(time.Time{})
		if !o.answer(c, h) {
			return
		}
	}
}

// readHead reads one request head: the request line and fields as they
// came (obs-fold lines kept as lines of their own).
func readHead(br *bufio.Reader) (foHead, error) {
	var h foHead
	line, err := br.ReadString('\n')
	if err != nil {
		return h, err
	}
	parts := strings.Split(strings.TrimRight(line, "\r\n"), " ")
	if len(parts) != 3 {
		return h, fmt.Errorf("request line %q", line)
	}
	h.Method, h.Target = parts[0], parts[1]
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return h, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return h, nil
		}
		h.Fields = append(h.Fields, line)
	}
}

// values returns the values of field name (case-insensitive) in h.
func (h foHead) values(name string) []string {
	var out []string
	for _, f := range h.Fields {
		k, v, ok := strings.Cut(f, ":")
		if ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// framing describes how h delimits its body, and whether that is
// ambiguous (RFC 9112 §6.3: both Content-Length and Transfer-Encoding,
// several Content-Length values, a folded line, a Transfer-Encoding other
// than chunked alone).
func (h foHead) framing() (desc string, ambiguous bool) {
	cl, te := h.values("Content-Length"), h.values("Transfer-Encoding")
	for _, f := range h.Fields {
		if f != "" && (f[0] == ' ' || f[0] == '\t') {
			return "obs-fold", true
		}
	}
	switch {
	case len(cl) > 0 && len(te) > 0:
		return "Content-Length and Transfer-Encoding", true
	case len(cl) > 1 || (len(cl) == 1 && strings.Contains(cl[0], ",")):
		return "Content-Length " + strings.Join(cl, " | "), true
	case len(te) > 1 || (len(te) == 1 && !strings.EqualFold(te[0], "chunked")):
		return "Transfer-Encoding " + strings.Join(te, " | "), true
	case len(te) == 1:
		return "chunked", false
	case len(cl) == 1:
		return "Content-Length " + cl[0], false
	}
	return "no body", false
}

// readBodyOf reads the body h announces; an ambiguous framing is read as
// the cache should never send it: an error, and the connection ends.
func readBodyOf(br *bufio.Reader, h foHead) (int, error) {
	desc, ambiguous := h.framing()
	if ambiguous {
		return 0, errors.New("ambiguous framing: " + desc)
	}
	switch {
	case desc == "chunked":
		n, err := io.Copy(io.Discard, httputil.NewChunkedReader(br))
		return int(n), err
	case strings.HasPrefix(desc, "Content-Length "):
		want, err := strconv.ParseInt(strings.TrimPrefix(desc, "Content-Length "), 10, 64)
		if err != nil || want < 0 {
			return 0, fmt.Errorf("bad %s", desc)
		}
		n, err := io.Copy(io.Discard, io.LimitReader(br, want))
		if err == nil && n < want {
			err = io.ErrUnexpectedEOF
		}
		return int(n), err
	}
	return 0, nil
}

// hold waits, reading and discarding, until the peer closes c or foHold
// passes.
func hold(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(foHold))
	io.Copy(io.Discard, c)
}

// reset closes c with a TCP RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// intQuery returns the integer parameter name of target, or def.
func intQuery(target, name string, def int) int {
	_, q, _ := strings.Cut(target, "?")
	for kv := range strings.SplitSeq(q, "&") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return def
}

// answer writes h's answer as its behaviour scripts it, and reports
// whether the connection may carry another request.
func (o *faultOrigin) answer(c net.Conn, h foHead) bool {
	path, query, _ := strings.Cut(h.Target, "?")
	behaviour := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 2)[0]
	if behaviour == "mode" {
		o.mu.Lock()
		behaviour = o.modes[path]
		o.mu.Unlock()
		if behaviour == "" {
			behaviour = "ok"
		}
	}
	size := intQuery(h.Target, "size", 1000)
	body := foBody(path, size)
	cc := "public, max-age=300"
	if _, v, ok := strings.Cut(query, "cc="); ok {
		cc, _, _ = strings.Cut(v, "&")
		cc = strings.ReplaceAll(cc, "%20", " ")
	}
	head := func(extra string) string {
		return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: " + cc + "\r\n" + extra + "\r\n"
	}
	withLength := head("Content-Length: " + strconv.Itoa(size) + "\r\n")
	write := func(parts ...[]byte) bool {
		for _, p := range parts {
			if _, err := c.Write(p); err != nil {
				return false
			}
		}
		return true
	}
	if d := intQuery(h.Target, "delay_ms", 0); d > 0 {
		time.Sleep(time.Duration(d) * time.Millisecond)
	}
	switch behaviour {
	case "ok":
		return write([]byte(withLength), body)
	case "slow":
		n, ms := max(intQuery(h.Target, "chunks", 10), 1), intQuery(h.Target, "ms", 100)
		if !write([]byte(withLength)) {
			return false
		}
		for i := range n {
			if i > 0 {
				time.Sleep(time.Duration(ms) * time.Millisecond)
			}
			if !write(body[i*size/n : (i+1)*size/n]) {
				return false
			}
		}
		return true
	case "reset":
		write([]byte(withLength), body[:size/2])
		time.Sleep(50 * time.Millisecond) // the half is on its way before the reset
		reset(c)
		return false
	case "reset-head":
		reset(c)
		return false
	case "cl-long":
		write([]byte(withLength), body[:size/2])
		return false
	case "cl-short":
		return write([]byte(withLength), body, []byte(foPoison))
	case "cl-short-late":
		if !write([]byte(withLength), body) {
			return false
		}
		time.Sleep(time.Duration(intQuery(h.Target, "late", 100)) * time.Millisecond)
		return write([]byte(foPoison))
	case "bad-chunk":
		write([]byte(head("Transfer-Encoding: chunked\r\n")), []byte(fmt.Sprintf("%x\r\n", size/2)), body[:size/2], []byte("\r\nzz\r\n"), body[size/2:])
		hold(c)
		return false
	case "chunk-overrun":
		write([]byte(head("Transfer-Encoding: chunked\r\n")), []byte(fmt.Sprintf("%x\r\n", size/2)), body, []byte("\r\n0\r\n\r\n"))
		hold(c)
		return false
	case "head-stall":
		write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: " + cc + "\r\n"))
		hold(c)
		return false
	case "head-trickle":
		if !write([]byte("HTTP/1.1 200 OK\r\nCache-Control: " + cc + "\r\n")) {
			return false
		}
		stop := make(chan struct{})
		go func() { hold(c); close(stop) }()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return false
			case <-tick.C:
				if !write([]byte(fmt.Sprintf("X-Trickle-%d: %d\r\n", i, i))) {
					return false
				}
			}
		}
	case "stall":
		write([]byte(withLength), body[:size/4])
		hold(c)
		return false
	case "5xx":
		code := intQuery(h.Target, "code", 503)
		msg := fmt.Sprintf("origin error %d\n", code)
		return write([]byte(fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", code, http.StatusText(code), len(msg), msg)))
	case "no-answer":
		hold(c)
		return false
	case "garbage":
		write([]byte("SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n"))
		return false
	case "lying-ce":
		return write([]byte(head("Content-Encoding: gzip\r\nContent-Length: "+strconv.Itoa(size)+"\r\n")), body)
	case "lying-te":
		write([]byte(head("Transfer-Encoding: gzip, chunked\r\n")), []byte(fmt.Sprintf("%x\r\n", size)), body, []byte("\r\n0\r\n\r\n"))
		return false
	case "echo":
		msg := fmt.Sprintf("%s %s body_len=%d\n", h.Method, h.Target, h.BodyLen)
		return write([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)))
	}
	msg := "no such behaviour " + behaviour + "\n"
	return write([]byte(fmt.Sprintf("HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)))
}

// foResp is one response read off a raw client connection, as far as it
// came.
type foResp struct {
	status int
	header http.Header
	body   []byte
	err    error // no response (status 0), or the body broke off
	took   time.Duration
}

func (r foResp) String() string {
	if r.status == 0 {
		return fmt.Sprintf("no response (%v) after %v", r.err, r.took.Round(time.Millisecond))
	}
	s := fmt.Sprintf("%d X-Cache %q Cache-Status %q, %d body bytes after %v", r.status, r.header.Get("X-Cache"),
		r.header.Get("Cache-Status"), len(r.body), r.took.Round(time.Millisecond))
	if r.err != nil {
		s += fmt.Sprintf(", broken off: %v", r.err)
	}
	return s
}

// complete reports whether a whole response arrived.
func (r foResp) complete() bool { return r.status != 0 && r.err == nil }

// rawRequest sends one request on a new connection to addr, reads the
// answer (its body framed by its own header, as a client would) within
// limit, and closes the connection. fields are extra header lines.
func rawRequest(addr, method, target string, limit time.Duration, fields ...string) foResp {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return foResp{err: err}
	}
	defer c.Close()
	c.SetDeadline(start.Add(limit))
	req := method + " " + target + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	for _, f := range fields {
		req += f + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		return foResp{err: err, took: time.Since(start)}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return foResp{err: err, took: time.Since(start)}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return foResp{status: resp.StatusCode, header: resp.Header, body: body, err: err, took: time.Since(start)}
}

// sameBytes describes how got differs from want, or returns "".
func sameBytes(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	return fmt.Sprintf("%d bytes (%.40q...); want %d (%.40q...)", len(got), got, len(want), want)
}
