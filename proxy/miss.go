package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"dedupcache/cachestore"
	"dedupcache/policy"
)

// The miss path. A request that finds no usable entry joins the fetch in
// flight for its key, or starts one (see stream), then reads it:
//
//	miss -> streams.join -> startFetch (the leader only) -> follow
//
// Every fetch that may fill the cache (a client's miss, a revalidation, a
// HEAD answered from a GET, a stale-while-revalidate refresh) is built by
// fetchRequest and sent through the one ReverseProxy, whose Rewrite
// (outbound) builds every upstream request.

// miss answers r, which found no usable entry, from a fetch for its key.
func (p *Proxy) miss(w http.ResponseWriter, r *http.Request, f *fill) {
	var rd *streamReader
	s, leader := p.streams.join(f.primaryKey(), func() *stream {
		s := p.newFetch(r, f)
		if s != nil {
			rd, _ = s.attach() // before the fetch starts: the leader reads from the start
		}
		return s
	})
	if s == nil {
		// Too many fills in flight: this one goes through uncached.
		f.noStore, f.detail = true, "fill-limit"
		p.forward(w, r, f)
		return
	}
	if leader {
		p.startFetch(s)
	} else {
		rd, _ = s.attach() // nil if the stream no longer has the start of the body
	}
	p.follow(w, r, f, s, rd, leader)
}

// missAlone answers r from a fetch of its own that no other request joins:
// for a key whose last response could not be stored (hit-for-miss), so
// that requests do not queue behind each other, while a response that is
// storable again is stored.
func (p *Proxy) missAlone(w http.ResponseWriter, r *http.Request, f *fill) {
	s := p.newFetch(r, f)
	if s == nil {
		f.noStore, f.detail = true, "fill-limit"
		p.forward(w, r, f)
		return
	}
	rd, _ := s.attach()
	p.startFetch(s)
	p.follow(w, r, f, s, rd, true)
}

// refresh revalidates or refetches e in the background (RFC 5861
// stale-while-revalidate), unless a fetch for the key is in flight already:
// a stale hit costs a table lookup beyond the one refresh.
func (p *Proxy) refresh(r *http.Request, e *cachestore.Entry, f *fill) {
	if p.ctx.Err() != nil || p.streams.get(f.primaryKey()) != nil {
		return
	}
	f.stale, f.fwd = e, "stale"
	s, leader := p.streams.join(f.primaryKey(), func() *stream { return p.newFetch(r, f) })
	if leader {
		p.refreshes.Add(1)
		p.startFetch(s)
	}
}

// newFetch makes the stream for a fetch filling f's key, or returns nil
// when the in-flight budget allows no more fills.
func (p *Proxy) newFetch(r *http.Request, f *fill) *stream {
	if !p.budget.startFill() {
		return nil
	}
	// The fetch ends with the proxy, not with the request: its context is
	// cancelled by the proxy's (or by s.cancel), and carries the request's
	// values and the fill.
	ctx, cancel := context.WithCancel(p.ctx)
	ff := &fill{
		status: StatusMiss, fwd: f.fwd, detail: f.detail, fetch: true,
		host: f.host, uri: f.uri, key: f.primaryKey(), hash: f.hash, req: f.req, stale: f.stale,
		rule: f.rule,
		post: f.post, postBody: f.postBody,
	}
	if ff.stale != nil {
		// The fetch may outlive the request: it pins the entry it
		// revalidates itself (runFetch unpins it).
		if ff.stale.Pin() {
			ff.pinned = append(ff.pinned, ff.stale)
		} else {
			ff.stale = nil // evicted meanwhile: a plain fetch
		}
	}
	s := newStream(p, ff.key, ff, cancel)
	s.gen = p.purgeGen.Load()
	ff.stream = s
	ff.in = p.fetchRequest(&fetchContext{Context: ctx, values: r.Context(), fill: ff}, r, ff)
	return s
}

// fetchContext is a fetch's context: cancellation from the proxy's context
// (a child of it), values from the client request's (which the fetch
// outlives) and the fill under fillKey. One allocation where
// context.WithoutCancel, WithValue and an AfterFunc on the proxy's context
// took five.
type fetchContext struct {
	context.Context                 // cancellation
	values          context.Context // the client request's
	fill            *fill
}

// Value returns the fill for fillKey, else the value the proxy's context
// chain has, else the request context's. The proxy's chain comes first
// for the context package's own keys: asked for the cancelCtx behind
// Done (context.Cause, and a child context registering with its parent),
// it must answer with the fetch's, never with the client request's (as
// context.WithoutCancel hides its parent's).
func (c *fetchContext) Value(key any) any {
	if _, ok := key.(fillKey); ok {
		return c.fill
	}
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.values.Value(key)
}

