package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// minMaxMemory is the smallest cache.max_memory accepted: below it the
// per-entry overhead leaves no room for bodies.
const minMaxMemory = 1 * MiB

// minTokenLen is the admin token length below which Warnings complains.
const minTokenLen = 16

// Validate checks every field and returns all problems joined with
// [errors.Join], each an [*Error] naming the field and, when the value did
// not come from the defaults, where it came from. It is meant to be called
// once, after the file, flags and environment have been applied.
func (c Config) Validate() error {
	v := checker{c: &c}

	v.addr("listen", c.Listen)
	if _, err := c.UpstreamURL(); err != nil {
		v.fail("upstream", "%s", err)
	}

	v.addr("admin.listen", c.Admin.Listen)
	if c.Admin.Listen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		v.fail("admin.listen", "%s is also the proxy's listen address", quote(c.Admin.Listen))
	}
	if host, _, err := net.SplitHostPort(c.Admin.Listen); err == nil && !isLoopback(host) && c.Admin.Token == "" {
		v.fail("admin.listen", "%s is not a loopback address, so admin.token (or $%s) is required", quote(c.Admin.Listen), EnvAdminToken)
	}
	if strings.IndexFunc(c.Admin.Token, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		// Never echo the token itself.
		v.fail("admin.token", "must be printable ASCII without spaces")
	}

	cc := c.Cache
	if cc.MaxMemory < minMaxMemory {
		v.fail("cache.max_memory", "%s is below the minimum %s", cc.MaxMemory, minMaxMemory)
	}
	switch {
	case cc.MaxObjectSize <= 0:
		v.fail("cache.max_object_size", "must be greater than 0")
	case cc.MaxObjectSize > cc.MaxMemory:
		v.fail("cache.max_object_size", "%s is more than cache.max_memory (%s)", cc.MaxObjectSize, cc.MaxMemory)
	}
	if cc.ExpectedEntries < 0 {
		v.fail("cache.expected_entries", "%d is negative (0 derives it from cache.max_memory)", cc.ExpectedEntries)
	}
	if !(cc.HeuristicFraction > 0 && cc.HeuristicFraction <= 1) {
		v.fail("cache.heuristic_fraction", "%v is outside (0, 1]", cc.HeuristicFraction)
	}
	v.nonNegative("cache.heuristic_max", cc.HeuristicMax)
	v.nonNegative("cache.grace", cc.Grace)
	v.nonNegative("cache.keep", cc.Keep)
	v.nonNegative("cache.default_ttl", cc.DefaultTTL)
	for i, path := range cc.PostPaths {
		if !strings.HasPrefix(path, "/") {
			v.fail(fmt.Sprintf("cache.post_paths[%d]", i), "%s must start with /", quote(path))
		}
	}
	if cc.TagHeader != "" && !isToken(cc.TagHeader) {
		v.fail("cache.tag_header", "%s is not a header field name", quote(cc.TagHeader))
	}
	v.headerNames("cache.targeted_cache_control", cc.TargetedCacheControl)
	if cc.SurrogateID != "" && !isToken(cc.SurrogateID) {
		v.fail("cache.surrogate_id", "%s is not a token (letters, digits and !#$%%&'*+-.^_`|~)", quote(cc.SurrogateID))
	}
	v.headerNames("cache.unkeyed_headers", cc.UnkeyedHeaders)
	v.oneOf("cache.unkeyed_action", cc.UnkeyedAction, UnkeyedStrip, UnkeyedBypass)
	if cc.MaxInflight < 1 {
		v.fail("cache.max_inflight", "%d: want 1 or more (concurrent fills that buffer a body for the cache)", cc.MaxInflight)
	}

	// Zero would not mean "no limit" here: the proxy reads 0 as "use the
	// default", so it is rejected rather than silently reinterpreted.
	ut := c.UpstreamTimeouts
	v.positive("upstream_timeouts.dial", ut.Dial)
	v.positive("upstream_timeouts.response_header", ut.ResponseHeader)
	v.positive("upstream_timeouts.read", ut.Read)
	v.positive("upstream_timeouts.idle", ut.Idle)
	if ut.MaxIdleConnsPerHost <= 0 {
		v.fail("upstream_timeouts.max_idle_conns_per_host", "must be greater than 0")
	}

	s := c.Server
	v.nonNegative("server.read_header_timeout", s.ReadHeaderTimeout)
	v.nonNegative("server.read_timeout", s.ReadTimeout)
	v.nonNegative("server.write_timeout", s.WriteTimeout)
	v.nonNegative("server.idle_timeout", s.IdleTimeout)
	v.nonNegative("server.shutdown_timeout", s.ShutdownTimeout)
	if s.MaxHeaderBytes <= 0 || s.MaxHeaderBytes > 1*GiB {
		v.fail("server.max_header_bytes", "%s is outside (0, 1GiB]", s.MaxHeaderBytes)
	}
	if s.Engine != EngineFast && s.Engine != EngineNetHTTP {
		v.fail("server.engine", "%q is not %q or %q", s.Engine, EngineFast, EngineNetHTTP)
	}
	if s.MaxRequestBody <= 0 || s.MaxRequestBody > 1*GiB {
		v.fail("server.max_request_body", "%s is outside (0, 1GiB]", s.MaxRequestBody)
	}
	for i, p := range s.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			v.fail(fmt.Sprintf("server.trusted_proxies[%d]", i), "%s", err)
		}
	}

	for i, h := range s.AllowedHosts {
		if err := checkHostPattern(h); err != nil {
			v.fail(fmt.Sprintf("server.allowed_hosts[%d]", i), "%s", err)
		}
	}

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")
	v.oneOf("log.access", c.Log.Access, "off", "on", "sampled")
	if c.Log.AccessSample < 1 {
		v.fail("log.access_sample", "%d: want 1 or more (log one request in this many)", c.Log.AccessSample)
	}
	if c.Log.AccessFormat != "" {
		v.oneOf("log.access_format", c.Log.AccessFormat, "combined", "text", "json")
	}
	v.metrics()
	v.snapshot()
	v.tls()
	v.shared()
	v.rules(c.Rules)
	return errors.Join(v.errs...)
}

