package proxy

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"dedupcache/cachestore"
)

// The fast listener: the proxy on fasthttp, an HTTP/1.1 server that reuses
// every per-request buffer. A fresh hit, the request that dominates a cache's
// traffic, is answered here from the engine-neutral core (the same lookup
// that serve uses: host, target and a policy.Fields view of the header) with
// the stored header block in the engine's own parsed form, copied into the
// response, and the shared body handed over without a copy; fasthttp writes
// head and body with one buffered flush (one writev past its buffer);
// conditional and Range requests get their 304, 206 or 416 there too. Every
// other request (misses, request directives, stale, bypass, purges,
// upgrades) runs the net/http handler through fasthttpadaptor, which streams.

// FastHandler returns the proxy as a fasthttp request handler, for a
// server configured by [FastServer].
func (p *Proxy) FastHandler() fasthttp.RequestHandler {
	full := func(w http.ResponseWriter, r *http.Request) {
		w, r = slowWriter(w, r), ownRequest(r)
		// A context of its own (fastBase), not derived from the
		// RequestCtx: that one is reused for the connection's next
		// request while a fetch or a refresh begun here may still read
		// values from this context, and its Done is the server's
		// shutdown, not the client's hang-up (a drain must let requests
		// in flight finish).
		p.serve(w, r.WithContext(fastBase))
	}
	plain := fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(full))
	logged := fasthttpadaptor.NewFastHTTPHandler(p.logged(full))
	return func(ctx *fasthttp.RequestCtx) {
		if !validFieldNames(&ctx.Request.Header) {
			// RFC 9112 §5: a field name is a token; net/http's server
			// refuses the others too.
			ctx.Response.SetConnectionClose()
			ctx.Error("invalid header field name", fasthttp.StatusBadRequest)
			addDate(&ctx.Response.Header, "")
			return
		}
		l := p.live()
		log := p.sampled(l)
		// A host not allowed (hosts.go) is refused by serve.
		fast := fastHostServed(l, &ctx.Request.Header)
		if !log {
			if fast && p.fastHit(ctx, l, true) {
				return
			}
		} else if start := time.Now(); fast && p.fastHit(ctx, l, false) {
			p.logFastHit(ctx, start)
			return
		}
		if log {
			p.runSlow(ctx, logged)
		} else {
			p.runSlow(ctx, plain)
		}
	}
}

// runSlow runs h, the net/http handler through the adaptor, for ctx, and
// gives the response the Date and Content-Length the handler set.
func (p *Proxy) runSlow(ctx *fasthttp.RequestCtx, h fasthttp.RequestHandler) {
	// Not pooled: a flushed response's handler goes on running (and
	// reading st) after the adaptor has returned.
	st := &slowState{length: -1}
	ctx.SetUserValue(slowKey{}, st)
	h(ctx)
	ctx.RemoveUserValue(slowKey{})
	if !ctx.Hijacked() {
		if st.length >= 0 && ctx.Response.IsBodyStream() && !ctx.IsHead() {
			// The adaptor streams a flushed response chunked; the
			// length the handler announced frames it instead (and a
			// body that ends short drops the connection). fasthttp
			// writes such a body through its buffer, so the header
			// is flushed at once.
			ctx.Response.Header.SetContentLength(int(st.length))
			ctx.Response.ImmediateHeaderFlush = true
		}
		addDate(&ctx.Response.Header, st.date)
	}
}

// FastLimits are the fast listener's limits (zero: fasthttp's default).
type FastLimits struct {
	// ReadHeader bounds reading a request's line and header.
	ReadHeader time.Duration
	// Read bounds reading a request with a body, from its header on.
	Read time.Duration
	// Write bounds writing a response.
	Write time.Duration
	// Idle bounds waiting for the next request on a kept-alive connection.
	Idle time.Duration
	// MaxHeaderBytes bounds the request line and header (431 past it);
	// it is each connection's read buffer.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a request body, read whole (413 past it).
	MaxBodyBytes int
}

