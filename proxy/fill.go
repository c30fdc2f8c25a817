package proxy

import (
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/policy"
)

// fill is the state of one forwarded request: a client's request sent
// straight upstream (forward), or a fetch that fills the cache (miss).
type fill struct {
	status  Status // what X-Cache says (a fetch's: for its leader)
	fwd     string // Cache-Status fwd parameter (RFC 9211 §2.2)
	detail  string // Cache-Status detail set before forwarding
	noStore bool   // the response is not stored whatever it says
	fetch   bool   // a fetch filling the cache (conditionals replaced by ours)

	host, uri string
	hash      uint64
	method    string
	w         http.ResponseWriter // the client's writer (nil for fetches)
	reqHeader http.Header         // the inbound request's header (not the outbound one)
	req       policy.Request
	reqTime   time.Time

	post     bool              // a POST cached by operator opt-in (see post.go)
	postBody []byte            // its body, sent again by the fetch
	stale    *cachestore.Entry // a stored response being revalidated, or nil
	stream   *stream           // the fetch's stream
	in       *http.Request     // the fetch's inbound request
}

func keyHashString(k string) uint64 { return xxhash.Sum64String(k) }

// varyIndexTTL is the least time a Vary index entry is kept.
const varyIndexTTL = time.Hour

// hitForMissTTL is how long a URL whose response was not storable goes
// straight upstream without coalescing (Varnish's hit-for-miss).
const hitForMissTTL = 10 * time.Second

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
	p.store.Set(f.hash, &cachestore.Entry{Key: keyString(f.host, f.uri), Flags: flagHitForMiss}, hitForMissTTL)
}

// staleIfError reports whether f's stale entry may answer for a failed
// upstream (RFC 5861 §4, with the operator's grace as default).
func (p *Proxy) staleIfError(f *fill, now time.Time) bool {
	e := f.stale
	return e != nil && policy.StaleIfError(f.req, entryFreshness(e), entryAge(e, now), p.live().Grace)
}

// modifyResponse runs for every upstream response before its header is
// written. For a request sent straight upstream it invalidates on unsafe
// methods (RFC 9111 §4.4) and labels the response; for a fetch it decides
// what the fetch's stream carries (fetchResponse).
func (p *Proxy) modifyResponse(resp *http.Response) error {
	f, _ := resp.Request.Context().Value(fillKey{}).(*fill)
	if f == nil {
		return nil
	}
	now := p.now()
	p.upstreamDone(f, resp.StatusCode, now)
	if p.cfg.TagHeader != "" {
		defer delete(resp.Header, p.cfg.TagHeader) // surrogate keys are for us only
	}
	if f.stream != nil {
		p.fetchResponse(f, f.stream, resp, now)
		return nil
	}
	if !f.post && policy.Invalidates(f.method, resp.StatusCode) {
		p.invalidateFor(resp, f)
	}
	st, detail := f.status, f.detail
	if f.status != StatusBypass && f.noStore && f.method != http.MethodHead && detail == "" {
		st, detail = StatusBypass, "request-no-store"
	}
	p.counts[st].Add(1)
	label(resp.Header, st, f.fwd, f.fwd == "request", resp.StatusCode, false, detail)
	return nil
}

// label sets X-Cache and Cache-Status on a response from the upstream.
func label(h http.Header, st Status, fwd string, withStatus bool, status int, stored bool, detail string) {
	h["X-Cache"] = xCache[st]
	cs := cacheName + "; fwd=" + fwd
	if withStatus {
		cs += "; fwd-status=" + strconv.Itoa(status)
	}
	if stored {
		cs += "; stored"
	}
	if detail != "" {
		cs += "; detail=" + detail
	}
	h.Add("Cache-Status", cs)
}

