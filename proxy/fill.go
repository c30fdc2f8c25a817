package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/policy"
)

// fill is the state of one forwarded request, from serve to the end of
// the upstream body.
type fill struct {
	status  Status // what X-Cache says when the response is storable
	fwd     string // Cache-Status fwd parameter (RFC 9211 §2.2)
	detail  string // Cache-Status detail set before forwarding
	noStore bool   // the request forbids storing (or is HEAD)

	host, uri string
	hash      uint64
	method    string
	w         http.ResponseWriter // the client's writer (nil for background refreshes)
	reqHeader http.Header         // the client's request header (not the outbound one)
	req       policy.Request
	reqTime   time.Time

	post      bool              // a POST cached by operator opt-in (see post.go)
	stale     *cachestore.Entry // a stored response being revalidated, or nil
	leader    bool              // this request leads a coalesced flight
	committed atomic.Bool       // a response was stored for this fill
}

func keyHashString(k string) uint64 { return xxhash.Sum64String(k) }

// varyIndexTTL is the least time a Vary index entry is kept.
const varyIndexTTL = time.Hour

// hitForMissTTL is how long a URL whose response was not storable goes
// straight upstream without coalescing (Varnish's hit-for-miss).
const hitForMissTTL = 10 * time.Second

// rewrite prepares the outbound request. When a stored response is being
// revalidated, the cache's own validators replace the client's conditional
// fields (RFC 9111 §4.3.1); the client's are evaluated against the result.
func (p *Proxy) rewrite(pr *proxyRequest) {
	f, _ := pr.In.Context().Value(fillKey{}).(*fill)
	if f == nil || f.status == StatusBypass {
		return
	}
	// Responses are keyed by the Accept-Encoding bucket (policy.VaryKey),
	// so the upstream must see the bucket, not the client's own list:
	// otherwise a br-only client could be served a gzip body stored for
	// a "gzip, br" client.
	if ae := policy.AcceptEncodingBucket(f.reqHeader); ae != "" {
		pr.Out.Header.Set("Accept-Encoding", ae)
	}
	if f.stale != nil {
		setValidators(pr.Out.Header, f.stale)
	}
}

// setValidators replaces conditional fields of an outbound request with
// the stored response's validators.
func setValidators(h http.Header, e *cachestore.Entry) {
	for _, k := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"} {
		delete(h, k)
	}
	hdr := entryFields(e)
	if etag := hdr.get("Etag"); etag != "" && e.Flags&flagSynthETag == 0 {
		h.Set("If-None-Match", etag)
	}
	if lm := hdr.get("Last-Modified"); lm != "" {
		h.Set("If-Modified-Since", lm)
	}
}

// modifyResponse runs for every upstream response before its header is
// sent to the client. It invalidates on unsafe methods, completes
// revalidations, serves stale content on errors where allowed, and decides
// whether the response is stored; if so it wraps the body to capture it as
// it streams through.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	f, _ := resp.Request.Context().Value(fillKey{}).(*fill)
	if f == nil {
		return nil
	}
	now := p.now()
	p.upstreamDone(f, resp.StatusCode, now)
	if f.method != http.MethodGet && f.method != http.MethodHead && !f.post && policy.Invalidates(f.method, resp.StatusCode) {
		p.invalidateFor(resp)
	}
	if f.stale != nil {
		switch resp.StatusCode {
		case http.StatusNotModified:
			// About the stored response: with f.stale set, the outbound
			// request carries the cache's validators, never the client's.
			if e := p.freshen(f, resp, now); e != nil {
				p.revalidated.Add(1)
				p.replaceResponse(resp, f, e, StatusHit, fmt.Sprintf("%s; fwd=%s; fwd-status=304", cacheName, f.fwd))
				return nil
			}
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			if p.staleIfError(f, now) {
				p.replaceResponse(resp, f, f.stale, StatusStale, fmt.Sprintf("%s; fwd=%s; fwd-status=%d; detail=stale-if-error", cacheName, f.fwd, resp.StatusCode))
				return nil
			}
		}
	}
	st, detail := f.status, f.detail
	stored := false
	switch {
	case f.status == StatusBypass:
	case f.noStore:
		if f.method != http.MethodHead {
			st, detail = StatusBypass, "request-no-store"
		}
	default:
		c, why := p.decide(f, resp, now)
		if c == nil {
			st = StatusBypass
			if detail == "" {
				detail = why
			}
			break
		}
		stored = true
		resp.Body = c
	}
	p.counts[st].Add(1)
	if p.cfg.TagHeader != "" {
		delete(resp.Header, p.cfg.TagHeader) // surrogate keys are for us only
	}
	resp.Header["X-Cache"] = xCache[st]
	cs := cacheName + "; fwd=" + f.fwd
	if f.stale != nil || f.fwd == "request" {
		cs += "; fwd-status=" + strconv.Itoa(resp.StatusCode)
	}
	if stored {
		cs += "; stored"
	}
	if detail != "" {
		cs += "; detail=" + detail
	}
	resp.Header.Add("Cache-Status", cs)
	return nil
}

