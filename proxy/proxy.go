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
	"math/bits"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/dedupbody/arena"
	"dedupcache/policy"
)

// Proxy is a caching reverse proxy. Make one with [New]; it is safe for
// concurrent use. Close it when done.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	bodies    *dedupbody.Store
	arena     *arena.Arena // where the bodies' bytes live (see package dedupbody)
	headers   *dedupbody.Store
	store     *cachestore.Store
	snapshots snapshotLog // the last snapshot write and load (snapshot.go)
	rp        *httputil.ReverseProxy
	handler   http.HandlerFunc // serve, behind the access log
	// writeAccess writes one access log line (see newAccessWriter).
	writeAccess func(r *http.Request, cache string, start time.Time, status int, bytes int64, upstream, d time.Duration)
	tr          *http.Transport
	up          *upstreamClient // the fetch engine's pool (fetch.go)
	// surrogateCap is the Surrogate-Capability value outbound adds (nil:
	// no surrogate token). Shared: never appended to in place.
	surrogateCap []string
	dates        dateCache
	now          func() time.Time
	started      time.Time

	streams streams // fetches in flight, by key
	budget  budget  // what fetches in flight may hold
	index   *keyIndex
	ctx     context.Context // canceled by Close: fetches stop
	cancel  context.CancelFunc
	bg      sync.WaitGroup // fetches
	// fetchers hands a fetch to an idle fetcher goroutine (unbuffered: a
	// send succeeds only if one is waiting); fetcherWG counts them.
	fetchers  chan *stream
	fetcherWG sync.WaitGroup
	tunerWG   sync.WaitGroup // tuneMemoryLimit

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
	misdirected atomic.Int64  // requests refused with 421 (hosts.go)
	clientConns atomic.Int64  // open client connections on the proxy's listeners (conns.go)
	connBytes   atomic.Int64  // sum over those connections of their buffers' estimated size
	upstream    upstreamStats
	purgeGen    atomic.Uint64 // bumped by every purge (beginPurge): see purgegen.go
	purges      purgeLog      // what the last purges selected
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

