package proxy

import (
	"context"
	"errors"
	"io"
	"iter"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"dedupcache/policy"
)

// The fetch engine. A fetch (a miss, a revalidation, a HEAD answered from
// a GET, a background refresh) goes upstream through fasthttp's HostClient:
// pooled keep-alive connections, the request written and the response
// header read on the fetcher's goroutine, the body streamed from the
// connection into the stream buffer. net/http's client with ReverseProxy
// cost about half of a miss's CPU (BENCHMARKS.md, issue 11). Requests sent
// straight upstream (bypass, upgrades, request bodies) still go through
// ReverseProxy, which streams request bodies and tunnels upgrades.
//
// Both build the upstream request with outbound: a fetch runs the same
// Rewrite on a ProxyRequest made the way ReverseProxy makes one
// (outReq.build), then copies the result into a fasthttp request.

// upstreamClient is the fetch engine's connection pool to the upstream.
type upstreamClient struct {
	hc *fasthttp.HostClient

	mu    sync.Mutex
	conns map[*upConn]struct{} // open connections, closed by close
}

// newUpstreamClient returns the pool for cfg's upstream.
func newUpstreamClient(ctx context.Context, cfg Config) *upstreamClient {
	u := &upstreamClient{conns: make(map[*upConn]struct{})}
	addr := cfg.Upstream.Host
	tls := cfg.Upstream.Scheme == "https"
	if cfg.Upstream.Port() == "" {
		port := "80"
		if tls {
			port = "443"
		}
		addr = net.JoinHostPort(cfg.Upstream.Hostname(), port)
	}
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	u.hc = &fasthttp.HostClient{
		Addr:  addr,
		IsTLS: tls,
		Dial: func(addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			// TLS may leave records (session tickets) on an idle
			// connection: the peek for stray bytes is for plain TCP.
			return u.track(c, cfg.ResponseHeaderTimeout, cfg.ReadTimeout, !tls), nil
		},
		// Fills are bounded by max_inflight (budget); a forward never
		// uses this pool.
		MaxConns:                  max(cfg.MaxInflight, 1),
		MaxConnWaitTimeout:        10 * time.Second,
		MaxIdleConnDuration:       cfg.IdleConnTimeout,
		MaxIdemponentCallAttempts: 2,
		RetryIfErr:                retryFetch,
		// The response header must fit in the read buffer (net/http's
		// client allows up to 1 MiB); buffers are pooled per exchange, not
		// held per idle connection.
		ReadBufferSize:                64 << 10,
		NoDefaultUserAgentHeader:      true,
		DisablePathNormalizing:        true,
		StreamResponseBody:            true,
		DisableHeaderNamesNormalizing: false,
	}
	return u
}

// retryFetch retries a fetch once when a pooled connection turned out to
// be closed before any of the response arrived (the upstream closed it
// while idle), as net/http's client does; never after a timeout, which
// would multiply the wait and the origin's load.
func retryFetch(_ *fasthttp.Request, attempts int, err error) (bool, bool) {
	if attempts > 1 {
		return false, false
	}
	return false, errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, errUnsolicited)
}

// track wraps a new upstream connection and records it for close.
func (u *upstreamClient) track(c net.Conn, header, idle time.Duration, peek bool) *upConn {
	uc := &upConn{Conn: c, u: u, header: header, idle: idle, peek: peek}
	u.mu.Lock()
	u.conns[uc] = struct{}{}
	u.mu.Unlock()
	return uc
}

