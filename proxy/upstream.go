package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
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
		var err error
		if r, err = readAhead(r); err != nil {
			p.clientBodyError(w, r, f, err)
			return
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		// Watched as the Transport reads it: a body its client fails to
		// send (too slow, cut off) is the client's error, not the
		// upstream's (see errorHandler).
		b, ok := r.Body.(*clientBody)
		if !ok {
			b = newClientBody(r.Body, r.Body)
			r.Body = b
		}
		f.body = b
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
	if f != nil && f.body != nil {
		// The client's request body failed first (the Transport reports
		// that read error as its own, or net/http's server cancels the
		// request's context on it): 408 or 400, whatever err says. A
		// canceled context waits for the Transport's read in progress,
		// which a failed connection ends at once.
		if berr := f.body.failure(r.Context().Err() != nil); berr != nil {
			p.clientBodyError(w, r, f, berr)
			return
		}
	}
	if f != nil && f.stream == nil && r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		return // the client went away; nobody to answer
	}
	status, msg := http.StatusBadGateway, "upstream unavailable"
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		status, msg = http.StatusGatewayTimeout, "upstream timed out"
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

// clientBodyError answers a request whose body could not be read from
// its client (err): 408 when the client was too slow (server.read_timeout
// passed), 400 when the body was malformed (bad chunk framing) or cut
// off. It is the client's failure, not the upstream's: not counted or
// logged as an upstream error, and the connection is closed (what the
// client sent after the part read cannot be framed).
func (p *Proxy) clientBodyError(w http.ResponseWriter, r *http.Request, f *fill, err error) {
	status, msg, detail := http.StatusBadRequest, "malformed request body", "request-body-error"
	if isTimeout(err) {
		status, msg, detail = http.StatusRequestTimeout, "request body timed out", "request-body-timeout"
	}
	st, fwd := StatusBypass, "request"
	if f != nil {
		st, fwd = f.status, f.fwd
	}
	p.counts[st].Add(1)
	h := w.Header()
	h["X-Cache"] = xCache[st]
	h.Set("Cache-Status", cacheName+"; fwd="+fwd+"; detail="+detail)
	h.Set("Connection", "close")
	p.log.Debug("request body failed", "method", r.Method, "uri", r.URL.RequestURI(), "status", status, "err", err)
	http.Error(w, msg, status)
}

// isTimeout reports whether err is a timeout: a net.Error's, or
// fasthttp's ErrTimeout.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// readAheadMax is how much of a chunked request body is read, and checked,
// before anything is sent upstream.
const readAheadMax = 64 << 10

// readAhead reads up to readAheadMax of a chunked request body before the
// request goes upstream, so that a body with broken framing (a bad chunk
// size) or that its client fails to send in time is refused (see
// clientBodyError) and never reaches the origin. A longer body is checked
// as it streams (see clientBody). A read error is returned.
func readAhead(r *http.Request) (*http.Request, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return r, nil
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, readAheadMax+1))
	if err != nil {
		return r, err
	}
	r2 := r.Clone(r.Context())
	if len(head) <= readAheadMax {
		r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(head)), int64(len(head))
		r2.TransferEncoding = nil
		return r2, nil
	}
	r2.Body = newClientBody(io.MultiReader(bytes.NewReader(head), r.Body), r.Body)
	return r2, nil
}

// clientBodyWait bounds how long errorHandler waits for a read of a
// client's body in progress when the request's context is canceled (a
// failed connection ends it at once).
const clientBodyWait = 250 * time.Millisecond

// clientBody is a client's request body that remembers a read error, so
// that the error handler can tell a request body that was malformed, cut
// off or too slow (400, 408) from an upstream failure (502, 504). The
// Transport reads it on a goroutine of its own.
type clientBody struct {
	r    io.Reader
	c    io.Closer
	busy chan struct{} // holds a token while a Read is in progress
	mu   sync.Mutex
	err  error
}

// newClientBody returns a clientBody reading r and closing c.
func newClientBody(r io.Reader, c io.Closer) *clientBody {
	return &clientBody{r: r, c: c, busy: make(chan struct{}, 1)}
}

func (b *clientBody) Read(p []byte) (int, error) {
	b.busy <- struct{}{}
	defer func() { <-b.busy }()
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *clientBody) Close() error { return b.c.Close() }

// failure returns the first error reading the body met (nil: none yet).
// With wait, a Read in progress ends first (for up to clientBodyWait).
func (b *clientBody) failure(wait bool) error {
	if wait {
		t := time.NewTimer(clientBodyWait)
		select {
		case b.busy <- struct{}{}:
			<-b.busy
		case <-t.C:
		}
		t.Stop()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