// FastServer returns a fasthttp server for [Proxy.FastHandler] with the
// given limits. The caller serves it and shuts it down.
func (p *Proxy) FastServer(l FastLimits) *fasthttp.Server {
	var onHeader func(*fasthttp.RequestHeader) fasthttp.RequestConfig
	if l.Read > 0 {
		// fasthttp has one read deadline per request: it is ReadHeader's,
		// extended once the header is in for a request with a body.
		onHeader = func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			if cl := h.ContentLength(); cl > 0 || cl == -1 {
				return fasthttp.RequestConfig{ReadTimeout: l.Read}
			}
			return fasthttp.RequestConfig{}
		}
	}
	return &fasthttp.Server{
		Handler:        p.FastHandler(),
		HeaderReceived: onHeader,
		ReadTimeout:    cmp.Or(l.ReadHeader, l.Read),
		WriteTimeout:   l.Write,
		IdleTimeout:    l.Idle,
		// The read buffer bounds the request line and header block:
		// past it fasthttp answers 431.
		ReadBufferSize:        max(l.MaxHeaderBytes, 4096),
		MaxRequestBodySize:    l.MaxBodyBytes,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		// The Date of a stored response is the origin's (RFC 9110 §6.6.1;
		// a downstream cache computes Expires - Date); the hit writer and
		// addDate put one on every response.
		NoDefaultDate:                true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		Logger:                       fastLogger{p},
		ConnState:                    p.fastConnState(max(l.MaxHeaderBytes, 4096)),
	}
}

// fastBase is the context of every full-path request on the fast
// listener (see FastHandler). It says that a server runs the handler:
// under one, ReverseProxy aborts a response whose upstream body breaks
// off (panic(http.ErrAbortHandler), which the adaptor turns into a dropped
// connection); without one it would end the response as if complete.
var fastBase = context.WithValue(context.Background(), http.ServerContextKey, &http.Server{})

// fastLogger sends fasthttp's own messages (connection errors) to the
// proxy's log at debug level: one per bad request would flood it.
type fastLogger struct{ p *Proxy }

// Printf implements fasthttp.Logger.
func (l fastLogger) Printf(format string, args ...any) {
	if l.p.log.Enabled(context.Background(), slog.LevelDebug) {
		l.p.log.Debug("http server", "msg", strings.TrimSpace(fmt.Sprintf(format, args...)))
	}
}

// fastHit answers ctx from a fresh stored response, if the request is a
// GET or HEAD without a body, request directives or Upgrade, whose key the
// common path of keyParts gives; a conditional or Range request gets its
// 304, 206 or 416 (fastSpecial). It reports whether it answered.
func (p *Proxy) fastHit(ctx *fasthttp.RequestCtx, live *Live, miss bool) bool {
	rq := &ctx.Request.Header
	head := false
	switch string(rq.Method()) {
	case http.MethodGet:
	case http.MethodHead:
		head = true
	default:
		return false
	}
	// -2 is "no Content-Length" (a request without a body), -1 chunked.
	if cl := rq.ContentLength(); cl > 0 || cl == -1 || live.DebugHeaders {
		return false
	}
	host, uri := b2s(rq.Host()), b2s(rq.RequestURI())
	if host == "" || len(host) > maxHostLen || uri == "" || uri[0] != '/' || hasUpper(host) {
		return false // keyParts' uncommon cases
	}
	if len(p.cfg.TrustedProxies) > 0 && (len(rq.PeekCanonical(xfProtoKey)) > 0 || len(rq.PeekCanonical(xfHostKey)) > 0) {
		return false // a trusted peer's forwarded context may be keyed (keyHost)
	}
	for _, k := range slowFields {
		if len(rq.PeekCanonical(k)) > 0 {
			return false
		}
	}
	if p.cfg.UnkeyedBypass && p.fastHasUnkeyed(rq) { // unkeyed.go: serve bypasses it
		return false
	}
	f := fieldViews.Get().(*fastFields)
	defer func() {
		f.h, f.vals = nil, f.vals[:0]
		fieldViews.Put(f)
	}()
	f.h = rq
	rule, uri := requestRule(live.Rules, http.MethodGet, host, uri, f)
	if rule != nil && rule.Bypass {
		return false
	}
	h := keyHash(host, uri)
	e, fwd := p.lookup(f, host, uri, h)
	if e == nil {
		return miss && !head && p.fastMiss(ctx, host, uri, h, fwd, rule)
	}
	if e.Flags&flagHitForMiss != 0 {
		return false
	}
	age := entryAge(e, p.now())
	fr := entryFreshness(e)
	if age >= fr.Lifetime || fr.NoCache || !e.Pin() {
		return false // not fresh, or evicted since the lookup
	}
	if !p.writeFastHit(ctx, e, age, hitValue(fr.Lifetime - age)[0], head) {
		p.store.Unpin(e)
		return false
	}
	// fasthttp writes the body after the handler returns: the entry stays
	// pinned until then (it closes the user values once the response is
	// out, or the connection is gone).
	pin := pins.Get().(*pinnedEntry)
	pin.p, pin.e = p, e
	ctx.SetUserValue(pinKey{}, pin)
	if len(rq.PeekCanonical(inmKey)) > 0 || len(rq.PeekCanonical(imsKey)) > 0 || len(rq.PeekCanonical(rangeKey)) > 0 {
		p.fastSpecial(ctx, e, f, head)
	}
	return true
}

