package proxy

import (
	"time"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
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
	Misdirected  int64            `json:"misdirected"`        // requests refused with 421: host not in server.allowed_hosts
	ClientConns  int64            `json:"client_connections"` // open client connections on the proxy listeners
	ConnBytes    int64            `json:"connection_bytes"`   // their buffers' estimated memory, added to the Go memory limit
	ServedBytes  int64            `json:"served_bytes"`       // body bytes written from the cache
	UpstreamByCl map[string]int64 `json:"upstream_responses"` // by status class; "error" = no response

	BodyOverhead   int64 `json:"body_overhead_bytes"` // per distinct body: Body struct + index slot (measured)
	BreakEvenBytes int64 `json:"break_even_bytes"`    // a body larger than this saves memory once a second key shares it

	UptimeSeconds float64 `json:"uptime_seconds"`

	// Index is the size of what the proxy keeps per key beside the entry
	// store: each bounded by the store's entries or by max_inflight.
	Index IndexStats `json:"index"`

	// Shared is the shared tier's state; nil without one.
	Shared *SharedStats `json:"shared,omitempty"`
	// Snapshot is the last snapshot write and load; nil when there was
	// neither (no snapshot.path).
	Snapshot *SnapshotState `json:"snapshot,omitempty"`
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
	st.Misdirected = p.misdirected.Load()
	st.ClientConns = p.clientConns.Load()
	st.ConnBytes = p.connBytes.Load()
	st.ServedBytes = p.served.Load()
	st.UpstreamByCl = map[string]int64{"error": p.upstream.byClass[0].Load()}
	for c := 1; c <= 5; c++ {
		st.UpstreamByCl[string(rune('0'+c))+"xx"] = p.upstream.byClass[c].Load()
	}
	st.BodyOverhead = dedupbody.BodyOverhead
	st.BreakEvenBytes = dedupbody.BodyOverhead
	st.UptimeSeconds = time.Since(p.started).Seconds()
	st.Index = p.indexStats()
	if p.cfg.Shared != nil {
		sh := p.cfg.Shared.Stats()
		st.Shared = &sh
	}
	st.Snapshot = p.snapshots.state()
	return st
}

// IndexStats is the size of the structures kept per key beside the entry
// store (keyIndex, the table of fetches in flight, the in-flight budget),
// for checking that none of them outgrows what it is bounded by: the
// index by the entries stored (each link leaves with its entry), the
// fetches by max_inflight and their bytes by the in-flight budget.
type IndexStats struct {
	VaryKeys      int   `json:"vary_keys"`      // primary keys with indexed Vary variants
	VaryLinks     int   `json:"vary_links"`     // variants indexed under them
	Tags          int   `json:"tags"`           // distinct surrogate keys (tags) indexed
	TaggedEntries int   `json:"tagged_entries"` // entries indexed under a tag
	Hosts         int   `json:"hosts"`          // hosts with stored entries
	Fetches       int   `json:"fetches"`        // fetches in the coalescing table (requests may join them)
	Fills         int   `json:"fills"`          // fetches holding a cache.max_inflight slot
	InflightBytes int64 `json:"inflight_bytes"` // body bytes they have reserved from the in-flight budget
}

// indexStats reads the sizes of IndexStats. It counts the variant links
// key by key, under the index's lock: one step per URL with variants.
func (p *Proxy) indexStats() IndexStats {
	var st IndexStats
	x := p.index
	x.mu.Lock()
	st.VaryKeys = len(x.variants)
	for _, set := range x.variants {
		st.VaryLinks += len(set)
	}
	st.Tags = len(x.tags)
	st.TaggedEntries = len(x.tagged)
	st.Hosts = len(x.hosts)
	x.mu.Unlock()
	p.streams.mu.Lock()
	st.Fetches = len(p.streams.m)
	p.streams.mu.Unlock()
	st.InflightBytes, st.Fills = p.budget.inUse()
	return st
}

// TopBody is one of the most shared bodies, as [Proxy.TopBodies] reports
// it: plain data, owned by the caller.
type TopBody struct {
	Hash        uint64   // xxhash64 of the body
	Size        int64    // body bytes
	Refs        int      // live references: stored entries using the body
	ExampleKeys []string // up to three cache keys using it ("\x00" variant separators shown as " | vary ")
}

// exampleKeys is how many keys [Proxy.TopBodies] gives per body.
const exampleKeys = 3

// TopBodies returns up to n of the bodies used by the most entries (two or
// more), most shared first, each with a few keys of entries that use it.
// The body store's lock is held only while [dedupbody.Store.MostShared]
// copies the candidates; the keys come from a walk of the entry store, a
// shard at a time, that stops once every row has its keys. Meant for a
// dashboard polling now and then, not for every request. Safe for
// concurrent use.
func (p *Proxy) TopBodies(n int) []TopBody {
	shared := p.bodies.MostShared(n, 2)
	top := make([]TopBody, len(shared))
	rows := make(map[*dedupbody.Body]int, len(shared))
	for i, s := range shared {
		top[i] = TopBody{Hash: s.Body.Hash(), Size: s.Body.Len(), Refs: s.Refs}
		rows[s.Body] = i
	}
	missing := len(top) * exampleKeys
	if missing == 0 {
		return top
	}
	p.store.Each(func(e *cachestore.Entry) bool {
		if i, ok := rows[e.Body.Body()]; ok && len(top[i].ExampleKeys) < exampleKeys {
			top[i].ExampleKeys = append(top[i].ExampleKeys, displayKey(e.Key))
			missing--
		}
		return missing > 0
	})
	return top
}
