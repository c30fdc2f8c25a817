package proxy

import (
	"net/http"
	"strconv"
	"time"

	"dedupcache/cachestore"
	"dedupcache/policy"
)

// serveEntry writes a stored response. This is the hit path: it must not
// allocate beyond what net/http does, nor copy the body. Conditional and
// Range requests branch off to serveSpecial.
func (p *Proxy) serveEntry(w http.ResponseWriter, r *http.Request, e *cachestore.Entry, age time.Duration, cs []string, st Status) {
	p.counts[st].Add(1)
	hdr := entryFields(e)
	h := w.Header()
	for i := range hdr {
		h[hdr[i].name] = hdr[i].values
	}
	h["Date"] = p.dates.get(e.Date)
	h["Age"] = ageValue(age)
	h["X-Cache"] = xCache[st]
	h["Cache-Status"] = cs
	if len(r.Header["If-None-Match"]) > 0 || len(r.Header["If-Modified-Since"]) > 0 || len(r.Header["Range"]) > 0 {
		if p.serveSpecial(w, r, e, hdr) {
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

// serveSpecial answers a conditional or Range request from a stored
// response, once the header is filled in. It reports whether it wrote the
// response.
func (p *Proxy) serveSpecial(w http.ResponseWriter, r *http.Request, e *cachestore.Entry, hdr blockFields) bool {
	status := int(e.Status)
	if (status == http.StatusOK || status == http.StatusNoContent) &&
		policy.NotModified(r.Header, hdr.get("Etag"), hdr.get("Last-Modified")) {
		// RFC 9111 §4.3.2: a cache answers a conditional request itself
		// from a fresh stored response whose validators match.
		h := w.Header()
		for _, k := range notModifiedDrop {
			delete(h, k)
		}
		p.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	rng := r.Header.Get("Range")
	if rng == "" || status != http.StatusOK || !policy.IfRangeMatches(r.Header.Get("If-Range"), hdr.get("Etag"), hdr.get("Last-Modified")) {
		return false
	}
	body := e.Body.Bytes()
	size := int64(len(body))
	start, end, ok, unsatisfiable := policy.ParseRange(rng, size)
	h := w.Header()
	switch {
	case unsatisfiable:
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return true
	case !ok:
		return false // invalid or multi-range: the whole 200 (RFC 9110 §14.2)
	}
	h.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end, 10)+"/"+strconv.FormatInt(size, 10))
	h.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	p.ranges.Add(1)
	w.WriteHeader(http.StatusPartialContent)
	if r.Method != http.MethodHead {
		p.served.Add(end - start + 1)
		_, _ = w.Write(body[start : end+1]) // a view of the shared buffer, not a copy
	}
	return true
}