// pinKey is the user-value key of a fast hit's pinnedEntry.
type pinKey struct{}

// pinnedEntry unpins an entry when fasthttp closes it, after the response
// is written.
type pinnedEntry struct {
	p *Proxy
	e *cachestore.Entry
}

// Close implements io.Closer.
func (x *pinnedEntry) Close() error {
	x.p.store.Unpin(x.e)
	x.p, x.e = nil, nil
	pins.Put(x)
	return nil
}

var pins = sync.Pool{New: func() any { return new(pinnedEntry) }}

var (
	inmKey   = []byte("If-None-Match")
	imsKey   = []byte("If-Modified-Since")
	rangeKey = []byte("Range")
)

// fastSpecial turns a hit written by writeFastHit into the answer to a
// conditional or Range request (specialFor decides, as for serveSpecial):
// a 304, a 206 of one range (a view of the shared body) or a 416;
// otherwise the 200 stands.
func (p *Proxy) fastSpecial(ctx *fasthttp.RequestCtx, e *cachestore.Entry, f *fastFields, head bool) {
	rh := &ctx.Response.Header
	body := e.Body.Bytes()
	sp := specialFor(f, int(e.Status), e, int64(len(body)))
	switch sp.code {
	case http.StatusNotModified:
		for _, k := range notModifiedDrop {
			rh.Del(k)
		}
		ctx.Response.ResetBody()
		p.notModified.Add(1)
	case http.StatusRequestedRangeNotSatisfiable:
		rh.Set("Content-Range", sp.contentRange())
		ctx.Response.SetBodyRaw(nil)
	case http.StatusPartialContent:
		rh.Set("Content-Range", sp.contentRange())
		ctx.Response.SetBodyRaw(body[sp.start : sp.end+1]) // a view of the shared buffer, not a copy
		p.ranges.Add(1)
	default:
		return
	}
	rh.SetStatusCode(sp.code)
	if !head {
		p.served.Add(int64(len(ctx.Response.Body()) - len(body)))
	}
}

// logFastHit writes the access log line of a hit answered by fastHit.
func (p *Proxy) logFastHit(ctx *fasthttp.RequestCtx, start time.Time) {
	rq := &ctx.Request.Header
	r := &http.Request{
		Method:     string(rq.Method()),
		RequestURI: string(rq.RequestURI()),
		Proto:      string(rq.Protocol()),
		Host:       string(rq.Host()),
		RemoteAddr: ctx.RemoteAddr().String(),
		Header:     http.Header{},
		URL:        &url.URL{},
	}
	for _, k := range []string{"Referer", "User-Agent"} {
		if v := rq.Peek(k); len(v) > 0 {
			r.Header[k] = []string{string(v)}
		}
	}
	var n int64
	if !ctx.IsHead() {
		n = int64(len(ctx.Response.Body()))
	}
	p.writeAccess(r, xCache[StatusHit][0], start, ctx.Response.StatusCode(), n, 0, time.Since(start))
}

