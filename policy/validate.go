package policy

import (
	"net/http"
)

// notUpdated holds the fields a 304 never replaces in a stored header, on top
// of the hop-by-hop fields ([RemoveHopByHop]) and the fields named in the
// 304's Connection (RFC 9111 §3.2):
//
//   - Content-Length: excepted by §3.2 itself;
//   - Proxy-Authentication-Info: excepted from storage (§3.1);
//   - Content-Range: "automatically processed" (§3.2);
//   - Content-Encoding and Content-Type: the stored body depends on them
//     (§3.2). A 304 is not supposed to carry them (RFC 9110 §15.4.5), and the
//     servers that do usually send a framework default that would relabel
//     the stored body;
//   - Set-Cookie and Set-Cookie2: a 304 answers one client's revalidation,
//     made with that client's Cookie and Authorization, so its cookies are
//     that user's (rolling sessions, stickiness); merged into a shared entry
//     they would be replayed to everyone. §3.1 lets a cache leave out fields
//     it must not share, and §3.5 and §7.3 ask a shared cache not to reuse
//     one user's credentials or state for another.
var notUpdated = map[string]bool{
	"Content-Length":            true,
	"Proxy-Authentication-Info": true,
	"Content-Range":             true,
	"Content-Encoding":          true,
	"Content-Type":              true,
	"Set-Cookie":                true,
	"Set-Cookie2":               true,
}

// UpdateStoredHeader returns the header of a stored response freshened by a
// 304 (RFC 9111 §4.3.4, §3.2): each field of notModified replaces all lines
// of the same field in stored, except the hop-by-hop fields, the fields named
// in the 304's Connection, Set-Cookie, Set-Cookie2, Content-Length,
// Content-Range, Content-Encoding, Content-Type and
// Proxy-Authentication-Info; fields absent from the 304 are kept (a stored
// Set-Cookie stays as it was). Neither input is modified; the result is a
// new header that shares no slices with them.
//
// Everything else in the 304 is merged, including Cache-Control and fields
// only the caller knows the meaning of, such as a surrogate-key field. So
// the caller, before storing the result, must treat it as a new response:
//
//   - check [CanFreshen] first;
//   - run [Storable] on the result with the revalidation request's method and
//     header (and the stored status): a 304 may say private or no-store, or
//     the request may carry Authorization, and then the result must not be
//     stored (the client may still be answered from it);
//   - remove [StripFields] of the result, and the caller's own fields that
//     must not reach clients (the surrogate-key field);
//   - recompute [ResponseFreshness] and [InitialAge] from it with the times
//     of the validation request.
func UpdateStoredHeader(stored, notModified http.Header) http.Header {
	out := stored.Clone()
	if out == nil {
		out = make(http.Header, len(notModified))
	}
	skip := ConnectionFields(notModified)
	for k, vv := range notModified {
		k = http.CanonicalHeaderKey(k)
		if len(vv) == 0 || notUpdated[k] || contains(hopByHop[:], k) || contains(skip, k) {
			continue
		}
		out[k] = append([]string(nil), vv...)
	}
	return out
}

// CanFreshen reports whether a 304 may update a stored response, for a cache
// that validates one stored response with that response's own validators
// (RFC 9111 §4.3.4). A strong ETag in the 304 must equal the stored ETag,
// which must be strong too; a weak one must match it weakly; without an ETag,
// a Last-Modified in the 304 must equal the stored one. A 304 with no
// validator answers the conditional request built from the stored response
// and may update it.
func CanFreshen(stored, notModified http.Header) bool {
	if v := notModified.Get("Etag"); v != "" {
		newTag, newWeak, ok := entityTag(v)
		oldTag, oldWeak, oldOK := entityTag(stored.Get("Etag"))
		if !ok || !oldOK || newTag != oldTag {
			return false
		}
		return newWeak || !oldWeak
	}
	if v := notModified.Get("Last-Modified"); v != "" {
		t, ok := ParseHTTPDate(v)
		old, oldOK := ParseHTTPDate(stored.Get("Last-Modified"))
		return ok && oldOK && t.Equal(old)
	}
	return true
}

// NotModified reports whether a client's conditional GET or HEAD is satisfied
// by a stored response with validators etag and lastModified, so that the
// cache may answer 304 (RFC 9110 §13.1.2, §13.1.3, §13.2.2; RFC 9111 §4.3.2).
// The caller checks the method and that the stored response is a 200.
//
// If-None-Match, when present, decides alone: true if it is "*" or one of its
// entity tags matches etag by weak comparison (§8.8.3.2); an unparsable list
// gives false. Otherwise If-Modified-Since, with exactly one valid
// HTTP-date, is satisfied when lastModified is not later than it. Pass the
// stored response's Date (or its receipt time) as lastModified when it has no
// Last-Modified (RFC 9111 §4.3.2). Apart from "*", empty or invalid
// validators never match.
func NotModified(reqHdr Fields, etag, lastModified string) bool {
	if inm := reqHdr.Values("If-None-Match"); len(inm) > 0 {
		tag, _, ok := entityTag(etag)
		for _, line := range inm {
			if trimOWS(line) == "*" {
				return true
			}
			for s := line; ; {
				s = trimOWS(s)
				for s != "" && s[0] == ',' { // empty list members
					s = trimOWS(s[1:])
				}
				if s == "" {
					break
				}
				t, _, n := scanEntityTag(s)
				if n == 0 {
					return false
				}
				if ok && t == tag {
					return true
				}
				s = s[n:]
				if s = trimOWS(s); s != "" && s[0] != ',' {
					return false
				}
			}
		}
		return false
	}
	ims := reqHdr.Values("If-Modified-Since")
	if len(ims) != 1 {
		return false
	}
	since, ok := parseStrictDate(ims[0])
	if !ok {
		return false
	}
	lm, ok := ParseHTTPDate(lastModified)
	return ok && !lm.After(since)
}

// entityTag parses a whole field value as one entity-tag (RFC 9110 §8.8.3):
// opaque is the quoted tag, quotes included, weak whether it had "W/".
func entityTag(s string) (opaque string, weak, ok bool) {
	s = trimOWS(s)
	opaque, weak, n := scanEntityTag(s)
	return opaque, weak, n > 0 && n == len(s)
}

// scanEntityTag reads an entity-tag at the start of s and returns it and the
// number of bytes read; 0 when s does not start with one. etagc excludes
// DQUOTE, so the tag ends at the next '"'.
func scanEntityTag(s string) (opaque string, weak bool, n int) {
	if len(s) >= 2 && s[0] == 'W' && s[1] == '/' {
		weak, n = true, 2
	}
	if n >= len(s) || s[n] != '"' {
		return "", false, 0
	}
	for i := n + 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[n : i+1], weak, i + 1
		case c < 0x21 || c == 0x7f: // etagc = %x21 / %x23-7E / obs-text
			return "", false, 0
		}
	}
	return "", false, 0
}