// close closes every upstream connection, idle or busy: a fetch waiting
// for a header fails at once (the proxy is closing; its context is
// cancelled already).
func (u *upstreamClient) close() {
	u.hc.CloseIdleConnections()
	u.mu.Lock()
	cs := make([]*upConn, 0, len(u.conns))
	for c := range u.conns {
		cs = append(cs, c)
	}
	u.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// codedKey marks a fetch retried through ReverseProxy because its
// response used transfer codings fasthttp does not decode (see
// codingTransport).
type codedKey struct{}

// fetchUpstream performs fetch f's exchange with the upstream and writes
// the response to the stream's sink k: header (after modifyResponse has
// decided what the stream carries) and body. It reports false when the
// body did not arrive whole.
func (p *Proxy) fetchUpstream(k *sink, f *fill) bool {
	in := f.in
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	p.buildFetch(in, req)
	resp.Header.SetNoDefaultContentType(true)
	err := p.up.hc.Do(req, resp)
	if err != nil && (errors.Is(err, fasthttp.ErrUnsupportedTransferEncoding) ||
		strings.Contains(err.Error(), "unsupported transfer-encoding")) {
		// "gzip, chunked", chunked beside Content-Length: net/http's side
		// decodes them (the origin sees the request twice).
		coded := in.WithContext(context.WithValue(in.Context(), codedKey{}, true))
		return p.serveFetch(k, coded)
	}
	if err == nil && resp.StatusCode() == http.StatusNotModified && p.misfit304(in, &resp.Header) {
		// RFC 9111 §4.3.4: a 304 whose validator is not the stored
		// response's updates nothing, and the client asked for a full
		// response (the fetch's conditionals are the cache's own). Ask
		// again without validators: relaying the 304 would answer an
		// unconditional request with no body.
		_ = resp.CloseBodyStream()
		resp.Reset()
		resp.Header.SetNoDefaultContentType(true)
		req.Reset()
		p.buildFetch(in, req)
		err = p.up.hc.Do(req, resp)
	}
	if err != nil {
		p.errorHandler(k, in, err)
		return true
	}
	defer func() { _ = resp.CloseBodyStream() }()
	hr := &http.Response{
		StatusCode:    resp.StatusCode(),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        responseHeader(&resp.Header),
		ContentLength: int64(resp.Header.ContentLength()),
		Body:          http.NoBody,
		Request:       in,
	}
	if hr.ContentLength < 0 {
		hr.ContentLength = -1
	}
	if t := resp.Header.Peek(fasthttp.HeaderTrailer); len(t) > 0 {
		hr.Trailer = http.Header{}
		for _, name := range strings.Split(string(t), ",") {
			if name = strings.TrimSpace(name); name != "" {
				hr.Trailer[http.CanonicalHeaderKey(name)] = nil
			}
		}
	}
	_ = p.modifyResponse(hr)
	k.h = hr.Header
	k.WriteHeader(hr.StatusCode)
	if k.s.kind != kindStore && k.s.kind != kindPass {
		return true // answered from an entry: the body is not needed
	}
	body := resp.BodyStream()
	if body == nil {
		_, err := k.Write(resp.Body())
		return err == nil
	}
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := k.Write(buf[:n]); werr != nil {
				return false
			}
		}
		if rerr == io.EOF {
			return true
		}
		if rerr != nil {
			return false
		}
	}
}

// misfit304 reports whether a 304 (its header h) answering fetch in's
// revalidation fits no stored response: its strong ETag or Last-Modified
// is not the stale entry's (policy.CanFreshen). It marks the fetch
// unconditional, for buildFetch to ask again without validators, and
// counts the 304 as an upstream response.
func (p *Proxy) misfit304(in *http.Request, h *fasthttp.ResponseHeader) bool {
	f, _ := in.Context().Value(fillKey{}).(*fill)
	if f == nil || f.stale == nil || f.unconditional {
		return false
	}
	if policy.CanFreshen(entryHeader(f.stale), responseHeader(h)) {
		return false
	}
	f.unconditional = true
	p.upstreamDone(f, http.StatusNotModified, p.now())
	return true
}

// serveFetch sends fetch in through ReverseProxy to the sink k, and
// reports false if the exchange broke off (a panic, as ReverseProxy ends a
// response it cannot finish).
func (p *Proxy) serveFetch(k *sink, in *http.Request) (clean bool) {
	defer func() {
		if pv := recover(); pv != nil {
			if pv != http.ErrAbortHandler {
				p.log.Error("upstream fetch panicked", "key", k.s.key, "panic", pv)
			}
			clean = false
		}
	}()
	p.rp.ServeHTTP(k, in)
	return true
}

// buildFetch writes the upstream request for fetch in into req: the
// request outbound makes for in, as ReverseProxy would send it.
func (p *Proxy) buildFetch(in *http.Request, req *fasthttp.Request) {
	o := outRequests.Get().(*outReq)
	defer o.release()
	out := o.build(in)
	p.outbound(&httputil.ProxyRequest{In: in, Out: out})
	req.Header.SetMethod(out.Method)
	req.SetRequestURI(out.URL.Scheme + "://" + out.URL.Host + out.URL.RequestURI())
	if out.Host != "" {
		req.Header.SetHost(out.Host)
		req.UseHostHeader = true
	}
	for name, vs := range out.Header {
		for _, v := range vs {
			req.Header.Add(name, v)
		}
	}
	if out.Method != http.MethodGet && out.Method != http.MethodHead {
		if f, _ := in.Context().Value(fillKey{}).(*fill); f != nil && f.post {
			req.SetBody(f.postBody)
		}
	}
}

// outReq holds an outbound request while buildFetch builds it (pooled:
// nothing keeps it once its fields are copied into fasthttp's request).
type outReq struct {
	r http.Request
	u url.URL
	h http.Header
}

// outRequests pools outReqs.
var outRequests = sync.Pool{New: func() any { return &outReq{h: make(http.Header, 16)} }}

// build makes o the outbound request ReverseProxy would hand to Rewrite for
// in, as far as outbound reads and writes it (URL and header), and returns
// it: a copy without hop-by-hop fields (and those Connection names) and
// without the client's Forwarded and X-Forwarded-* fields.
func (o *outReq) build(in *http.Request) *http.Request {
	o.u = *in.URL
	for k, v := range in.Header {
		o.h[k] = v[:len(v):len(v)] // shared values: an append must copy
	}
	o.r = http.Request{Method: in.Method, URL: &o.u, Header: o.h, Proto: in.Proto, ProtoMajor: in.ProtoMajor, ProtoMinor: in.ProtoMinor}
	outFields(in, o.h)
	return &o.r
}