// decide returns a capture for resp if it is to be stored, or nil and the
// reason it is not. A response-side reason marks the key hit-for-miss.
func (p *Proxy) decide(f *fill, resp *http.Response, now time.Time) (*capture, string) {
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
		if f.leader && !requestSide {
			p.markHitForMiss(f)
		}
		return nil, why
	}
	return &capture{
		p:     p,
		f:     f,
		rc:    resp.Body,
		b:     dedupbody.NewBuilder(int(resp.ContentLength), int(p.cfg.MaxObjectSize)),
		want:  resp.ContentLength,
		resp:  resp,
		fresh: fr,
		vary:  vary,
		tags:  p.tags(resp.Header),
		rtime: now,
		hdr:   storedHeader(resp.Header, append(policy.StripFields(resp.Header, p.cfg.Policy), p.cfg.TagHeader)),
	}, ""
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
	p.store.Set(f.hash, &cachestore.Entry{Key: keyString(f.host, f.uri), Flags: flagHitForMiss}, hitForMissTTL)
}

// staleIfError reports whether f's stale entry may answer for a failed
// upstream (RFC 5861 §4, with the operator's grace as default).
func (p *Proxy) staleIfError(f *fill, now time.Time) bool {
	e := f.stale
	return e != nil && policy.StaleIfError(f.req, entryFreshness(e), entryAge(e, now), p.live().Grace)
}

// replaceResponse turns resp into the stored response e (after a 304, or
// stale content after an error), answering 304 instead when the client's
// own conditional request matches it.
func (p *Proxy) replaceResponse(resp *http.Response, f *fill, e *cachestore.Entry, st Status, cs string) {
	_ = resp.Body.Close()
	p.counts[st].Add(1)
	hdr := entryFields(e)
	h := make(http.Header, len(hdr)+4)
	for i := range hdr {
		h[hdr[i].name] = hdr[i].values
	}
	now := p.now()
	h["Date"] = p.dates.get(e.Date)
	h["Age"] = ageValue(entryAge(e, now))
	h["X-Cache"] = xCache[st]
	h["Cache-Status"] = []string{cs}
	resp.Header = h
	resp.StatusCode = int(e.Status)
	resp.Status = ""
	body := e.Body.Bytes()
	resp.ContentLength = int64(len(body))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNoContent) &&
		policy.NotModified(f.reqHeader, hdr.get("Etag"), hdr.get("Last-Modified")) {
		for _, k := range notModifiedDrop {
			delete(h, k)
		}
		resp.StatusCode = http.StatusNotModified
		resp.ContentLength = 0
		resp.Body = http.NoBody
		p.notModified.Add(1)
	}
	if f.method == http.MethodHead {
		resp.Body = http.NoBody
	}
}