// fetchRequest is the inbound request a fetch hands to the ReverseProxy: a
// copy of the client's request r (its header, target, Host and address, so
// that outbound builds the same upstream request for every kind of fetch),
// as a GET, or as the cached POST with its body.
func (p *Proxy) fetchRequest(ctx context.Context, r *http.Request, f *fill) *http.Request {
	// A shallow copy: the header and URL are shared with r, and nothing
	// writes either (outReq.build copies them for the upstream request).
	in := r.WithContext(ctx)
	in.Method, in.Body, in.ContentLength = http.MethodGet, http.NoBody, 0
	if f.post {
		in.Method = http.MethodPost
		in.Body = io.NopCloser(bytes.NewReader(f.postBody))
		in.ContentLength = int64(len(f.postBody))
	}
	in.TransferEncoding = nil
	f.method, f.reqHeader = in.Method, in.Header
	return in
}

// startFetch runs s's fetch on a goroutine the proxy owns (Close waits
// for it and cancels it).
func (p *Proxy) startFetch(s *stream) {
	p.bg.Add(1)
	select {
	case p.fetchers <- s: // an idle fetcher takes it
	default:
		p.fetcherWG.Add(1)
		go p.fetcher(s)
	}
}

// fetchJob runs s's fetch for startFetch.
func (p *Proxy) fetchJob(s *stream) {
	defer p.bg.Done()
	defer p.budget.endFill()
	p.runFetch(s)
}

// fetcherIdle is how long a fetcher goroutine waits for another fetch
// before it ends.
const fetcherIdle = 30 * time.Second

// fetcher runs fetches, s first and then whatever startFetch hands it,
// until it has been idle for fetcherIdle or the proxy closes. Reusing the
// goroutine keeps the stack a fetch grows into (ReverseProxy, transport,
// policy) instead of growing a new one per miss, which cost about 5 % of a
// miss's CPU (BenchmarkMiss profile). At most cache.max_inflight run.
func (p *Proxy) fetcher(s *stream) {
	defer p.fetcherWG.Done()
	idle := time.NewTimer(fetcherIdle)
	defer idle.Stop()
	for {
		p.fetchJob(s)
		idle.Reset(fetcherIdle)
		select {
		case s = <-p.fetchers:
		case <-idle.C:
			return
		case <-p.ctx.Done():
			return
		}
	}
}

// runFetch performs s's upstream request and stores the response if it
// may be stored and arrives whole.
func (p *Proxy) runFetch(s *stream) {
	defer s.cancel()
	f := s.fill
	defer func() {
		for _, e := range f.pinned {
			p.store.Unpin(e)
		}
	}()
	if e := p.fromShared(f.in.Context(), f); e != nil {
		f.pinned = append(f.pinned, e) // fromShared returns it pinned
		if p.sharedHit(s, f, e) {
			s.end(true)
			s.release()
			close(s.done)
			return
		}
		if f.stale == nil || f.stale.Stored < e.Stored {
			f.stale, f.fwd = e, "stale" // revalidate the shared copy
		}
	}
	k := &sink{s: s}
	f.reqTime = p.now()
	clean := p.fetchUpstream(k, f)
	if s.kind == 0 {
		s.errStatus = http.StatusBadGateway
		s.decided(kindFailed)
	}
	s.mu.Lock()
	windowed := s.windowed
	s.mu.Unlock()
	complete := clean && k.wrote && (s.pend == nil || s.pend.length < 0 || k.n == s.pend.length)
	if s.kind == kindStore && s.entry == nil {
		if complete && !windowed {
			p.commitStream(s) // a body of unknown length: stored at its end
		} else if !windowed { // a windowed body was counted as too big when it happened
			p.fills.cutOff.Add(1)
		}
	}
	// Out of the table before any reader sees the end: a client that got
	// the whole response finds the entry, not this stream, next time.
	p.streams.forget(s)
	s.end(complete)
	s.release()
	close(s.done)
}

// commitStream stores the complete body of stream s and takes the stream
// out of the table: from here on, requests for the key find the entry.
func (p *Proxy) commitStream(s *stream) {
	s.mu.Lock()
	body, windowed := s.buf, s.windowed
	s.mu.Unlock()
	if windowed || s.entry != nil {
		return
	}
	checked := p.purgeGen.Load()
	if p.purgedSince(s.gen, s.fill, s.pend.tags) {
		// A purge that selects this response ran while it was on its
		// way: it may be what the purge removed, so it goes to its
		// readers but is not stored.
		p.streams.forget(s)
		return
	}
	s.entry = p.commit(s.fill, s.pend, body)
	p.unstoreIfPurged(checked, s.fill, s.entry, s.pend.tags)
	p.streams.forget(s)
}

