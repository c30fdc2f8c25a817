// Package config holds dedupcache's process configuration: the YAML file
// format, its defaults, and the checks run once at start-up.
//
// main builds a [Config] in four steps and nothing else touches it:
//
//	c := config.Default()                 // or config.Load(path), which starts from Default
//	c.Set("cache.max_memory", v, "flag -max-memory") // each flag that was set
//	c.ApplyEnv(os.Getenv)                 // $DEDUPCACHE_ADMIN_TOKEN
//	err := c.Validate()                   // once, before anything listens
//
// Every problem is reported as an [*Error] that names where the value came
// from (file and line, flag or environment variable) and its dotted field
// path; functions that can find several problems return all of them joined
// with [errors.Join].
//
// The package imports nothing else from dedupcache: main copies the values
// into each package's own Config or Options.
package config

import "time"

// Config is the whole process configuration. Field names in YAML are the
// snake_case names in the yaml tags; sizes are [Size] values ("256MiB") and
// durations [Duration] values ("30s").
//
// A Config is meant to be held as a value. Copies share nothing that [Set]
// or [Load] mutate in place, so a copy may be changed freely.
type Config struct {
	// Listen is the proxy listener, host:port.
	Listen string `yaml:"listen"`
	// ListenTLS is a second proxy listener, host:port, serving the same
	// proxy over TLS with HTTP/2 and HTTP/1.1 (ALPN h2 and http/1.1).
	// Empty (the default) means none. It requires TLSCert and TLSKey.
	ListenTLS string `yaml:"listen_tls"`
	// TLSCert is the PEM file holding the certificate ListenTLS serves,
	// leaf first, followed by any intermediates. It and TLSKey are read at
	// start and again on every reload (SIGHUP), so a renewed certificate
	// takes effect without a restart. A relative path is relative to the
	// working directory. Only valid with ListenTLS.
	TLSCert string `yaml:"tls_cert"`
	// TLSKey is the PEM file holding TLSCert's private key. Only valid
	// with ListenTLS.
	TLSKey string `yaml:"tls_key"`
	// Upstream is the origin requests are forwarded to:
	// http(s)://host[:port][/prefix]. Required unless main runs with -demo.
	Upstream string `yaml:"upstream"`

	Admin            Admin            `yaml:"admin"`
	Metrics          Metrics          `yaml:"metrics"`
	Shared           Shared           `yaml:"shared"`
	Snapshot         Snapshot         `yaml:"snapshot"`
	Cache            Cache            `yaml:"cache"`
	UpstreamTimeouts UpstreamTimeouts `yaml:"upstream_timeouts"`
	Server           Server           `yaml:"server"`
	Log              Log              `yaml:"log"`

	// Rules adjust caching per request: see [Rule]. They are evaluated in
	// order and the first that matches decides. Default empty.
	Rules []Rule `yaml:"rules"`

	// origins maps a dotted field path to where its value came from
	// ("config.yaml:14", "flag -listen"); a field absent from it holds its
	// default. Validate and Warnings prefix their messages with it.
	origins map[string]string
}

// Admin configures the admin listener (dashboard, /metrics, /api/*, /healthz).
type Admin struct {
	// Listen is the admin listener, host:port. Binding it to a non-loopback
	// address requires Token.
	Listen string `yaml:"listen"`
	// Token is the bearer token required by mutating admin endpoints and by
	// those that list cache keys (/api/purge, /api/top-bodies); empty means
	// none. $DEDUPCACHE_ADMIN_TOKEN overrides it (see [Config.ApplyEnv]).
	Token string `yaml:"token"`
	// AllowedHosts lists further names (port ignored) that requests to the
	// admin listener may carry in Host, besides localhost, 127.0.0.1, ::1
	// and the host of Listen; other Hosts get 421, which stops DNS
	// rebinding. A listener on a wildcard or non-loopback address with a
	// Token accepts any Host. Default empty.
	AllowedHosts []string `yaml:"allowed_hosts"`
}