// New builds a Proxy from cfg. Zero values mean what Config says (off,
// none, or derived from another field): the defaults users see live in
// package config.
func New(cfg Config) (*Proxy, error) {
	if cfg.Upstream == nil || cfg.Upstream.Host == "" {
		return nil, fmt.Errorf("%w: upstream URL with a host is required", ErrConfig)
	}
	if cfg.MaxMemory <= 0 {
		return nil, fmt.Errorf("%w: MaxMemory must be positive", ErrConfig)
	}
	if cfg.MaxObjectSize <= 0 || cfg.MaxObjectSize > cfg.MaxMemory/4 {
		cfg.MaxObjectSize = cfg.MaxMemory / 4
	}
	if cfg.Policy.HeuristicFraction == 0 && cfg.Policy.TargetedFields == nil {
		cfg.Policy = policy.DefaultOptions()
	}
	cfg.TagHeader = http.CanonicalHeaderKey(cfg.TagHeader)
	for i, k := range cfg.UnkeyedHeaders {
		cfg.UnkeyedHeaders[i] = http.CanonicalHeaderKey(k)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Fetches in flight hold up to inflight bytes of bodies not stored yet:
	// an eighth of max_memory, enough for the largest object, and taken
	// from what the store may hold, so that max_memory bounds both.
	inflight := min(max(cfg.MaxMemory/8, cfg.MaxObjectSize), cfg.MaxMemory/4)
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = int(max(16, inflight/(64<<10)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ctx:          ctx,
		surrogateCap: surrogateCapability(cfg.Policy.SurrogateToken),
		cancel:       cancel,
		index:        newKeyIndex(),
		fetchers:     make(chan *stream),
		budget:       budget{maxBytes: inflight, maxFills: cfg.MaxInflight},
		cfg:          cfg,
		log:          cfg.Logger,
		headers:      dedupbody.New(dedupbody.Config{}),
		now:          time.Now,
		started:      time.Now(),
	}
	p.arena = arena.New(arenaConfig(cfg.MaxMemory))
	p.bodies = dedupbody.New(dedupbody.Config{Arena: p.arena})
	store, err := cachestore.New(cachestore.Config{
		MaxMemory:       cfg.MaxMemory - inflight,
		ExpectedEntries: cfg.ExpectedEntries,
		Stores:          []*dedupbody.Store{p.bodies, p.headers},
		OnRelease:       p.index.released,
		// The arena's free slots and slab tails: held, charged to no body.
		Slack: p.slack,
		Hash: func(e *cachestore.Entry) uint64 {
			h, _, _ := entryHashes(e)
			return h
		},
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
		}).DialContext, cfg.ResponseHeaderTimeout, cfg.ReadTimeout),
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
	p.up = newUpstreamClient(ctx, cfg)
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.outbound,
		BufferPool:     &copyBuffers,
		Transport:      &codingTransport{tr: p.tr, dial: p.tr.DialContext},
		FlushInterval:  -1, // stream: flush every write
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	if observe := cfg.ObserveUpstream; observe != nil {
		p.upstream.observe = func(s float64) { observe(time.Duration(s * float64(time.Second))) }
	}
	l := liveOf(cfg)
	p.liveCfg.Store(&l)
	// Always wrapped, since Reload can turn the access log on; off, it
	// costs one atomic load per request.
	if cfg.GoMemoryLimit > 0 {
		p.tunerWG.Add(1)
		go p.tuneMemoryLimit(cfg.GoMemoryLimit, cfg.GoMemoryLimit-cfg.MaxMemory)
	}
	p.writeAccess = p.newAccessWriter()
	p.handler = p.accessLog(p.serve)
	return p, nil
}

// slack is what the cache holds that no entry is charged for: what the
// arena holds beyond the bodies' charged bytes (free slots, slab tails, spare slabs). A poison
// build's quarantine (freed slots held back to catch a use after free) is
// left out, so that tests see the capacity a production build has.
func (p *Proxy) slack() int64 {
	return p.arenaSlack()
}

// arenaSlack is the arena's part of slack.
func (p *Proxy) arenaSlack() int64 {
	q := int64(0)
	if arena.Poisoned() {
		q = p.arena.Stats().QuarantinedBytes
	}
	return max(0, p.arena.Mapped()-q-p.bodies.Bytes())
}

// tuneMemoryLimit keeps the runtime's memory limit at limit minus what
// the arena maps (see Config.GoMemoryLimit), never below floor, plus the
// open client connections' buffers (conns.go), until Close.
func (p *Proxy) tuneMemoryLimit(limit, floor int64) {
	defer p.tunerWG.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	set := int64(-1)
	for {
		if want := max(limit-p.arena.Mapped(), floor) + p.connBytes.Load(); want < set-1<<20 || want > set+1<<20 {
			debug.SetMemoryLimit(want)
			set = want
		}
		select {
		case <-t.C:
		case <-p.ctx.Done():
			return
		}
	}
}

// arenaConfig sizes the body arena for a cache of maxMemory bytes. Every
// size class in use holds at least one slab, and spare slabs stay mapped,
// all of it counted against max_memory: a small cache gets small slabs
// (and bodies over its largest class a mapping each), so that this slack
// stays a small part of the budget; from 64 MiB on, the arena's defaults
// (1 MiB slabs for the largest classes, 64 KiB for the smallest).
func arenaConfig(maxMemory int64) arena.Config {
	pow2 := func(n int64) int { return 1 << (bits.Len64(uint64(max(n, 1))) - 1) } // largest power of two <= n
	page := os.Getpagesize()
	return arena.Config{
		SlabSize:    min(max(pow2(maxMemory/64), 16<<10), 1<<20),
		MinSlab:     min(max(pow2(maxMemory/1024), page), 64<<10),
		RetainBytes: max(min(maxMemory/32, 2<<20), 1),
	}
}

// via returns this hop's Via member (RFC 9110 §7.6.3). As a gateway,
// dedupcache MUST send it on the requests it forwards and MAY on
// responses: it does not, since a tenth of hit throughput goes to one more
// response field (BENCHMARKS.md, "Later checks").
// The protocol version is the client's: "1.1", "1.0", and "2" for HTTP/2
// (RFC 9113 §3.1 names that version "2", without a minor).
func via(major, minor int) string {
	switch {
	case major == 1 && minor == 1:
		return "1.1 " + cacheName
	case major >= 2:
		return strconv.Itoa(major) + " " + cacheName
	}
	return fmt.Sprintf("%d.%d %s", major, minor, cacheName)
}

// Handler returns the handler for the proxy listener.
func (p *Proxy) Handler() http.Handler { return p.handler }

// Close releases every cached entry and the upstream connections. The
// servers using the handlers must be shut down first.
func (p *Proxy) Close() {
	p.cancel()
	p.tunerWG.Wait()
	p.up.close() // a fetch waiting for a header ends now
	p.bg.Wait()
	p.fetcherWG.Wait()
	p.store.Close()
	_ = p.arena.Close() // every body was released with its entry
	p.tr.CloseIdleConnections()
	p.up.close()
}

// copyBuffers are the ReverseProxy's body copy buffers, reused instead of
// a fresh 32 KiB per forwarded response.
var copyBuffers bufferPool

// bufferPool is an httputil.BufferPool over a sync.Pool.
type bufferPool struct{ p sync.Pool }

// Get returns a 32 KiB buffer.
func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

// Put returns a buffer for reuse.
func (b *bufferPool) Put(v []byte) { b.p.Put(&v) }
