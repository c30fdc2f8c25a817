package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// rulesYAML is the rules example from the issue plus one rule of each
// remaining kind; TestLoadRules and FuzzLoad use it.
const rulesYAML = `cache:
  default_ttl: 60s
  debug_headers: true
rules:
  - name: search
    path_prefix: /search
    ttl: 30s
    key:
      query: ignore
  - name: per-user
    path_prefix: /me
    bypass: true
  - name: assets
    hosts: [static.example.com, "*.cdn.example.com"]
    path_regex: '\.(css|js)$'
    methods: [GET, HEAD]
    force_ttl: 1h
    stale_while_revalidate: 10s
    stale_if_error: 24h
    key:
      query: sort
      query_params: [v, "utm_*"]
      query_mode: drop
      headers: [Accept-Language]
      cookies: [session]
  - status: [404, 410]
    ttl: 5s
server:
  trusted_proxies: [10.0.0.0/8, "192.168.1.7", "fd00::/8"]
`

func TestLoadRules(t *testing.T) {
	c, err := loadString(t, rulesYAML)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Cache.DefaultTTL = Duration(time.Minute)
	want.Cache.DebugHeaders = true
	want.Server.TrustedProxies = []string{"10.0.0.0/8", "192.168.1.7", "fd00::/8"}
	want.Rules = []Rule{
		{Name: "search", PathPrefix: "/search", TTL: Duration(30 * time.Second), Key: &RuleKey{Query: "ignore"}},
		{Name: "per-user", PathPrefix: "/me", Bypass: true},
		{
			Name: "assets", Hosts: []string{"static.example.com", "*.cdn.example.com"}, PathRegex: `\.(css|js)$`,
			Methods: []string{"GET", "HEAD"}, ForceTTL: Duration(time.Hour),
			StaleWhileRevalidate: Duration(10 * time.Second), StaleIfError: Duration(24 * time.Hour),
			Key: &RuleKey{Query: "sort", QueryParams: []string{"v", "utm_*"}, QueryMode: "drop",
				Headers: []string{"Accept-Language"}, Cookies: []string{"session"}},
		},
		{Status: []int{404, 410}, TTL: Duration(5 * time.Second)},
	}
	origins := c.origins
	c.origins = nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Load:\n got %+v\nwant %+v", c, want)
	}
	for field, line := range map[string]string{
		"rules":                           "config.yaml:5",
		"rules[0]":                        "config.yaml:5",
		"rules[1].bypass":                 "config.yaml:12",
		"rules[2].key":                    "config.yaml:21",
		"rules[2].key.query_params[1]":    "config.yaml:22",
		"rules[3].status[1]":              "config.yaml:26",
		"server.trusted_proxies[2]":       "config.yaml:29",
		"cache.default_ttl":               "config.yaml:2",
		"rules[2].stale_while_revalidate": "config.yaml:18",
	} {
		if origins[field] != line {
			t.Errorf("origin of %s = %q; want %q", field, origins[field], line)
		}
	}
	c.Upstream = "http://127.0.0.1:3000"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestLoadRuleErrors has one row per kind of problem decoding the new