// slowFields are request fields whose presence sends a GET to the full
// path: directives (RFC 9111 §5.2.1) and Upgrade.
var (
	xfProtoKey = []byte("X-Forwarded-Proto")
	xfHostKey  = []byte("X-Forwarded-Host")
)

var slowFields = [][]byte{[]byte("Cache-Control"), []byte("Pragma"), []byte("Upgrade")}

// writeFastHit writes a stored response as a hit. It allocates nothing
// once the entry's header block has its fast form.
func (p *Proxy) writeFastHit(ctx *fasthttp.RequestCtx, e *cachestore.Entry, age time.Duration, cs string, head bool) bool {
	t := p.fastHeadOf(e, &ctx.Response.Header)
	if t == nil {
		return false
	}
	rh := &ctx.Response.Header
	t.hdr.CopyTo(rh)
	if v := validatorsOf(e); v != nil {
		if v.v[0] != "" {
			rh.AddBytesKV(etagKey, s2b(v.v[0]))
		}
		if v.v[1] != "" {
			rh.AddBytesKV(lastModifiedKey, s2b(v.v[1]))
		}
	}
	rh.SetStatusCode(int(e.Status))
	copy(rh.PeekCanonical(dateKey), p.dates.get(e.Date)[0])
	rh.SetCanonical(ageKey, s2b(ageValue(age)[0]))
	rh.SetCanonical(xCacheKey, s2b(xCache[StatusHit][0]))
	rh.SetCanonical(cacheStatusKey, s2b(cs))
	body := e.Body.Bytes()
	checkBody(e)
	// The body is the shared, immutable buffer: fasthttp writes it after
	// this returns, with the entry pinned until then (see fastHit).
	ctx.Response.SetBodyRaw(body)
	p.counts[StatusHit].Add(1)
	if !head {
		p.served.Add(int64(len(body)))
	}
	return true
}

var (
	dateKey         = []byte("Date")
	ageKey          = []byte("Age")
	xCacheKey       = []byte("X-Cache")
	cacheStatusKey  = []byte("Cache-Status")
	etagKey         = []byte("Etag")
	lastModifiedKey = []byte("Last-Modified")
)

// fastHead is a header block's fast form: the block in fasthttp's parsed
// form, with a Date field the hit overwrites. A hit copies it (no
// per-field work) and adds the entry's validators, which blocks do not hold
// (see validators), so one form serves every key whose other fields match.
type fastHead struct {
	hdr *fasthttp.ResponseHeader // nil: the block does not parse; such hits take the full path
}

// datePlaceholder has the length of every IMF-fixdate (RFC 9110 §5.6.7).
const datePlaceholder = "Thu, 01 Jan 1970 00:00:00 GMT"

// fastHeadCost estimates the heap of a block's fast form: the fastHead,
// the parsed header, its field array and a copy of every name and value.
func fastHeadCost(blockLen, fields int) int64 {
	return int64(400 + 64*(fields+1) + blockLen + len(datePlaceholder))
}

// fastHeadOf returns the fast form of e's header block, building it on first
// use. like is a response header made by the server: the fast form takes its
// settings (no default Date) from it.
func (p *Proxy) fastHeadOf(e *cachestore.Entry, like *fasthttp.ResponseHeader) *fastHead {
	b, _ := e.Header.Body().Aux().(*headerBlock)
	if b == nil {
		return nil
	}
	if t := b.fast.Load(); t != nil {
		if t.hdr == nil {
			return nil
		}
		return t
	}
	if !noDefaultDate(like) {
		return nil // not a response of FastServer's: build the form with one that is
	}
	t := &fastHead{hdr: parseFastHead(e.Header.Bytes(), like)}
	b.fast.CompareAndSwap(nil, t)
	if t = b.fast.Load(); t.hdr == nil {
		return nil
	}
	return t
}

