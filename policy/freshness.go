package policy

import (
	"math"
	"net/http"
	"time"
)

// Freshness is what a stored response allows, computed once at store time
// (and again after a 304 updates it) by [ResponseFreshness]. It is plain data,
// meant to be held by value in the cache entry.
type Freshness struct {
	// Lifetime is the freshness_lifetime of RFC 9111 §4.2.1: s-maxage, else
	// max-age, else Expires - Date, else a heuristic (§4.2.2), else 0.
	Lifetime time.Duration

	// Heuristic is true when Lifetime came from Last-Modified (§4.2.2).
	Heuristic bool

	// Explicit is true when the response gave its freshness itself
	// (s-maxage, max-age or Expires, even an invalid one): what an
	// operator's default TTL must not override.
	Explicit bool

	// StaleWhileRevalidate and StaleIfError are the RFC 5861 windows; 0 when
	// absent (a response saying stale-if-error=0 reads the same as none).
	StaleWhileRevalidate time.Duration
	StaleIfError         time.Duration

	// MustRevalidate forbids serving the response once stale, even on
	// upstream errors: must-revalidate, proxy-revalidate, or s-maxage, which
	// implies proxy-revalidate for a shared cache (§5.2.2.10, §4.2.4). It wins
	// over stale-while-revalidate and stale-if-error in the same response.
	MustRevalidate bool

	// NoCache means the response is stored but must be validated before every
	// use: the unqualified no-cache directive (§5.2.2.4). The qualified form
	// does not set it; see [StripFields].
	NoCache bool
}

// ResponseFreshness computes the [Freshness] of a response (RFC 9111 §4.2.1,
// §4.2.2) received at responseTime, with directives from [ResponseDirectives].
//
// Expires counts only when no s-maxage or max-age is present and no targeted
// field is in use (RFC 9213 §2.2). Its lifetime is Expires - Date, with
// responseTime standing in for a missing or invalid Date (RFC 9110 §6.6.1).
// Dates are read with [ParseHTTPDate] (the grammar's shape, names in any
// case). An Expires that is not a valid HTTP-date (e.g. "0", or "Sun, 06 Nov 1994 8:49:37 GMT") means
// "already expired" and gives 0 (§5.3), as does an Expires before Date.
// Several Expires field lines are treated as invalid, so stale, unless they
// are identical: §4.2.1 lets a cache either use the first occurrence or
// consider the response stale, and identical lines read the same either way. Without explicit expiration, a
// heuristically cacheable or public response with a Last-Modified before
// Date gets opt.HeuristicFraction of (Date - Last-Modified), capped at
// opt.HeuristicMax (§4.2.2).
func ResponseFreshness(status int, respHdr http.Header, responseTime time.Time, opt Options) Freshness {
	cc, targeted := directives(respHdr, opt)
	f := Freshness{
		StaleWhileRevalidate: seconds(max(cc.StaleWhileRevalidate, 0)),
		StaleIfError:         seconds(max(cc.StaleIfError, 0)),
		// s-maxage implies proxy-revalidate (§5.2.2.10), except where the
		// same response explicitly allows stale content (RFC 5861): the
		// common "s-maxage=60, stale-while-revalidate=30" means what CDNs
		// take it to mean.
		MustRevalidate: cc.MustRevalidate || cc.ProxyRevalidate ||
			(cc.SMaxAge >= 0 && cc.StaleWhileRevalidate <= 0 && cc.StaleIfError <= 0),
		NoCache: cc.NoCache,
	}
	date := responseTime
	if d, ok := httpDate(respHdr, "Date"); ok {
		date = d
	}
	expires := respHdr.Values("Expires")
	f.Explicit = cc.SMaxAge >= 0 || cc.MaxAge >= 0 || (targeted < 0 && len(expires) > 0)
	switch {
	case cc.SMaxAge >= 0:
		f.Lifetime = seconds(cc.SMaxAge)
	case cc.MaxAge >= 0:
		f.Lifetime = seconds(cc.MaxAge)
	case targeted < 0 && len(expires) > 0:
		for _, e := range expires[1:] {
			if e != expires[0] {
				return f // disagreeing Expires lines: stale
			}
		}
		if t, ok := ParseHTTPDate(expires[0]); ok && t.After(date) {
			f.Lifetime = t.Sub(date)
		}
	case opt.HeuristicMax > 0 && opt.HeuristicFraction > 0 && (heuristicallyCacheable[status] || cc.Public):
		if lm, ok := httpDate(respHdr, "Last-Modified"); ok && lm.Before(date) {
			f.Lifetime = opt.HeuristicMax
			if h := float64(date.Sub(lm)) * opt.HeuristicFraction; h < float64(opt.HeuristicMax) {
				f.Lifetime = time.Duration(h)
			}
			f.Heuristic = true
		}
	}
	return f
}

// seconds converts whole seconds to a Duration, saturating instead of
// overflowing (§1.2.2).
func seconds(n int64) time.Duration {
	if n > math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(n) * time.Second
}

// InitialAge returns corrected_initial_age (RFC 9111 §4.2.3) for a response:
// the larger of apparent_age (responseTime - Date, at least 0) and
// corrected_age_value (the Age field plus the time the request took).
// requestTime is when the request that produced the response was sent,
// responseTime when the response was received. Only the first member of Age
// counts, and an invalid Age is ignored (§5.1); a missing or invalid Date
// gives an apparent_age of 0. The result is never negative.
func InitialAge(respHdr http.Header, requestTime, responseTime time.Time) time.Duration {
	var ageValue time.Duration
	if v := respHdr.Values("Age"); len(v) > 0 {
		first := v[0]
		for i := 0; i < len(first); i++ {
			if first[i] == ',' {
				first = first[:i]
				break
			}
		}
		if n, ok := deltaSeconds(trimOWS(first)); ok {
			ageValue = seconds(n)
		}
	}
	var apparent time.Duration
	if date, ok := httpDate(respHdr, "Date"); ok {
		apparent = max(responseTime.Sub(date), 0)
	}
	corrected := ageValue + max(responseTime.Sub(requestTime), 0)
	return max(apparent, corrected)
}

