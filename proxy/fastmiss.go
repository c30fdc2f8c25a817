package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"dedupcache/rules"
)

// The miss path on the fast listener. A plain GET that finds nothing
// stored, and no fetch in flight for its key, leads a fetch (the same
// stream, fetch engine and commit as serve's miss) and writes the response
// from the stream to its client without net/http: the header block
// rendered and parsed once into fasthttp's form, a body of known length up
// to smallBody sent whole once it is in (copied into the response: the
// stream's buffer goes back to its pool), a longer one streamed with its
// Content-Length, one of unknown
// length chunked. What the fetch turns into besides a response (an error, a
// stored entry) is answered by follow through the adaptor, like every
// waiter and every request with a conditional, a Range or directives.

// fastMiss answers ctx by leading a fetch for its key, when the request
// allows (see above). It reports false, having written nothing, when the
// full path must answer instead.
func (p *Proxy) fastMiss(ctx *fasthttp.RequestCtx, host, uri string, h uint64, fwd string, rule *rules.Rule) bool {
	rq := &ctx.Request.Header
	if len(rq.PeekCanonical(inmKey)) > 0 || len(rq.PeekCanonical(imsKey)) > 0 || len(rq.PeekCanonical(rangeKey)) > 0 {
		return false // evaluated against the full response by follow
	}
	key := keyString(host, uri) // a copy: host and uri view the request's buffer
	if p.ctx.Err() != nil || p.streams.get(key) != nil {
		return false // a waiter takes the full path
	}
	f := &fill{status: StatusMiss, fwd: fwd, host: key[:len(host)], uri: key[len(host)+1:], key: key, hash: h, req: noDirectives}
	if rule != nil {
		f.rule = rule.String()
	}
	r := fastRequest(ctx)
	var rd *streamReader
	s, leader := p.streams.join(key, func() *stream {
		s := p.newFetch(r, f)
		if s != nil {
			rd, _ = s.attach()
		}
		return s
	})
	if s == nil || !leader {
		return false // the fill limit, or another request started the fetch just now
	}
	p.startFetch(s)
	<-s.ready // the fetch gets a header or fails within the upstream timeouts
	if s.kind != kindStore && s.kind != kindPass {
		p.fastFollow(ctx, r, f, s, rd)
		return true
	}
	p.fastStreamOut(ctx, s, rd)
	return true
}

// fastRequest is the client's request as the fetch needs it: an
// http.Request that owns its strings (fasthttp reuses the request's
// buffers once the handler returns, while the fetch may still run).
func fastRequest(ctx *fasthttp.RequestCtx) *http.Request {
	rq := &ctx.Request.Header
	target := string(rq.RequestURI())
	u, err := url.ParseRequestURI(target)
	if err != nil {
		u = &url.URL{Path: target}
	}
	r := http.Request{ // on the stack: WithContext makes the one copy
		Method:     http.MethodGet,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     requestHeader(rq),
		Host:       string(rq.Host()),
		RequestURI: target,
		RemoteAddr: addrString(ctx.RemoteAddr()),
		Body:       http.NoBody,
	}
	if !rq.IsHTTP11() {
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	return r.WithContext(fastBase)
}

// requestHeader converts a client's request header to an http.Header
// without Host (net/http keeps it in Request.Host), allocating as
// responseHeader does (fieldsHeader).
func requestHeader(rq *fasthttp.RequestHeader) http.Header {
	return fieldsHeader(rq.All(), commonRequestNames, "Host")
}

// commonRequestNames are request field names, in net/http's canonical
// form, that requestHeader uses instead of allocating a copy.
var commonRequestNames = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Length", "Content-Type", "Cookie", "Dnt", "Forwarded",
		"If-Match", "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since",
		"Origin", "Pragma", "Priority", "Range", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile",
		"Sec-Ch-Ua-Platform", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User",
		"Te", "Upgrade-Insecure-Requests", "User-Agent", "Via", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id", "X-Requested-With",
	} {
		m[k] = k
	}
	return m
}()