// AccessLogEvery returns how many requests the access log takes one of:
// 0 for off, 1 for every request.
func (c Config) AccessLogEvery() int {
	switch c.Log.Access {
	case "on":
		return 1
	case "sampled":
		return c.Log.AccessSample
	}
	return 0
}

// Reloadable lists, as dotted YAML paths, the fields a running process
// applies on reload (SIGHUP). It is the only list of them: [RestartFields]
// derives everything else from it, so making a setting reloadable means
// adding its path here (and applying it in the reload code). Read-only.
var Reloadable = []string{
	"log.level", "log.access", "log.access_sample", "log.access_format", "admin.token", "cache.grace", "cache.keep",
	"cache.default_ttl", "cache.debug_headers", "rules", "tls_cert", "tls_key", "server.allowed_hosts",
}

// RestartFields returns the dotted paths of the fields that differ between
// a and b and only take effect after a restart: every field not named in
// [Reloadable]. A path in Reloadable that names no field is ignored.
func RestartFields(a, b Config) []string {
	av, bv := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for _, path := range Reloadable {
		af, ok := fieldByPath(av, path)
		if !ok {
			continue
		}
		bf, _ := fieldByPath(bv, path)
		bf.Set(af) // b is this call's copy: reloadable fields never differ
	}
	var out []string
	diff(reflect.ValueOf(a), reflect.ValueOf(b), "", &out)
	return out
}

// diff appends the yaml paths where the exported fields of a and b differ.
func diff(a, b reflect.Value, path string, out *[]string) {
	if a.Kind() == reflect.Struct {
		for i := 0; i < a.NumField(); i++ {
			f := a.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			p := name
			if path != "" {
				p = path + "." + name
			}
			diff(a.Field(i), b.Field(i), p, out)
		}
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, path)
	}
}

// UpstreamURL parses Upstream and checks that it is an absolute http or
// https URL with a host and no query or fragment.
func (c Config) UpstreamURL() (*url.URL, error) {
	if c.Upstream == "" {
		return nil, errors.New("required: the origin to cache, e.g. http://127.0.0.1:3000 (or run with -demo)")
	}
	u, err := url.Parse(c.Upstream)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s is not a URL", quote(c.Upstream))
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%s must start with http:// or https://", quote(c.Upstream))
	case u.Host == "":
		return nil, fmt.Errorf("%s has no host", quote(c.Upstream))
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("%s must not have a query or fragment", quote(c.Upstream))
	}
	return u, nil
}