// follow answers r from stream s, once s knows what it carries. rd reads
// the body (nil: r cannot read it from the start).
func (p *Proxy) follow(w http.ResponseWriter, r *http.Request, f *fill, s *stream, rd *streamReader, leader bool) {
	if rd != nil {
		defer rd.detach()
	}
	select {
	case <-s.ready:
	case <-r.Context().Done():
		return
	}
	own := func() { // a waiter the fetch cannot answer makes its own request
		if rd != nil {
			rd.detach()
		}
		f.fwd, f.noStore = "miss", true
		if f.detail == "" {
			f.detail = "not-shared" // the fetch it waited on had nothing to share with it
		}
		p.forward(w, r, f)
	}
	if leader {
		noteUpstream(w, s.took)
	}
	switch s.kind {
	case kindEntry:
		e := s.entry
		if !e.Pin() {
			own() // evicted already
			return
		}
		defer p.store.Unpin(e)
		age := entryAge(e, p.now())
		if leader {
			if len(s.cookies) > 0 {
				w.Header()["Set-Cookie"] = s.cookies
			}
			p.serveEntry(w, r, e, age, []string{s.entryCS}, s.entryAs)
			return
		}
		if s.entryAs == StatusStale && !policy.StaleIfError(f.req, entryFreshness(e), age, p.live().Grace) {
			own()
			return
		}
		cs := []string{collapsed(f.fwd)}
		if s.fwdStatus != 0 {
			cs = withFwdStatus(cs, s.fwdStatus) // the upstream's 304, not the status this waiter gets
		}
		if s.entryAs == StatusStale {
			// RFC 5861 §4: the stored response answers for the upstream's
			// failure, and its Cache-Status says so, as the leader's does.
			cs = []string{collapsedStale(s.entryCS)}
		}
		p.coalesced.Add(1)
		p.serveEntry(w, r, e, age, cs, s.entryAs)
	case kindStore:
		if !leader && rd == nil && s.isSpent() {
			// The fetch ended, and its readers were done with its buffer,
			// before this waiter could attach: the body is in the entry, if
			// it was stored (spent comes just before done).
			select {
			case <-s.done:
			case <-r.Context().Done():
				return
			}
			if e := s.entry; e != nil && s.fits(r) && e.Pin() {
				defer p.store.Unpin(e)
				p.coalesced.Add(1)
				p.serveEntry(w, r, e, entryAge(e, p.now()), withFwdStatus([]string{collapsed(f.fwd)}, s.status), StatusHit)
				return
			}
		}
		if !leader && (rd == nil || !s.fits(r)) {
			own()
			return
		}
		p.streamOut(w, r, f, s, rd, leader)
	case kindPass, kindPassEntry:
		if !leader {
			own()
			return
		}
		p.streamOut(w, r, f, s, rd, true)
	case kindFailed:
		// Every reader of a failed fetch gets its error (or stale content
		// where its own request allows): a waiter waits at most as long as
		// the fetch may take to get a header (upstream_timeouts.dial +
		// response_header), and a failing origin is not asked once more per
		// waiter.
		if f.stale != nil && p.staleIfError(f, p.now()) {
			e := f.stale
			p.serveEntry(w, r, e, entryAge(e, p.now()), []string{fmt.Sprintf("%s; fwd=%s; detail=stale-if-error", cacheName, f.fwd)}, StatusStale)
			return
		}
		p.counts[s.fill.status].Add(1)
		w.Header()["X-Cache"] = xCache[s.fill.status]
		w.Header().Set("Cache-Status", cacheName+"; fwd="+f.fwd+"; detail=upstream-error")
		msg := "upstream unavailable"
		if s.errStatus == http.StatusGatewayTimeout {
			msg = "upstream timed out"
		}
		http.Error(w, msg, s.errStatus)
	}
}

// collapsed is the Cache-Status of a request answered from another
// request's fetch (RFC 9211 §2.2).
func collapsed(fwd string) string { return cacheName + "; fwd=" + fwd + "; collapsed" }

// collapsedStale is the Cache-Status of a waiter answered with the stale
// response its fetch's leader got for a failed upstream (leader: the
// leader's Cache-Status, "...; detail=stale-if-error").
func collapsedStale(leader string) string {
	before, detail, _ := strings.Cut(leader, "; detail=")
	return before + "; collapsed; detail=" + detail
}

