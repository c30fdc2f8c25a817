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
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

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
	router  http.Handler // upstream requests: chi router in front of rp
	tr      *http.Transport
	dates   dateCache
	now     func() time.Time
	started time.Time

	counts [numStatus]atomic.Int64
	fills  fillCounts
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
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 90 * time.Second
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Proxy{
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
	})
	if err != nil {
		return nil, err
	}
	p.store = store
	p.tr = &http.Transport{
		Proxy: nil, // never chain through an environment proxy
		DialContext: (&net.Dialer{
			Timeout:   cfg.DialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
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
		},
		Transport:      p.tr,
		FlushInterval:  -1, // stream: flush every write
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	p.router = p.upstreamRouter()
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
func (p *Proxy) Handler() http.Handler { return http.HandlerFunc(p.serve) }

// upstreamRouter routes requests that go to the upstream.
func (p *Proxy) upstreamRouter() http.Handler {
	r := chi.NewRouter()
	r.Handle("/*", http.HandlerFunc(p.rp.ServeHTTP))
	return r
}

// Close releases every cached entry and the upstream connections. The
// servers using the handlers must be shut down first.
func (p *Proxy) Close() {
	p.store.Close()
	p.tr.CloseIdleConnections()
}

// serve answers one proxied request: from the cache when it holds a usable
// response, from the upstream otherwise.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		p.forward(w, r, &fill{status: StatusBypass, fwd: "method"})
		return
	}
	host, uri := keyParts(r)
	h := keyHash(host, uri)
	fwd := "uri-miss"
	e, ok := p.store.Get(h)
	if ok && !keyIs(e.Key, host, uri) {
		ok = false // a 64-bit hash collision: treat as a miss
	}
	if ok && e.Vary != "" {
		if e, ok = p.variant(e, r); !ok {
			fwd = "vary-miss"
		}
	}

	var req policy.Request
	hasDirectives := len(r.Header["Cache-Control"]) > 0 || len(r.Header["Pragma"]) > 0
	if hasDirectives {
		req = policy.ParseRequest(r.Header)
	}
	if ok {
		now := p.now()
		age := entryAge(e, now)
		fr := entryFreshness(e)
		action := policy.Serve
		if hasDirectives {
			action, _ = policy.Evaluate(req, fr, age)
		} else if age >= fr.Lifetime || fr.NoCache {
			action = policy.Revalidate
		}
		if action == policy.Serve {
			p.serveEntry(w, r, e, age, fr.Lifetime-age, StatusHit)
			return
		}
		fwd = "stale"
	}
	p.miss(w, r, &fill{status: StatusMiss, fwd: fwd, host: host, uri: uri, hash: h}, ok, hasDirectives, req)
}

// miss handles a request the cache cannot answer from a stored response.
// stored says whether an (unusable) response is stored.
func (p *Proxy) miss(w http.ResponseWriter, r *http.Request, f *fill, stored, hasDirectives bool, req policy.Request) {
	if hasDirectives && req.CC.OnlyIfCached {
		// RFC 9111 §5.2.1.7: nothing usable is stored.
		p.counts[StatusMiss].Add(1)
		w.Header()["X-Cache"] = xCache[StatusMiss]
		w.Header().Set("Cache-Status", cacheName+"; fwd=miss; detail=only-if-cached")
		http.Error(w, "not cached (only-if-cached)", http.StatusGatewayTimeout)
		return
	}
	if hasDirectives && req.CC.NoStore {
		f.noStore = true
		if !stored {
			f.fwd = "request"
		}
	}
	if hasDirectives && (req.CC.NoCache || req.PragmaNoCache) && stored {
		f.fwd = "request"
	}
	if r.Method == http.MethodHead {
		f.noStore = true // a HEAD response has no body to store
	}
	p.forward(w, r, f)
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

// serveEntry writes a stored response. This is the hit path: it must not
// allocate beyond what net/http does, nor copy the body.
func (p *Proxy) serveEntry(w http.ResponseWriter, r *http.Request, e *cachestore.Entry, age, ttl time.Duration, st Status) {
	p.counts[st].Add(1)
	h := w.Header()
	for k, v := range blockHeader(e.Header.Body().Aux()) {
		h[k] = v
	}
	h["Date"] = p.dates.get(e.Date)
	h["Age"] = ageValue(age)
	h["X-Cache"] = xCache[st]
	h["Cache-Status"] = hitValue(ttl)
	w.WriteHeader(int(e.Status))
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.Body.Bytes())
	}
}

// entryAge is the entry's current_age (RFC 9111 §4.2.3).
func entryAge(e *cachestore.Entry, now time.Time) time.Duration {
	return time.Duration(e.InitialAge)*time.Second + time.Duration(now.UnixNano()-e.Stored)
}

// Entry flag bits.
const (
	flagNoCache uint32 = 1 << iota
	flagMustRevalidate
	flagHeuristic
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
	f.reqHeader = r.Header
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
	st := StatusMiss
	if f, _ := r.Context().Value(fillKey{}).(*fill); f != nil {
		st = f.status
	}
	p.counts[st].Add(1)
	p.log.Warn("upstream error", "method", r.Method, "uri", r.RequestURI, "status", status, "err", err)
	w.Header()["X-Cache"] = xCache[st]
	w.Header().Set("Cache-Status", cacheName+"; fwd=uri-miss; detail=upstream-error")
	http.Error(w, msg, status)
}
