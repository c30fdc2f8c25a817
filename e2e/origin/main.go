// Command origin is the scriptable upstream the end-to-end tests put behind
// dedupcache. Every behaviour is chosen by the request's path and query, so
// one process serves a whole test without being restarted:
//
//	/obj/{i}?distinct=K&size=S   body i mod K (S deterministic bytes), public, max-age=300, strong ETag
//	/random?size=S               S fresh random bytes on every request, public, max-age=300
//	/cut?len=N&send=M            declares Content-Length N, sends M < N bytes, then closes the connection
//	/chunked-cut?send=M          chunked, one chunk of M bytes, then closes without the final chunk
//	/slow?ms=D                   sleeps D ms before the response header, then answers (no-store)
//	/status/{code}               answers with that status (add &cc=... for a Cache-Control)
//	/headers?h=Name:Value&...    echoes the scripted response headers (&status=N, &body=text)
//	/stats                       JSON request counts by path prefix and by path (itself not counted)
//	/script/{name}               answers as scripted for name (any method); records each request
//	POST /script-set/{name}      sets name's script from a JSON body (see script); resets nothing else
//	GET /script-log/{name}       JSON {"count": n, "requests": [{method, header, unix_nano}, ...]}
//	/echo/{any}[?cc=CC]          any method: a text body naming the raw request target, the method,
//	                             Content-Type, SHA-256 and length of the request body, a sequence
//	                             number and the forwarding-style request headers received;
//	                             Cache-Control CC (default public, max-age=300); recorded in /echo-log
//	/graphql                     the same as /echo (for POST caching)
//	GET /echo-log                JSON {"requests": [{method, target, header, body_len, seq}, ...]}
//	/slowbody/{name}?size=S&chunks=N&ms=D   S deterministic bytes (Content-Length, public, max-age=300)
//	                             written in N flushed chunks D ms apart
//	/ws/{name}?delay_ms=D&hold_ms=H   waits D ms, answers 101 Switching Protocols, then echoes the
//	                             tunnel's bytes for up to H ms (default 3000)
//
// The script routes are separate from /script/{name} so that unsafe methods
// (POST, PUT, DELETE) can be sent to a scripted URL through the cache.
//
// It listens on -addr (default 127.0.0.1:0), prints "LISTEN <addr>" on
// stdout once listening, and shuts down gracefully on SIGTERM or SIGINT.
// It uses the standard library only.
package main

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxSize bounds every size taken from a query, so a typo cannot make the
// origin allocate gigabytes.
const maxSize = 64 << 20

// ccStored is the Cache-Control of every response meant to be stored.
const ccStored = "public, max-age=300"

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen `address`")
	flag.Parse()
	log.SetPrefix("origin: ")
	log.SetFlags(0)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	o := &origin{prefix: map[string]int64{}, path: map[string]int64{}, scripts: map[string]*script{}, logs: map[string][]logEntry{}}
	srv := &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("LISTEN %s\n", ln.Addr())

	select {
	case <-ctx.Done():
	case err := <-served:
		log.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Printf("shutdown: %v", err)
		srv.Close()
	}
}

// origin is the handler. It counts every request except /stats.
type origin struct {
	mu     sync.Mutex
	prefix map[string]int64 // "/obj" -> count
	path   map[string]int64 // "/obj/3" -> count

	scripts map[string]*script    // /script/{name} behaviours, by name
	logs    map[string][]logEntry // requests /script/{name} received, by name

	echoSeq int64       // requests /echo and /graphql answered
	echoLog []echoEntry // and what they were
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/stats" {
		o.stats(w)
		return
	}
	first := "/" + strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)[0]
	o.mu.Lock()
	o.prefix[first]++
	o.path[p]++
	o.mu.Unlock()

	switch first {
	case "/obj":
		o.obj(w, r)
	case "/random":
		o.random(w, r)
	case "/cut":
		o.cut(w, r)
	case "/chunked-cut":
		o.chunkedCut(w, r)
	case "/slow":
		o.slow(w, r)
	case "/status":
		o.status(w, r)
	case "/headers":
		o.headers(w, r)
	case "/script":
		o.script(w, r)
	case "/script-set":
		o.scriptSet(w, r)
	case "/script-log":
		o.scriptLog(w, r)
	case "/echo", "/graphql":
		o.echo(w, r)
	case "/echo-log":
		o.echoLogServe(w)
	case "/slowbody":
		o.slowBody(w, r)
	case "/ws":
		o.ws(w, r)
	default:
		http.NotFound(w, r)
	}
}

