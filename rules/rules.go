// Package rules decides, per request, which configured rule applies and
// how it shapes the cache key. It is pure: strings and header maps in,
// decisions out, no I/O and no clock.
//
// The proxy compiles the configured list once per (re)load with [Compile]
// and asks the [Set] twice per request: [Set.Request] before the cache
// lookup, for Bypass and the [Key]; [Set.Response] once the response
// status is known, for the freshness actions (TTL, ForceTTL,
// StaleWhileRevalidate, StaleIfError). A rule's unset actions fall back to
// the cache-wide settings, never to a later rule.
//
// Paths are matched as the client escaped them (r.URL.EscapedPath()), so
// that "/a%2Fb" and "/a/b", which an origin may tell apart, are told apart
// here too.
package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"dedupcache/config"
)

// Set is an ordered, compiled rule list in which the first match wins. It
// is immutable, safe for concurrent use, and meant to be replaced as a
// whole on reload. A nil *Set matches nothing.
type Set struct {
	rules []Rule
}

// Rule is one compiled rule. The *Rule values a [Set] returns belong to it
// and are shared by every caller: read them, never modify them.
type Rule struct {
	// Name is the configured name, possibly empty; see [Rule.String].
	Name string
	// Index is the rule's position in the configured list, from 0.
	Index int

	// TTL is the freshness of a response the origin gave none; 0: unset.
	TTL time.Duration
	// ForceTTL replaces the origin's freshness; 0: unset.
	ForceTTL time.Duration
	// StaleWhileRevalidate and StaleIfError act as the response directives
	// of those names with these values; 0: unset.
	StaleWhileRevalidate, StaleIfError time.Duration
	// Bypass sends matching requests to the origin without a lookup, and
	// stores nothing.
	Bypass bool
	// Key shapes the cache key; nil leaves the default key alone (also when
	// the configured key block changes nothing).
	Key *Key

	label   string
	hosts   []hostPattern
	prefix  string
	re      *regexp.Regexp
	rePre   string // a prefix every path re matches starts with ("^/items/" gives "/items/")
	methods []string
	status  []int
}

// hostPattern is one entry of a rule's hosts list.
type hostPattern struct {
	name     string     // exact name; for a wildcard the suffix with its dot (".example.com")
	wildcard bool       // "*.example.com"
	ip       netip.Addr // valid for an IP address; name is then its canonical form
}