// Metrics configures the read-only metrics listener: /metrics, /healthz
// and /readyz, with no token and no Host check, since it shows no cache
// keys and changes nothing. It lets Prometheus and Kubernetes probes reach
// a cache whose admin listener stays on loopback.
type Metrics struct {
	// Listen is the metrics listener, host:port; empty (the default) means
	// none. Any address is allowed, loopback or not.
	Listen string `yaml:"listen"`
}

// Snapshot configures warm restarts: the cache is written to a file when
// the process stops (after in-flight requests drain) and, if Interval is
// set, while it runs; at start the file is loaded before the listeners
// open.
type Snapshot struct {
	// Path is the snapshot file; empty (the default) means none. Its
	// directory must exist: the file is written next to it and renamed.
	Path string `yaml:"path"`
	// Interval is how often the snapshot is also written while running;
	// 0 (the default) means only at shutdown.
	Interval Duration `yaml:"interval"`
}

// Shared configures the tier shared by several instances (Redis or
// Valkey): an in-process miss asks it before the origin, stored responses
// are written to it, and purges reach every instance through it.
type Shared struct {
	// RedisURL locates the server: redis://[user:pass@]host:port[/db],
	// rediss:// for TLS, more Cluster seeds as ?addr=host:port, Sentinel as
	// redis://sentinel:26379?master_set=NAME. Empty (the default): no
	// shared tier.
	RedisURL string `yaml:"redis_url"`
	// Namespace prefixes every key; instances share data only within one.
	Namespace string `yaml:"namespace"`
	// Timeout bounds every call to Redis; past it the call is a miss.
	Timeout Duration `yaml:"timeout"`
}

// Cache configures what is stored and for how long.
type Cache struct {
	// MaxMemory is the one bound on everything the cache holds: entries,
	// header blocks and unique body bytes.
	MaxMemory Size `yaml:"max_memory"`
	// MaxObjectSize is the largest body that is stored; larger ones stream
	// through uncached.
	MaxObjectSize Size `yaml:"max_object_size"`
	// ExpectedEntries sizes the admission policy; 0 derives it from MaxMemory.
	ExpectedEntries int64 `yaml:"expected_entries"`
	// CacheSetCookie stores responses that carry Set-Cookie. Unsafe unless
	// the upstream never sets per-user cookies on shared resources.
	CacheSetCookie bool `yaml:"cache_set_cookie"`
	// HeuristicFraction is the share of the time since Last-Modified used as
	// heuristic freshness (RFC 9111 section 4.2.2), in (0, 1].
	HeuristicFraction float64 `yaml:"heuristic_fraction"`
	// HeuristicMax caps heuristic freshness.
	HeuristicMax Duration `yaml:"heuristic_max"`
	// Grace serves a stale entry for this long when the upstream fails; 0
	// disables it.
	Grace Duration `yaml:"grace"`
	// TargetedCacheControl lists the RFC 9213 targeted fields this cache
	// obeys, in precedence order, ahead of Cache-Control.
	TargetedCacheControl []string `yaml:"targeted_cache_control"`
	// SurrogateID is this cache's device token for Surrogate-Control (W3C
	// Edge Architecture 1.0), sent upstream in Surrogate-Capability; ""
	// ignores Surrogate-Control.
	SurrogateID string `yaml:"surrogate_id"`
	// Keep holds stale entries that have validators this much longer, so
	// they are revalidated with a conditional request instead of refetched.
	Keep Duration `yaml:"keep"`
	// SynthesizeETag gives responses stored without a validator a strong
	// ETag from the body's hash, so clients get 304s from the cache.
	SynthesizeETag bool `yaml:"synthesize_etag"`
	// TagHeader is the response field carrying surrogate keys for purges
	// (stripped before responses reach clients); empty disables tags.
	TagHeader string `yaml:"tag_header"`
	// PostPaths lists path prefixes whose POST requests are read-only
	// queries (GraphQL, search) cached like GETs, keyed by the URL and a
	// hash of the request body. Empty: POST is never cached.
	PostPaths []string `yaml:"post_paths"`
	// UnkeyedHeaders lists request header fields that are not part of the
	// cache key and are stripped from every request forwarded upstream, so
	// that a client cannot make the origin vary a response on something the
	// key does not hold (X-Forwarded-Port, X-Original-URL, ...). Names are
	// header field names, matched case-insensitively.
	UnkeyedHeaders []string `yaml:"unkeyed_headers"`
	// UnkeyedAction is what a request carrying one of UnkeyedHeaders
	// gets: "strip" (the default: the fields are removed before the
	// request goes upstream, and it is cached as usual) or "bypass" (it
	// is forwarded with the fields intact, never answered from the cache
	// nor stored: X-Cache BYPASS, Cache-Status detail=unkeyed-header), for
	// origins that need them. Either way no response shaped by them is
	// ever stored.
	UnkeyedAction string `yaml:"unkeyed_action"`
	// MaxInflight is the most concurrent upstream fills that buffer a body
	// for the cache; past it, responses stream through to the client
	// uncached. It bounds the memory that bodies being filled can take on
	// top of MaxMemory (each up to MaxObjectSize).
	MaxInflight int `yaml:"max_inflight"`
	// DefaultTTL is how long a storable response is fresh when the origin
	// gave it no explicit freshness (max-age, Expires, ...) and none can be
	// derived heuristically; 0, the default, leaves such responses
	// uncached. It never makes a response storable that forbids storing
	// (no-store, private, Set-Cookie without CacheSetCookie, a request
	// with Authorization). A matching [Rule] with TTL or ForceTTL takes
	// precedence.
	DefaultTTL Duration `yaml:"default_ttl"`
	// DebugHeaders makes responses carry X-Cache-Key, the cache key the
	// request was looked up under. Off by default: keys can hold query
	// strings and the headers and cookies a [RuleKey] adds.
	DebugHeaders bool `yaml:"debug_headers"`
}

