package proxy

import (
	"bufio"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
)

// codingTransport is the upstream RoundTripper: net/http's Transport, plus
// the transfer codings it refuses. net/http accepts a response whose
// Transfer-Encoding is exactly "chunked" and fails on any other (for
// example "gzip, chunked", which RFC 9112 §6.1 allows), which would turn a
// valid response into a 502. Transfer codings are hop-by-hop, so a proxy
// decodes them and relays the content (RFC 9112 §7). For GET and HEAD such
// a response is fetched again on a connection of its own, read by
// readCoded, and decoded; the origin then sees the request twice, the
// price of keeping net/http's pooled connections for every other response.
type codingTransport struct {
	tr   *http.Transport
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (t *codingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Context().Value(codedKey{}) != nil {
		return t.roundTripCoded(req) // the fetch engine met the codings already
	}
	resp, err := t.tr.RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "unsupported transfer encoding") ||
		(req.Method != http.MethodGet && req.Method != http.MethodHead) {
		return resp, err
	}
	return t.roundTripCoded(req)
}

// roundTripCoded sends req on a new connection that it closes after the
// response, and reads the response with readCoded.
func (t *codingTransport) roundTripCoded(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return nil, errors.New("proxy: transfer codings other than chunked are decoded on plain http upstreams only")
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	c, err := t.dial(req.Context(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(req.Context(), func() { c.Close() })
	out := req.Clone(req.Context())
	out.Close = true
	if err := out.Write(c); err != nil {
		stop()
		c.Close()
		return nil, err
	}
	resp, err := readCoded(bufio.NewReader(c), req)
	if err != nil {
		stop()
		c.Close()
		return nil, err
	}
	resp.Body = readCloser{resp.Body, closerFunc(func() error { stop(); return c.Close() })}
	return resp, nil
}

// closerFunc adapts a function to io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// readCoded reads a response whose Transfer-Encoding net/http refuses, and
// returns it with the transfer codings removed: chunked framing undone,
// gzip and deflate decoded (RFC 9112 §7.2), a body without a final chunked
// coding read to the end of the connection (§6.3). Unknown codings are an
// error (the caller answers 502).
func readCoded(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	tp := textproto.NewReader(br)
	var line string
	var hdr textproto.MIMEHeader
	var err error
	for {
		if line, err = tp.ReadLine(); err != nil {
			return nil, err
		}
		if hdr, err = tp.ReadMIMEHeader(); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(line, "HTTP/1.1 1") || strings.HasPrefix(line, "HTTP/1.1 101") {
			break // skip 1xx interim responses
		}
	}
	proto, status, ok := strings.Cut(line, " ")
	major, minor, okp := http.ParseHTTPVersion(proto)
	code, errc := strconv.Atoi(strings.SplitN(status, " ", 2)[0])
	if !ok || !okp || errc != nil || code < 100 || code > 999 {
		return nil, fmt.Errorf("proxy: malformed upstream status line %q", line)
	}
	h := http.Header(hdr)
	var codings []string
	for _, v := range h.Values("Transfer-Encoding") {
		for _, c := range strings.Split(v, ",") {
			if c = strings.ToLower(textproto.TrimString(c)); c != "" {
				codings = append(codings, c)
			}
		}
	}
	h.Del("Transfer-Encoding")
	h.Del("Content-Length") // RFC 9112 §6.3: Transfer-Encoding overrides it
	resp := &http.Response{
		Status: status, StatusCode: code, Proto: proto, ProtoMajor: major, ProtoMinor: minor,
		Header: h, ContentLength: -1, Request: req, Close: true,
	}
	if req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified {
		resp.Body, resp.ContentLength = http.NoBody, 0
		return resp, nil
	}
	var body io.Reader = br
	if n := len(codings); n > 0 && codings[n-1] == "chunked" {
		body = httputil.NewChunkedReader(br)
		codings = codings[:n-1]
	}
	for i := len(codings) - 1; i >= 0; i-- {
		switch codings[i] {
		case "gzip", "x-gzip":
			src := body
			body = lazy(func() (io.Reader, error) { return gzip.NewReader(src) })
		case "deflate":
			src := body
			body = lazy(func() (io.Reader, error) { return zlib.NewReader(src) })
		case "identity":
		default:
			return nil, fmt.Errorf("proxy: upstream transfer coding %q is not supported", codings[i])
		}
	}
	resp.Body = io.NopCloser(body)
	return resp, nil
}

// lazy returns a reader made by mk on the first Read (decoders read their
// header at construction; the body is read only when copied).
func lazy(mk func() (io.Reader, error)) io.Reader {
	return &lazyReader{mk: mk}
}

type lazyReader struct {
	mk  func() (io.Reader, error)
	r   io.Reader
	err error
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if l.r == nil && l.err == nil {
		l.r, l.err = l.mk()
	}
	if l.err != nil {
		return 0, l.err
	}
	return l.r.Read(p)
}
