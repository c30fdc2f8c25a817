// Package proxy is dedupcache's HTTP side: it forwards requests to the
// upstream with [httputil.ReverseProxy], stores cacheable responses in a
// [cachestore.Store] (bodies and header blocks deduplicated through
// [dedupbody.Store]s) and answers hits from there. The admin endpoints live
// in package admin, which uses the exported [Proxy.Stats],
// [Proxy.TopBodies] and purge methods.
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
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
	varyLists   sync.Map     // Vary list -> []string names (see varyNames)
	varyListN   atomic.Int64
	liveCfg     atomic.Pointer[Live]
	logSeq      atomic.Uint64 // access log sampling
	invalidated atomic.Int64  // entries removed by unsafe requests
	purged      atomic.Int64  // entries removed by purges
	upstream    upstreamStats
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
	if observe := cfg.ObserveUpstream; observe != nil {
		p.upstream.observe = func(s float64) { observe(time.Duration(s * float64(time.Second))) }
	}
	l := liveOf(cfg)
	p.liveCfg.Store(&l)
	// Always wrapped, since Reload can turn the access log on; off, it
	// costs one atomic load per request.
	p.handler = p.accessLog(p.serve)
	return p, nil
}

// via returns this hop's Via member (RFC 9110 §7.6.3). As a gateway,
// dedupcache MUST send it on the requests it forwards and MAY on
// responses: it does not, since a tenth of hit throughput goes to one more
// response field (BENCHMARKS.md, "Later checks").
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
