package policy

import (
	"net/http"
	"strings"
	"time"
)

// Options tunes policy decisions. The zero value is not useful (no heuristic
// freshness, no targeted fields); start from [DefaultOptions]. An Options is
// read, never modified, by the functions that take it.
type Options struct {
	// CacheSetCookie allows storing responses that carry Set-Cookie. RFC 9111
	// §7.3 permits it, but a shared cache would hand one user's cookie to
	// everyone, so it is off by default. Set-Cookie listed in a qualified
	// private="..." or no-cache="..." is stripped and never blocks storing.
	CacheSetCookie bool

	// HeuristicFraction is the fraction of (Date - Last-Modified) used as the
	// freshness lifetime of a response without explicit expiration (§4.2.2).
	// Default 0.1. Zero or negative disables heuristic freshness.
	HeuristicFraction float64

	// HeuristicMax caps a heuristic lifetime. Default 24h; 0 disables
	// heuristic freshness.
	HeuristicMax time.Duration

	// TargetedFields lists the RFC 9213 targeted fields this cache obeys,
	// most specific first, e.g. {"Dedupcache-Cache-Control", "CDN-Cache-Control"}.
	// Default {"CDN-Cache-Control"}. See [ResponseDirectives].
	TargetedFields []string

	// SurrogateToken is this cache's device token for Surrogate-Control
	// (W3C Edge Architecture 1.0): directives untargeted or targeted with
	// ";token" replace Cache-Control and Expires as a targeted field does
	// (see [ResponseDirectives]). Empty: Surrogate-Control is ignored.
	// Default "dedupcache".
	SurrogateToken string
}

// DefaultOptions returns the default Options. Each call returns a new value
// that the caller may modify.
func DefaultOptions() Options {
	return Options{
		HeuristicFraction: 0.1,
		HeuristicMax:      24 * time.Hour,
		TargetedFields:    []string{"CDN-Cache-Control"},
		SurrogateToken:    "dedupcache",
	}
}

// Reason says why a response was or was not stored ([Storable]) or how a
// lookup was decided ([Evaluate]). [Reason.String] gives a short token for the
// detail parameter of Cache-Status (RFC 9211).
type Reason uint8

// Reasons returned by [Storable], then by [Evaluate].
const (
	ReasonOK             Reason = iota // storable
	ReasonMethod                       // request method other than GET
	ReasonRequestNoStore               // request carried no-store (§5.2.1.5)
	ReasonStatus                       // status not final, 206 or 304; or not understood and without explicit permission (§3)
	ReasonNoStore                      // response no-store (§5.2.2.5)
	ReasonMustUnderstand               // must-understand on a status this cache does not understand (§5.2.2.3)
	ReasonPrivate                      // unqualified private (§5.2.2.7)
	ReasonAuthorization                // request had Authorization; no public, must-revalidate or s-maxage (§3.5)
	ReasonVaryStar                     // Vary: * never matches (§4.1)
	ReasonSetCookie                    // Set-Cookie, and Options.CacheSetCookie is off
	ReasonNoFreshness                  // no explicit freshness and status not heuristically cacheable (§3)

	ReasonFresh                // fresh enough for the request
	ReasonStale                // stale, and nothing allows serving it
	ReasonStaleWhileRevalidate // within the stale-while-revalidate window (RFC 5861 §3)
	ReasonMaxStale             // stale, within the request's max-stale (§5.2.1.2)
	ReasonNoCache              // response no-cache: validate every use (§5.2.2.4)
	ReasonMustRevalidate       // stale, and must-revalidate, proxy-revalidate or s-maxage forbid serving it (§4.2.4)
	ReasonRequestNoCache       // request no-cache or Pragma: no-cache (§5.2.1.4, §5.4)
	ReasonRequestMaxAge        // older than the request's max-age (§5.2.1.1)
	ReasonRequestMinFresh      // fresh for less than the request's min-fresh (§5.2.1.3)
)

