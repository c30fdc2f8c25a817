// Package policy holds the HTTP caching rules of dedupcache, a shared cache
// (RFC 9111), as pure functions: header fields and times go in, decisions come
// out. It does no I/O, starts no goroutines and never reads a clock; callers
// pass the times they observed. Nothing here may import another dedupcache
// package.
//
// A proxy uses it in this order:
//
//   - On a response from the origin, [Storable] says whether it may be stored,
//     [StripFields] lists the header fields to drop before storing it,
//     [ResponseFreshness] and [InitialAge] give what the stored entry needs to
//     judge later requests, and [ParseVary] with [VaryKey] give the variant key.
//   - On a request, [ParseRequest] reads its directives once; [Evaluate]
//     decides between [Serve], [ServeStale] and [Revalidate] for a stored
//     response of a given [CurrentAge]; [NotModified] says whether the client's
//     own validators allow a 304; [ParseRange] reads a single byte range and
//     [IfRangeMatches] says whether If-Range lets it apply.
//   - On a request forwarded upstream, [RemoveHopByHop] drops the hop-by-hop
//     fields, and [StripConditionals] the client's preconditions and Range
//     when the response is meant to fill or revalidate the cache.
//   - When revalidation returns 304, [CanFreshen] checks that it describes the
//     stored response and [UpdateStoredHeader] merges its fields; when it fails
//     or returns 5xx, [StaleIfError] says whether the stored response may stand in.
//   - A non-error response to an unsafe method [Invalidates] the target URI,
//     and the Location and Content-Location URIs that [SameOrigin] accepts.
//
// Dates are read with [ParseHTTPDate], which accepts the three HTTP-date
// formats, with day and month names and GMT in any case (If-Modified-Since
// only in the grammar's case, with a day name that is the date's weekday).
//
// Targeted fields (RFC 9213, e.g. CDN-Cache-Control) listed in
// [Options.TargetedFields] replace Cache-Control and Expires for this cache's
// decisions whenever one of them is present and valid; see [ResponseDirectives].
//
// Every function is safe for concurrent use: none keeps state. Header maps
// passed in are never retained after return, and only read, except by
// [RemoveHopByHop] and [StripConditionals], whose job is to delete fields
// from the header they are given.
package policy