// fetchResponse decides what fetch f's stream carries, from the upstream's
// response header: the stale entry freshened by a 304, the stale entry
// instead of an error (RFC 5861), a response to store, or one that may not
// be stored (then for the leader only).
func (p *Proxy) fetchResponse(f *fill, s *stream, resp *http.Response, now time.Time) {
	if f.stale != nil {
		switch resp.StatusCode {
		case http.StatusNotModified:
			// About the stored response: the request carried the cache's
			// validators, never the client's.
			e, merged := p.freshen(f, resp, now)
			if e != nil {
				p.revalidated.Add(1)
				s.entry, s.entryAs = e, StatusHit
				s.entryCS = fmt.Sprintf("%s; fwd=%s; fwd-status=304", cacheName, f.fwd)
				s.cookies = resp.Header["Set-Cookie"] // the revalidating client's own, never stored
				p.answeredBy(s, resp, kindEntry)
				return
			}
			if merged != nil {
				// The 304 forbids storing (private, no-store, a cookie): its
				// client gets the merged response, the entry stays as it was.
				f.status = StatusBypass
				label(merged, StatusBypass, f.fwd, true, http.StatusNotModified, false, "not-stored")
				s.status, s.header, s.passBody = int(f.stale.Status), merged, f.stale.Body.Bytes()
				merged["Content-Length"] = []string{strconv.Itoa(len(s.passBody))}
				p.answeredBy(s, resp, kindPassEntry)
				return
			}
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			if p.staleIfError(f, now) {
				s.entry, s.entryAs = f.stale, StatusStale
				s.entryCS = fmt.Sprintf("%s; fwd=%s; fwd-status=%d; detail=stale-if-error", cacheName, f.fwd, resp.StatusCode)
				p.answeredBy(s, resp, kindEntry)
				return
			}
		}
	}
	pend, why := p.decide(f, resp, now)
	if pend == nil {
		f.status = StatusBypass
		if f.detail != "" {
			why = f.detail
		}
		label(resp.Header, StatusBypass, f.fwd, f.stale != nil || f.fwd == "request", resp.StatusCode, false, why)
		return // sink.WriteHeader makes it kindPass
	}
	s.pend = pend
	label(resp.Header, StatusMiss, f.fwd, f.stale != nil || f.fwd == "request", resp.StatusCode, true, f.detail)
	shared := maps.Clone(pend.hdr)
	if resp.ContentLength >= 0 {
		shared["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	shared["Date"] = resp.Header["Date"]
	s.shared = shared
	if len(pend.vary) > 0 {
		s.varyNames, s.varyKey = pend.vary, policy.VaryKey(pend.vary, f.reqHeader)
	}
}

// answeredBy ends a fetch's use of resp: the stream carries an entry (or a
// merged 304), so the upstream body is not read.
func (p *Proxy) answeredBy(s *stream, resp *http.Response, k streamKind) {
	_ = resp.Body.Close()
	resp.Body = http.NoBody
	p.streams.forget(s) // answered: new requests find the entry
	s.decided(k)
}

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

// decide returns what commit needs if resp is to be stored, or nil and the
// reason it is not. A response-side reason marks the key hit-for-miss.
func (p *Proxy) decide(f *fill, resp *http.Response, now time.Time) (*pending, string) {
	method := f.method
	if f.post {
		method = http.MethodGet // an operator-listed read-only POST
	}
	ok, reason := policy.Storable(method, f.reqHeader, resp.StatusCode, resp.Header, p.cfg.Policy)
	vary, star := policy.ParseVary(resp.Header)
	why := reason.String()
	requestSide := reason == policy.ReasonAuthorization || reason == policy.ReasonRequestNoStore || reason == policy.ReasonMethod
	switch {
	case !ok:
	case star:
		ok, why = false, "vary-star"
	case resp.ContentLength > p.cfg.MaxObjectSize:
		ok, why = false, "too-big"
		p.fills.tooBig.Add(1)
	case len(resp.Header["Trailer"]) > 0 || len(resp.Trailer) > 0:
		ok, why = false, "trailers"
	}
	var fr policy.Freshness
	if ok {
		fr = policy.ResponseFreshness(resp.StatusCode, resp.Header, now, p.cfg.Policy)
		if fr.Lifetime <= 0 && fr.StaleWhileRevalidate <= 0 && !hasValidator(resp.Header) {
			// Never usable without revalidation, and nothing to
			// revalidate with.
			ok, why = false, "no-freshness"
		}
	}
	if !ok {
		if !requestSide {
			p.markHitForMiss(f)
		}
		return nil, why
	}
	return &pending{
		status:     resp.StatusCode,
		respHdr:    resp.Header,
		hdr:        storedHeader(resp.Header, append(policy.StripFields(resp.Header, p.cfg.Policy), p.cfg.TagHeader)),
		length:     resp.ContentLength,
		fresh:      fr,
		vary:       vary,
		tags:       p.tags(resp.Header),
		rtime:      now,
		initialAge: seconds(policy.InitialAge(resp.Header, f.reqTime, now)),
	}, ""
}

// commit stores a response received whole and returns its entry.
func (p *Proxy) commit(f *fill, c *pending, body []byte) *cachestore.Entry {
	sum := dedupbody.Sum(body)
	if p.cfg.SynthesizeETag && !hasValidator(c.hdr) {
		c.hdr["Etag"] = []string{fmt.Sprintf(`"dc-%016x"`, sum)}
	}
	bodyRef := p.bodies.PutCopy(body, sum, nil)
	primary := keyString(f.host, f.uri)
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
	oldHdr := blockHeader(old.Header.Body().Aux())
	if !policy.CanFreshen(oldHdr, resp.Header) {
		return nil, nil
	}
	merged := policy.UpdateStoredHeader(oldHdr, resp.Header)
	delete(merged, "Set-Cookie")
	delete(merged, "Set-Cookie2")
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
	tags := p.tags(resp.Header)
	if len(tags) == 0 {
		tags = p.index.tagsOf(old)
	}
	primary, _, _ := strings.Cut(old.Key, "\x00")
	p.put(f, e, primary, fr, tags)
	return e, nil
}

// newEntry builds an entry: hdr (already filtered by storedHeader) gets the
// body's Content-Length and goes to the header store.
func (p *Proxy) newEntry(key string, status int, hdr http.Header, length int64, body dedupbody.Ref, fr policy.Freshness, respHdr http.Header, reqTime, respTime time.Time) *cachestore.Entry {
	hdr["Content-Length"] = []string{strconv.FormatInt(length, 10)}
	block := renderHeader(hdr)
	hdrRef := p.headers.Put(block, dedupbody.Sum(block), parseBlock)
	date := respTime
	if d, err := http.ParseTime(respHdr.Get("Date")); err == nil {
		date = d
	}
	var flags uint32
	if fr.NoCache {
		flags |= flagNoCache
	}
	if fr.MustRevalidate {
		flags |= flagMustRevalidate
	}
	if fr.Heuristic {
		flags |= flagHeuristic
	}
	return &cachestore.Entry{
		Key:             key,
		Header:          hdrRef,
		Body:            body,
		Stored:          respTime.UnixNano(),
		Date:            date.Unix(),
		Status:          int32(status),
		Flags:           flags,
		Lifetime:        seconds(fr.Lifetime),
		InitialAge:      seconds(policy.InitialAge(respHdr, reqTime, respTime)),
		StaleRevalidate: seconds(fr.StaleWhileRevalidate),
		StaleError:      seconds(fr.StaleIfError),
	}
}

// put stores e (a response for the primary key, or one of its variants
// when vary is given) with its surrogate keys, and makes it visible to the
// next lookup.
func (p *Proxy) put(f *fill, e *cachestore.Entry, primary string, fr policy.Freshness, tags []string, vary ...string) {
	ttl := p.keepFor(fr, time.Duration(e.InitialAge)*time.Second, e.Header.Body())
	h := f.hash
	if e.Key != primary {
		h = keyHashString(e.Key)
	}
	// Index first: once stored, the entry may leave at any moment, and its
	// release must find it in the index to remove it.
	p.index.stored(h, f.hash, f.host, e, tags)
	p.store.Set(h, e, ttl)
	if e.Key != primary && len(vary) > 0 {
		// The index outlives any one variant (each store renews it): an
		// index that expired first would hide variants still fresh. An
		// index left without variants only costs a vary-miss lookup.
		p.store.Set(f.hash, &cachestore.Entry{Key: primary, Vary: strings.Join(vary, ",")}, max(ttl, varyIndexTTL))
	}
	// New keys reach ristretto's map asynchronously: wait, so that the
	// next request for the key finds it.
	p.store.Wait()
}

// keepFor is how long an entry stays in the store: while it is fresh,
// while stale content may still be served from it, and, when it has
// validators, a while longer so it can be revalidated instead of refetched.
func (p *Proxy) keepFor(fr policy.Freshness, initialAge time.Duration, hdr *dedupbody.Body) time.Duration {
	stale := max(fr.StaleWhileRevalidate, fr.StaleIfError, p.live().Grace)
	if fr.MustRevalidate {
		stale = 0
	}
	if h, _ := hdr.Aux().(blockFields); h.get("Etag") != "" || h.get("Last-Modified") != "" {
		stale = max(stale, p.live().Keep)
	}
	return max(fr.Lifetime-initialAge+stale, time.Second)
}

// seconds converts d to whole seconds, saturating at int32.
func seconds(d time.Duration) int32 {
	s := d / time.Second
	if s > 1<<31-1 {
		return 1<<31 - 1
	}
	if s < 0 {
		return 0
	}
	return int32(s)
}