var reasonNames = [...]string{
	ReasonOK:                   "ok",
	ReasonMethod:               "method",
	ReasonRequestNoStore:       "request-no-store",
	ReasonStatus:               "status",
	ReasonNoStore:              "no-store",
	ReasonMustUnderstand:       "must-understand",
	ReasonPrivate:              "private",
	ReasonAuthorization:        "authorization",
	ReasonVaryStar:             "vary-star",
	ReasonSetCookie:            "set-cookie",
	ReasonNoFreshness:          "no-freshness",
	ReasonFresh:                "fresh",
	ReasonStale:                "stale",
	ReasonStaleWhileRevalidate: "stale-while-revalidate",
	ReasonMaxStale:             "max-stale",
	ReasonNoCache:              "no-cache",
	ReasonMustRevalidate:       "must-revalidate",
	ReasonRequestNoCache:       "request-no-cache",
	ReasonRequestMaxAge:        "request-max-age",
	ReasonRequestMinFresh:      "request-min-fresh",
}

// String returns the reason's token, e.g. "no-store".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// heuristicallyCacheable holds the status codes RFC 9110 §15.1 defines as
// heuristically cacheable, less 206: this cache stores no partial content.
var heuristicallyCacheable = map[int]bool{
	200: true, 203: true, 204: true, 300: true, 301: true, 308: true,
	404: true, 405: true, 410: true, 414: true, 501: true,
}

// understoodStatus holds the final status codes whose caching-related
// behaviour this cache implements (RFC 9111 §3 "understood"): the
// heuristically cacheable ones, plus those it stores only with explicit
// freshness. 206 and 304 are absent (no partial content; 304 only updates),
// as are 401 and 407 (challenges) and 1xx. Under must-understand only these
// are stored (§5.2.2.3); without it, [Storable] also stores other final
// statuses that carry explicit permission (§3).
var understoodStatus = map[int]bool{
	200: true, 203: true, 204: true, 300: true, 301: true, 302: true, 303: true, 307: true, 308: true,
	400: true, 403: true, 404: true, 405: true, 410: true, 414: true, 451: true,
	500: true, 501: true, 502: true, 503: true, 504: true,
}

// Storable reports whether this shared cache may store a response (RFC 9111
// §3), and if not, why. method and reqHdr are the request's; status and
// respHdr the response's. Directives come from [ResponseDirectives].
//
// Only GET responses are stored. HEAD responses are not: they carry no body,
// so they could not answer a later GET, and a HEAD is answered from a stored
// GET response instead. Not stored either: a request with no-store; a status
// that is not final (1xx, or outside 100-599), 206 or 304, which this cache
// handles apart ([ReasonStatus]); under must-understand, any status outside
// the understood set ([ReasonMustUnderstand], §5.2.2.3); no-store (ignored
// under must-understand, which only the understood statuses reach);
// unqualified private; a request with Authorization unless the response has
// public, must-revalidate or s-maxage (§3.5); Vary: * (§4.1); Set-Cookie
// unless opt.CacheSetCookie or the qualified private/no-cache lists it; and a
// response that has neither explicit permission (public, max-age, s-maxage,
// Expires, even an invalid one) nor a heuristically cacheable status: a
// status this cache does not understand (e.g. 299, 418, 599) is then
// reported as [ReasonStatus], an understood one (e.g. 302) as
// [ReasonNoFreshness]. §3 only requires understanding the status for 206,
// 304 and must-understand; any other final status with explicit permission
// is stored. Heuristic freshness still applies only to heuristically
// cacheable statuses and public responses (§4.2.2, §5.2.2.9): see
// [ResponseFreshness].
//
// A storable response may still be stale at once (no freshness information
// and no Last-Modified); §3 allows storing it, and the caller may choose not
// to when it also has no validator. The caller removes [StripFields] before
// storing.
func Storable(method string, reqHdr http.Header, status int, respHdr http.Header, opt Options) (bool, Reason) {
	if method != http.MethodGet {
		return false, ReasonMethod
	}
	if ParseCacheControl(reqHdr, "Cache-Control").NoStore {
		return false, ReasonRequestNoStore
	}
	cc, targeted := directives(respHdr, opt)
	understood := understoodStatus[status]
	switch {
	case status < 200 || status > 599 || status == http.StatusPartialContent || status == http.StatusNotModified:
		if cc.MustUnderstand {
			return false, ReasonMustUnderstand
		}
		return false, ReasonStatus
	case cc.MustUnderstand && !understood:
		return false, ReasonMustUnderstand
	}
	if cc.NoStore && !cc.MustUnderstand {
		return false, ReasonNoStore
	}
	if cc.Private {
		return false, ReasonPrivate
	}
	if len(reqHdr.Values("Authorization")) > 0 && !cc.Public && !cc.MustRevalidate && cc.SMaxAge < 0 {
		return false, ReasonAuthorization
	}
	if varyStar(respHdr) {
		return false, ReasonVaryStar
	}
	if !opt.CacheSetCookie && len(respHdr.Values("Set-Cookie")) > 0 &&
		!contains(cc.PrivateFields, "Set-Cookie") && !contains(cc.NoCacheFields, "Set-Cookie") {
		return false, ReasonSetCookie
	}
	explicit := cc.Public || cc.MaxAge >= 0 || cc.SMaxAge >= 0 ||
		(targeted < 0 && len(respHdr.Values("Expires")) > 0)
	switch {
	case explicit || heuristicallyCacheable[status]:
		return true, ReasonOK
	case !understood:
		return false, ReasonStatus
	}
	return false, ReasonNoFreshness
}

