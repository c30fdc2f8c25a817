package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Rule is one entry of the rules list: match fields and actions side by
// side. The proxy takes the first rule, in list order, whose match fields
// all match; its actions replace the cache-wide settings they name, and
// actions it leaves unset fall back to those settings, never to a later
// rule. Package rules compiles a list of them.
//
// Match fields left empty match anything, so a rule without any matches
// every request; a rule below such a catch-all (one without status) can
// never match and is a [Config.Validate] error.
//
// Request-side decisions (Bypass, Key) are taken before the response
// exists, from the first matching rule that has no Status list; a rule
// with Status therefore takes response-side actions only (TTL, ForceTTL,
// StaleWhileRevalidate, StaleIfError), and Validate rejects Status on a
// rule with Bypass or Key.
//
// Fields left at their zero value are left out when a Rule is marshalled.
// A zero duration means unset: a rule cannot lower cache.default_ttl to 0
// for the paths it matches (use Bypass to keep them out of the cache).
type Rule struct {
	// Name identifies the rule in Cache-Status (detail=rule:NAME) and in
	// logs: letters, digits, '.', '_' and '-', unique within the list.
	// Optional.
	Name string `yaml:"name,omitempty"`

	// Hosts lists the request hosts the rule applies to: an exact name or
	// IP address, compared case-insensitively with the request's port
	// left out, or "*.example.com" for any name below example.com (not
	// example.com itself). Empty: any host.
	Hosts []string `yaml:"hosts,omitempty"`
	// PathPrefix matches request paths that start with it, compared
	// byte for byte with the path as the client escaped it (so "/api"
	// also matches "/apis"; write "/api/" for a directory). Empty: any
	// path.
	PathPrefix string `yaml:"path_prefix,omitempty"`
	// PathRegex matches request paths (escaped, as for PathPrefix) that
	// contain a match of this RE2 regular expression; anchor it with ^
	// and $ to match the whole path. Empty: any path.
	PathRegex string `yaml:"path_regex,omitempty"`
	// Methods lists the request methods, upper case, e.g. [GET, HEAD].
	// Empty: any method.
	Methods []string `yaml:"methods,omitempty"`
	// Status lists the response status codes the rule applies to. Empty:
	// any status. Only response-side actions may go with it.
	Status []int `yaml:"status,omitempty"`

	// TTL is how long a response is fresh when the origin gave no
	// freshness of its own; it takes the place of cache.default_ttl.
	TTL Duration `yaml:"ttl,omitempty"`
	// ForceTTL replaces the origin's freshness (max-age, Expires, ...)
	// with this. A response that forbids storing is still not stored.
	ForceTTL Duration `yaml:"force_ttl,omitempty"`
	// Bypass passes matching requests to the origin and their responses
	// to the client without looking up or storing anything.
	Bypass bool `yaml:"bypass,omitempty"`
	// StaleWhileRevalidate serves a stale response this long while it is
	// refreshed in the background, as if the origin had sent the
	// stale-while-revalidate directive with this value.
	StaleWhileRevalidate Duration `yaml:"stale_while_revalidate,omitempty"`
	// StaleIfError serves a stale response this long when the origin
	// fails, as if it had sent stale-if-error with this value.
	StaleIfError Duration `yaml:"stale_if_error,omitempty"`
	// Key changes how the cache key is built for matching requests; nil
	// keeps the default key (host and request target as sent).
	Key *RuleKey `yaml:"key,omitempty"`
}

// RuleKey is a rule's key block: what of the request goes into the cache
// key. Two requests that differ only in what the key leaves out share one
// cached response, so leave out only what the origin ignores.
type RuleKey struct {
	// Query is what happens to the query string: "keep" (the default, as
	// sent), "sort" (parameters sorted, so their order does not matter) or
	// "ignore" (left out entirely).
	Query string `yaml:"query,omitempty"`
	// QueryParams names query parameters (decoded names, compared exactly;
	// a trailing '*' matches any name with that prefix, e.g. "utm_*") that
	// QueryMode keeps or drops.
	QueryParams []string `yaml:"query_params,omitempty"`
	// QueryMode is "only" (keep just QueryParams) or "drop" (keep all but
	// QueryParams); required with QueryParams, not allowed without.
	QueryMode string `yaml:"query_mode,omitempty"`
	// Headers lists request header fields whose values are added to the
	// key (absent and empty are told apart).
	Headers []string `yaml:"headers,omitempty"`
	// Cookies lists cookie names (case-sensitive) whose values, from the
	// Cookie request header, are added to the key.
	Cookies []string `yaml:"cookies,omitempty"`
}