// noDefaultDate reports whether h writes no Date of its own (the server's
// NoDefaultDate), which the fast form must inherit: fasthttp has no getter
// for it, so an empty copy of h is rendered.
func noDefaultDate(h *fasthttp.ResponseHeader) bool {
	var probe fasthttp.ResponseHeader
	h.CopyTo(&probe)
	probe.ResetConnectionClose()
	for _, k := range probe.PeekKeys() {
		probe.DelBytes(k)
	}
	return !bytes.Contains(probe.Header(), []byte("\r\nDate: "))
}

// parseFastHead parses a stored block (see renderHeader) behind a status line
// and a Date placeholder, or returns nil if fasthttp refuses it. The result
// keeps like's "no default Date" setting: fasthttp writes the Date field it
// holds instead of the current time only then, and a parsed header is the
// only way a Date field gets in (Set drops it).
func parseFastHead(block []byte, like *fasthttp.ResponseHeader) *fasthttp.ResponseHeader {
	raw := make([]byte, 0, len(block)+64)
	raw = append(raw, "HTTP/1.1 200 OK\r\nDate: "+datePlaceholder+"\r\n"...)
	raw = append(raw, block...)
	raw = append(raw, "\r\n"...)
	h := new(fasthttp.ResponseHeader)
	like.CopyTo(h)
	if err := h.Read(bufio.NewReaderSize(bytes.NewReader(raw), len(raw)+16)); err != nil {
		return nil
	}
	if !bytes.Equal(h.PeekCanonical(dateKey), []byte(datePlaceholder)) {
		return nil
	}
	// The hit sets the status; its line then comes from fasthttp's table
	// of status lines (the parsed "HTTP/1.1" and "OK" would stay on it).
	h.SetProtocol(nil)
	h.SetStatusMessage(nil)
	return h
}

// fastFields is the policy.Fields view of a fasthttp request header.
type fastFields struct {
	h    *fasthttp.RequestHeader
	vals []string
}

// Values implements policy.Fields. Like net/http's header map, it holds no
// Host field (the Host is the key's own part).
func (f *fastFields) Values(name string) []string {
	if name == "Host" {
		return nil
	}
	all := f.h.PeekAll(name)
	if len(all) == 0 {
		return nil
	}
	f.vals = f.vals[:0]
	for _, v := range all {
		f.vals = append(f.vals, b2s(v))
	}
	return f.vals
}

var fieldViews = sync.Pool{New: func() any { return &fastFields{vals: make([]string, 0, 4)} }}

// validFieldNames reports whether every field name of h is a token.
func validFieldNames(h *fasthttp.RequestHeader) bool {
	for k := range h.All() {
		if len(k) == 0 {
			return false
		}
		for _, c := range k {
			if !tokenByte[c] {
				return false
			}
		}
	}
	return true
}

// tokenByte[c] reports whether c is a tchar (RFC 9110 §5.6.2).
var tokenByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// hasUpper reports whether s has an upper-case ASCII letter.
func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// b2s views b as a string without copying; b must not change while the
// string is used.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// s2b views s as bytes without copying; they must not be written.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// The full path on the fast listener.

// slowKey is the user-value key of a request's slowState.
type slowKey struct{}

// slowState carries what the net/http handler of a request on the fast
// listener tells the listener once the handler's header is out: the Date
// the handler set (fasthttp drops a Date set through its API),
// and the Content-Length (-1: none, or trailers follow the body).
type slowState struct {
	date   string
	length int64
}

// slowWriter wraps the adaptor's writer so that the Date the handler sets
// reaches the fast listener (see addDate).
func slowWriter(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	ctx, _ := r.Context().(*fasthttp.RequestCtx)
	if ctx == nil {
		return w
	}
	st, _ := ctx.UserValue(slowKey{}).(*slowState)
	if st == nil {
		return w
	}
	return &dateWriter{ResponseWriter: w, st: st}
}

// dateWriter records the Date field of the response header when it is
// committed.
type dateWriter struct {
	http.ResponseWriter
	st        *slowState
	committed bool
}

func (d *dateWriter) commit() {
	if !d.committed {
		d.committed = true
		h := d.Header()
		d.st.date = strings.Clone(h.Get("Date"))
		if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && n >= 0 && len(h["Trailer"]) == 0 {
			d.st.length = n
		}
	}
}

