// Package proxy is dedupcache's HTTP side: it forwards requests to the
// upstream with [httputil.ReverseProxy], stores cacheable responses in a
// [cachestore.Store] (bodies and header blocks deduplicated through
// [dedupbody.Store]s), answers hits from there, and serves the admin
// endpoints.
//
// A hit is: key hash -> entry -> copy the stored header block's parsed
// fields into the response header -> one Write of the shared body. The body
// is never copied.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/policy"
)

// Proxy is a caching reverse proxy. Make one with [New]; it is safe for
// concurrent use. Close it when done.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	bodies  *dedupbody.Store
	headers *dedupbody.Store
	store   *cachestore.Store
	rp      *httputil.ReverseProxy
	router  http.Handler     // upstream requests: chi router in front of rp
	handler http.HandlerFunc // serve, behind the access log
	tr      *http.Transport
	dates   dateCache
	now     func() time.Time
	started time.Time

	flights singleflight.Group
	index   *keyIndex
	ctx     context.Context // canceled by Close: background refreshes stop
	cancel  context.CancelFunc
	bg      sync.WaitGroup // background refreshes

	counts      [numStatus]atomic.Int64
	fills       fillCounts
	revalidated atomic.Int64 // stale entries refreshed by a 304
	notModified atomic.Int64 // 304s answered from the cache
	ranges      atomic.Int64 // 206s answered from the cache
	coalesced   atomic.Int64 // waiters answered from their leader's response
	refreshes   atomic.Int64 // background refreshes started
	served      atomic.Int64 // body bytes written from the cache
	liveCfg     atomic.Pointer[Live]
	logSeq      atomic.Uint64 // access log sampling
	invalidated atomic.Int64  // entries removed by unsafe requests
	purged      atomic.Int64  // entries removed by purges
	upstream    upstreamStats
	// upstreamLatency feeds /metrics (upstream.observe).
	upstreamLatency prometheus.Histogram
}

// fillCounts count what happened to responses the proxy tried to store.
type fillCounts struct {
	stored    atomic.Int64 // committed to the store
	cutOff    atomic.Int64 // body ended early or length mismatched
	aborted   atomic.Int64 // reader closed before the end (client gone)
	tooBig    atomic.Int64 // over max_object_size
	upstream5 atomic.Int64 // upstream errors answered 502/504
}

// ErrConfig reports an invalid [Config].
var ErrConfig = errors.New("proxy: invalid config")

