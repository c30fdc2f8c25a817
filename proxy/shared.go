package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/policy"
)

// Shared is a second cache tier that several instances share (Redis,
// through package redistier; main adapts it). The proxy asks it on an
// in-process miss before the origin, inside the key's fetch (so one read
// per key per instance at a time), and hands it every response it stores.
// Every method must return quickly whatever the tier's state: a tier that
// is down answers misses.
type Shared interface {
	// Get returns the entry stored under a full cache key, and a token
	// (even on a miss) that a Put of the response fetched next for the key
	// must carry: a purge in between makes that Put a no-op.
	Get(ctx context.Context, key string) (e SharedEntry, token any, ok bool)
	// VaryNames returns the Vary field names stored for a primary key.
	VaryNames(ctx context.Context, primary string) ([]string, bool)
	// Put stores e under key (asynchronously); varyOf and varyNames are set
	// for a variant (the primary key and its Vary names).
	Put(key string, token any, varyOf string, varyNames []string, e SharedEntry, ttl time.Duration)
	// Purge applies a purge in the tier and tells the other instances.
	Purge(ctx context.Context, r PurgeRequest) error
	// Held tells the tier that the cache holds a body it read from it (the
	// cache's own immutable copy), so that it need not download it again.
	Held(sum [32]byte, body []byte)
	// Stats returns the tier's figures.
	Stats() SharedStats
}

// SharedStats are the shared tier's figures, in /api/stats and /metrics.
type SharedStats struct {
	Healthy          bool    `json:"healthy"` // reachable (the circuit breaker is closed)
	Hits             int64   `json:"hits"`    // reads that found an entry
	Misses           int64   `json:"misses"`  // reads that did not (down, timeout, absent, purged, corrupt)
	Errors           int64   `json:"errors"`
	Timeouts         int64   `json:"timeouts"`
	BodiesFetched    int64   `json:"bodies_fetched"`     // bodies downloaded
	BodiesLocal      int64   `json:"bodies_local"`       // bodies found in memory, not downloaded
	PutsWritten      int64   `json:"puts_written"`       // responses written
	PutsDropped      int64   `json:"puts_dropped"`       // not written: queue full or tier down
	PutsRefused      int64   `json:"puts_refused"`       // not written: a purge since the fill began (or the tier unreached by its read)
	PutsFailed       int64   `json:"puts_failed"`        // not written: a Redis error or deadline
	BytesUploaded    int64   `json:"bytes_uploaded"`     // body bytes sent
	BytesNotUploaded int64   `json:"bytes_not_uploaded"` // body bytes another instance had stored already
	PurgesSent       int64   `json:"purges_sent"`
	PurgesApplied    int64   `json:"purges_applied"` // purges of other instances applied here
	PurgesMissed     int64   `json:"purges_missed"`  // times everything was marked stale for lack of proof
	StreamLagSeconds float64 `json:"purge_log_lag_seconds"`
}

// SharedEntry is a stored response as the shared tier keeps it: the entry's
// fields, its rendered header block and its body.
type SharedEntry struct {
	Status                                            int
	Header, Body                                      []byte
	Stored, Date                                      int64
	Flags                                             uint32
	Lifetime, InitialAge, StaleRevalidate, StaleError int32
	Tags                                              []string
	BodySum                                           [32]byte // SHA-256 of Body, as the tier checked it
}

// sharedTimeout bounds the shared tier's part of a miss.
const sharedTimeout = 200 * time.Millisecond

// toShared hands a stored entry to the shared tier (not one that came from
// it). e must be pinned.
func (p *Proxy) toShared(f *fill, e *cachestore.Entry, primary string, vary []string, tags []string, ttl time.Duration) {
	sh := p.cfg.Shared
	if sh == nil || e.Flags&flagFromShared != 0 || f.sharedToken == nil {
		return // not asked first (a POST), or it came from there
	}
	varyOf := ""
	if e.Key != primary {
		varyOf = primary
	}
	// Copies: the tier uploads after this returns, and the entry's bytes
	// may be freed by then (bodies live in the arena).
	sh.Put(e.Key, f.sharedToken, varyOf, vary, SharedEntry{
		Status: int(e.Status), Header: sharedBlock(e), Body: bytes.Clone(e.Body.Bytes()),
		Stored: e.Stored, Date: e.Date, Flags: uint32(e.Flags &^ (flagIndexed | flagFromShared)),
		Lifetime: e.Lifetime, InitialAge: e.InitialAge, StaleRevalidate: e.StaleRevalidate, StaleError: e.StaleError,
		Tags: tags,
	}, ttl)
}