// stats writes {"prefix": {...}, "path": {...}}.
func (o *origin) stats(w http.ResponseWriter) {
	o.mu.Lock()
	body, err := json.Marshal(map[string]map[string]int64{"prefix": o.prefix, "path": o.path})
	o.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(body)
}

// obj serves /obj/{i}?distinct=K&size=S: the deterministic body of index
// i mod K. Conditional requests, ranges and HEAD are answered by
// http.ServeContent.
func (o *origin) obj(w http.ResponseWriter, r *http.Request) {
	i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/obj/"))
	if err != nil || i < 0 {
		http.Error(w, "bad object index", http.StatusBadRequest)
		return
	}
	k, ok1 := intParam(r, "distinct", 1<<30)
	size, ok2 := intParam(r, "size", 1000)
	if !ok1 || !ok2 || k <= 0 {
		http.Error(w, "bad distinct or size", http.StatusBadRequest)
		return
	}
	idx := i % k
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", ccStored)
	w.Header().Set("ETag", fmt.Sprintf(`"b%d-s%d"`, idx, size))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body(idx, size)))
}

// body returns size deterministic bytes of body index idx: the same
// bytes in every process, different for every idx.
func body(idx, size int) []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(idx))
	binary.LittleEndian.PutUint64(seed[8:], uint64(size))
	b := make([]byte, size)
	rand.NewChaCha8(seed).Read(b)
	return b
}

// random serves /random?size=S: fresh random bytes on every request, with
// a Content-Length and a Cache-Control that make them storable.
func (o *origin) random(w http.ResponseWriter, r *http.Request) {
	size, ok := intParam(r, "size", 65536)
	if !ok {
		http.Error(w, "bad size", http.StatusBadRequest)
		return
	}
	var seed [32]byte
	crand.Read(seed[:])
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", ccStored)
	w.Header().Set("Content-Length", strconv.Itoa(size))
	if r.Method == http.MethodHead {
		return
	}
	io.CopyN(w, rand.NewChaCha8(seed), int64(size))
}

// cut serves /cut?len=N&send=M: a header promising N bytes, M of them, and
// a closed connection.
func (o *origin) cut(w http.ResponseWriter, r *http.Request) {
	n, ok1 := intParam(r, "len", 10000)
	m, ok2 := intParam(r, "send", n/2)
	if !ok1 || !ok2 || m >= n {
		http.Error(w, "want send < len", http.StatusBadRequest)
		return
	}
	conn, bw := hijack(w)
	if conn == nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nCache-Control: %s\r\nContent-Length: %d\r\n\r\n", ccStored, n)
	bw.Write(body(0, m))
	bw.Flush()
}

// chunkedCut serves /chunked-cut?send=M: a chunked response with one chunk
// of M bytes and no final zero-length chunk.
func (o *origin) chunkedCut(w http.ResponseWriter, r *http.Request) {
	m, ok := intParam(r, "send", 4000)
	if !ok || m == 0 {
		http.Error(w, "bad send", http.StatusBadRequest)
		return
	}
	conn, bw := hijack(w)
	if conn == nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nCache-Control: %s\r\nTransfer-Encoding: chunked\r\n\r\n", ccStored)
	fmt.Fprintf(bw, "%x\r\n", m)
	bw.Write(body(0, m))
	bw.WriteString("\r\n")
	bw.Flush()
}

// hijack takes over the connection, or answers 500 and returns nil.
func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter) {
	conn, bw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot hijack: "+err.Error(), http.StatusInternalServerError)
		return nil, nil
	}
	return conn, bw
}

// slow serves /slow?ms=D: it waits D ms (less if the client goes away)
// before writing anything, then answers "slow D".
func (o *origin) slow(w http.ResponseWriter, r *http.Request) {
	ms, ok := intParam(r, "ms", 1000)
	if !ok {
		http.Error(w, "bad ms", http.StatusBadRequest)
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "slow %d\n", ms)
}

// status serves /status/{code}[?cc=Cache-Control].
func (o *origin) status(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
	if err != nil || code < 200 || code > 599 {
		http.Error(w, "bad status code", http.StatusBadRequest)
		return
	}
	if cc := r.URL.Query().Get("cc"); cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(code)
	fmt.Fprintf(w, "status %d\n", code)
}