// TrustedPrefixes returns TrustedProxies parsed, a single address as a
// one-address prefix ("10.0.0.1" as 10.0.0.1/32). Entries that do not parse
// are left out: call it on a Config that passed [Config.Validate].
func (s Server) TrustedPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.TrustedProxies))
	for _, p := range s.TrustedProxies {
		if pfx, err := parsePrefix(p); err == nil {
			out = append(out, pfx)
		}
	}
	return out
}

// parsePrefix parses a CIDR or a single IP address (without a zone).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s is not a CIDR (want e.g. 10.0.0.0/8)", quote(s))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s is not an IP address or CIDR (want e.g. 10.0.0.1 or 10.0.0.0/8)", quote(s))
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// maxRuleName bounds rule names, which appear in every Cache-Status.
const maxRuleName = 64

// rules checks the rules list: each rule on its own, then names that repeat
// and rules that a catch-all above them hides.
func (v *checker) rules(rs []Rule) {
	names := make(map[string]int)
	catchAll := -1
	for i, r := range rs {
		p := fmt.Sprintf("rules[%d]", i)
		if r.Name != "" {
			if j, dup := names[r.Name]; dup {
				v.fail(p+".name", "%s is also the name of rules[%d]", quote(r.Name), j)
			} else {
				names[r.Name] = i
			}
		}
		if catchAll >= 0 {
			v.fail(p, "never matches: rules[%d] above it matches every request", catchAll)
		}
		v.rule(p, r)
		if catchAll < 0 && len(r.Hosts) == 0 && r.PathPrefix == "" && r.PathRegex == "" && len(r.Methods) == 0 && len(r.Status) == 0 {
			catchAll = i
		}
	}
}