// withFwdStatus returns the Cache-Status values cs with this cache's
// member (the last one, as label adds it) naming the upstream's status,
// when it has fwd and no fwd-status. RFC 9211 §2.3: fwd-status defaults to
// the status of the response sent, which is wrong when the cache answers
// with another one (its own 304, a 206 cut from a 200). cs is not modified.
func withFwdStatus(cs []string, status int) []string {
	for i := len(cs) - 1; i >= 0; i-- {
		v := cs[i]
		if v != cacheName && !strings.HasPrefix(v, cacheName+";") {
			continue
		}
		at := strings.Index(v, "; fwd=")
		if at < 0 || strings.Contains(v, "; fwd-status=") {
			return cs
		}
		end := len(v)
		if j := strings.IndexByte(v[at+2:], ';'); j >= 0 {
			end = at + 2 + j
		}
		out := slices.Clone(cs)
		out[i] = v[:end] + "; fwd-status=" + strconv.Itoa(status) + v[end:]
		return out
	}
	return cs
}

// fits reports whether a waiter r may use the response s is storing: the
// same variant as the leader's when the response has Vary.
func (s *stream) fits(r *http.Request) bool {
	return len(s.varyNames) == 0 || policy.VaryKey(s.varyNames, r.Header) == s.varyKey
}

// streamOut writes s's response to r's client: the leader gets the
// upstream's header, a waiter the stored one. The client's own conditional
// and Range fields are evaluated here, against the full response the fetch
// asked for.
func (p *Proxy) streamOut(w http.ResponseWriter, r *http.Request, f *fill, s *stream, rd *streamReader, leader bool) {
	st := s.fill.status
	if !leader {
		st = StatusHit
	}
	if len(r.Header["Range"]) > 0 && s.kind == kindStore {
		// A range is cut from the stored entry once the body is in.
		select {
		case <-s.done:
		case <-r.Context().Done():
			return
		}
		if e := s.entry; e != nil && e.Pin() {
			defer p.store.Unpin(e)
			cs := []string{collapsed(f.fwd)}
			if leader {
				cs = s.header["Cache-Status"]
			}
			if !leader {
				p.coalesced.Add(1)
			}
			// The answer may be a 206, 304 or 416 cut from the upstream's
			// 200: Cache-Status names the upstream's status (RFC 9211 §2.3).
			p.serveEntry(w, r, e, entryAge(e, p.now()), withFwdStatus(cs, s.status), st)
			return
		}
	}
	h := w.Header()
	src := s.shared
	if leader {
		src = s.header
	}
	for k, v := range src {
		h[k] = slices.Clip(v)
	}
	if !leader {
		p.coalesced.Add(1)
		h["X-Cache"] = xCache[StatusHit]
		h["Cache-Status"] = []string{collapsed(f.fwd)}
		h["Age"] = ageValue(time.Duration(s.pend.initialAge)*time.Second + p.now().Sub(s.pend.rtime))
	}
	p.counts[st].Add(1)
	status := s.status
	if (status == http.StatusOK || status == http.StatusNoContent) && len(r.Header["If-None-Match"])+len(r.Header["If-Modified-Since"]) > 0 &&
		policy.NotModified(r.Header, h.Get("Etag"), h.Get("Last-Modified")) {
		for _, k := range notModifiedDrop {
			delete(h, k)
		}
		// Our 304 answers the upstream's 200: without fwd-status, a
		// Cache-Status with fwd would say the upstream sent the 304.
		h["Cache-Status"] = withFwdStatus(h["Cache-Status"], status)
		p.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead || status == http.StatusNotModified || status == http.StatusNoContent {
		return
	}
	if s.kind == kindPassEntry {
		_, _ = w.Write(s.passBody)
		return
	}
	if rd == nil {
		panic(http.ErrAbortHandler) // cannot happen: only the leader gets here without a reader, and it has one
	}
	rc := http.NewResponseController(w)
	length := int64(-1) // the body's announced length, when it is known
	if s.pend != nil {
		length = s.pend.length
	}
	var sent int64
	for {
		b, done, complete, _ := rd.next(r.Context())
		if len(b) > 0 {
			if _, werr := w.Write(b); werr != nil {
				return
			}
			sent += int64(len(b))
			if sent != length {
				// More is coming: let the client have this much now. The
				// last bytes go out with the end of the response, in the
				// same write.
				_ = rc.Flush()
			}
		}
		if done {
			if !complete && r.Context().Err() == nil {
				// The upstream body was cut off (or this reader fell too far
				// behind a body that is not stored): end the client's
				// response the same way, never as if complete.
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
}
