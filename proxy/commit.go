package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/policy"
)

// Storing: the one place entries enter the store (put), from a response
// received whole (commit) or a 304 that refreshes a stored one (freshen).

// pending is a response being received that is to be stored once its body
// is complete.
type pending struct {
	status     int
	respHdr    http.Header // the upstream's header (Date, Age, ETag)
	hdr        http.Header // the fields stored (storedHeader)
	length     int64       // Content-Length, -1 if unknown
	fresh      policy.Freshness
	vary       []string
	tags       []string // surrogate keys
	rtime      time.Time
	initialAge int32 // seconds
}

// commit stores a response received whole and returns its entry.
func (p *Proxy) commit(f *fill, c *pending, body []byte) *cachestore.Entry {
	sum := dedupbody.Sum(body)
	if p.cfg.SynthesizeETag && !hasValidator(c.hdr) {
		c.hdr["Etag"] = []string{fmt.Sprintf(`"dc-%016x"`, sum)}
	}
	// A copy (into the arena) when the body is new: body is the fetch's
	// buffer, which goes back to its pool once its readers are done.
	bodyRef := p.bodies.PutCopy(body, sum, headerValidators(c.hdr).aux())
	primary := f.primaryKey()
	e := p.newEntry(primary, c.status, c.hdr, int64(len(body)), bodyRef, c.fresh, c.respHdr, f.reqTime, c.rtime)
	if _, origin := c.respHdr["Etag"]; !origin && len(c.hdr["Etag"]) > 0 {
		e.Flags |= flagSynthETag
	}
	if len(c.vary) > 0 {
		e.Key = variantKey(primary, policy.VaryKey(c.vary, f.reqHeader))
	}
	p.put(f, e, primary, c.fresh, c.tags, c.vary...)
	p.fills.stored.Add(1)
	return e
}

// freshen applies a 304 to f's stale entry (RFC 9111 §4.3.4) and stores
// the refreshed entry, which shares the stored body. The merged header
// goes through the same storability rules as a new response (RFC 9111 §3,
// §3.5): when they refuse it (the 304 says private or no-store, or the
// request had Authorization), nothing is stored and the merged header is
// returned for the revalidating client alone. A per-user Set-Cookie on the
// 304 is never merged. Both are nil if the 304 does not fit the stored
// response.
func (p *Proxy) freshen(f *fill, resp *http.Response, now time.Time) (*cachestore.Entry, http.Header) {
	old := f.stale
	oldHdr := entryHeader(old)
	if !policy.CanFreshen(oldHdr, resp.Header) {
		return nil, nil
	}
	merged := policy.UpdateStoredHeader(oldHdr, resp.Header)
	delete(merged, "Set-Cookie")
	delete(merged, "Set-Cookie2")
	tags := p.tags(resp.Header)
	if len(tags) == 0 {
		tags = p.index.tagsOf(old)
	}
	checked := p.purgeGen.Load()
	if f.stream != nil && p.purgedSince(f.stream.gen, f, tags) {
		// Purged while revalidating: refreshing the old entry would bring
		// back what the purge removed. Its client gets it, nobody else.
		if sc := resp.Header["Set-Cookie"]; len(sc) > 0 {
			merged["Set-Cookie"] = sc
		}
		return nil, merged
	}
	method := f.method
	if f.post {
		method = http.MethodGet
	}
	if ok, _ := policy.Storable(method, f.reqHeader, int(old.Status), merged, p.cfg.Policy); !ok {
		if sc := resp.Header["Set-Cookie"]; len(sc) > 0 {
			merged["Set-Cookie"] = sc
		}
		return nil, merged
	}
	hdr := storedHeader(merged, append(policy.StripFields(merged, p.cfg.Policy), p.cfg.TagHeader))
	fr := policy.ResponseFreshness(int(old.Status), merged, now, p.cfg.Policy)
	body := old.Body.Body()
	bodyRef := p.bodies.Put(body.Bytes(), body.Hash(), nil)
	e := p.newEntry(old.Key, int(old.Status), hdr, int64(len(body.Bytes())), bodyRef, fr, resp.Header, f.reqTime, now)
	e.Flags |= old.Flags & flagSynthETag
	primary, _, _ := strings.Cut(old.Key, "\x00")
	p.put(f, e, primary, fr, tags)
	p.unstoreIfPurged(checked, f, e, tags)
	return e, nil
}

// unstoreIfPurged removes e, just stored for fill f, when a purge after
// generation checked (the one its fetch was checked against) selects it:
// the purge may have run its deletions before e was in the store.
func (p *Proxy) unstoreIfPurged(checked uint64, f *fill, e *cachestore.Entry, tags []string) {
	if p.purgeGen.Load() == checked || !p.purgedSince(checked, f, tags) {
		return
	}
	h, _, _ := entryHashes(e)
	if cur, ok := p.store.Get(h); ok && cur == e {
		p.store.Del(h)
	}
}

// put stores e (a response for the primary key, or one of its variants
// when vary is given) with its surrogate keys, and makes it visible to the
// next lookup.
func (p *Proxy) put(f *fill, e *cachestore.Entry, primary string, fr policy.Freshness, tags []string, vary ...string) {
	ttl := p.keepFor(fr, time.Duration(e.InitialAge)*time.Second, e)
	h := f.hash
	if e.Key != primary {
		h = keyHashString(e.Key)
	}
	// Index first: once stored, the entry may leave at any moment, and its
	// release must find it in the index to remove it. Pinned until the
	// shared tier has read its bytes.
	e.Pin()
	defer p.store.Unpin(e)
	p.index.stored(h, f.hash, f.host, e, tags)
	p.store.Set(h, e, ttl)
	if e.Key != primary && len(vary) > 0 {
		// The index outlives any one variant (each store renews it): an
		// index that expired first would hide variants still fresh. An
		// index left without variants only costs a vary-miss lookup.
		p.store.Set(f.hash, &cachestore.Entry{Key: primary, Extra: varyIndex(strings.Join(vary, ","))}, max(ttl, varyIndexTTL))
	}
	// New keys reach ristretto's map asynchronously: wait, so that the
	// next request for the key finds it.
	p.store.Wait()
	p.toShared(f, e, primary, vary, tags, ttl)
}

// tags returns the surrogate keys a response carries in the configured
// tag header (space- or comma-separated).
func (p *Proxy) tags(h http.Header) []string {
	if p.cfg.TagHeader == "" {
		return nil
	}
	var out []string
	for _, line := range h[p.cfg.TagHeader] {
		out = append(out, strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })...)
	}
	return out
}

func hasValidator(h http.Header) bool {
	return len(h["Etag"]) > 0 || len(h["Last-Modified"]) > 0
}

// markHitForMiss stores a marker that sends the key's requests straight
// upstream for hitForMissTTL.
func (p *Proxy) markHitForMiss(f *fill) {
	p.store.Set(f.hash, &cachestore.Entry{Key: f.primaryKey(), Flags: flagHitForMiss}, hitForMissTTL)
	p.store.Wait() // the leader's client may ask again as soon as it has its answer
}
