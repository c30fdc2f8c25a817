package policy

import (
	"math"
	"net/http"
	"strings"
)

// maxDelta is the value taken by a delta-seconds that is too large to
// represent: 2^31 seconds, "infinity" in RFC 9111 §1.2.2.
const maxDelta = 1 << 31

// CacheControl holds parsed Cache-Control directives (RFC 9111 §5.2).
// Durations are whole seconds, -1 when the directive is absent. It is plain
// data, meant to be held by value.
//
// Repeated delta-seconds directives with different values resolve to the most
// restrictive reading (§4.2.1): max-age and s-maxage become 0 (the response is
// "considered stale"), min-fresh takes the largest value, and max-stale,
// stale-while-revalidate and stale-if-error the smallest. A value that is not
// delta-seconds (negative, decimal, empty, missing) counts as 0, which for
// max-age and s-maxage means stale (§4.2.1: "invalid freshness information").
// Values larger than 2^31 are capped there (§1.2.2).
type CacheControl struct {
	MaxAge, SMaxAge, MinFresh, StaleWhileRevalidate, StaleIfError int64

	// MaxStale is -1 when absent and math.MaxInt64 when "max-stale" has no
	// value (any staleness is acceptable, §5.2.1.2).
	MaxStale int64

	NoStore, NoCache, Private, Public, MustRevalidate, ProxyRevalidate, MustUnderstand, NoTransform, OnlyIfCached, Immutable bool

	// NoCacheFields and PrivateFields are the field names of the qualified
	// forms no-cache="..." and private="..." (§5.2.2.4, §5.2.2.7), in
	// canonical form (http.CanonicalHeaderKey), without duplicates. The
	// unqualified form sets NoCache or Private instead; an empty list
	// (no-cache="") counts as the unqualified form.
	NoCacheFields, PrivateFields []string
}

// newCacheControl returns a CacheControl with every duration absent.
func newCacheControl() CacheControl {
	return CacheControl{MaxAge: -1, SMaxAge: -1, MinFresh: -1, MaxStale: -1, StaleWhileRevalidate: -1, StaleIfError: -1}
}

// ParseCacheControl parses all field lines of h[name] with the Cache-Control
// grammar of RFC 9111 §5.2: a comma-separated list of directives, names
// compared case-insensitively, arguments as token or quoted-string (both
// accepted for every directive, so max-age="60" is 60), whitespace tolerated
// around "=" and commas. Unknown directives are ignored (§5.2.3); see
// [CacheControl] for repeated and invalid values. It never fails: what cannot
// be read is skipped.
//
// Targeted fields such as CDN-Cache-Control use the Structured Fields grammar
// instead (RFC 9213 §2.1); [ResponseDirectives] parses them that way.
func ParseCacheControl(h http.Header, name string) CacheControl {
	cc := newCacheControl()
	for _, line := range h.Values(name) {
		cc.parseLine(line)
	}
	return cc
}

// parseLine adds the directives of one field line to cc.
func (cc *CacheControl) parseLine(s string) {
	for i := 0; i < len(s); {
		if c := s[i]; c == ',' || c == ' ' || c == '\t' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] != '=' && s[j] != ',' {
			j++
		}
		name := trimOWS(s[i:j])
		i = j
		var val string
		hasVal := i < len(s) && s[i] == '='
		if hasVal {
			i++
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			if i < len(s) && s[i] == '"' {
				val, i = quotedString(s, i)
			} else {
				j = i
				for j < len(s) && s[j] != ',' {
					j++
				}
				val = trimOWS(s[i:j])
				i = j
			}
			for i < len(s) && s[i] != ',' { // junk after a quoted value
				i++
			}
		}
		cc.apply(name, val, hasVal)
	}
}

// How a repeated delta-seconds directive with a different value is resolved.
const (
	repeatStale    = iota // the response is considered stale: 0
	repeatSmallest        // the smallest value
	repeatLargest         // the largest value
)

