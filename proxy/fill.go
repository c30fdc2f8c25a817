package proxy

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"time"

	"dedupcache/cachestore"
	"dedupcache/policy"
	"dedupcache/rules"
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
	key       string // host + " " + uri once built (primaryKey)
	hash      uint64
	method    string
	w         http.ResponseWriter // the client's writer (nil for fetches)
	reqHeader http.Header         // the inbound request's header (not the outbound one)
	req       policy.Request
	reqTime   time.Time

	rule string // the rule that shaped the request, for Cache-Status

	sharedToken any // from the shared tier's Get, for its Put

	post     bool              // a POST cached by operator opt-in (see post.go)
	postBody []byte            // its body, sent again by the fetch
	stale    *cachestore.Entry // a stored response being revalidated, or nil
	// unconditional: the revalidation of stale got a 304 that fits no
	// stored response; the fetch asks again without validators.
	unconditional bool
	stream        *stream             // the fetch's stream
	pinned        []*cachestore.Entry // entries a fetch pinned, unpinned when it ends
	in            *http.Request       // the fetch's inbound request
	body          *clientBody         // the client's request body, when forwarded with one
}

// primaryKey returns f's primary key, host + " " + uri, building it once:
// the stream of a fetch and the entry it stores share one string. It is
// called on the request's goroutine before a fetch starts (newFetch gives
// the fetch's fill the built key), so the fetch only reads it.
func (f *fill) primaryKey() string {
	if f.key == "" {
		f.key = keyString(f.host, f.uri)
	}
	return f.key
}

// varyIndexTTL is the least time a Vary index entry is kept.
const varyIndexTTL = time.Hour

// hitForMissTTL is how long a URL whose response was not storable goes
// straight upstream without coalescing (Varnish's hit-for-miss).
const hitForMissTTL = 10 * time.Second

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
	if _, ok := resp.Header["Surrogate-Control"]; ok && policy.SurrogateApplies(resp.Header, p.cfg.Policy) {
		defer delete(resp.Header, "Surrogate-Control") // obeyed here, once decided on
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
	if !withStatus && detail == "" {
		if cs, ok := plainCacheStatus[plainStatus{fwd, stored}]; ok {
			if _, there := h["Cache-Status"]; !there {
				h["Cache-Status"] = cs // shared: full, so an append reallocates
			} else {
				h.Add("Cache-Status", cs[0])
			}
			return
		}
	}
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

// plainStatus is a Cache-Status without fwd-status or detail.
type plainStatus struct {
	fwd    string
	stored bool
}

// plainCacheStatus holds label's most common values built once (a miss's
// "dedupcache; fwd=uri-miss; stored" among them), each as a full
// one-value slice: labelling the usual response allocates nothing.
var plainCacheStatus = func() map[plainStatus][]string {
	m := make(map[plainStatus][]string)
	for _, fwd := range []string{"bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"} {
		for _, stored := range []bool{false, true} {
			cs := cacheName + "; fwd=" + fwd
			if stored {
				cs += "; stored"
			}
			m[plainStatus{fwd, stored}] = []string{cs}[:1:1]
		}
	}
	return m
}()

// fetchResponse decides what fetch f's stream carries, from the upstream's
// response header: the stale entry freshened by a 304, the stale entry
// instead of an error (RFC 5861), a response to store, or one that may not
// be stored (then for the leader only).
func (p *Proxy) fetchResponse(f *fill, s *stream, resp *http.Response, now time.Time) {
	if f.stale != nil {
		switch resp.StatusCode {
		case http.StatusNotModified:
			if f.unconditional {
				break // a 304 to a request without validators: relayed as it is
			}
			// About the stored response: the request carried the cache's
			// validators, never the client's.
			e, merged := p.freshen(f, resp, now)
			if e != nil {
				p.revalidated.Add(1)
				s.entry, s.entryAs = e, StatusHit
				s.entryCS = fmt.Sprintf("%s; fwd=%s; fwd-status=304", cacheName, f.fwd)
				s.fwdStatus = http.StatusNotModified
				s.cookies = resp.Header["Set-Cookie"] // the revalidating client's own, never stored
				p.answeredBy(s, resp, kindEntry)
				return
			}
			if merged != nil {
				// The 304 forbids storing (private, no-store, a cookie): its
				// client gets the merged response, the entry stays as it was.
				f.status = StatusBypass
				label(merged, StatusBypass, f.fwd, true, http.StatusNotModified, false, "not-stored")
				// A copy: the leader writes it after the fetch has unpinned
				// the entry.
				s.status, s.header, s.passBody = int(f.stale.Status), merged, bytes.Clone(f.stale.Body.Bytes())
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
	detail := f.detail
	if f.rule != "" {
		detail = "rule:" + f.rule // what made it storable says more than how it was fetched
	}
	label(resp.Header, StatusMiss, f.fwd, f.stale != nil || f.fwd == "request", resp.StatusCode, true, detail)
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

// decide returns what commit needs if resp is to be stored, or nil and the
// reason it is not. A response-side reason marks the key hit-for-miss.
func (p *Proxy) decide(f *fill, resp *http.Response, now time.Time) (*pending, string) {
	method := f.method
	if f.post {
		method = http.MethodGet // an operator-listed read-only POST
	}
	ok, reason := policy.Storable(method, f.reqHeader, resp.StatusCode, resp.Header, p.cfg.Policy)
	live := p.live()
	var rule *rules.Rule
	if live.Rules.Len() > 0 {
		rule = live.Rules.Response(baseHost(f.host), uriPath(f.uri), method, resp.StatusCode)
	}
	if !ok && rule != nil && (rule.TTL > 0 || rule.ForceTTL > 0) && resp.StatusCode >= 200 && resp.StatusCode <= 599 &&
		resp.StatusCode != http.StatusPartialContent && resp.StatusCode != http.StatusNotModified &&
		(reason == policy.ReasonNoFreshness || reason == policy.ReasonStatus) {
		// The operator's rule is the explicit permission RFC 9111 §3
		// asks for (an out-of-band cache-control extension); what forbids
		// storing (no-store, private, Set-Cookie, Authorization) still wins.
		ok, reason = true, policy.ReasonOK
	}
	if rule != nil {
		f.rule = rule.String()
	}
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
		switch {
		case rule != nil && rule.ForceTTL > 0:
			fr.Lifetime, fr.Heuristic, fr.NoCache = rule.ForceTTL, false, false
		case rule != nil && rule.TTL > 0 && !fr.Explicit:
			fr.Lifetime, fr.Heuristic = rule.TTL, false
		case live.DefaultTTL > 0 && !fr.Explicit && !fr.Heuristic:
			fr.Lifetime = live.DefaultTTL // the operator's default for responses that say nothing
		}
		if rule != nil && rule.StaleWhileRevalidate > 0 && fr.StaleWhileRevalidate == 0 {
			fr.StaleWhileRevalidate = rule.StaleWhileRevalidate
		}
		if rule != nil && rule.StaleIfError > 0 && fr.StaleIfError == 0 {
			fr.StaleIfError = rule.StaleIfError
		}
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