// release forgets the request and puts o back in the pool.
func (o *outReq) release() {
	clear(o.h)
	o.r, o.u = http.Request{}, url.URL{}
	outRequests.Put(o)
}

// outFields removes from h, a copy of in's header, what a proxy does not
// forward (see outReq.build).
func outFields(in *http.Request, h http.Header) {
	removeHopByHop(h)
	if v := in.Header["Te"]; len(v) > 0 && hasToken(v, "trailers") {
		h["Te"] = []string{"trailers"} // ReverseProxy keeps this one
	}
	for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		delete(h, k)
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = noUserAgent // no default: send none
	}
}

// noUserAgent is an empty User-Agent (full: an append copies).
var noUserAgent = []string{""}[:1:1]

// hopHeaders are the hop-by-hop fields a proxy never forwards (RFC 9110
// §7.6.1), as ReverseProxy removes them.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop fields from h, and the fields its
// Connection field names.
func removeHopByHop(h http.Header) {
	for _, line := range h["Connection"] {
		for _, name := range strings.Split(line, ",") {
			if name = strings.TrimSpace(name); name != "" {
				delete(h, http.CanonicalHeaderKey(name))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// hasToken reports whether a comma-separated field holds token.
func hasToken(lines []string, token string) bool {
	for _, line := range lines {
		for _, t := range strings.Split(line, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// responseHeader converts an upstream response header to an http.Header
// without its hop-by-hop fields, as ReverseProxy passes a response on.
func responseHeader(rh *fasthttp.ResponseHeader) http.Header {
	h := fieldsHeader(rh.All(), commonNames, "")
	removeHopByHop(h)
	return h
}

// fieldsHeader builds an http.Header from a fasthttp header's fields
// (names normalized as net/http's), leaving out the field named skip. It
// allocates little per field: names found in common are shared constants,
// every value points into one copy of the values' bytes, and every field's
// value slice into one array (each full, so that an Add reallocates). The
// fields are read once, into pooled scratch: a second pass over all, or
// counters the loop body updated, would put the loop's variables on the
// heap (all is a dynamic call, so its loop body escapes).
func fieldsHeader(all iter.Seq2[[]byte, []byte], common map[string]string, skip string) http.Header {
	sc := fieldScratch.Get().(*[][]byte)
	for k, v := range all {
		*sc = append(*sc, k, v)
	}
	kv := *sc
	n, size := len(kv)/2, 0
	for i := 0; i < len(kv); i += 2 {
		size += len(kv[i+1])
		if _, ok := common[string(kv[i])]; !ok {
			size += len(kv[i])
		}
	}
	h := make(http.Header, n)
	buf := make([]byte, 0, size)
	vals := make([]string, 0, n)
	for i := 0; i < len(kv); i += 2 {
		k, v := kv[i], kv[i+1]
		if string(k) == skip {
			continue
		}
		key, ok := common[string(k)]
		if !ok {
			key, buf = appendString(buf, k)
		}
		var val string
		val, buf = appendString(buf, v)
		if old, dup := h[key]; dup {
			h[key] = append(old, val) // full: a new array
			continue
		}
		vals = append(vals, val)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if cap(kv) <= maxScratchFields {
		clear(kv) // the views point into the fasthttp header's buffers
		*sc = kv[:0]
		fieldScratch.Put(sc)
	}
	return h
}

// fieldScratch holds fieldsHeader's field views (name, value, name, ...).
// One that grew past maxScratchFields for a header with many fields is
// left to the collector rather than kept.
var fieldScratch = sync.Pool{New: func() any { s := make([][]byte, 0, 64); return &s }}

const maxScratchFields = 1024

// appendString appends b to buf and returns a string of the bytes it
// appended, and buf. buf must have room (its capacity is never exceeded,
// so the bytes never move).
func appendString(buf, b []byte) (string, []byte) {
	if len(b) == 0 {
		return "", buf
	}
	start := len(buf)
	buf = append(buf, b...)
	return unsafe.String(&buf[start], len(b)), buf
}

// commonNames are response field names, in net/http's canonical form, that
// responseHeader uses instead of allocating a copy.
var commonNames = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept-Ranges", "Access-Control-Allow-Origin", "Age", "Cache-Control", "Cdn-Cache-Control",
		"Connection", "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Location", "Content-Range", "Content-Security-Policy", "Content-Type", "Date", "Etag",
		"Expires", "Keep-Alive", "Last-Modified", "Link", "Location", "Pragma", "Server",
		"Set-Cookie", "Strict-Transport-Security", "Surrogate-Control", "Surrogate-Key", "Trailer",
		"Transfer-Encoding", "Vary", "Via", "X-Content-Type-Options", "X-Frame-Options",
		"X-Powered-By", "X-Request-Id",
	} {
		m[k] = k
	}
	return m
}()
