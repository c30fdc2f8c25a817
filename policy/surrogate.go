package policy

import (
	"net/http"
	"strings"
)

// Surrogate-Control is the response field of the W3C Edge Architecture
// Specification 1.0 by which an origin instructs the surrogates (reverse
// proxies and CDNs acting for it) in front of it, apart from the caches
// downstream that read Cache-Control:
//
//	Surrogate-Control: max-age=300, no-store;other-proxy
//
// Each member is a directive, optionally targeted at one surrogate with
// ";device-token"; an untargeted member is for every surrogate. A
// surrogate advertises its token on requests (see [SurrogateCapability]).
// This cache obeys max-age=N (a "+M" extension is accepted and ignored)
// and no-store; no-store-remote is for remote surrogates (CDNs) and does
// not concern a cache deployed at the origin; content="..." (ESI) is not
// implemented, like every other directive.

// SurrogateCapability is the Surrogate-Capability member this cache adds to
// the requests it sends upstream when token is set: the token and the
// capability "Surrogate/1.0" (Edge Architecture §2.2).
func SurrogateCapability(token string) string { return token + `="Surrogate/1.0"` }

// parseSurrogate returns the Surrogate-Control directives of lines targeted
// at token (or at every surrogate) as a CacheControl with MaxAge and
// NoStore set, and ok if at least one of them applies. Directive names
// are compared case-insensitively; a max-age whose value is not
// delta-seconds ("=" with spaces around it, a decimal) is not a directive
// this cache knows and is ignored.
func parseSurrogate(lines []string, token string) (cc CacheControl, ok bool) {
	cc = newCacheControl()
	for _, line := range lines {
		for member := range strings.SplitSeq(line, ",") {
			member = trimOWS(member)
			if d, target, targeted := strings.Cut(member, ";"); targeted {
				if !strings.EqualFold(trimOWS(target), token) {
					continue // for another surrogate
				}
				member = trimOWS(d)
			}
			name, value, hasValue := strings.Cut(member, "=")
			switch {
			case strings.EqualFold(name, "no-store") && !hasValue:
				cc.NoStore, ok = true, true
			case strings.EqualFold(name, "max-age") && hasValue:
				fresh, _, _ := strings.Cut(value, "+") // max-age=N+M: M not used
				n, valid := deltaSeconds(fresh)
				if !valid {
					continue
				}
				if cc.MaxAge >= 0 && cc.MaxAge != n {
					n = 0 // §4.2.1, as for Cache-Control: conflicting values are stale
				}
				cc.MaxAge, ok = n, true
			}
		}
	}
	return cc, ok
}

// SurrogateApplies reports whether respHdr has a Surrogate-Control with a
// directive this cache obeys (see [ResponseDirectives]): the field this
// cache consumes, and does not pass on.
func SurrogateApplies(respHdr http.Header, opt Options) bool {
	_, i := directives(respHdr, opt)
	return i == len(opt.TargetedFields) && opt.SurrogateToken != ""
}

// surrogateLines returns the Surrogate-Control field lines of h.
func surrogateLines(h http.Header) []string { return h["Surrogate-Control"] }
