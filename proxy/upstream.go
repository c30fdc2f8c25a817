package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// fillKey is the context key of the *fill of a forwarded request.
type fillKey struct{}

// forward sends r straight upstream and its response straight to the
// client, never storing it: requests that bypass the cache (unsafe
// methods, no-store, upgrades, bodies on GET) and waiters a fetch could
// not answer.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, f *fill) {
	if len(r.TransferEncoding) > 0 {
		// net/http drops a Content-Length sent beside Transfer-Encoding
		// before the request reaches us, so a request that had both cannot
		// be told apart: close the connection after every chunked request
		// (RFC 9112 §6.3), so that nothing sent after its body is read as
		// another request.
		w.Header().Set("Connection", "close")
		var ok bool
		if r, ok = readAhead(w, r); !ok {
			return
		}
	}
	f.method = r.Method
	f.post = isCachedPOST(r)
	f.w = w
	f.reqHeader = r.Header
	if f.host == "" {
		f.host, f.uri = keyParts(r)
	}
	f.reqTime = p.now()
	ctx := context.WithValue(r.Context(), fillKey{}, f)
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// errorHandler answers when the upstream could not be reached or did not
// answer in time: 502 or 504 with a short plain-text body. A fetch records
// the failure in its stream (or answers with stale content where RFC 5861
// allows), and its readers answer.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	f, _ := r.Context().Value(fillKey{}).(*fill)
	if f != nil && f.stream == nil && r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		return // the client went away; nobody to answer
	}
	status, msg := http.StatusBadGateway, "upstream unavailable"
	var ne interface{ Timeout() bool } // net.Error, and fasthttp's ErrTimeout
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		status, msg = http.StatusGatewayTimeout, "upstream timed out"
	}
	if rb, ok := r.Body.(*clientBody); ok && rb.err != nil {
		// The client's request body was malformed (bad chunk framing) or
		// cut off: its fault, not the upstream's.
		w.Header().Set("Connection", "close")
		http.Error(w, "malformed request body", http.StatusBadRequest)
		return
	}
	p.fills.upstream5.Add(1)
	now := p.now()
	if f != nil {
		p.upstreamDone(f, 0, now)
	}
	p.log.Warn("upstream error", "method", r.Method, "uri", r.URL.RequestURI(), "status", status, "err", err)
	if f != nil && f.stream != nil {
		s := f.stream
		if s.kind != 0 {
			return
		}
		if p.staleIfError(f, now) {
			// RFC 5861 §4: the stored response instead of the error.
			s.entry, s.entryAs = f.stale, StatusStale
			s.entryCS = fmt.Sprintf("%s; fwd=%s; detail=stale-if-error", cacheName, f.fwd)
			p.streams.forget(s)
			s.decided(kindEntry)
			return
		}
		if f.stale != nil {
			// RFC 9111 §5.2.2.2: a stale response that may not be reused
			// gets an error, 504 unless another is more applicable.
			status = http.StatusGatewayTimeout
		}
		s.errStatus = status
		p.streams.forget(s)
		s.decided(kindFailed)
		return
	}
	st, fwd := StatusMiss, "uri-miss"
	if f != nil {
		st, fwd = f.status, f.fwd
	}
	p.counts[st].Add(1)
	w.Header()["X-Cache"] = xCache[st]
	w.Header().Set("Cache-Status", cacheName+"; fwd="+fwd+"; detail=upstream-error")
	http.Error(w, msg, status)
}

// upstreamStats counts upstream responses by status class and their
// latency.
type upstreamStats struct {
	byClass [6]atomic.Int64 // [0] = no response (transport error)
	seconds atomic.Int64    // total latency, nanoseconds
	count   atomic.Int64
	observe func(seconds float64) // metrics hook, may be nil
}

// upstreamDone records an upstream exchange that ended with status (0: no
// response) at now.
func (p *Proxy) upstreamDone(f *fill, status int, now time.Time) {
	class := status / 100
	if class < 0 || class > 5 {
		class = 0
	}
	p.upstream.byClass[class].Add(1)
	d := now.Sub(f.reqTime)
	p.upstream.seconds.Add(int64(d))
	p.upstream.count.Add(1)
	if p.upstream.observe != nil {
		p.upstream.observe(d.Seconds())
	}
	if f.w != nil {
		noteUpstream(f.w, d)
	}
	if f.stream != nil {
		f.stream.took = d // for the leader's access log
	}
}

// readAheadMax is how much of a chunked request body is read, and checked,
// before anything is sent upstream.
const readAheadMax = 64 << 10

// readAhead reads up to readAheadMax of a chunked request body before the
// request goes upstream, so that a body with broken framing (a bad chunk
// size) gets a 400 and never reaches the origin. A longer body is checked
// as it streams (see clientBody). It reports false when it answered.
func readAhead(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return r, true
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, readAheadMax+1))
	if err != nil {
		http.Error(w, "malformed request body: "+err.Error(), http.StatusBadRequest)
		return r, false
	}
	r2 := r.Clone(r.Context())
	if len(head) <= readAheadMax {
		r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(head)), int64(len(head))
		r2.TransferEncoding = nil
		return r2, true
	}
	r2.Body = &clientBody{r: io.MultiReader(bytes.NewReader(head), r.Body), c: r.Body}
	return r2, true
}

// clientBody is a client's request body that remembers a read error, so
// that the error handler can tell a malformed or cut-off request body (400)
// from an upstream failure (502).
type clientBody struct {
	r   io.Reader
	c   io.Closer
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *clientBody) Close() error { return b.c.Close() }