// Warnings returns one line per setting that is allowed but unsafe or
// surprising, for main to log once at start-up. Settings that are never
// safe (an exposed admin API without a token) are Validate errors instead.
func (c Config) Warnings() []string {
	var w []string
	add := func(field, format string, args ...any) {
		e := Error{Origin: c.origin(field), Field: field, Problem: fmt.Sprintf(format, args...)}
		w = append(w, e.Error())
	}
	if quarter := c.Cache.MaxMemory / 4; c.Cache.MaxObjectSize > quarter {
		add("cache.max_object_size", "%s is more than a quarter of cache.max_memory; bodies above %s will not be stored", c.Cache.MaxObjectSize, quarter)
	}
	if c.Cache.CacheSetCookie {
		add("cache.cache_set_cookie", "responses with Set-Cookie are stored and replayed to every client; enable only if the upstream never sets per-user cookies on cacheable responses")
	}
	if c.Server.ReadHeaderTimeout == 0 && c.Server.ReadTimeout == 0 {
		add("server.read_header_timeout", "0 with server.read_timeout 0: slow clients can hold connections open forever")
	}
	if t := c.Admin.Token; t != "" && len(t) < minTokenLen {
		add("admin.token", "shorter than %d characters; use a long random token", minTokenLen)
	}
	return w
}

// checker collects Validate's problems.
type checker struct {
	c    *Config
	errs []error
}

func (v *checker) fail(field, format string, args ...any) {
	v.errs = append(v.errs, &Error{Origin: v.c.origin(field), Field: field, Problem: fmt.Sprintf(format, args...)})
}

// metrics checks the metrics section: an optional address that no other
// listener uses.
func (v *checker) shared() {
	s := v.c.Shared
	if s.RedisURL != "" {
		u, err := url.Parse(s.RedisURL)
		switch {
		case err != nil:
			v.fail("shared.redis_url", "%s: %v", quote(s.RedisURL), err)
		case u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix":
			v.fail("shared.redis_url", "%s: want redis://, rediss:// or unix://", quote(s.RedisURL))
		}
	}
	if s.Namespace == "" {
		v.fail("shared.namespace", "empty: want a key prefix such as \"dc:1:\"")
	}
	v.positive("shared.timeout", s.Timeout)
}

func (v *checker) metrics() {
	m := v.c.Metrics.Listen
	if m == "" {
		return
	}
	v.addr("metrics.listen", m)
	if strings.HasSuffix(m, ":0") {
		return
	}
	for _, other := range []struct{ field, addr string }{{"listen", v.c.Listen}, {"admin.listen", v.c.Admin.Listen}} {
		if m == other.addr {
			v.fail("metrics.listen", "%s is also the %s address", quote(m), other.field)
		}
	}
}

func (v *checker) addr(field, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail(field, "%s is not host:port (want e.g. 127.0.0.1:8080 or :8080)", quote(addr))
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		v.fail(field, "%s: port must be a number from 0 to 65535", quote(addr))
	}
	if strings.ContainsAny(host, " /") {
		v.fail(field, "%s: %s is not a host name or IP address", quote(addr), quote(host))
	}
}

// headerNames checks that every element of list, the field at path, is a
// header field name listed once (compared case-insensitively).
func (v *checker) headerNames(path string, list []string) {
	seen := make(map[string]bool)
	for i, name := range list {
		field := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case !isToken(name):
			v.fail(field, "%s is not a header field name", quote(name))
		case seen[strings.ToLower(name)]:
			v.fail(field, "%s is listed twice", quote(name))
		}
		seen[strings.ToLower(name)] = true
	}
}

func (v *checker) nonNegative(field string, d Duration) {
	if d < 0 {
		v.fail(field, "%s is negative", d)
	}
}

func (v *checker) positive(field string, d Duration) {
	if d <= 0 {
		v.fail(field, "must be greater than 0, got %s", time.Duration(d))
	}
}

func (v *checker) oneOf(field, got string, want ...string) {
	for _, w := range want {
		if got == w {
			return
		}
	}
	v.fail(field, "%s is not one of %s", quote(got), strings.Join(want, ", "))
}

// isLoopback reports whether host (from host:port) only accepts local
// connections. An empty host or a name other than localhost is treated as
// exposed, since it may resolve to anything.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// isToken reports whether s is an RFC 9110 token, the syntax of a header
// field name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// snapshot checks the snapshot section: an interval needs a path, and the
// path's directory must exist.
func (v *checker) snapshot() {
	s := v.c.Snapshot
	if s.Interval < 0 {
		v.fail("snapshot.interval", "%s is negative", time.Duration(s.Interval))
	}
	if s.Path == "" {
		if s.Interval > 0 {
			v.fail("snapshot.interval", "is set without snapshot.path")
		}
		return
	}
	dir := filepath.Dir(s.Path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		v.fail("snapshot.path", "%s: directory %s does not exist", quote(s.Path), quote(dir))
	}
}