// WriteHeader implements http.ResponseWriter.
func (d *dateWriter) WriteHeader(code int) {
	if code >= 200 {
		d.commit()
	}
	d.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (d *dateWriter) Write(b []byte) (int, error) {
	d.commit()
	return d.ResponseWriter.Write(b)
}

// Flush implements http.Flusher. A response of known length up to
// smallBody is not flushed: the adaptor then sends it whole, with its
// Content-Length, once the handler returns.
func (d *dateWriter) Flush() {
	d.commit()
	if d.st.length >= 0 && d.st.length <= smallBody {
		return
	}
	if f, ok := d.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// smallBody is the largest body of known length the fast listener's full
// path holds back until it is complete (see dateWriter.Flush).
const smallBody = 64 << 10

// Unwrap lets http.ResponseController reach the adaptor's writer (Hijack).
func (d *dateWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// addDate gives a response from the full path its Date: the handler's, or
// the current time. fasthttp takes a Date field only from a parsed header,
// so the header is written out with the field and parsed back (a few
// microseconds, on a path that has just made an upstream request).
func addDate(h *fasthttp.ResponseHeader, date string) {
	if len(h.PeekCanonical(dateKey)) > 0 {
		return
	}
	if _, err := http.ParseTime(date); err != nil || len(date) != len(datePlaceholder) {
		date = time.Now().UTC().Format(http.TimeFormat)
	}
	buf := headBufs.Get().(*[]byte)
	raw := h.AppendBytes((*buf)[:0])
	i := bytes.Index(raw, []byte("\r\n"))
	if i < 0 {
		headBufs.Put(buf)
		return
	}
	out := make([]byte, 0, len(raw)+len(date)+8)
	out = append(out, raw[:i+2]...)
	out = append(out, "Date: "...)
	out = append(out, date...)
	out = append(out, "\r\n"...)
	out = append(out, raw[i+2:]...)
	*buf = raw
	headBufs.Put(buf)
	_ = h.Read(bufio.NewReaderSize(bytes.NewReader(out), len(out)+16))
}

var headBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// ownRequest copies what r holds of the fast listener's buffers (the
// adaptor's strings view them, and fasthttp reuses them once the handler
// returns, while a fetch may still be running): method, host, target,
// header and body.
func ownRequest(r *http.Request) *http.Request {
	if _, ok := r.Context().(*fasthttp.RequestCtx); !ok {
		return r
	}
	r.Method = strings.Clone(r.Method)
	r.Proto = strings.Clone(r.Proto)
	r.Host = strings.Clone(r.Host)
	r.RequestURI = strings.Clone(r.RequestURI)
	u := *r.URL
	u.Scheme, u.Opaque, u.Host = strings.Clone(u.Scheme), strings.Clone(u.Opaque), strings.Clone(u.Host)
	u.Path, u.RawPath = strings.Clone(u.Path), strings.Clone(u.RawPath)
	u.RawQuery, u.Fragment, u.RawFragment = strings.Clone(u.RawQuery), strings.Clone(u.Fragment), strings.Clone(u.RawFragment)
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			u.User = url.UserPassword(strings.Clone(u.User.Username()), strings.Clone(pw))
		} else {
			u.User = url.User(strings.Clone(u.User.Username()))
		}
	}
	r.URL = &u
	h := make(http.Header, len(r.Header))
	for k, vs := range r.Header {
		c := make([]string, len(vs))
		for i, v := range vs {
			c[i] = strings.Clone(v)
		}
		h[strings.Clone(k)] = c
	}
	r.Header = h
	for i, v := range r.TransferEncoding {
		r.TransferEncoding[i] = strings.Clone(v)
	}
	if r.ContentLength > 0 {
		// The adaptor's body is a reader over the request's buffer; a
		// transport may still be sending it when the handler returns.
		body := make([]byte, r.ContentLength)
		n, _ := io.ReadFull(r.Body, body)
		r.Body = io.NopCloser(bytes.NewReader(body[:n]))
	}
	return r
}