// Compile checks and compiles rs, which should have passed
// [config.Config.Validate]; Compile reports only what it cannot compile
// (a bad regular expression, host or key setting, a negative duration) as
// [*config.Error] values naming the field ("rules[2].path_regex"), joined
// with [errors.Join]. An empty rs gives a Set that matches nothing; on
// success the Set is never nil. Compile keeps no reference to rs.
func Compile(rs []config.Rule) (*Set, error) {
	s := &Set{rules: make([]Rule, len(rs))}
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, &config.Error{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	for i, c := range rs {
		p := fmt.Sprintf("rules[%d]", i)
		r := &s.rules[i]
		r.Name, r.Index = c.Name, i
		r.label = c.Name
		if r.label == "" {
			r.label = p
		}
		for j, h := range c.Hosts {
			hp, ok := parseHostPattern(h)
			if !ok {
				fail(fmt.Sprintf("%s.hosts[%d]", p, j), "%q is not a host name, *.name or IP address", h)
			}
			r.hosts = append(r.hosts, hp)
		}
		r.prefix = c.PathPrefix
		if c.PathRegex != "" {
			re, err := regexp.Compile(c.PathRegex)
			if err != nil {
				fail(p+".path_regex", "invalid regex %q: %s", c.PathRegex, err)
			}
			r.re, r.rePre = re, anchoredPrefix(c.PathRegex)
		}
		r.methods = slices.Clone(c.Methods)
		r.status = slices.Clone(c.Status)
		for _, d := range []struct {
			field string
			in    config.Duration
			out   *time.Duration
		}{
			{"ttl", c.TTL, &r.TTL},
			{"force_ttl", c.ForceTTL, &r.ForceTTL},
			{"stale_while_revalidate", c.StaleWhileRevalidate, &r.StaleWhileRevalidate},
			{"stale_if_error", c.StaleIfError, &r.StaleIfError},
		} {
			if d.in < 0 {
				fail(p+"."+d.field, "%s is negative", d.in)
			}
			*d.out = time.Duration(d.in)
		}
		r.Bypass = c.Bypass
		if c.Key != nil {
			k, err := compileKey(p+".key", *c.Key)
			if err != nil {
				errs = append(errs, err)
			}
			r.Key = k
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Len returns the number of rules in s.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Request returns the first rule without a status list whose request-side
// match fields (hosts, path_prefix, path_regex, methods) all match, or nil.
// It decides Bypass and the Key, before the response exists. host is the
// request's host, with or without a port ("example.com:8080",
// "[::1]:8080"); path is the escaped path (r.URL.EscapedPath()); method is
// compared exactly. Request does not allocate.
func (s *Set) Request(host, path, method string) *Rule {
	if s == nil {
		return nil
	}
	host = hostOnly(host)
	for i := range s.rules {
		if r := &s.rules[i]; len(r.status) == 0 && r.matches(host, path, method) {
			return r
		}
	}
	return nil
}

// Response returns the first rule whose request-side match fields all match
// and whose status list, if it has one, holds status; nil if none does. It
// decides the freshness actions once the response status is known. The
// arguments are as for [Set.Request]. Response does not allocate.
func (s *Set) Response(host, path, method string, status int) *Rule {
	if s == nil {
		return nil
	}
	host = hostOnly(host)
	for i := range s.rules {
		r := &s.rules[i]
		if (len(r.status) == 0 || slices.Contains(r.status, status)) && r.matches(host, path, method) {
			return r
		}
	}
	return nil
}

// String returns the rule's name, or "rules[N]" (its place in the
// configured list) when it has none; for Cache-Status and logs.
func (r *Rule) String() string { return r.label }

// matches reports whether the request-side match fields all match; host is
// without its port. The cheap comparisons go first, the regexp last.
func (r *Rule) matches(host, path, method string) bool {
	if len(r.methods) > 0 && !slices.Contains(r.methods, method) {
		return false
	}
	if !strings.HasPrefix(path, r.prefix) {
		return false
	}
	if len(r.hosts) > 0 && !r.matchesHost(host) {
		return false
	}
	return r.re == nil || strings.HasPrefix(path, r.rePre) && r.re.MatchString(path)
}

// matchesHost reports whether host (without port) is in the hosts list.
func (r *Rule) matchesHost(host string) bool {
	for i := range r.hosts {
		if r.hosts[i].match(host) {
			return true
		}
	}
	return false
}

// match reports whether host (without port) matches p, ignoring case.
func (p hostPattern) match(host string) bool {
	switch {
	case p.ip.Is4():
		return host == p.name // dotted decimal has one spelling
	case p.ip.IsValid():
		if strings.IndexByte(host, ':') < 0 {
			return false // not IPv6; spares ParseAddr's error
		}
		a, err := netip.ParseAddr(host)
		return err == nil && a == p.ip
	case p.wildcard:
		return len(host) > len(p.name) && strings.EqualFold(host[len(host)-len(p.name):], p.name)
	}
	return strings.EqualFold(host, p.name)
}

// parseHostPattern parses one entry of a rule's hosts list: "example.com",
// "*.example.com", "10.0.0.1", "::1" or "[::1]".
func parseHostPattern(h string) (hostPattern, bool) {
	if name, ok := strings.CutPrefix(h, "*."); ok {
		name = strings.TrimSuffix(strings.ToLower(name), ".")
		return hostPattern{name: "." + name, wildcard: true}, name != "" && validName(name)
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
		return hostPattern{ip: a, name: a.String()}, a.Zone() == ""
	}
	name := strings.TrimSuffix(strings.ToLower(h), ".")
	return hostPattern{name: name}, name != "" && validName(name)
}

// validName reports whether name holds only the characters of host names.
func validName(name string) bool {
	return strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-_.") == "" && !strings.Contains(name, "..")
}

// hostOnly returns host without its port, the brackets of an IPv6 literal
// and a trailing dot: "Example.com.:80" -> "Example.com". A bare IPv6
// address (two colons or more, no brackets) is returned as it is.
func hostOnly(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := strings.IndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i+1:], ':') < 0 {
		host = host[:i]
	}
	return strings.TrimSuffix(host, ".")
}

// anchoredPrefix returns the literal text that a regexp anchored with ^
// (and without flags that change literals) requires at the start of a
// match, so that matches can skip the regexp for paths without it; ""
// when there is none.
func anchoredPrefix(expr string) string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return ""
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[0].Op != syntax.OpBeginText {
		return ""
	}
	lit := re.Sub[1]
	if lit.Op != syntax.OpLiteral || lit.Flags&syntax.FoldCase != 0 {
		return ""
	}
	return string(lit.Rune)
}
