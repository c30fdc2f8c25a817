package proxy

import (
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"time"

	"dedupcache/policy"
	"dedupcache/rules"
)

// Config configures a [Proxy]. main builds it from flags and the YAML file
// (package config holds the defaults); a zero value means what its field
// says: off, none, or derived from another field.
type Config struct {
	// Upstream is the origin every request is forwarded to (scheme and host; a
	// path prefix is joined in front of the request path). Required.
	Upstream *url.URL

	// MaxMemory bounds everything the cache holds: entry metadata, stored
	// header blocks, unique body bytes, and the bodies of fetches in flight
	// (an eighth of it, at least MaxObjectSize, at most a quarter, is set
	// aside for those). Required.
	MaxMemory int64
	// MaxObjectSize is the largest body that is stored; larger ones stream
	// through uncached. Zero or more than MaxMemory/4: MaxMemory/4.
	MaxObjectSize int64
	// ExpectedEntries sizes the admission policy's counters. Default: derived
	// from MaxMemory (one per 2 KiB).
	ExpectedEntries int64

	// Policy tunes the RFC 9111 decisions (Set-Cookie, heuristic freshness,
	// targeted Cache-Control fields). Default policy.DefaultOptions().
	Policy policy.Options
	// Grace serves a stale entry when the upstream fails and the response
	// itself did not say (RFC 5861 stale-if-error as an operator default).
	// Zero (the default) disables it.
	Grace time.Duration

	// Keep holds a stale entry that has validators (ETag or
	// Last-Modified) this much longer, so that it can be revalidated with a
	// conditional request instead of fetched again. Default 0 (main's
	// config default is 10m).
	Keep time.Duration
	// DefaultTTL is how long a storable response that gives no freshness
	// (no s-maxage, max-age or Expires) and gets no heuristic (no
	// Last-Modified) stays fresh. Zero: such responses are not stored.
	DefaultTTL time.Duration
	// DebugHeaders adds X-Cache-Key (the request's cache key) to responses.
	DebugHeaders bool
	// Shared is the tier shared with other instances; nil: none.
	Shared Shared
	// Rules are the operator's rules (package rules); nil: none.
	Rules *rules.Set
	// TrustedProxies are the peers whose X-Forwarded-For is kept (and
	// appended to) and whose X-Forwarded-Proto and X-Forwarded-Host are
	// passed on; from any other peer they are replaced. Empty: none.
	TrustedProxies []netip.Prefix
	// PurgeToken, if set, turns on the PURGE method on the proxy listener
	// for requests with "Authorization: Bearer <token>". Empty: PURGE is
	// forwarded upstream like any other method.
	PurgeToken string

	// SynthesizeETag gives responses stored without any validator a strong
	// ETag made from the body's hash, so that clients' conditional requests
	// get 304s from the cache.
	SynthesizeETag bool

	// TagHeader is the response field whose space- or comma-separated
	// values are surrogate keys (tags) for purging; it is stripped before
	// responses go to clients. Empty: no tags.
	TagHeader string
	// UnkeyedHeaders are request fields removed from every request sent
	// upstream: fields outside the key that could change the response
	// (X-Forwarded-Port, X-Original-URL, ...). Empty: none.
	UnkeyedHeaders []string
	// UnkeyedBypass changes what a request carrying an unkeyed field
	// gets: forwarded with the field intact, neither looked up nor stored
	// (X-Cache BYPASS, Cache-Status detail=unkeyed-header), instead of
	// having it removed. Fetches strip them either way. Default false:
	// strip.
	UnkeyedBypass bool
	// AllowedHosts is the host allow-list of the proxy listeners: a
	// request for another host gets 421 Misdirected Request before any
	// lookup or upstream request. Nil (the default): every host. Live:
	// see [Live.AllowedHosts].
	AllowedHosts *rules.Hosts
	// MaxInflight bounds the fetches filling the cache at once; past it a
	// miss goes upstream on its own and is not stored. Zero: derived from
	// the in-flight memory (see MaxMemory) and MaxObjectSize.
	MaxInflight int

	// CachePOSTPaths lists path prefixes whose POST requests are read-only
	// queries (GraphQL, search) to cache like GETs, keyed by the URL and a
	// hash of the request body (up to 64 KiB). Empty (the default): POST is
	// never cached.
	CachePOSTPaths []string

	// AccessLogEvery logs one request in this many ("access" records at
	// Info); 0 (the default) turns the access log off, 1 logs every request.
	AccessLogEvery int
	// AccessLogFormat is how access lines are written (see [AccessFormat]);
	// the zero value is a record on Logger.
	AccessLogFormat AccessFormat
	// AccessLogOut receives access lines in every format but
	// [AccessRecord], one Write per line; it must be safe for concurrent
	// use if anything else writes to it. Nil: os.Stderr.
	AccessLogOut io.Writer

	// DialTimeout bounds connecting to the upstream. Zero: no limit.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the upstream's response
	// header after the request is written; past it the client gets 504.
	// Zero: no limit.
	ResponseHeaderTimeout time.Duration
	// ReadTimeout bounds any silence while reading from the upstream
	// (response header or body): a body that stalls longer is cut off (the
	// client connection is aborted, nothing is stored). Zero or negative:
	// no limit.
	ReadTimeout time.Duration
	// IdleConnTimeout closes idle upstream connections. Zero: never.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost sizes the upstream connection pool. Zero: net/http's default (2).
	MaxIdleConnsPerHost int

	// Logger receives lifecycle and error logs. Nil: slog.Default().
	Logger *slog.Logger

	// ObserveUpstream, if set, is called once per upstream exchange with its
	// latency: from sending the request to the response header, or to the
	// failure. It runs on the request's goroutine, concurrently with other
	// calls, so it must be quick and safe for concurrent use, and must not
	// call the Proxy. Nil (the default) turns it off.
	ObserveUpstream func(time.Duration)

	// GoMemoryLimit is the Go runtime's soft memory limit the program set
	// for this cache (0: none, or one the operator chose). Body bytes live
	// in the arena, outside what that limit governs, so the proxy lowers
	// the runtime's limit by what the arena maps, as it changes (every
	// 100 ms), and the process as a whole stays near GoMemoryLimit.
	GoMemoryLimit int64
}