// New builds a Proxy from cfg, applying defaults.
func New(cfg Config) (*Proxy, error) {
	if cfg.Upstream == nil || cfg.Upstream.Host == "" {
		return nil, fmt.Errorf("%w: upstream URL with a host is required", ErrConfig)
	}
	if cfg.MaxMemory <= 0 {
		cfg.MaxMemory = 256 << 20
	}
	if cfg.MaxObjectSize <= 0 {
		cfg.MaxObjectSize = min(8<<20, cfg.MaxMemory/4)
	}
	if cfg.Policy.HeuristicFraction == 0 && cfg.Policy.TargetedFields == nil {
		cfg.Policy = policy.DefaultOptions()
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 30 * time.Second
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 60 * time.Second
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 90 * time.Second
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = 256
	}
	switch cfg.TagHeader {
	case "":
		cfg.TagHeader = "Surrogate-Key"
	case "-":
		cfg.TagHeader = ""
	default:
		cfg.TagHeader = http.CanonicalHeaderKey(cfg.TagHeader)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ctx:     ctx,
		cancel:  cancel,
		index:   newKeyIndex(),
		cfg:     cfg,
		log:     cfg.Logger,
		bodies:  dedupbody.New(dedupbody.Config{}),
		headers: dedupbody.New(dedupbody.Config{}),
		now:     time.Now,
		started: time.Now(),
	}
	store, err := cachestore.New(cachestore.Config{
		MaxMemory:       cfg.MaxMemory,
		ExpectedEntries: cfg.ExpectedEntries,
		Stores:          []*dedupbody.Store{p.bodies, p.headers},
		OnRelease:       p.index.released,
	})
	if err != nil {
		return nil, err
	}
	p.store = store
	p.tr = &http.Transport{
		Proxy: nil, // never chain through an environment proxy
		DialContext: dialIdle((&net.Dialer{
			Timeout:   cfg.DialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext, cfg.ReadTimeout),
		MaxIdleConns:          cfg.MaxIdleConnsPerHost * 2,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       cfg.IdleConnTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		ExpectContinueTimeout: time.Second,
		// Pass encodings through untouched: a cache must not store a
		// body decoded behind the client's back.
		DisableCompression: true,
	}
	up := cfg.Upstream
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.SetXForwarded()
			pr.Out.Header.Add("Via", via(pr.In.ProtoMajor, pr.In.ProtoMinor))
			p.rewrite(pr)
		},
		Transport:      p.tr,
		FlushInterval:  -1, // stream: flush every write
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	p.router = p.upstreamRouter()
	p.upstreamLatency = newUpstreamLatency()
	p.upstream.observe = p.upstreamLatency.Observe
	l := liveOf(cfg)
	p.liveCfg.Store(&l)
	// Always wrapped, since Reload can turn the access log on; off, it
	// costs one atomic load per request.
	p.handler = p.accessLog(p.serve)
	return p, nil
}

// via returns this hop's Via member (RFC 9110 §7.6.3).
func via(major, minor int) string {
	if major == 1 && minor == 1 {
		return "1.1 " + cacheName
	}
	return fmt.Sprintf("%d.%d %s", major, minor, cacheName)
}

// Handler returns the handler for the proxy listener. Hits are answered
// before any routing: a chi router costs 4 allocations and ~700 B per
// request (BenchmarkHit before this split), six times the rest of a hit.
// Everything that goes upstream passes through the router.
func (p *Proxy) Handler() http.Handler { return p.handler }

// upstreamRouter routes requests that go to the upstream.
func (p *Proxy) upstreamRouter() http.Handler {
	r := chi.NewRouter()
	r.Handle("/*", http.HandlerFunc(p.rp.ServeHTTP))
	return r
}

// Close releases every cached entry and the upstream connections. The
// servers using the handlers must be shut down first.
func (p *Proxy) Close() {
	p.cancel()
	p.bg.Wait()
	p.store.Close()
	p.tr.CloseIdleConnections()
}

// serve answers one proxied request: from the cache when it holds a usable
// response, from the upstream otherwise.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		var ok bool
		if r, ok = p.cacheablePOST(w, r); !ok {
			p.forward(w, r, &fill{status: StatusBypass, fwd: "method"})
			return
		}
	}
	host, uri := keyParts(r)
	h := keyHash(host, uri)
	e, fwd := p.lookup(r, host, uri, h)
	req := noDirectives
	hasDirectives := len(r.Header["Cache-Control"]) > 0 || len(r.Header["Pragma"]) > 0
	if hasDirectives {
		req = policy.ParseRequest(r.Header)
	}
	var stale *cachestore.Entry
	if e != nil {
		if e.Flags&flagHitForMiss != 0 {
			p.forward(w, r, &fill{status: StatusMiss, fwd: "uri-miss", detail: "hit-for-miss", host: host, uri: uri, hash: h})
			return
		}
		now := p.now()
		age := entryAge(e, now)
		fr := entryFreshness(e)
		if !hasDirectives && age < fr.Lifetime && !fr.NoCache {
			p.serveEntry(w, r, e, age, hitValue(fr.Lifetime-age), StatusHit) // the common hit
			return
		}
		action, why := policy.Evaluate(req, fr, age)
		switch action {
		case policy.Serve:
			cs := hitValue(fr.Lifetime - age)
			if age >= fr.Lifetime {
				cs = []string{cacheName + "; hit; ttl=" + strconv.FormatInt(int64((fr.Lifetime-age)/time.Second), 10) + "; detail=max-stale"}
			}
			p.serveEntry(w, r, e, age, cs, StatusHit)
			return
		case policy.ServeStale:
			p.serveEntry(w, r, e, age, []string{cacheName + "; hit; ttl=" + strconv.FormatInt(int64((fr.Lifetime-age)/time.Second), 10) + "; detail=stale-while-revalidate"}, StatusStale)
			p.refresh(r, e, host, uri, h)
			return
		}
		stale = e
		fwd = "stale"
		switch why {
		case policy.ReasonRequestNoCache, policy.ReasonRequestMaxAge, policy.ReasonRequestMinFresh:
			if age < fr.Lifetime {
				fwd = "request" // RFC 9211 §2.2: fresh, but the request did not allow it
			}
		}
	}
	f := &fill{status: StatusMiss, fwd: fwd, host: host, uri: uri, hash: h, stale: stale, req: req}
	if hasDirectives && req.CC.OnlyIfCached {
		// RFC 9111 §5.2.1.7: nothing usable is stored.
		p.counts[StatusMiss].Add(1)
		w.Header()["X-Cache"] = xCache[StatusMiss]
		w.Header().Set("Cache-Status", cacheName+"; detail=only-if-cached") // nothing went forward
		http.Error(w, "not cached (only-if-cached)", http.StatusGatewayTimeout)
		return
	}
	if hasDirectives && req.CC.NoStore {
		f.noStore = true
		if stale == nil {
			f.fwd = "request"
		}
	}
	if r.Method == http.MethodHead || f.noStore {
		f.noStore = true // a HEAD response has no body to store
		p.forward(w, r, f)
		return
	}
	p.coalesce(w, r, f)
}