// UpstreamTimeouts configures the connection pool to the upstream.
type UpstreamTimeouts struct {
	// Dial bounds connecting to the upstream.
	Dial Duration `yaml:"dial"`
	// ResponseHeader bounds the wait for the upstream's response header.
	ResponseHeader Duration `yaml:"response_header"`
	// Read bounds any silence while reading an upstream response (header
	// or body); a body that stalls longer is cut off and not stored.
	Read Duration `yaml:"read"`
	// Idle closes idle upstream connections after this long.
	Idle Duration `yaml:"idle"`
	// MaxIdleConnsPerHost sizes the idle connection pool.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`
}

// Server configures both HTTP servers (proxy and admin); the fields map onto
// the [net/http.Server] fields of the same names, 0 meaning no limit.
type Server struct {
	// Engine is the HTTP/1.1 server of the proxy listener: "fasthttp"
	// (the default: hits are written from buffers the server reuses) or
	// "net/http" (Go's own server, which streams request bodies instead of
	// reading them whole first).
	Engine            string   `yaml:"engine"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	ReadTimeout       Duration `yaml:"read_timeout"`
	// WriteTimeout is 0 by default so long downloads are not cut off.
	WriteTimeout Duration `yaml:"write_timeout"`
	IdleTimeout  Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds a request's line and header block (431 past
	// it). With the fasthttp engine it is also each connection's read
	// buffer, so keep it small.
	MaxHeaderBytes Size `yaml:"max_header_bytes"`
	// MaxRequestBody bounds a request body on the fasthttp engine, which
	// reads a body whole before the request goes upstream (413 past it).
	// The net/http engine streams bodies and ignores it.
	MaxRequestBody  Size     `yaml:"max_request_body"`
	ShutdownTimeout Duration `yaml:"shutdown_timeout"` // graceful shutdown budget on SIGINT/SIGTERM
	// TrustedProxies lists the peers (CIDRs such as "10.0.0.0/8", or single
	// IP addresses) whose X-Forwarded-For is appended to and whose
	// X-Forwarded-Proto and X-Forwarded-Host are kept; from any other peer
	// they are replaced. Default empty: no peer is trusted. See
	// [Server.TrustedPrefixes].
	TrustedProxies []string `yaml:"trusted_proxies"`
	// AllowedHosts lists the hosts the proxy listeners answer: exact
	// names, "*.example.com" (any name below example.com) or IP
	// addresses, matched case-insensitively with the port ignored,
	// against the Host (or the host of an absolute-form request target).
	// Other requests get 421 Misdirected Request before any lookup or
	// upstream request. Default empty: every host is answered. Applied
	// on reload.
	AllowedHosts []string `yaml:"allowed_hosts"`
}

// The values of [Cache.UnkeyedAction].
const (
	UnkeyedStrip  = "strip"
	UnkeyedBypass = "bypass"
)

// The values of [Server.Engine].
const (
	EngineFast    = "fasthttp"
	EngineNetHTTP = "net/http"
)

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn or error
	Format string `yaml:"format"` // text or json
	// Access turns the access log off, on, or on for one request in
	// AccessSample ("sampled").
	Access       string `yaml:"access"`        // off, on or sampled
	AccessSample int    `yaml:"access_sample"` // with sampled: log 1 request in this many
	// AccessFormat is how an access line is written: "combined" (the
	// Apache/nginx combined log format plus cache status and seconds taken),
	// "text" or "json" (a log record in that format, whatever Format and
	// Level say), or empty (the default): a record at Info in Format, like
	// every other log line.
	AccessFormat string `yaml:"access_format"`
}

// Default returns the built-in configuration. It is complete except for
// Upstream, which has no sensible default, and it is the one place where
// defaults live: every value the proxy, the policy and the servers need is
// set here, so that the packages main configures need not (and should not)
// default anything themselves. Each call returns a new value with its own
// slices.
func Default() Config {
	return Config{
		Listen: "127.0.0.1:8080",
		Admin:  Admin{Listen: "127.0.0.1:9091", AllowedHosts: []string{}},
		Shared: Shared{Namespace: "dc:1:", Timeout: Duration(50 * time.Millisecond)},
		Cache: Cache{
			MaxMemory:            256 * MiB,
			MaxObjectSize:        8 * MiB,
			HeuristicFraction:    0.1,
			HeuristicMax:         Duration(24 * time.Hour),
			TargetedCacheControl: []string{"CDN-Cache-Control"},
			SurrogateID:          "dedupcache",
			SynthesizeETag:       true,
			TagHeader:            "Surrogate-Key",
			PostPaths:            []string{},
			Keep:                 Duration(10 * time.Minute),
			UnkeyedHeaders: []string{
				"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Forwarded-Server",
				"X-Host", "X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override",
				"X-Forwarded-Path", "X-Forwarded-Uri", "X-Original-Host", "X-HTTP-Method", "X-Method-Override", "X-Original-Method",
			},
			UnkeyedAction: UnkeyedStrip,
			MaxInflight:   64,
		},
		UpstreamTimeouts: UpstreamTimeouts{
			Dial:                Duration(5 * time.Second),
			ResponseHeader:      Duration(30 * time.Second),
			Read:                Duration(60 * time.Second),
			Idle:                Duration(90 * time.Second),
			MaxIdleConnsPerHost: 256,
		},
		Server: Server{
			Engine:            EngineFast,
			MaxRequestBody:    16 * MiB,
			ReadHeaderTimeout: Duration(10 * time.Second),
			ReadTimeout:       Duration(60 * time.Second),
			IdleTimeout:       Duration(120 * time.Second),
			MaxHeaderBytes:    64 * KiB,
			ShutdownTimeout:   Duration(15 * time.Second),
			TrustedProxies:    []string{},
			AllowedHosts:      []string{},
		},
		Log:   Log{Level: "info", Format: "text", Access: "off", AccessSample: 100},
		Rules: []Rule{},
	}
}
