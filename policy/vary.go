package policy

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// ParseVary returns the field names listed in all Vary lines of a response
// (RFC 9110 §12.5.5), in canonical form (http.CanonicalHeaderKey), without
// duplicates, sorted; and star true if a member is "*", which no request ever
// matches (RFC 9111 §4.1). "*" itself is not among names.
func ParseVary(respHdr http.Header) (names []string, star bool) {
	for _, line := range respHdr.Values("Vary") {
		for m := range strings.SplitSeq(line, ",") {
			switch m = trimOWS(m); m {
			case "":
			case "*":
				star = true
			default:
				if m = http.CanonicalHeaderKey(m); !contains(names, m) {
					names = append(names, m)
				}
			}
		}
	}
	slices.Sort(names)
	return names, star
}

// VaryKey returns a string that is equal for two requests if and only if a
// cache may treat them as matching for the Vary names (RFC 9111 §4.1). names
// are canonical, as [ParseVary] returns them; reqHdr is expected with
// canonical keys, as net/http builds it.
//
// Per name, all field lines are combined, list members are trimmed of
// whitespace and empty members dropped (commas inside quoted strings are
// kept); member order and case are kept, since their meaning depends on the
// field. An absent field differs from an empty one. Accept-Encoding is
// reduced to [AcceptEncodingBucket], absent or not.
//
// The key is unambiguous whatever the bytes in names and values: each name
// and value is written with its length ("<len>:<name><len>:<value>", or
// "<len>:<name>-" when absent).
func VaryKey(names []string, reqHdr Fields) string {
	return string(AppendVaryKey(nil, names, reqHdr))
}

// AppendVaryKey appends [VaryKey]'s bytes to dst and returns the extended
// slice, so that a caller with a buffer of its own (the cache's hit path)
// builds the key without allocating.
func AppendVaryKey(dst []byte, names []string, reqHdr Fields) []byte {
	var scratch [128]byte
	for _, name := range names {
		dst = strconv.AppendInt(dst, int64(len(name)), 10)
		dst = append(dst, ':')
		dst = append(dst, name...)
		var v []byte
		switch lines := reqHdr.Values(name); {
		case name == "Accept-Encoding":
			v = append(scratch[:0], AcceptEncodingBucket(reqHdr)...)
		case lines == nil:
			dst = append(dst, '-')
			continue
		default:
			v = appendNormalized(scratch[:0], lines)
		}
		dst = strconv.AppendInt(dst, int64(len(v)), 10)
		dst = append(dst, ':')
		dst = append(dst, v...)
	}
	return dst
}

// appendNormalized appends the field lines combined into one list to dst:
// members split at commas outside quoted strings, trimmed of OWS, empty ones
// dropped, joined with ",".
func appendNormalized(dst []byte, lines []string) []byte {
	first := true
	for _, line := range lines {
		for i := 0; i < len(line); {
			j, quoted := i, false
		member:
			for ; j < len(line); j++ {
				switch c := line[j]; {
				case quoted && c == '\\':
					j++
				case c == '"':
					quoted = !quoted
				case !quoted && c == ',':
					break member
				}
			}
			if m := trimOWS(line[i:min(j, len(line))]); m != "" {
				if !first {
					dst = append(dst, ',')
				}
				dst = append(dst, m...)
				first = false
			}
			i = j + 1
		}
	}
	return dst
}

// AcceptEncodingBucket reduces a request's Accept-Encoding to the one coding
// a stored variant is kept under: "br" if the client accepts br, else "gzip"
// if it accepts gzip (or x-gzip, RFC 9110 §8.4.1.3), else "identity"
// (RFC 9110 §12.5.3). Codings with q=0 are refused, "*" accepts codings not
// listed, an invalid qvalue counts as 0, and a coding listed twice takes its
// lower weight. An absent or empty field gives "identity".
//
// The bucket is sound only if the proxy forwards the bucket, not the
// client's field, as the Accept-Encoding of requests it sends upstream for a
// response that varies on it: otherwise a client in bucket "br" could be
// served a gzip (or zstd) variant fetched for a client that listed both.
func AcceptEncodingBucket(reqHdr Fields) string {
	br, gzip, star := -1.0, -1.0, -1.0
	for _, line := range reqHdr.Values("Accept-Encoding") {
		for m := range strings.SplitSeq(line, ",") {
			coding, params, _ := strings.Cut(m, ";")
			var dst *float64
			switch coding = trimOWS(coding); {
			case strings.EqualFold(coding, "br"):
				dst = &br
			case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
				dst = &gzip
			case coding == "*":
				dst = &star
			default:
				continue
			}
			if q := qvalue(params); *dst < 0 || q < *dst {
				*dst = q
			}
		}
	}
	switch {
	case br > 0 || br < 0 && star > 0:
		return "br"
	case gzip > 0 || gzip < 0 && star > 0:
		return "gzip"
	}
	return "identity"
}

// qvalue returns the weight in the parameters of a list member (RFC 9110
// §12.4.2): 1 when there is none, 0 when it is invalid.
func qvalue(params string) float64 {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, v, ok := strings.Cut(trimOWS(p), "=")
		if !ok || !strings.EqualFold(trimOWS(name), "q") {
			continue
		}
		q, err := strconv.ParseFloat(trimOWS(v), 64)
		if err != nil || !(q >= 0 && q <= 1) {
			return 0
		}
		return q
	}
	return 1
}