// apply records one directive. name is as received; val is unquoted.
func (cc *CacheControl) apply(name, val string, hasVal bool) {
	var buf [24]byte
	if len(name) > len(buf) {
		return // longer than any directive we know
	}
	for k := 0; k < len(name); k++ {
		c := name[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[k] = c
	}
	switch string(buf[:len(name)]) {
	case "max-age":
		repeat(&cc.MaxAge, delta(val), repeatStale)
	case "s-maxage":
		repeat(&cc.SMaxAge, delta(val), repeatStale)
	case "min-fresh":
		repeat(&cc.MinFresh, delta(val), repeatLargest)
	case "max-stale":
		n := int64(math.MaxInt64)
		if hasVal {
			n = delta(val)
		}
		repeat(&cc.MaxStale, n, repeatSmallest)
	case "stale-while-revalidate":
		repeat(&cc.StaleWhileRevalidate, delta(val), repeatSmallest)
	case "stale-if-error":
		repeat(&cc.StaleIfError, delta(val), repeatSmallest)
	case "no-store":
		cc.NoStore = true
	case "no-cache":
		if !hasVal || !appendFieldNames(&cc.NoCacheFields, val) {
			cc.NoCache = true
		}
	case "private":
		if !hasVal || !appendFieldNames(&cc.PrivateFields, val) {
			cc.Private = true
		}
	case "public":
		cc.Public = true
	case "must-revalidate":
		cc.MustRevalidate = true
	case "proxy-revalidate":
		cc.ProxyRevalidate = true
	case "must-understand":
		cc.MustUnderstand = true
	case "no-transform":
		cc.NoTransform = true
	case "only-if-cached":
		cc.OnlyIfCached = true
	case "immutable":
		cc.Immutable = true
	}
}

// repeat stores n in *dst, or resolves it against an earlier occurrence.
func repeat(dst *int64, n int64, rule int) {
	switch {
	case *dst < 0:
		*dst = n
	case *dst == n:
	case rule == repeatStale:
		*dst = 0
	case rule == repeatLargest:
		*dst = max(*dst, n)
	default:
		*dst = min(*dst, n)
	}
}

// delta returns the delta-seconds value of s (RFC 9111 §1.2.2), capped at
// 2^31, or 0 when s is not 1*DIGIT.
func delta(s string) int64 {
	n, ok := deltaSeconds(s)
	if !ok {
		return 0
	}
	return n
}

// deltaSeconds parses 1*DIGIT, capping the value at 2^31 (§1.2.2).
func deltaSeconds(s string) (int64, bool) { return digits(s, maxDelta) }

// digits parses 1*DIGIT, saturating at limit, which must be at most
// (math.MaxInt64-9)/10 so that n*10+9 cannot overflow: any longer run of
// digits still parses, as limit.
func digits(s string, limit int64) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < limit {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, limit), true
}

// appendFieldNames adds the comma-separated field names in list to *dst in
// canonical form, skipping duplicates. It reports whether list named any.
func appendFieldNames(dst *[]string, list string) bool {
	found := false
	for list != "" {
		name, rest, _ := strings.Cut(list, ",")
		list = rest
		if name = trimOWS(name); name == "" {
			continue
		}
		found = true
		name = http.CanonicalHeaderKey(name)
		if !contains(*dst, name) {
			*dst = append(*dst, name)
		}
	}
	return found
}

// quotedString reads the quoted-string starting at s[i] == '"' (RFC 9110
// §5.6.4) and returns its unescaped content and the index after the closing
// quote. An unterminated string runs to the end of s.
func quotedString(s string, i int) (string, int) {
	start := i + 1
	escaped := false
	j := start
	for ; j < len(s); j++ {
		if s[j] == '\\' && j+1 < len(s) {
			escaped = true
			j++
			continue
		}
		if s[j] == '"' {
			break
		}
	}
	v := s[start:min(j, len(s))]
	end := min(j+1, len(s))
	if !escaped {
		return v, end
	}
	var b strings.Builder
	b.Grow(len(v))
	for k := 0; k < len(v); k++ {
		if v[k] == '\\' && k+1 < len(v) {
			k++
		}
		b.WriteByte(v[k])
	}
	return b.String(), end
}

// trimOWS removes optional whitespace (SP, HTAB) around s (RFC 9110 §5.6.3).
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// contains reports whether list holds s.
func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Request holds a request's caching directives: its Cache-Control, and
// Pragma: no-cache, which counts only when Cache-Control is absent (RFC 9111
// §5.4; RFC 7234 §5.4 said so explicitly). It is plain data, meant to be held
// by value; parse it once per request with [ParseRequest].
type Request struct {
	CC            CacheControl
	PragmaNoCache bool
}

// ParseRequest reads the caching directives of a request header.
func ParseRequest(reqHdr http.Header) Request {
	r := Request{CC: ParseCacheControl(reqHdr, "Cache-Control")}
	if len(reqHdr.Values("Cache-Control")) == 0 {
		for _, line := range reqHdr.Values("Pragma") {
			for p := range strings.SplitSeq(line, ",") {
				if strings.EqualFold(trimOWS(p), "no-cache") {
					r.PragmaNoCache = true
				}
			}
		}
	}
	return r
}

// noCache reports whether the request asks for validation (§5.2.1.4, §5.4).
// A no-cache request directive has no argument; one that carries one anyway
// still counts.
func (r Request) noCache() bool {
	return r.CC.NoCache || len(r.CC.NoCacheFields) > 0 || r.PragmaNoCache
}