// headers serves /headers?h=Name:Value&h=...[&status=N][&body=text]: the
// listed response headers, added in order.
func (o *origin) headers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, h := range q["h"] {
		name, value, ok := strings.Cut(h, ":")
		if !ok || name == "" {
			http.Error(w, fmt.Sprintf("bad h=%q (want Name:Value)", h), http.StatusBadRequest)
			return
		}
		w.Header().Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	code := http.StatusOK
	if s := q.Get("status"); s != "" {
		var err error
		if code, err = strconv.Atoi(s); err != nil || code < 200 || code > 599 {
			http.Error(w, "bad status", http.StatusBadRequest)
			return
		}
	}
	body := "headers\n"
	if q.Has("body") {
		body = q.Get("body")
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/plain")
	}
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// scriptResponse is one scripted answer.
type scriptResponse struct {
	Status  int                 `json:"status"`  // default 200
	Headers map[string][]string `json:"headers"` // response header fields, in addition to Content-Type: text/plain
	Body    string              `json:"body"`
	// HonorConditional answers a GET or HEAD with 304 (the scripted
	// headers, no body) when If-None-Match matches the ETag (weak
	// comparison, or "*"), or, without If-None-Match, when
	// If-Modified-Since is at or after Last-Modified.
	HonorConditional bool `json:"honor_conditional"`
	DelayMs          int  `json:"delay_ms"` // wait this long before the response header
	// EchoHeader appends the request's value of this field to the body.
	EchoHeader string `json:"echo_header"`
}

// script is how /script/{name} answers: the embedded response, or the one
// listed for the request's method.
type script struct {
	scriptResponse
	Methods map[string]scriptResponse `json:"methods"`
}

// logEntry is one request /script/{name} received.
type logEntry struct {
	Method   string              `json:"method"`
	Header   map[string][]string `json:"header"`
	UnixNano int64               `json:"unix_nano"`
}

// scriptName returns the {name} of /prefix/{name}, or "" if it is empty.
func scriptName(r *http.Request) string {
	_, name, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return name
}

// scriptSet serves POST /script-set/{name}: the body is a JSON script.
func (o *origin) scriptSet(w http.ResponseWriter, r *http.Request) {
	name := scriptName(r)
	if r.Method != http.MethodPost || name == "" {
		http.Error(w, "want POST /script-set/{name}", http.StatusBadRequest)
		return
	}
	s := new(script)
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		http.Error(w, "bad script: "+err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	o.scripts[name] = s
	o.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// scriptLog serves GET /script-log/{name}.
func (o *origin) scriptLog(w http.ResponseWriter, r *http.Request) {
	name := scriptName(r)
	o.mu.Lock()
	entries := append([]logEntry{}, o.logs[name]...)
	o.mu.Unlock()
	body, err := json.Marshal(map[string]any{"count": len(entries), "requests": entries})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(body)
}

// script serves /script/{name} as scripted, after recording the request.
func (o *origin) script(w http.ResponseWriter, r *http.Request) {
	name := scriptName(r)
	o.mu.Lock()
	o.logs[name] = append(o.logs[name], logEntry{Method: r.Method, Header: r.Header.Clone(), UnixNano: time.Now().UnixNano()})
	s := o.scripts[name]
	o.mu.Unlock()
	if s == nil {
		http.Error(w, "no script for "+name, http.StatusNotFound)
		return
	}
	resp := s.scriptResponse
	if m, ok := s.Methods[r.Method]; ok {
		resp = m
	}
	if resp.DelayMs > 0 {
		t := time.NewTimer(time.Duration(resp.DelayMs) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	for k, vs := range resp.Headers {
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	if resp.HonorConditional && (r.Method == http.MethodGet || r.Method == http.MethodHead) && notModified(r, h) {
		h.Del("Content-Type")
		h.Del("Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := resp.Body
	if resp.EchoHeader != "" {
		body += r.Header.Get(resp.EchoHeader)
	}
	if h.Get("Content-Length") == "" && status != http.StatusNoContent && status != http.StatusNotModified {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

// notModified evaluates If-None-Match (weak comparison, RFC 9110
// §13.1.2) and, without it, If-Modified-Since (§13.1.3) against the
// response header h.
func notModified(r *http.Request, h http.Header) bool {
	if inm := r.Header.Values("If-None-Match"); len(inm) > 0 {
		etag := h.Get("Etag")
		for _, line := range inm {
			for _, t := range strings.Split(line, ",") {
				t = strings.TrimSpace(t)
				if t == "*" || (etag != "" && strings.TrimPrefix(t, "W/") == strings.TrimPrefix(etag, "W/")) {
					return true
				}
			}
		}
		return false
	}
	ims, err1 := http.ParseTime(r.Header.Get("If-Modified-Since"))
	lm, err2 := http.ParseTime(h.Get("Last-Modified"))
	return err1 == nil && err2 == nil && !lm.After(ims)
}

// intParam returns the query parameter name as a size in [0, maxSize], or
// def when it is absent.
func intParam(r *http.Request, name string, def int) (int, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxSize {
		return 0, false
	}
	return n, true
}

// echoEntry is one request /echo or /graphql received.
type echoEntry struct {
	Method  string              `json:"method"`
	Target  string              `json:"target"` // the raw request target (escaped path and query)
	Header  map[string][]string `json:"header"`
	BodyLen int                 `json:"body_len"`
	Seq     int64               `json:"seq"`
}

// echoHeaders are the request fields /echo lists in its body when present:
// those an origin might build its answer from.
var echoHeaders = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
	"X-Forwarded-Prefix", "X-Forwarded-Scheme", "X-Forwarded-Ssl", "X-Host", "X-Original-Url",
	"X-Rewrite-Url", "X-Http-Method-Override",
}

// echo serves /echo/{any} and /graphql: an answer that depends on the
// request target, method, Content-Type and body, and on forwarding-style
// request fields.
func (o *origin) echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxSize))
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	o.echoSeq++
	seq := o.echoSeq
	o.echoLog = append(o.echoLog, echoEntry{Method: r.Method, Target: r.RequestURI, Header: r.Header.Clone(), BodyLen: len(b), Seq: seq})
	o.mu.Unlock()
	sum := sha256.Sum256(b)
	var out bytes.Buffer
	fmt.Fprintf(&out, "target=%s method=%s ctype=%q body=%x len=%d seq=%d\n",
		r.RequestURI, r.Method, r.Header.Get("Content-Type"), sum[:8], len(b), seq)
	for _, k := range echoHeaders {
		for _, v := range r.Header.Values(k) {
			fmt.Fprintf(&out, "%s: %s\n", k, v)
		}
	}
	cc := r.URL.Query().Get("cc")
	if cc == "" {
		cc = ccStored
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", cc)
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	if r.Method != http.MethodHead {
		w.Write(out.Bytes())
	}
}

// echoLogServe serves GET /echo-log.
func (o *origin) echoLogServe(w http.ResponseWriter) {
	o.mu.Lock()
	body, err := json.Marshal(map[string]any{"requests": o.echoLog})
	o.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(body)
}

// slowBody serves /slowbody/{name}?size=S&chunks=N&ms=D: body(0, S) in N
// flushed chunks, D ms apart; it stops when the client goes away.
func (o *origin) slowBody(w http.ResponseWriter, r *http.Request) {
	size, ok1 := intParam(r, "size", 1<<20)
	chunks, ok2 := intParam(r, "chunks", 16)
	ms, ok3 := intParam(r, "ms", 50)
	if !ok1 || !ok2 || !ok3 || chunks == 0 || chunks > size || ms > 10000 {
		http.Error(w, "bad size, chunks or ms", http.StatusBadRequest)
		return
	}
	data := body(0, size)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", ccStored)
	w.Header().Set("Content-Length", strconv.Itoa(size))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	per := size / chunks
	for i := range chunks {
		end := (i + 1) * per
		if i == chunks-1 {
			end = size
		}
		if _, err := w.Write(data[i*per : end]); err != nil {
			return
		}
		rc.Flush()
		if i == chunks-1 {
			break
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
}

// ws serves /ws/{name}?delay_ms=D&hold_ms=H: after D ms, a 101 to
// websocket on the hijacked connection, then an echo of the tunnel for up
// to H ms (default 3000), or until the peer closes.
func (o *origin) ws(w http.ResponseWriter, r *http.Request) {
	delay, ok1 := intParam(r, "delay_ms", 0)
	hold, ok2 := intParam(r, "hold_ms", 3000)
	if !ok1 || !ok2 || delay > 10000 || hold > 60000 {
		http.Error(w, "bad delay_ms or hold_ms", http.StatusBadRequest)
		return
	}
	if delay > 0 {
		t := time.NewTimer(time.Duration(delay) * time.Millisecond)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	conn, rw := hijack(w)
	if conn == nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Duration(hold) * time.Millisecond))
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	if rw.Flush() != nil {
		return
	}
	io.Copy(conn, rw.Reader)
}
