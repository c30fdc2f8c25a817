package proxy

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"dedupcache/cachestore"
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
	st.MemoryBytes = cs.EntryBytes + bs.Bytes + hs.Bytes
	st.MemoryLimitBytes = p.store.MaxMemory()
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
	st.UptimeSeconds = time.Since(p.started).Seconds()
	return st
}

// AdminHandler returns the handler for the admin listener: /healthz and
// /api/stats.
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
	return r
}