// hopByHop lists the hop-by-hop header fields, in canonical form, that a
// proxy removes before forwarding a message (RFC 9110 §7.6.1) and a cache
// therefore never stores (RFC 9111 §3.1). Fields named in Connection are
// hop-by-hop too: see [ConnectionFields]. Unexported so that no caller can
// change it; [RemoveHopByHop] and [StripFields] apply it.
var hopByHop = [...]string{
	"Connection",
	"Keep-Alive",
	"Proxy-Connection", // non-standard, still sent by some clients
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te", // canonical form of "TE"
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// RemoveHopByHop deletes from h the hop-by-hop fields a proxy must not
// forward (RFC 9110 §7.6.1): every field named in h's Connection field
// lines, then Connection, Keep-Alive, Proxy-Connection, Proxy-Authenticate,
// Proxy-Authorization, TE, Trailer, Transfer-Encoding and Upgrade. h is
// expected with canonical keys, as net/http builds it; it is modified in
// place. A caller that forwards an upgrade or asks for trailers ("TE:
// trailers") re-adds what it needs afterwards.
func RemoveHopByHop(h http.Header) {
	for _, line := range h["Connection"] {
		for name := range strings.SplitSeq(line, ",") {
			if name = trimOWS(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
}

// ConnectionFields returns the field names listed in h's Connection field
// lines, in canonical form, without duplicates (RFC 9110 §7.6.1). Connection
// options such as "close" come back as well ("Close"); removing a field by
// that name is harmless.
func ConnectionFields(h http.Header) []string {
	var names []string
	for _, line := range h.Values("Connection") {
		appendFieldNames(&names, line)
	}
	return names
}

// StripFields returns the names of the fields present in respHdr that a
// shared cache must not store (RFC 9111 §3.1), in canonical form, without
// duplicates; nil when there are none. respHdr is expected with canonical
// keys, as net/http builds it. The list holds:
//
//   - fields named by a qualified private="..." (§5.2.2.7);
//   - fields named by a qualified no-cache="..." (§5.2.2.4). That directive
//     allows reuse "if the listed header fields are excluded from the
//     subsequent response"; stripping them at store time does exactly that,
//     so a qualified no-cache does not force revalidation of every use
//     (unlike the unqualified form, see [Freshness.NoCache]);
//   - the hop-by-hop fields of [RemoveHopByHop], the fields named in Connection, and
//     Proxy-Authentication-Info (§3.1).
//
// Call it again on the header produced by [UpdateStoredHeader].
func StripFields(respHdr http.Header, opt Options) []string {
	cc, i := directives(respHdr, opt)
	var out []string
	add := func(names []string) {
		for _, name := range names {
			if _, ok := respHdr[name]; ok && !contains(out, name) {
				out = append(out, name)
			}
		}
	}
	add(cc.PrivateFields)
	add(cc.NoCacheFields)
	if i == len(opt.TargetedFields) {
		// Consumed here: the Edge Architecture has a surrogate remove
		// the field it obeyed, as Fastly does.
		add([]string{"Surrogate-Control"})
	}
	add(hopByHop[:])
	add(ConnectionFields(respHdr))
	add([]string{"Proxy-Authentication-Info"})
	return out
}

// varyStar reports whether a Vary member is "*", without allocating.
func varyStar(h http.Header) bool {
	for _, line := range h.Values("Vary") {
		for m := range strings.SplitSeq(line, ",") {
			if trimOWS(m) == "*" {
				return true
			}
		}
	}
	return false
}
