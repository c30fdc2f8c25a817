package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/proxy/dashboard"
)

// Stats is the JSON document of /api/stats. Byte figures of bodies count
// payload bytes; memory figures count what the cache charges against
// max_memory (allocator size classes, parsed header blocks and per-entry
// overhead included).
type Stats struct {
	Hits     int64   `json:"hits"`
	Misses   int64   `json:"misses"`
	Stale    int64   `json:"stale"`
	Bypasses int64   `json:"bypasses"`
	HitRatio float64 `json:"hit_ratio"` // (hits+stale) / (hits+stale+misses); bypasses are not cacheable

	Entries      int64   `json:"entries"`       // stored responses (Vary indexes and hit-for-miss markers not counted)
	BodiesUnique int64   `json:"bodies_unique"` // distinct bodies stored
	BytesLogical int64   `json:"bytes_logical"` // body bytes summed over entries, as if not shared
	BytesStored  int64   `json:"bytes_stored"`  // unique body bytes
	BytesSaved   int64   `json:"bytes_saved"`   // bytes_logical - bytes_stored
	DedupRatio   float64 `json:"dedup_ratio"`   // bytes_logical / bytes_stored (1 = no sharing)

	HeaderBlocks int64 `json:"header_blocks"` // distinct stored header blocks
	HeaderBytes  int64 `json:"header_bytes"`  // their memory (block + parsed form)
	EntryBytes   int64 `json:"entry_bytes"`   // per-entry overhead + keys

	MemoryBytes      int64 `json:"memory_bytes"`       // entry_bytes + header_bytes + body memory
	MemoryLimitBytes int64 `json:"memory_limit_bytes"` // max_memory
	EntryOverhead    int64 `json:"entry_overhead_bytes"`

	Stored         int64            `json:"responses_stored"`
	CutOff         int64            `json:"responses_cut_off"`
	Aborted        int64            `json:"responses_aborted"`
	TooBig         int64            `json:"responses_too_big"`
	UpstreamErrors int64            `json:"upstream_errors"`
	Released       map[string]int64 `json:"entries_released"` // by cause: evicted, rejected, expired, ...

	Revalidated  int64            `json:"revalidated"`        // stale entries refreshed by an upstream 304
	NotModified  int64            `json:"not_modified"`       // 304s answered from the cache
	Ranges       int64            `json:"ranges"`             // 206s answered from the cache
	Coalesced    int64            `json:"coalesced"`          // requests answered from another request's upstream response
	Refreshes    int64            `json:"refreshes"`          // background refreshes (stale-while-revalidate)
	Invalidated  int64            `json:"invalidated"`        // entries removed by unsafe requests (RFC 9111 §4.4)
	Purged       int64            `json:"purged"`             // entries removed by /api/purge
	ServedBytes  int64            `json:"served_bytes"`       // body bytes written from the cache
	UpstreamByCl map[string]int64 `json:"upstream_responses"` // by status class; "error" = no response

	BodyOverhead   int64 `json:"body_overhead_bytes"` // per distinct body: Body struct + index slot (measured)
	BreakEvenBytes int64 `json:"break_even_bytes"`    // a body larger than this saves memory once a second key shares it

	UptimeSeconds float64 `json:"uptime_seconds"`
}