// list shapes (lists of mappings, of integers, a pointer to a mapping).
func TestLoadRuleErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"rules a mapping", "rules: {name: a}\n",
			`config.yaml:1: rules: want a list with one mapping of settings per entry, got a mapping`},
		{"rule a scalar", "rules:\n  - /search\n",
			`config.yaml:2: rules[0]: want a mapping of settings, got "/search"`},
		{"rule null", "rules:\n  - ~\n",
			`config.yaml:2: rules[0]: want a mapping of settings, got null`},
		{"unknown rule field", "rules:\n  - path: /x\n",
			`config.yaml:2: rules[0].path: unknown field`},
		{"repeated rule field", "rules:\n  - ttl: 1s\n    ttl: 2s\n",
			`config.yaml:3: rules[0].ttl: repeated field (first set on line 2)`},
		{"status not a number", "rules:\n  - status: [200, ok]\n",
			`config.yaml:2: rules[0].status[1]: want an integer, got "ok"`},
		{"status a scalar", "rules:\n  - status: 200\n",
			`config.yaml:2: rules[0].status: want a list such as [200, 404], got "200"`},
		{"key a scalar", "rules:\n  - key: ignore\n",
			`config.yaml:2: rules[0].key: want a mapping of settings, got "ignore"`},
		{"unknown key field", "rules:\n  - key:\n      query: keep\n      params: [a]\n",
			`config.yaml:4: rules[0].key.params: unknown field`},
		{"bad rule duration", "rules:\n  - ttl: 1d\n",
			`config.yaml:2: rules[0].ttl: "1d" is not a duration (want e.g. 30s, 5m or 1h30m)`},
		{"several rules", "rules:\n  - ttl: x\n  - name: [a]\n",
			"config.yaml:2: rules[0].ttl: \"x\" is not a duration (want e.g. 30s, 5m or 1h30m)\n" +
				"config.yaml:3: rules[1].name: want a string, got a sequence"},
		{"trusted proxies a scalar", "server:\n  trusted_proxies: 10.0.0.0/8\n",
			`config.yaml:2: server.trusted_proxies: want a list such as [CDN-Cache-Control], got "10.0.0.0/8"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadString(t, tt.yaml)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Load error:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

// TestLoadNullKeyKeepsDefault checks that "key: ~" and "key:" leave the
// rule's key unset, while "key: {}" sets an empty block.
func TestLoadNullKeyKeepsDefault(t *testing.T) {
	c, err := loadString(t, "rules:\n  - key: ~\n  - key:\n  - key: {}\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Rules[0].Key != nil || c.Rules[1].Key != nil || c.Rules[2].Key == nil || !reflect.DeepEqual(*c.Rules[2].Key, RuleKey{}) {
		t.Fatalf("keys = %v, %v, %v; want nil, nil, &{}", c.Rules[0].Key, c.Rules[1].Key, c.Rules[2].Key)
	}
}

// withRules returns a change that sets the rules to rs.
func withRules(rs ...Rule) func(*Config) {
	return func(c *Config) { c.Rules = rs }
}

func TestValidateRules(t *testing.T) {
	d := func(s string) Duration { x, _ := ParseDuration(s); return Duration(x) }
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"none", withRules(), ""},
		{"the issue's example", withRules(
			Rule{Name: "search", PathPrefix: "/search", TTL: d("30s"), Key: &RuleKey{Query: "ignore"}},
			Rule{Name: "per-user", PathPrefix: "/me", Bypass: true}), ""},
		{"catch-all last", withRules(Rule{PathPrefix: "/a", Bypass: true}, Rule{TTL: d("1m")}), ""},
		{"catch-all with status is not a catch-all", withRules(Rule{Status: []int{404}, TTL: d("1s")}, Rule{PathPrefix: "/a"}), ""},
		{"rule without actions", withRules(Rule{PathPrefix: "/health"}), ""},
		{"hosts of every form", withRules(Rule{Hosts: []string{"Example.COM", "*.example.com", "10.0.0.1", "::1", "[2001:db8::1]", "a_b.example."}}), ""},
		{"key of every kind", withRules(Rule{Key: &RuleKey{Query: "sort", QueryParams: []string{"q", "utm_*"}, QueryMode: "only",
			Headers: []string{"Accept-Language"}, Cookies: []string{"session", "Session"}}}), ""},
		{"ttl with stale", withRules(Rule{Status: []int{200}, TTL: d("1s"), StaleIfError: d("1h"), StaleWhileRevalidate: d("1m")}), ""},

		{"bad regex", withRules(Rule{}, Rule{PathPrefix: "/a"}, Rule{PathRegex: "("}),
			"rules[1]: never matches: rules[0] above it matches every request\n" +
				"rules[2]: never matches: rules[0] above it matches every request\n" +
				"rules[2].path_regex: invalid regex \"(\": error parsing regexp: missing closing ): `(`"},
		{"duplicate names", withRules(Rule{Name: "a", PathPrefix: "/a"}, Rule{Name: "b", PathPrefix: "/b"}, Rule{Name: "a", PathPrefix: "/c"}),
			`rules[2].name: "a" is also the name of rules[0]`},
		{"bad name", withRules(Rule{Name: "rule one", PathPrefix: "/a"}),
			`rules[0].name: "rule one": want up to 64 letters, digits, '.', '_' or '-'`},
		{"host with port", withRules(Rule{Hosts: []string{"example.com:8080"}}),
			`rules[0].hosts[0]: "example.com:8080": want a host name or IP address without a port`},
		{"host wildcard inside", withRules(Rule{Hosts: []string{"a.*.example.com"}}),
			`rules[0].hosts[0]: "a.*.example.com" is not a host name (want e.g. example.com or *.example.com)`},
		{"host bare wildcard", withRules(Rule{Hosts: []string{"*"}}),
			`rules[0].hosts[0]: "*" is not a host name (want e.g. example.com or *.example.com)`},
		{"host empty", withRules(Rule{Hosts: []string{""}}),
			`rules[0].hosts[0]: "" is not a host name (want e.g. example.com or *.example.com)`},
		{"host a URL", withRules(Rule{Hosts: []string{"http://example.com"}}),
			`rules[0].hosts[0]: "http://example.com": want a host name or IP address without a port`},
		{"path prefix without slash", withRules(Rule{PathPrefix: "api"}),
			`rules[0].path_prefix: "api" must start with /`},
		{"path prefix with query", withRules(Rule{PathPrefix: "/a?b=1"}),
			`rules[0].path_prefix: "/a?b=1": a path prefix matches the path only, without query or fragment`},
		{"path prefix with space", withRules(Rule{PathPrefix: "/a b"}),
			`rules[0].path_prefix: "/a b": write spaces, controls and non-ASCII characters %-escaped, as paths arrive`},
		{"lower-case method", withRules(Rule{Methods: []string{"get"}}),
			`rules[0].methods[0]: "get": methods are case-sensitive; want "GET"`},
		{"method not a token", withRules(Rule{Methods: []string{"GET HEAD"}}),
			`rules[0].methods[0]: "GET HEAD" is not a method name`},
		{"method twice", withRules(Rule{Methods: []string{"GET", "GET"}}),
			`rules[0].methods[1]: "GET" is listed twice`},
		{"status out of range", withRules(Rule{Status: []int{200, 99, 600}, TTL: d("1s")}),
			"rules[0].status[1]: 99 is not an HTTP status code (100 to 599)\n" +
				"rules[0].status[2]: 600 is not an HTTP status code (100 to 599)"},
		{"status twice", withRules(Rule{Status: []int{200, 200}, TTL: d("1s")}),
			`rules[0].status[1]: 200 is listed twice`},
		{"negative durations", withRules(Rule{TTL: d("-1s"), StaleWhileRevalidate: d("-2s"), StaleIfError: d("-3s")}),
			"rules[0].ttl: -1s is negative\nrules[0].stale_while_revalidate: -2s is negative\nrules[0].stale_if_error: -3s is negative"},
		{"negative force_ttl", withRules(Rule{ForceTTL: d("-1s")}), `rules[0].force_ttl: -1s is negative`},
		{"ttl and force_ttl", withRules(Rule{TTL: d("1s"), ForceTTL: d("2s")}),
			`rules[0].ttl: has no effect with force_ttl, which applies whether or not the origin gave a freshness`},
		{"bypass with everything", withRules(Rule{Bypass: true, TTL: d("1s"), StaleWhileRevalidate: d("1s"), StaleIfError: d("1s"), Key: &RuleKey{}}),
			"rules[0].ttl: contradicts bypass: true (a bypassed response is never looked up or stored)\n" +
				"rules[0].stale_while_revalidate: contradicts bypass: true (a bypassed response is never looked up or stored)\n" +
				"rules[0].stale_if_error: contradicts bypass: true (a bypassed response is never looked up or stored)\n" +
				"rules[0].key: contradicts bypass: true (a bypassed response is never looked up or stored)"},
		{"bypass with force_ttl", withRules(Rule{Bypass: true, ForceTTL: d("1s")}),
			`rules[0].force_ttl: contradicts bypass: true (a bypassed response is never looked up or stored)`},
		{"status with bypass", withRules(Rule{Status: []int{500}, Bypass: true}),
			`rules[0].status: cannot go with bypass, which is decided before the response exists`},
		{"status with key", withRules(Rule{Status: []int{200}, Key: &RuleKey{Query: "sort"}}),
			`rules[0].status: cannot go with key, which is decided before the response exists`},
		{"unknown query", withRules(Rule{Key: &RuleKey{Query: "drop"}}),
			`rules[0].key.query: "drop" is not one of keep, sort, ignore`},
		{"query params without mode", withRules(Rule{Key: &RuleKey{QueryParams: []string{"q"}}}),
			`rules[0].key.query_mode: required with query_params: only (keep just those) or drop (keep all others)`},
		{"unknown query mode", withRules(Rule{Key: &RuleKey{QueryParams: []string{"q"}, QueryMode: "keep"}}),
			`rules[0].key.query_mode: "keep" is not one of only, drop`},
		{"query mode without params", withRules(Rule{Key: &RuleKey{QueryMode: "only"}}),
			`rules[0].key.query_mode: has no effect without query_params`},
		{"query params with ignore", withRules(Rule{Key: &RuleKey{Query: "ignore", QueryParams: []string{"q"}, QueryMode: "only"}}),
			`rules[0].key.query_params: has no effect with query: ignore`},
		{"bad query params", withRules(Rule{Key: &RuleKey{QueryParams: []string{"", "*", "a*b", "q", "q"}, QueryMode: "drop"}}),
			"rules[0].key.query_params[0]: \"\": want a parameter name or a prefix followed by *\n" +
				"rules[0].key.query_params[1]: \"*\": want a parameter name or a prefix followed by *\n" +
				"rules[0].key.query_params[2]: \"a*b\": * may only end a name\n" +
				"rules[0].key.query_params[4]: \"q\" is listed twice"},
		{"bad key headers", withRules(Rule{Key: &RuleKey{Headers: []string{"Accept Language", "X-A", "x-a"}}}),
			"rules[0].key.headers[0]: \"Accept Language\" is not a header field name\n" +
				"rules[0].key.headers[2]: \"x-a\" is listed twice"},
		{"bad cookies", withRules(Rule{Key: &RuleKey{Cookies: []string{"a=b", "s", "s"}}}),
			"rules[0].key.cookies[0]: \"a=b\" is not a cookie name\nrules[0].key.cookies[2]: \"s\" is listed twice"},
		{"errors in several rules", withRules(Rule{Name: "x y", PathPrefix: "/a"}, Rule{Methods: []string{"post"}}),
			"rules[0].name: \"x y\": want up to 64 letters, digits, '.', '_' or '-'\n" +
				"rules[1].methods[0]: \"post\": methods are case-sensitive; want \"POST\""},
		{"negative default_ttl", func(c *Config) { c.Cache.DefaultTTL = Duration(-time.Second) },
			`cache.default_ttl: -1s is negative`},
		{"trusted proxies", func(c *Config) {
			c.Server.TrustedProxies = []string{"10.0.0.0/8", "10.0.0.1", "::1", "10.0.0.0/33", "proxy.local", "fe80::1%eth0", ""}
		}, "server.trusted_proxies[3]: \"10.0.0.0/33\" is not a CIDR (want e.g. 10.0.0.0/8)\n" +
			"server.trusted_proxies[4]: \"proxy.local\" is not an IP address or CIDR (want e.g. 10.0.0.1 or 10.0.0.0/8)\n" +
			"server.trusted_proxies[5]: \"fe80::1%eth0\" is not an IP address or CIDR (want e.g. 10.0.0.1 or 10.0.0.0/8)\n" +
			"server.trusted_proxies[6]: \"\" is not an IP address or CIDR (want e.g. 10.0.0.1 or 10.0.0.0/8)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v; want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate: nil; want %s", tt.want)
			case err != nil && err.Error() != tt.want:
				t.Fatalf("Validate:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

// TestValidateRulesNameLines checks that rule problems found by Validate
// name the file and line of the value at fault.
func TestValidateRulesNameLines(t *testing.T) {
	c, err := loadString(t, `upstream: http://127.0.0.1:3000
rules:
  - name: a
    path_prefix: /a
  - name: catch-all
  - name: a
    path_regex: (
    bypass: true
    key:
      query: sort
    status: [500]
  - methods: [get]
`)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		`config.yaml:6: rules[2].name: "a" is also the name of rules[0]`,
		`config.yaml:6: rules[2]: never matches: rules[1] above it matches every request`,
		"config.yaml:7: rules[2].path_regex: invalid regex \"(\": error parsing regexp: missing closing ): `(`",
		`config.yaml:10: rules[2].key: contradicts bypass: true (a bypassed response is never looked up or stored)`,
		`config.yaml:11: rules[2].status: cannot go with bypass, which is decided before the response exists`,
		`config.yaml:11: rules[2].status: cannot go with key, which is decided before the response exists`,
		`config.yaml:12: rules[3]: never matches: rules[1] above it matches every request`,
		`config.yaml:12: rules[3].methods[0]: "get": methods are case-sensitive; want "GET"`,
	}, "\n")
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate:\n%v\nwant:\n%s", err, want)
	}
}

func TestTrustedPrefixes(t *testing.T) {
	s := Server{TrustedProxies: []string{"10.1.2.3/8", "192.168.0.7", "::1", "2001:db8::/32", "bad"}}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.7/32"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("2001:db8::/32"),
	}
	if got := s.TrustedPrefixes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("TrustedPrefixes() = %v; want %v", got, want)
	}
	if got := Default().Server.TrustedPrefixes(); len(got) != 0 {
		t.Errorf("default TrustedPrefixes() = %v; want none", got)
	}
}

// TestRestartFieldsRules checks RestartFields on list paths: rules reload
// whatever changes in them (a list of structs holding pointers), while a
// list that is not in Reloadable is reported by its path.
func TestRestartFieldsRules(t *testing.T) {
	a := Default()
	a.Rules = []Rule{{Name: "a", PathPrefix: "/a", Key: &RuleKey{Query: "sort"}}}
	tests := []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"same", func(*Config) {}, nil},
		{"rule added", func(c *Config) { c.Rules = append(c.Rules, Rule{Bypass: true}) }, nil},
		{"rules removed", func(c *Config) { c.Rules = nil }, nil},
		{"a key inside a rule", func(c *Config) { c.Rules = []Rule{{Name: "a", PathPrefix: "/a", Key: &RuleKey{Query: "ignore"}}} }, nil},
		{"default_ttl and debug_headers", func(c *Config) { c.Cache.DefaultTTL, c.Cache.DebugHeaders = Duration(time.Minute), true }, nil},
		{"trusted proxies", func(c *Config) { c.Server.TrustedProxies = []string{"10.0.0.0/8"} }, []string{"server.trusted_proxies"}},
		{"rules with a restart field", func(c *Config) { c.Rules = nil; c.Listen = ":1" }, []string{"listen"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Default()
			b.Rules = []Rule{{Name: "a", PathPrefix: "/a", Key: &RuleKey{Query: "sort"}}}
			tt.change(&b)
			if got := RestartFields(a, b); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
	// Without "rules" in Reloadable, a change inside a rule's key is seen.
	saved := Reloadable
	t.Cleanup(func() { Reloadable = saved })
	Reloadable = nil
	b := a
	b.Rules = []Rule{{Name: "a", PathPrefix: "/a", Key: &RuleKey{Query: "ignore"}}}
	if got, want := RestartFields(a, b), []string{"rules"}; !reflect.DeepEqual(got, want) {
		t.Errorf("with nothing reloadable: got %v; want %v", got, want)
	}
}

// TestSetDoesNotAliasRuleKeys checks that decoding over a Config that
// shares a rule's key with a copy leaves the copy's key alone.
func TestSetDoesNotAliasRuleKeys(t *testing.T) {
	var r Rule
	r.Key = &RuleKey{Query: "sort"}
	d := decoder{origin: "test", origins: map[string]string{}}
	cp := r
	n := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "query_mode"}, {Kind: yaml.ScalarNode, Value: "drop"},
	}}
	d.value(reflect.ValueOf(&r).Elem().FieldByName("Key"), n, "key")
	if len(d.errs) > 0 {
		t.Fatal(d.errs)
	}
	if !reflect.DeepEqual(*r.Key, RuleKey{Query: "sort", QueryMode: "drop"}) || !reflect.DeepEqual(*cp.Key, RuleKey{Query: "sort"}) {
		t.Fatalf("after decoding: key %+v, copy's key %+v; want {sort drop}, {sort}", *r.Key, *cp.Key)
	}
}

// TestYAMLRoundTripRules checks that marshalled rules load back unchanged.
func TestYAMLRoundTripRules(t *testing.T) {
	want := valid()
	want.Cache.DefaultTTL = Duration(90 * time.Second)
	want.Server.TrustedProxies = []string{"10.0.0.0/8"}
	want.Rules = []Rule{
		{Name: "a", Hosts: []string{"*.example.com"}, PathRegex: `^/x/\d+$`, Methods: []string{"GET"},
			TTL: Duration(time.Second), Key: &RuleKey{Query: "sort", QueryParams: []string{"q"}, QueryMode: "only",
				Headers: []string{"Accept"}, Cookies: []string{"s"}}},
		{Status: []int{404}, ForceTTL: Duration(time.Minute), StaleIfError: Duration(time.Hour)},
	}
	data, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadString(t, string(data))
	if err != nil {
		t.Fatalf("Load(marshalled):\n%s\n%v", data, err)
	}
	got.origins = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v\nyaml:\n%s", got, want, data)
	}
}