// rule checks one rule, the element at path p of the rules list.
func (v *checker) rule(p string, r Rule) {
	if r.Name != "" && !isRuleName(r.Name) {
		v.fail(p+".name", "%s: want up to %d letters, digits, '.', '_' or '-'", quote(r.Name), maxRuleName)
	}
	for i, h := range r.Hosts {
		if err := checkHostPattern(h); err != nil {
			v.fail(fmt.Sprintf("%s.hosts[%d]", p, i), "%s", err)
		}
	}
	if pp := r.PathPrefix; pp != "" {
		switch {
		case pp[0] != '/':
			v.fail(p+".path_prefix", "%s must start with /", quote(pp))
		case strings.ContainsAny(pp, "?#"):
			v.fail(p+".path_prefix", "%s: a path prefix matches the path only, without query or fragment", quote(pp))
		case strings.IndexFunc(pp, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0:
			v.fail(p+".path_prefix", "%s: write spaces, controls and non-ASCII characters %%-escaped, as paths arrive", quote(pp))
		}
	}
	if r.PathRegex != "" {
		if _, err := regexp.Compile(r.PathRegex); err != nil {
			v.fail(p+".path_regex", "invalid regex %s: %s", quote(r.PathRegex), err)
		}
	}
	seen := make(map[string]bool)
	for i, m := range r.Methods {
		f := fmt.Sprintf("%s.methods[%d]", p, i)
		switch {
		case !isToken(m):
			v.fail(f, "%s is not a method name", quote(m))
		case m != strings.ToUpper(m):
			v.fail(f, "%s: methods are case-sensitive; want %s", quote(m), quote(strings.ToUpper(m)))
		case seen[m]:
			v.fail(f, "%s is listed twice", quote(m))
		}
		seen[m] = true
	}
	codes := make(map[int]bool)
	for i, s := range r.Status {
		f := fmt.Sprintf("%s.status[%d]", p, i)
		switch {
		case s < 100 || s > 599:
			v.fail(f, "%d is not an HTTP status code (100 to 599)", s)
		case codes[s]:
			v.fail(f, "%d is listed twice", s)
		}
		codes[s] = true
	}
	v.nonNegative(p+".ttl", r.TTL)
	v.nonNegative(p+".force_ttl", r.ForceTTL)
	v.nonNegative(p+".stale_while_revalidate", r.StaleWhileRevalidate)
	v.nonNegative(p+".stale_if_error", r.StaleIfError)
	if r.TTL > 0 && r.ForceTTL > 0 {
		v.fail(p+".ttl", "has no effect with force_ttl, which applies whether or not the origin gave a freshness")
	}
	if r.Bypass {
		for _, a := range []struct {
			field string
			set   bool
		}{
			{"ttl", r.TTL > 0},
			{"force_ttl", r.ForceTTL > 0},
			{"stale_while_revalidate", r.StaleWhileRevalidate > 0},
			{"stale_if_error", r.StaleIfError > 0},
			{"key", r.Key != nil},
		} {
			if a.set {
				v.fail(p+"."+a.field, "contradicts bypass: true (a bypassed response is never looked up or stored)")
			}
		}
	}
	if len(r.Status) > 0 {
		if r.Bypass {
			v.fail(p+".status", "cannot go with bypass, which is decided before the response exists")
		}
		if r.Key != nil {
			v.fail(p+".status", "cannot go with key, which is decided before the response exists")
		}
	}
	if r.Key != nil {
		v.ruleKey(p+".key", *r.Key)
	}
}

// ruleKey checks a rule's key block, the field at path p.
func (v *checker) ruleKey(p string, k RuleKey) {
	if k.Query != "" {
		v.oneOf(p+".query", k.Query, "keep", "sort", "ignore")
	}
	switch {
	case len(k.QueryParams) > 0 && k.QueryMode == "":
		v.fail(p+".query_mode", "required with query_params: only (keep just those) or drop (keep all others)")
	case len(k.QueryParams) > 0:
		v.oneOf(p+".query_mode", k.QueryMode, "only", "drop")
	case k.QueryMode != "":
		v.fail(p+".query_mode", "has no effect without query_params")
	}
	if len(k.QueryParams) > 0 && k.Query == "ignore" {
		v.fail(p+".query_params", "has no effect with query: ignore")
	}
	seen := make(map[string]bool)
	for i, name := range k.QueryParams {
		f := fmt.Sprintf("%s.query_params[%d]", p, i)
		switch {
		case name == "" || name == "*":
			v.fail(f, "%s: want a parameter name or a prefix followed by *", quote(name))
		case strings.Contains(strings.TrimSuffix(name, "*"), "*"):
			v.fail(f, "%s: * may only end a name", quote(name))
		case seen[name]:
			v.fail(f, "%s is listed twice", quote(name))
		}
		seen[name] = true
	}
	v.headerNames(p+".headers", k.Headers)
	seen = make(map[string]bool)
	for i, name := range k.Cookies {
		f := fmt.Sprintf("%s.cookies[%d]", p, i)
		switch {
		case !isToken(name):
			v.fail(f, "%s is not a cookie name", quote(name))
		case seen[name]:
			v.fail(f, "%s is listed twice", quote(name))
		}
		seen[name] = true
	}
}

// checkHostPattern checks one entry of a rule's hosts list.
func checkHostPattern(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if ip := strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"); name == h && strings.Contains(ip, ":") {
		if a, err := netip.ParseAddr(ip); err == nil && a.Zone() == "" {
			return nil
		}
		return fmt.Errorf("%s: want a host name or IP address without a port", quote(h))
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%s is not a host name (want e.g. example.com or *.example.com)", quote(h))
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return fmt.Errorf("%s is not a host name (want e.g. example.com or *.example.com)", quote(h))
		}
	}
	return nil
}

// isRuleName reports whether s may name a rule: it appears unquoted in
// Cache-Status and logs.
func isRuleName(s string) bool {
	return len(s) <= maxRuleName && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}