// Stats returns the current figures.
func (p *Proxy) Stats() Stats {
	st := Stats{
		Hits:     p.counts[StatusHit].Load(),
		Misses:   p.counts[StatusMiss].Load(),
		Stale:    p.counts[StatusStale].Load(),
		Bypasses: p.counts[StatusBypass].Load(),
	}
	if n := st.Hits + st.Stale + st.Misses; n > 0 {
		st.HitRatio = float64(st.Hits+st.Stale) / float64(n)
	}
	cs := p.store.Stats()
	bs := p.bodies.Stats()
	hs := p.headers.Stats()
	st.Entries = cs.WithBody
	st.BodiesUnique = bs.Bodies
	st.BytesLogical = bs.LogicalBytes
	st.BytesStored = bs.DataBytes
	st.BytesSaved = bs.LogicalBytes - bs.DataBytes
	if bs.DataBytes > 0 {
		st.DedupRatio = float64(bs.LogicalBytes) / float64(bs.DataBytes)
	} else if bs.LogicalBytes == 0 {
		st.DedupRatio = 1
	}
	st.HeaderBlocks = hs.Bodies
	st.HeaderBytes = hs.Bytes
	st.EntryBytes = cs.EntryBytes
	inflight, _ := p.budget.inUse()
	st.MemoryBytes = cs.EntryBytes + bs.Bytes + hs.Bytes + inflight
	st.MemoryLimitBytes = p.cfg.MaxMemory
	st.EntryOverhead = cachestore.DefaultEntryOverhead
	st.Stored = p.fills.stored.Load()
	st.CutOff = p.fills.cutOff.Load()
	st.Aborted = p.fills.aborted.Load()
	st.TooBig = p.fills.tooBig.Load()
	st.UpstreamErrors = p.fills.upstream5.Load()
	st.Released = make(map[string]int64)
	for _, c := range cachestore.Causes() {
		st.Released[c.String()] = cs.Released[c]
	}
	st.Revalidated = p.revalidated.Load()
	st.NotModified = p.notModified.Load()
	st.Ranges = p.ranges.Load()
	st.Coalesced = p.coalesced.Load()
	st.Refreshes = p.refreshes.Load()
	st.Invalidated = p.invalidated.Load()
	st.Purged = p.purged.Load()
	st.ServedBytes = p.served.Load()
	st.UpstreamByCl = map[string]int64{"error": p.upstream.byClass[0].Load()}
	for c := 1; c <= 5; c++ {
		st.UpstreamByCl[string(rune('0'+c))+"xx"] = p.upstream.byClass[c].Load()
	}
	st.BodyOverhead = dedupbody.BodyOverhead
	st.BreakEvenBytes = dedupbody.BodyOverhead
	st.UptimeSeconds = time.Since(p.started).Seconds()
	return st
}

// AdminHandler returns the handler for the admin listener: /healthz,
// /api/stats, /metrics (Prometheus) and the dashboard at /.
func (p *Proxy) AdminHandler() http.Handler {
	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Get("/api/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(p.Stats())
	})
	r.Get("/readyz", p.handleReady)
	r.Get("/api/top-bodies", p.handleTopBodies)
	r.Post("/api/purge", p.handlePurge)
	r.Handle("/metrics", promhttp.HandlerFor(p.newRegistry(), promhttp.HandlerOpts{}))
	r.Handle("/*", dashboard.Handler())
	return r
}

// handleReady answers /readyz: 200 when the upstream accepts a TCP
// connection within a second, 503 otherwise.
func (p *Proxy) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	host := p.cfg.Upstream.Host
	if p.cfg.Upstream.Port() == "" {
		port := "80"
		if p.cfg.Upstream.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(p.cfg.Upstream.Hostname(), port)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "upstream %s unreachable: %v\n", host, err)
		return
	}
	_ = c.Close()
	_, _ = io.WriteString(w, "ready\n")
}

// TopBody is one row of /api/top-bodies.
type TopBody struct {
	Hash        string   `json:"hash"` // xxhash64, hex
	Size        int64    `json:"size"`
	Refs        int      `json:"refs"`
	ExampleKeys []string `json:"example_keys"`
}

// topBodiesN is how many rows /api/top-bodies returns.
const topBodiesN = 10

// handleTopBodies answers /api/top-bodies: the most shared bodies, with a
// few keys that use each. It walks the body index under its lock and the
// entry store a shard at a time: meant for a dashboard polling now and
// then, not for every request.
func (p *Proxy) handleTopBodies(w http.ResponseWriter, _ *http.Request) {
	var top []TopBody
	bodies := make(map[*dedupbody.Body]int)
	p.bodies.Each(func(b *dedupbody.Body, refs int) bool {
		if refs < 2 {
			return true
		}
		if len(top) < topBodiesN || refs > top[len(top)-1].Refs {
			top = append(top, TopBody{Hash: fmt.Sprintf("%016x", b.Hash()), Size: b.Len(), Refs: refs})
			bodies[b] = len(top) - 1
			slices.SortFunc(top, func(a, b TopBody) int { return b.Refs - a.Refs })
			if len(top) > topBodiesN {
				top = top[:topBodiesN]
			}
		}
		return true
	})
	want := make(map[string]int, len(top))
	for i, t := range top {
		want[t.Hash] = i
	}
	p.store.Each(func(e *cachestore.Entry) bool {
		b := e.Body.Body()
		if b == nil {
			return true
		}
		if i, ok := want[fmt.Sprintf("%016x", b.Hash())]; ok && len(top[i].ExampleKeys) < 3 {
			top[i].ExampleKeys = append(top[i].ExampleKeys, strings.ReplaceAll(e.Key, "\x00", " | vary "))
		}
		return true
	})
	if top == nil {
		top = []TopBody{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(top)
}
