package policy

import (
	"net/http"
)

// IfRangeMatches evaluates an If-Range field value against a stored
// response's ETag and Last-Modified field values (RFC 9110 §13.1.5), for a
// request that has a Range; the caller ignores If-Range otherwise. When it
// returns false the Range is ignored and the whole representation sent.
//
// An empty ifRange (the field is absent) matches. An entity-tag matches only
// by strong comparison (§8.8.3.2): it and etag must both be strong and have
// the same opaque-tag, so a weak tag on either side never matches. Any other
// value must be a valid HTTP-date ([ParseHTTPDate]) identical to a valid
// lastModified. §13.1.5 also asks that Last-Modified be a strong validator
// (§8.8.2.2: at least a second before the response's Date); this cache
// takes an exact match of a valid date as enough.
func IfRangeMatches(ifRange, etag, lastModified string) bool {
	v := trimOWS(ifRange)
	if v == "" {
		return true
	}
	if v[0] == '"' || (len(v) >= 2 && v[0] == 'W' && v[1] == '/') {
		tag, weak, ok := entityTag(v)
		stored, storedWeak, storedOK := entityTag(etag)
		return ok && storedOK && !weak && !storedWeak && tag == stored
	}
	lm := trimOWS(lastModified)
	if v != lm {
		return false
	}
	_, ok := ParseHTTPDate(v)
	return ok
}

// conditionalFields are the request fields that make a request conditional
// (RFC 9110 §13.1) or partial (§14.2).
var conditionalFields = [...]string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range", "Range"}

// StripConditionals removes from h, a request header about to be sent
// upstream to fill or revalidate a cache entry, the client's preconditions
// and Range: If-Match, If-None-Match, If-Modified-Since,
// If-Unmodified-Since, If-Range and Range. The response then describes the
// whole selected representation, which is what the cache stores; the cache
// evaluates the client's own conditionals and Range against it (RFC 9111
// §4.3.1, §4.3.2; RFC 9110 §13.2.1), and adds its own validators to a
// revalidation after this call. It modifies h in place.
func StripConditionals(h http.Header) {
	for _, name := range conditionalFields {
		delete(h, name)
	}
}