// addrString formats a peer address as net/http's RemoteAddr does
// ("127.0.0.1:4711", "[::1]:4711"), cheaper for TCP addresses.
func addrString(a net.Addr) string {
	t, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ap := t.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// fastStreamOut writes the leader's response from a stream that carries
// one (kindStore, kindPass).
func (p *Proxy) fastStreamOut(ctx *fasthttp.RequestCtx, s *stream, rd *streamReader) {
	rh := &ctx.Response.Header
	setFastHeader(rh, s.status, s.header)
	p.counts[s.fill.status].Add(1)
	if s.status == http.StatusNotModified || s.status == http.StatusNoContent || s.status < 200 {
		rd.detach()
		return
	}
	length := int64(-1)
	if s.pend != nil {
		length = s.pend.length
	} else if n, err := strconv.ParseInt(s.header.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
		length = n
	}
	if length >= 0 && length <= smallBody {
		ok := readBody(&ctx.Response, rd, length)
		rd.detach()
		if !ok {
			// Cut off: the client's response breaks off too (its header,
			// then the connection drops), never a short body as if whole.
			ctx.Response.ResetBody()
			ctx.Response.SetBodyStream(cutBody{}, int(length))
		}
		return
	}
	// fasthttp writes the header at once, then the body as the fetch
	// reads it; a body that ends short drops the connection (short of
	// its Content-Length, or without the last chunk).
	ctx.Response.ImmediateHeaderFlush = true
	ctx.Response.SetBodyStream(&streamBody{p: p, rd: rd}, int(length))
}

// readBody reads a body of the given length from rd into resp's body (a
// copy: the stream's buffer goes back to its pool once rd detaches). It
// reports false if the body ended short.
func readBody(resp *fasthttp.Response, rd *streamReader, length int64) bool {
	n := int64(0)
	for n < length {
		b, done, _, _ := rd.next(rd.s.p.ctx)
		if done {
			return false
		}
		resp.AppendBody(b)
		n += int64(len(b))
	}
	return n == length
}

// cutBody is the body of a response whose upstream body broke off.
type cutBody struct{}

func (cutBody) Read([]byte) (int, error) { return 0, errCutOff }

// errCutOff ends a streamed body whose upstream body broke off.
var errCutOff = errors.New("proxy: upstream body cut off")

// streamBody is a stream's body as an io.Reader for fasthttp, which
// closes it once written (or when the client has gone).
type streamBody struct {
	p    *Proxy
	rd   *streamReader
	left []byte
	once sync.Once
}

func (b *streamBody) Read(dst []byte) (int, error) {
	for len(b.left) == 0 {
		chunk, done, complete, _ := b.rd.next(b.p.ctx)
		if done {
			if !complete {
				return 0, errCutOff
			}
			return 0, io.EOF
		}
		b.left = chunk
	}
	n := copy(dst, b.left)
	b.left = b.left[n:]
	return n, nil
}

// Close detaches the reader from the stream.
func (b *streamBody) Close() error {
	b.once.Do(b.rd.detach)
	return nil
}

// setFastHeader sets a response header from a net/http header: rendered
// with its status line and parsed by fasthttp, the only way the origin's
// Date gets in (fasthttp drops a Date set through its API). A header
// without a Date gets the current time.
func setFastHeader(rh *fasthttp.ResponseHeader, status int, h http.Header) {
	buf := headBufs.Get().(*[]byte)
	raw := append((*buf)[:0], "HTTP/1.1 "...)
	raw = strconv.AppendInt(raw, int64(status), 10)
	raw = append(raw, ' ')
	raw = append(raw, fasthttp.StatusMessage(status)...)
	raw = append(raw, "\r\n"...)
	if len(h["Date"]) == 0 {
		raw = append(raw, "Date: "...)
		raw = time.Now().UTC().AppendFormat(raw, http.TimeFormat)
		raw = append(raw, "\r\n"...)
	}
	for k, vs := range h {
		for _, v := range vs {
			raw = append(raw, k...)
			raw = append(raw, ": "...)
			raw = append(raw, v...)
			raw = append(raw, "\r\n"...)
		}
	}
	raw = append(raw, "\r\n"...)
	hr := headReaders.Get().(*headReader)
	hr.r.Reset(raw)
	br := &hr.br
	if len(raw)+16 > headReaderSize {
		br = bufio.NewReaderSize(&hr.r, len(raw)+16) // the whole header must fit
	} else {
		br.Reset(&hr.r)
	}
	if err := rh.Read(br); err != nil {
		// Cannot happen for a header net/http or fasthttp parsed; the
		// status and fields it has are kept.
		rh.SetStatusCode(status)
	}
	hr.r.Reset(nil)
	hr.br.Reset(nil)
	headReaders.Put(hr)
	// Parsed without a Content-Length, a response would read to the
	// close: fasthttp infers Connection: close. The body is framed when
	// it is written (a length, or chunked), and the connection stays.
	rh.ResetConnectionClose()
	*buf = raw
	headBufs.Put(buf)
}

// headReader is what setFastHeader parses a rendered header from.
type headReader struct {
	r  bytes.Reader
	br bufio.Reader
}

// headReaderSize is the buffer of a pooled headReader: most headers fit.
const headReaderSize = 4 << 10

var headReaders = sync.Pool{New: func() any {
	hr := new(headReader)
	hr.br = *bufio.NewReaderSize(nil, headReaderSize)
	return hr
}}

// fastFollow answers the leader of a fetch that did not turn into a
// response to stream (an error, a stored entry) with follow, through the
// adaptor.
func (p *Proxy) fastFollow(ctx *fasthttp.RequestCtx, r *http.Request, f *fill, s *stream, rd *streamReader) {
	p.runSlow(ctx, fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, ar *http.Request) {
		p.follow(slowWriter(w, ar), r, f, s, rd, true)
	})))
}