// CurrentAge returns current_age (RFC 9111 §4.2.3): initialAge (the
// corrected_initial_age from [InitialAge]) plus resident_time, the time from
// responseTime, when the response was received and stored, to now. It is
// never negative, even if the clock went backwards, and saturates instead of
// overflowing. It does not allocate, so it suits the hit path. An entry that
// keeps the initial age in whole seconds and the receipt time in Unix
// nanoseconds passes
//
//	CurrentAge(time.Duration(initialAgeSeconds)*time.Second, time.Unix(0, storedNanos), now)
//
// where now is the caller's clock reading. The two times are compared by
// wall clock (their Unix nanoseconds), which is what a stored receipt time
// has, and costs a few nanoseconds less than time.Sub on the hit path.
func CurrentAge(initialAge time.Duration, responseTime, now time.Time) time.Duration {
	resident := max(time.Duration(now.UnixNano()-responseTime.UnixNano()), 0)
	initialAge = max(initialAge, 0)
	if initialAge > math.MaxInt64-resident {
		return math.MaxInt64
	}
	return initialAge + resident
}

// Action is what to do with a stored response for one request.
type Action uint8

const (
	// Serve means the stored response may be sent as is.
	Serve Action = iota
	// ServeStale means the stored response is stale but within its
	// stale-while-revalidate window: send it, and refresh it in the background.
	ServeStale
	// Revalidate means the stored response must be validated with the origin
	// (a conditional request when it has validators) before it is used, or
	// replaced by the origin's answer.
	Revalidate
	// Miss means no stored response can be used. [Evaluate] never returns it:
	// no request directive forbids using a stored response outright (request
	// no-cache and max-age=0 ask for validation, §5.2.1.1, §5.2.1.4; request
	// no-store does not apply to responses already stored, §5.2.1.5). It is
	// here for the caller's own outcomes (nothing stored, Vary mismatch), so
	// one type describes every lookup.
	Miss
)

var actionNames = [...]string{Serve: "serve", ServeStale: "serve-stale", Revalidate: "revalidate", Miss: "miss"}

// String returns the action's name, e.g. "serve-stale".
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Evaluate decides how a stored response with [Freshness] f and current age
// age (see [CurrentAge]) may answer a request (RFC 9111 §4, §4.2.4, §5.2.1),
// checking in this order:
//
//  1. response no-cache: Revalidate (§5.2.2.4);
//  2. request no-cache or Pragma: no-cache: Revalidate (§5.2.1.4, §5.4);
//  3. age over the request's max-age: Revalidate (§5.2.1.1);
//  4. fewer than the request's min-fresh seconds of freshness left: Revalidate (§5.2.1.3);
//  5. fresh (age < f.Lifetime, §4.2): Serve;
//  6. stale and f.MustRevalidate: Revalidate (§4.2.4);
//  7. stale by no more than f.StaleWhileRevalidate: ServeStale (RFC 5861 §3);
//  8. stale by no more than the request's max-stale: Serve (§5.2.1.2);
//  9. otherwise Revalidate.
//
// The request's directives win over the response's stale allowances: a
// client asking for max-age=0 is never served stale. For only-if-cached
// (§5.2.1.7) the caller answers 504 instead of revalidating.
func Evaluate(req Request, f Freshness, age time.Duration) (Action, Reason) {
	age = max(age, 0)
	switch {
	case f.NoCache:
		return Revalidate, ReasonNoCache
	case req.noCache():
		return Revalidate, ReasonRequestNoCache
	case req.CC.MaxAge >= 0 && age > seconds(req.CC.MaxAge):
		return Revalidate, ReasonRequestMaxAge
	case req.CC.MinFresh >= 0 && f.Lifetime-age < seconds(req.CC.MinFresh):
		return Revalidate, ReasonRequestMinFresh
	case age < f.Lifetime:
		return Serve, ReasonFresh
	}
	staleness := age - f.Lifetime
	switch {
	case f.MustRevalidate:
		return Revalidate, ReasonMustRevalidate
	case f.StaleWhileRevalidate > 0 && staleness <= f.StaleWhileRevalidate:
		return ServeStale, ReasonStaleWhileRevalidate
	case req.CC.MaxStale >= 0 && staleness <= seconds(req.CC.MaxStale):
		return Serve, ReasonMaxStale
	}
	return Revalidate, ReasonStale
}

// StaleIfError reports whether a stored response of age age may be served
// because the origin could not be reached or answered 500, 502, 503 or 504
// (RFC 5861 §4, RFC 9111 §4.2.4, §4.3.3). A response that is still fresh may.
// A stale one may when its staleness is within the request's stale-if-error
// if the request has one (its scope is that request), else the response's,
// else grace, the operator's default window. Never under no-cache or
// f.MustRevalidate: must-revalidate holds "in all circumstances" (§5.2.2.2),
// including a disconnected cache.
func StaleIfError(req Request, f Freshness, age, grace time.Duration) bool {
	if f.NoCache || f.MustRevalidate {
		return false
	}
	staleness := max(age, 0) - f.Lifetime
	if staleness < 0 {
		return true
	}
	limit := grace
	if f.StaleIfError > 0 {
		limit = f.StaleIfError
	}
	if req.CC.StaleIfError >= 0 {
		limit = seconds(req.CC.StaleIfError)
	}
	return limit > 0 && staleness <= limit
}