// lookup returns the entry stored for r (resolving Vary), or nil and the
// Cache-Status fwd reason.
func (p *Proxy) lookup(r *http.Request, host, uri string, h uint64) (*cachestore.Entry, string) {
	e, ok := p.store.Get(h)
	if !ok || !keyIs(e.Key, host, uri) {
		return nil, "uri-miss" // absent, or a 64-bit hash collision
	}
	if e.Vary != "" {
		if e, ok = p.variant(e, r); !ok {
			return nil, "vary-miss"
		}
	}
	return e, ""
}

// serveFromCache answers r from the cache if a response usable for it is
// stored; it reports whether it did. collapsedFwd, if set, is the fwd
// reason of a request that waited for another's upstream fetch (RFC 9211
// §2.2 "collapsed").
func (p *Proxy) serveFromCache(w http.ResponseWriter, r *http.Request, collapsedFwd string) bool {
	host, uri := keyParts(r)
	e, _ := p.lookup(r, host, uri, keyHash(host, uri))
	if e == nil || e.Flags&flagHitForMiss != 0 {
		return false
	}
	age := entryAge(e, p.now())
	fr := entryFreshness(e)
	req := noDirectives
	if len(r.Header["Cache-Control"]) > 0 || len(r.Header["Pragma"]) > 0 {
		req = policy.ParseRequest(r.Header)
		if req.CC.NoCache || req.PragmaNoCache {
			// The leader just fetched it for this flight: that is the
			// validation the request asked for.
			req.CC.NoCache, req.PragmaNoCache = false, false
		}
	}
	if action, _ := policy.Evaluate(req, fr, age); action != policy.Serve {
		return false
	}
	cs := hitValue(fr.Lifetime - age)
	if collapsedFwd != "" {
		cs = []string{cacheName + "; fwd=" + collapsedFwd + "; collapsed"}
	}
	p.serveEntry(w, r, e, age, cs, StatusHit)
	return true
}

// variant resolves a Vary index entry to the variant for r.
func (p *Proxy) variant(index *cachestore.Entry, r *http.Request) (*cachestore.Entry, bool) {
	names := strings.Split(index.Vary, ",")
	vk := variantKey(index.Key, policy.VaryKey(names, r.Header))
	e, ok := p.store.Get(keyHashString(vk))
	if !ok || e.Key != vk {
		return nil, false
	}
	return e, true
}

// entryAge is the entry's current_age (RFC 9111 §4.2.3).
func entryAge(e *cachestore.Entry, now time.Time) time.Duration {
	return time.Duration(e.InitialAge)*time.Second + time.Duration(now.UnixNano()-e.Stored)
}

// Entry flag bits.
const (
	flagNoCache        uint32 = 1 << iota // revalidate before every use
	flagMustRevalidate                    // never serve stale
	flagHeuristic                         // lifetime is heuristic
	flagHitForMiss                        // marker: the URL's response was not storable
	flagSynthETag                         // the ETag was made by us, not the origin
)

// entryFreshness rebuilds the policy view of an entry.
func entryFreshness(e *cachestore.Entry) policy.Freshness {
	return policy.Freshness{
		Lifetime:             time.Duration(e.Lifetime) * time.Second,
		Heuristic:            e.Flags&flagHeuristic != 0,
		StaleWhileRevalidate: time.Duration(e.StaleRevalidate) * time.Second,
		StaleIfError:         time.Duration(e.StaleError) * time.Second,
		MustRevalidate:       e.Flags&flagMustRevalidate != 0,
		NoCache:              e.Flags&flagNoCache != 0,
	}
}

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
	if p.ctx.Err() != nil {
		return
	}
	f := &fill{
		status: StatusMiss, fwd: "stale", host: host, uri: uri, hash: h,
		method: http.MethodGet, reqHeader: r.Header.Clone(), stale: e, leader: true,
	}
	p.bg.Add(1)
	ch := p.flights.DoChan(keyString(host, uri), func() (any, error) {
		p.refreshes.Add(1)
		p.fetchInBackground(f)
		return flightResult{stored: f.committed.Load()}, nil
	})
	go func() {
		defer p.bg.Done()
		<-ch
	}()
}

// fetchInBackground performs f's upstream request with no client: it
// stores the response (or freshens f.stale on 304) and discards the body.
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
	for _, k := range policy.HopByHop {
		out.Header.Del(k)
	}
	out.Header.Add("Via", via(1, 1))
	if ae := policy.AcceptEncodingBucket(f.reqHeader); ae != "" {
		out.Header.Set("Accept-Encoding", ae)
	}
	setValidators(out.Header, f.stale)
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

// noDirectives is the policy view of a request without Cache-Control or
// Pragma (the zero policy.Request would read as "max-age=0").
var noDirectives = policy.ParseRequest(http.Header{})
