package proxy

import (
	"net/http"
	"strconv"
	"time"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/dedupbody/arena"
	"dedupcache/policy"
)

// serveEntry writes a stored response. This is the hit path: it must not
// allocate beyond what net/http does, nor copy the body. Conditional and
// Range requests branch off to serveSpecial.
// e must be pinned (cachestore.Entry.Pin) until serveEntry returns.
func (p *Proxy) serveEntry(w http.ResponseWriter, r *http.Request, e *cachestore.Entry, age time.Duration, cs []string, st Status) {
	checkBody(e)
	p.counts[st].Add(1)
	hdr := entryFields(e)
	h := w.Header()
	for i := range hdr {
		h[hdr[i].name] = hdr[i].values
	}
	if v := validatorsOf(e); v != nil {
		if et := v.etag(); et != nil {
			h["Etag"] = et
		}
		if lm := v.lastModified(); lm != nil {
			h["Last-Modified"] = lm
		}
	}
	h["Date"] = p.dates.get(e.Date)
	h["Age"] = ageValue(age)
	h["X-Cache"] = xCache[st]
	h["Cache-Status"] = cs
	if len(r.Header["If-None-Match"]) > 0 || len(r.Header["If-Modified-Since"]) > 0 || len(r.Header["Range"]) > 0 {
		if p.serveSpecial(w, r, e) {
			return
		}
	}
	w.WriteHeader(int(e.Status))
	if r.Method != http.MethodHead {
		p.served.Add(int64(len(e.Body.Bytes())))
		_, _ = w.Write(e.Body.Bytes())
	}
}

// notModifiedDrop are the fields a 304 leaves out: it describes the
// stored representation without sending it (RFC 9110 §15.4.5 lets a
// server omit representation metadata other than the listed ones).
var notModifiedDrop = []string{"Content-Length", "Content-Type", "Content-Encoding", "Content-Range"}

// special is what a conditional or Range request gets from a stored
// response, decided once for both listeners (see specialFor).
type special struct {
	code       int   // 0: the whole stored response; 304, 206 or 416
	start, end int64 // the range of a 206
	size       int64 // the stored body's length
}

// specialFor decides the answer to a conditional or Range request from a
// fresh stored response with the given status, entry and body size:
// 304 when its validators match (RFC 9111 §4.3.2), 206 for one satisfiable
// range whose If-Range matches, 416 for an unsatisfiable one, else the
// whole response (invalid or multi-range included, RFC 9110 §14.2).
func specialFor(req policy.Fields, status int, e *cachestore.Entry, size int64) special {
	etag, lm := entryValidators(e)
	if (status == http.StatusOK || status == http.StatusNoContent) && policy.NotModified(req, etag, lm) {
		return special{code: http.StatusNotModified}
	}
	rng, ifRange := first(req.Values("Range")), first(req.Values("If-Range"))
	if rng == "" || status != http.StatusOK || !policy.IfRangeMatches(ifRange, etag, lm) {
		return special{}
	}
	start, end, ok, unsatisfiable := policy.ParseRange(rng, size)
	switch {
	case unsatisfiable:
		return special{code: http.StatusRequestedRangeNotSatisfiable, size: size}
	case ok:
		return special{code: http.StatusPartialContent, start: start, end: end, size: size}
	}
	return special{}
}

// first returns the first of vs, or "".
func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// contentRange is the Content-Range of a 206 or 416.
func (s special) contentRange() string {
	if s.code == http.StatusRequestedRangeNotSatisfiable {
		return "bytes */" + strconv.FormatInt(s.size, 10)
	}
	return "bytes " + strconv.FormatInt(s.start, 10) + "-" + strconv.FormatInt(s.end, 10) + "/" + strconv.FormatInt(s.size, 10)
}

// serveSpecial answers a conditional or Range request from a stored
// response, once the header is filled in. It reports whether it wrote the
// response.
func (p *Proxy) serveSpecial(w http.ResponseWriter, r *http.Request, e *cachestore.Entry) bool {
	body := e.Body.Bytes()
	sp := specialFor(r.Header, int(e.Status), e, int64(len(body)))
	h := w.Header()
	switch sp.code {
	case http.StatusNotModified:
		for _, k := range notModifiedDrop {
			delete(h, k)
		}
		p.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
	case http.StatusRequestedRangeNotSatisfiable:
		h.Set("Content-Range", sp.contentRange())
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
	case http.StatusPartialContent:
		h.Set("Content-Range", sp.contentRange())
		h.Set("Content-Length", strconv.FormatInt(sp.end-sp.start+1, 10))
		p.ranges.Add(1)
		w.WriteHeader(http.StatusPartialContent)
		if r.Method != http.MethodHead {
			p.served.Add(sp.end - sp.start + 1)
			_, _ = w.Write(body[sp.start : sp.end+1]) // a view of the shared buffer, not a copy
		}
	default:
		return false
	}
	return true
}

// checkBody verifies, in a build with the arenapoison tag (freed arena
// slots are poisoned), that the body about to be served hashes to what was
// stored: a use after free cannot pass silently. Otherwise it does nothing.
func checkBody(e *cachestore.Entry) {
	if !arena.Poisoned() || e.Body.Body() == nil {
		return
	}
	if dedupbody.Sum(e.Body.Bytes()) != e.Body.Body().Hash() {
		panic("proxy: a stored body changed under a reader (use after free): " + e.Key)
	}
}