// fromShared looks f's key up in the shared tier and, if it holds the
// response, stores it in-process and returns its entry (fresh or not: a
// stale one is revalidated), pinned: the caller unpins it. The variant is chosen from f's request.
func (p *Proxy) fromShared(ctx context.Context, f *fill) *cachestore.Entry {
	sh := p.cfg.Shared
	if sh == nil || f.post {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	primary := f.primaryKey()
	key, vary := primary, []string(nil)
	se, token, ok := sh.Get(ctx, primary)
	f.sharedToken = token
	if !ok {
		names, found := sh.VaryNames(ctx, primary)
		if !found {
			return nil
		}
		vary = names
		key = variantKey(primary, policy.VaryKey(names, f.reqHeader))
		if se, token, ok = sh.Get(ctx, key); !ok {
			f.sharedToken = token
			return nil
		}
		f.sharedToken = token
	}
	block, v := splitBlock(se.Header)
	e := &cachestore.Entry{
		Key: key,
		// Copies: the tier's slices may alias its client's buffers.
		Header:          p.headers.PutCopy(block, dedupbody.Sum(block), parseBlock),
		Body:            p.bodies.PutCopy(se.Body, dedupbody.Sum(se.Body), v.aux()),
		Stored:          se.Stored,
		Date:            se.Date,
		Status:          int16(se.Status),
		Flags:           uint16(se.Flags)&^flagIndexed | flagFromShared,
		Lifetime:        se.Lifetime,
		InitialAge:      se.InitialAge,
		StaleRevalidate: se.StaleRevalidate,
		StaleError:      se.StaleError,
	}
	e.Extra = entryExtra(v, e.Body)
	if entryFields(e) == nil {
		e.Header.Release()
		e.Body.Release()
		return nil // not a header block of ours
	}
	sh.Held(se.BodySum, e.Body.Bytes())
	fr := entryFreshness(e)
	e.Pin() // for the caller: the store may drop it at once
	p.put(f, e, primary, fr, se.Tags, vary...)
	return e
}

// CopyBody returns a copy of the stored body with xxhash64 h and length
// n, if the cache holds one and it has the given SHA-256: the shared tier
// uses it instead of downloading a body this instance holds.
func (p *Proxy) CopyBody(h uint64, n int64, sum [32]byte) []byte {
	r, ok := p.bodies.Acquire(h, n)
	if !ok {
		return nil
	}
	defer r.Release()
	if sha256.Sum256(r.Bytes()) != sum {
		return nil
	}
	return bytes.Clone(r.Bytes())
}

// sharedHit answers a fetch from an entry the shared tier held, if it is
// fresh for f's request; it reports whether it did.
func (p *Proxy) sharedHit(s *stream, f *fill, e *cachestore.Entry) bool {
	age := entryAge(e, p.now())
	fr := entryFreshness(e)
	if action, _ := policy.Evaluate(f.req, fr, age); action != policy.Serve {
		return false
	}
	s.entry, s.entryAs = e, StatusHit
	s.entryCS = fmt.Sprintf("%s; hit; ttl=%d; detail=shared", cacheName, int64((fr.Lifetime-age)/time.Second))
	p.streams.forget(s)
	s.decided(kindEntry)
	return true
}

// sharedBlock is the header block an entry is written to the shared tier
// with: a copy of its block with its validators (see validators) added, so
// that the tier holds whole responses.
func sharedBlock(e *cachestore.Entry) []byte {
	b := bytes.Clone(e.Header.Bytes())
	if v := validatorsOf(e); v != nil {
		if v.v[0] != "" {
			b = append(append(append(b, "Etag: "...), v.v[0]...), "\r\n"...)
		}
		if v.v[1] != "" {
			b = append(append(append(b, "Last-Modified: "...), v.v[1]...), "\r\n"...)
		}
	}
	return b
}

// splitBlock takes a single-valued ETag and Last-Modified out of a block
// read from the shared tier (see sharedBlock), as newEntry does: it returns
// the block without them (block itself when there are none) and them, as
// views of block's bytes.
func splitBlock(block []byte) ([]byte, fieldValidators) {
	aux, _ := parseBlock(block)
	h := blockHeader(aux)
	v := headerValidators(h)
	if v.none() {
		return block, v
	}
	return v.renderWithout(h), v
}
