package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"dedupcache/cachestore"
	"dedupcache/policy"
)

// fillKey is the context key of the *fill of a forwarded request.
type fillKey struct{}

// forward sends r upstream; modifyResponse decides about storing.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, f *fill) {
	f.method = r.Method
	f.post = isCachedPOST(r)
	f.w = w
	f.reqHeader = r.Header
	if f.host == "" {
		f.host, f.uri = keyParts(r)
	}
	f.reqTime = p.now()
	ctx := context.WithValue(r.Context(), fillKey{}, f)
	p.router.ServeHTTP(w, r.WithContext(ctx))
}

// errorHandler answers when the upstream could not be reached or did not
// answer in time: 502 or 504 with a short plain-text body.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		return // the client went away; nobody to answer
	}
	status, msg := http.StatusBadGateway, "upstream unavailable"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		status, msg = http.StatusGatewayTimeout, "upstream timed out"
	}
	p.fills.upstream5.Add(1)
	st, fwd := StatusMiss, "uri-miss"
	f, _ := r.Context().Value(fillKey{}).(*fill)
	if f != nil {
		st, fwd = f.status, f.fwd
		p.upstreamDone(f, 0, p.now())
		if now := p.now(); p.staleIfError(f, now) {
			// RFC 5861 §4: serve the stored response instead of the error.
			// r is the outbound request, which carries the cache's own
			// validators: evaluate the client's request instead.
			e := f.stale
			p.log.Warn("upstream error; serving stale", "uri", r.URL.RequestURI(), "err", err)
			cs := []string{fmt.Sprintf("%s; fwd=%s; detail=stale-if-error", cacheName, f.fwd)}
			p.serveEntry(w, &http.Request{Method: f.method, Header: f.reqHeader}, e, entryAge(e, now), cs, StatusStale)
			return
		}
		if f.stale != nil {
			// RFC 9111 §5.2.2.2: a stale response that may not be reused
			// gets an error, 504 unless another is more applicable.
			status = http.StatusGatewayTimeout
		}
	}
	p.counts[st].Add(1)
	p.log.Warn("upstream error", "method", r.Method, "uri", r.URL.RequestURI(), "status", status, "err", err)
	w.Header()["X-Cache"] = xCache[st]
	w.Header().Set("Cache-Status", cacheName+"; fwd="+fwd+"; detail=upstream-error")
	http.Error(w, msg, status)
}

// proxyRequest is the outbound request handed to Rewrite.
type proxyRequest = httputil.ProxyRequest

// invalidateFor drops the stored responses that an unsafe request with a
// non-error response invalidates (RFC 9111 §4.4): its target URI and the
// same-origin URIs in Location and Content-Location, every variant included.
func (p *Proxy) invalidateFor(resp *http.Response) {
	in := resp.Request
	f, _ := in.Context().Value(fillKey{}).(*fill)
	if f == nil {
		return
	}
	host := f.host
	p.invalidate(host, f.uri)
	for _, field := range []string{"Location", "Content-Location"} {
		v := resp.Header.Get(field)
		if v == "" {
			continue
		}
		u, err := in.URL.Parse(v)
		if err != nil || (u.Host != "" && !strings.EqualFold(u.Host, in.URL.Host) && !strings.EqualFold(u.Host, host)) {
			continue // another origin: §4.4 forbids invalidating it
		}
		p.invalidate(host, u.RequestURI())
	}
}

// invalidate removes the response stored for host and uri, with its
// variants. It returns how many entries were removed.
func (p *Proxy) invalidate(host, uri string) int {
	h := keyHash(host, uri)
	n := 0
	if e, ok := p.store.Get(h); ok && keyIs(e.Key, host, uri) {
		p.store.Del(h)
		n++
	}
	for _, v := range p.index.takeVariants(h) {
		if _, ok := p.store.Get(v); ok {
			p.store.Del(v)
			n++
		}
	}
	p.invalidated.Add(int64(n))
	return n
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
}