// freshen applies a 304 to f's stale entry (RFC 9111 §4.3.4) and stores
// the refreshed entry, which shares the stored body. It returns nil if the
// 304 does not fit the stored response.
func (p *Proxy) freshen(f *fill, resp *http.Response, now time.Time) *cachestore.Entry {
	old := f.stale
	oldHdr := blockHeader(old.Header.Body().Aux())
	if !policy.CanFreshen(oldHdr, resp.Header) {
		return nil
	}
	merged := policy.UpdateStoredHeader(oldHdr, resp.Header)
	hdr := storedHeader(merged, policy.StripFields(merged, p.cfg.Policy))
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
	return e
}

// capture wraps an upstream body that is to be stored: it passes the bytes
// on to the client unchanged while a Builder keeps and hashes them, and
// commits the entry only when the body ended cleanly with the announced
// length. Anything else (an error, a short body, Close before EOF because
// the client went away) drops what was kept.
type capture struct {
	p     *Proxy
	f     *fill
	rc    io.ReadCloser
	b     *dedupbody.Builder
	n     int64
	want  int64 // Content-Length, -1 if unknown
	resp  *http.Response
	fresh policy.Freshness
	vary  []string
	tags  []string // surrogate keys
	rtime time.Time
	hdr   http.Header

	once  sync.Once
	ended bool // Read returned an error or EOF
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	if n > 0 {
		c.n += int64(n)
		_, _ = c.b.Write(p[:n])
	}
	switch {
	case err == io.EOF:
		c.finish(endEOF)
	case err != nil:
		c.finish(endError)
	}
	if err != nil {
		c.ended = true
	}
	return n, err
}

// Close ends the capture. A leader's capture that has not reached the end
// (its client went away) first reads the rest of the body, so that the
// response its waiters wait for is still stored; the read is bounded by
// max_object_size and the upstream read timeout.
func (c *capture) Close() error {
	if c.f.leader && !c.ended {
		buf := make([]byte, 32<<10)
		for !c.ended && !c.b.Overflowed() {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
	}
	c.finish(endClose)
	return c.rc.Close()
}

// How a captured body ended.
const (
	endEOF   = iota // the upstream body ended cleanly
	endError        // reading it failed: cut off, reset, timed out
	endClose        // closed before the end: the client went away
)

// finish commits or drops the captured body, once.
func (c *capture) finish(end int) {
	c.once.Do(func() {
		switch {
		case end == endError:
			c.p.fills.cutOff.Add(1)
		case end == endClose:
			c.p.fills.aborted.Add(1)
		case c.want >= 0 && c.n != c.want:
			c.p.fills.cutOff.Add(1)
		case c.b.Overflowed():
			c.p.fills.tooBig.Add(1)
		default:
			c.p.commit(c) // hands the scratch buffer back
			return
		}
		c.b.Discard()
	})
}

// commit stores a completely received response.
func (p *Proxy) commit(c *capture) {
	f := c.f
	if p.cfg.SynthesizeETag && !hasValidator(c.hdr) {
		c.hdr["Etag"] = []string{fmt.Sprintf(`"dc-%016x"`, c.b.Sum())}
	}
	bodyRef := c.b.Put(p.bodies, nil)
	primary := keyString(f.host, f.uri)
	e := p.newEntry(primary, c.resp.StatusCode, c.hdr, c.n, bodyRef, c.fresh, c.resp.Header, f.reqTime, c.rtime)
	if _, synth := c.resp.Header["Etag"]; !synth && len(c.hdr["Etag"]) > 0 {
		e.Flags |= flagSynthETag
	}
	if len(c.vary) > 0 {
		e.Key = variantKey(primary, policy.VaryKey(c.vary, f.reqHeader))
	}
	p.put(f, e, primary, c.fresh, c.tags, c.vary...)
	f.committed.Store(true)
	p.fills.stored.Add(1)
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