// refresh revalidates or refetches e in the background (RFC 5861
// stale-while-revalidate), once per key: it joins the key's flight.
func (p *Proxy) refresh(r *http.Request, e *cachestore.Entry, host, uri string, h uint64) {
	p.fetchDetached(&fill{
		status: StatusMiss, fwd: "stale", host: host, uri: uri, hash: h,
		method: http.MethodGet, reqHeader: r.Header.Clone(), stale: e, leader: true,
	}, &p.refreshes)
}

// fetchDetached runs fetchInBackground for f in the key's flight (joining
// one under way) and returns the flight's channel (nil once the proxy is
// closing). The work is owned by the proxy: Close waits for it. count, if
// not nil, counts fetches actually started.
func (p *Proxy) fetchDetached(f *fill, count *atomic.Int64) <-chan singleflight.Result {
	if p.ctx.Err() != nil {
		return nil
	}
	p.bg.Add(1)
	ch := p.flights.DoChan(keyString(f.host, f.uri), func() (any, error) {
		if count != nil {
			count.Add(1)
		}
		p.fetchInBackground(f)
		return flightResult{stored: f.committed.Load()}, nil
	})
	out := make(chan singleflight.Result, 1)
	go func() {
		defer p.bg.Done()
		out <- <-ch
	}()
	return out
}

// headFill answers a HEAD miss the way nginx and Varnish do: the cache
// fetches the GET (in the key's flight, detached from this client), stores
// it, and answers the HEAD from it. If nothing was stored, the HEAD itself
// goes upstream.
func (p *Proxy) headFill(w http.ResponseWriter, r *http.Request, f *fill) {
	ch := p.fetchDetached(&fill{
		status: StatusMiss, fwd: f.fwd, host: f.host, uri: f.uri, hash: f.hash,
		method: http.MethodGet, reqHeader: r.Header.Clone(), req: f.req, leader: true,
	}, nil)
	if ch != nil {
		select {
		case out := <-ch:
			if res, _ := out.Val.(flightResult); res.stored && p.serveFromCacheAs(w, r, StatusMiss, cacheName+"; fwd="+f.fwd+"; stored") {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
	f.noStore = true
	p.forward(w, r, f)
}

// fetchInBackground performs f's upstream request with no client: it
// stores the response (or freshens f.stale on 304) and discards the body.
// It is f's leader and runs inside f's flight.
func (p *Proxy) fetchInBackground(f *fill) {
	defer func() {
		if pv := recover(); pv != nil {
			p.log.Error("background refresh panicked", "key", keyString(f.host, f.uri), "panic", pv)
		}
	}()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.ResponseHeaderTimeout+time.Minute)
	defer cancel()
	u := *p.cfg.Upstream
	ref, err := url.ParseRequestURI(f.uri)
	if err != nil {
		return
	}
	u.Path = singleJoin(u.Path, ref.Path)
	u.RawPath = ""
	u.RawQuery = ref.RawQuery
	out, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return
	}
	for k, v := range f.reqHeader {
		out.Header[k] = v
	}
	policy.RemoveHopByHop(out.Header)
	out.Header.Add("Via", via(1, 1))
	if ae := policy.AcceptEncodingBucket(f.reqHeader); ae != "" {
		out.Header.Set("Accept-Encoding", ae)
	}
	if f.stale != nil {
		setValidators(out.Header, f.stale)
	}
	f.reqTime = p.now()
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		p.upstreamDone(f, 0, p.now())
		p.log.Warn("background refresh failed", "key", keyString(f.host, f.uri), "err", err)
		return
	}
	defer resp.Body.Close()
	now := p.now()
	p.upstreamDone(f, resp.StatusCode, now)
	if resp.StatusCode == http.StatusNotModified {
		if p.freshen(f, resp, now) != nil {
			p.revalidated.Add(1)
		}
		return
	}
	c, _ := p.decide(f, resp, now)
	if c == nil {
		return
	}
	_, _ = io.Copy(io.Discard, c)
	_ = c.Close()
}

// singleJoin joins two URL paths with exactly one slash between them.
func singleJoin(a, b string) string {
	switch {
	case a == "" || a == "/":
		return b
	case strings.HasSuffix(a, "/") && strings.HasPrefix(b, "/"):
		return a + b[1:]
	case !strings.HasSuffix(a, "/") && !strings.HasPrefix(b, "/"):
		return a + "/" + b
	}
	return a + b
}
