package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"dedupcache/config"
)

// compile compiles rs or fails the test.
func compile(t testing.TB, rs ...config.Rule) *Set {
	t.Helper()
	s, err := Compile(rs)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

// name returns r's label, or "-" for nil, for comparing results.
func name(r *Rule) string {
	if r == nil {
		return "-"
	}
	return r.String()
}

func sec(n int) config.Duration { return config.Duration(time.Duration(n) * time.Second) }

// matchRules has one rule per match field, then a catch-all; the rows of
// TestRequest and TestResponse run against it.
var matchRules = []config.Rule{
	{Name: "host", Hosts: []string{"Api.Example.com", "10.0.0.1", "[::1]"}, PathPrefix: "/h/", Bypass: true},
	{Name: "wildcard", Hosts: []string{"*.example.org"}, PathPrefix: "/h/", TTL: sec(1)},
	{Name: "not-found", Status: []int{404, 410}, TTL: sec(5)},
	{Name: "prefix", PathPrefix: "/search", TTL: sec(30), Key: &config.RuleKey{Query: "ignore"}},
	{Name: "regex", PathRegex: `^/items/[0-9]+$`, ForceTTL: sec(60)},
	{Name: "escaped", PathPrefix: "/a%2Fb"},
	{Name: "methods", Methods: []string{"PUT", "DELETE"}, Bypass: true},
	{Name: "errors-stale", PathPrefix: "/items/", Status: []int{500, 502}, StaleIfError: sec(3600)},
	{TTL: sec(10)},
}

var matchTests = []struct {
	name               string
	host, path, method string
	status             int
	request, response  string // names of the rules Request and Response return
}{
	{"exact host", "api.example.com", "/h/x", "GET", 200, "host", "host"},
	{"exact host, other case", "API.EXAMPLE.COM", "/h/x", "GET", 200, "host", "host"},
	{"exact host with port", "api.example.com:8080", "/h/x", "GET", 200, "host", "host"},
	{"exact host with trailing dot", "api.example.com.", "/h/x", "GET", 200, "host", "host"},
	{"exact host, trailing dot and port", "api.example.com.:80", "/h/x", "GET", 200, "host", "host"},
	{"IPv4 with port", "10.0.0.1:8080", "/h/", "GET", 200, "host", "host"},
	{"IPv6 with port", "[::1]:8080", "/h/", "GET", 200, "host", "host"},
	{"IPv6 bare", "::1", "/h/", "GET", 200, "host", "host"},
	{"IPv6 bracketed, no port", "[::1]", "/h/", "GET", 200, "host", "host"},
	{"IPv6 other spelling", "[0:0::1]:80", "/h/", "GET", 200, "host", "host"},
	{"other host", "example.com", "/h/x", "GET", 200, "rules[8]", "rules[8]"},
	{"host as a suffix is not the host", "xapi.example.com", "/h/x", "GET", 200, "rules[8]", "rules[8]"},
	{"wildcard one level", "a.example.org", "/h/x", "GET", 200, "wildcard", "wildcard"},
	{"wildcard two levels, port", "a.b.EXAMPLE.org:443", "/h/x", "GET", 200, "wildcard", "wildcard"},
	{"wildcard excludes the bare domain", "example.org", "/h/x", "GET", 200, "rules[8]", "rules[8]"},
	{"wildcard needs a dot", "badexample.org", "/h/x", "GET", 200, "rules[8]", "rules[8]"},
	{"host rule with path miss", "api.example.com", "/other", "GET", 200, "rules[8]", "rules[8]"},
	{"status rule skipped by Request", "x", "/nothing", "GET", 404, "rules[8]", "not-found"},
	{"status rule, other status", "x", "/nothing", "GET", 200, "rules[8]", "rules[8]"},
	{"first match wins: status rule first", "x", "/search", "GET", 404, "prefix", "not-found"},
	{"first match wins: status rule later", "x", "/items/42", "GET", 502, "regex", "regex"},
	{"prefix", "x", "/search", "GET", 200, "prefix", "prefix"},
	{"prefix is a plain string prefix", "x", "/searches/1", "GET", 200, "prefix", "prefix"},
	{"prefix is case-sensitive", "x", "/Search", "GET", 200, "rules[8]", "rules[8]"},
	{"regex", "x", "/items/42", "GET", 200, "regex", "regex"},
	{"regex anchored", "x", "/items/42/x", "GET", 200, "rules[8]", "rules[8]"},
	{"response-only rule after regex miss", "x", "/items/42/x", "GET", 502, "rules[8]", "errors-stale"},
	{"escaped path", "x", "/a%2Fb/c", "GET", 200, "escaped", "escaped"},
	{"decoded path is another path", "x", "/a/b/c", "GET", 200, "rules[8]", "rules[8]"},
	{"method", "x", "/x", "DELETE", 200, "methods", "methods"},
	{"method is case-sensitive", "x", "/x", "delete", 200, "rules[8]", "rules[8]"},
	{"empty host", "", "/x", "GET", 200, "rules[8]", "rules[8]"},
}

func TestRequest(t *testing.T) {
	s := compile(t, matchRules...)
	for _, tt := range matchTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := name(s.Request(tt.host, tt.path, tt.method)); got != tt.request {
				t.Errorf("Request(%q, %q, %q) = %s; want %s", tt.host, tt.path, tt.method, got, tt.request)
			}
		})
	}
}

func TestResponse(t *testing.T) {
	s := compile(t, matchRules...)
	for _, tt := range matchTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := name(s.Response(tt.host, tt.path, tt.method, tt.status)); got != tt.response {
				t.Errorf("Response(%q, %q, %q, %d) = %s; want %s", tt.host, tt.path, tt.method, tt.status, got, tt.response)
			}
		})
	}
}

// TestCompiledActions checks that a rule's actions and identity come
// through Compile, and that key blocks changing nothing compile to nil.
func TestCompiledActions(t *testing.T) {
	s := compile(t,
		config.Rule{Name: "a", TTL: sec(1), StaleWhileRevalidate: sec(2), StaleIfError: sec(3), Key: &config.RuleKey{}},
		config.Rule{ForceTTL: sec(4), Key: &config.RuleKey{Query: "keep"}, PathPrefix: "/b"},
		config.Rule{Bypass: true, PathPrefix: "/c"},
		config.Rule{Key: &config.RuleKey{Query: "sort"}, PathPrefix: "/d"},
	)
	if s.Len() != 4 {
		t.Fatalf("Len() = %d; want 4", s.Len())
	}
	tests := []struct {
		got, want any
	}{
		{s.rules[0].Name, "a"}, {s.rules[0].Index, 0}, {s.rules[0].TTL, time.Second},
		{s.rules[0].StaleWhileRevalidate, 2 * time.Second}, {s.rules[0].StaleIfError, 3 * time.Second},
		{s.rules[0].Key == nil, true},
		{s.rules[1].Name, ""}, {s.rules[1].Index, 1}, {s.rules[1].String(), "rules[1]"},
		{s.rules[1].ForceTTL, 4 * time.Second}, {s.rules[1].Key == nil, true},
		{s.rules[2].Bypass, true}, {s.rules[2].TTL, time.Duration(0)},
		{s.rules[3].Key != nil, true},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("row %d: got %v; want %v", i, tt.got, tt.want)
		}
	}
}

// TestEmptySet checks that no rules, and a nil Set, match nothing.
func TestEmptySet(t *testing.T) {
	for _, rs := range [][]config.Rule{nil, {}} {
		s, err := Compile(rs)
		if err != nil || s == nil {
			t.Fatalf("Compile(%v) = %v, %v; want a Set", rs, s, err)
		}
		if r := s.Request("a", "/", "GET"); r != nil {
			t.Errorf("Request on an empty Set = %v; want nil", r)
		}
		if r := s.Response("a", "/", "GET", 200); r != nil {
			t.Errorf("Response on an empty Set = %v; want nil", r)
		}
	}
	var s *Set
	if s.Request("a", "/", "GET") != nil || s.Response("a", "/", "GET", 200) != nil || s.Len() != 0 {
		t.Errorf("a nil Set matches something")
	}
}

// TestCompileKeepsNoReference checks that changing the configured rules
// after Compile leaves the Set alone.
func TestCompileKeepsNoReference(t *testing.T) {
	rs := []config.Rule{{Methods: []string{"GET"}, Status: []int{200}, TTL: sec(1)}}
	s := compile(t, rs...)
	rs[0].Methods[0], rs[0].Status[0] = "POST", 500
	if r := s.Response("a", "/", "GET", 200); r == nil {
		t.Errorf("Response(GET, 200) = nil after changing the config; want the rule")
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		rs   []config.Rule
		want string
	}{
		{"bad regex", []config.Rule{{}, {}, {PathRegex: "("}},
			"rules[2].path_regex: invalid regex \"(\": error parsing regexp: missing closing ): `(`"},
		{"bad hosts", []config.Rule{{Hosts: []string{"a.com", "a b", "*.", "", "x:80", "fe80::1%eth0", "a..b"}}},
			strings.Join([]string{
				`rules[0].hosts[1]: "a b" is not a host name, *.name or IP address`,
				`rules[0].hosts[2]: "*." is not a host name, *.name or IP address`,
				`rules[0].hosts[3]: "" is not a host name, *.name or IP address`,
				`rules[0].hosts[4]: "x:80" is not a host name, *.name or IP address`,
				`rules[0].hosts[5]: "fe80::1%eth0" is not a host name, *.name or IP address`,
				`rules[0].hosts[6]: "a..b" is not a host name, *.name or IP address`,
			}, "\n")},
		{"negative durations", []config.Rule{{TTL: -1, ForceTTL: -2, StaleWhileRevalidate: -3, StaleIfError: -4}},
			"rules[0].ttl: -1ns is negative\nrules[0].force_ttl: -2ns is negative\n" +
				"rules[0].stale_while_revalidate: -3ns is negative\nrules[0].stale_if_error: -4ns is negative"},
		{"unknown query", []config.Rule{{Key: &config.RuleKey{Query: "drop"}}},
			`rules[0].key.query: "drop" is not one of keep, sort, ignore`},
		{"missing query mode", []config.Rule{{}, {Key: &config.RuleKey{QueryParams: []string{"q"}}}},
			`rules[1].key.query_mode: "" is not one of only, drop`},
		{"several rules", []config.Rule{{PathRegex: "["}, {Key: &config.RuleKey{Query: "x"}}},
			"rules[0].path_regex: invalid regex \"[\": error parsing regexp: missing closing ]: `[`\n" +
				`rules[1].key.query: "x" is not one of keep, sort, ignore`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Compile(tt.rs)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Compile error:\n%v\nwant:\n%s", err, tt.want)
			}
			if s != nil {
				t.Errorf("Compile returned a Set with its error")
			}
			var e *config.Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not a *config.Error", err)
			}
		})
	}
}

// TestCompileValidConfig checks that rules that pass config.Validate compile.
func TestCompileValidConfig(t *testing.T) {
	c := config.Default()
	c.Upstream = "http://127.0.0.1:3000"
	c.Rules = matchRules
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	compile(t, c.Rules...)
}

// TestNoAllocs checks that matching does not allocate.
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes regexp allocate")
	}
	s := compile(t, matchRules...)
	if n := testing.AllocsPerRun(100, func() {
		for _, tt := range matchTests {
			s.Request(tt.host, tt.path, tt.method)
			s.Response(tt.host, tt.path, tt.method, tt.status)
		}
	}); n != 0 {
		t.Errorf("Request and Response allocate %v times per run; want 0", n)
	}
}

func TestAnchoredPrefix(t *testing.T) {
	tests := []struct{ expr, want string }{
		{`^/items/[0-9]+$`, "/items/"},
		{`^/a`, "/a"},
		{`^/a|^/b`, ""},
		{`/items/`, ""},
		{`(?i)^/items`, ""},
		{`^(?i)/items`, ""},
		{`^/a?b`, "/"},
		{`^/x*`, "/"},
		{`^`, ""},
		{`\A/a`, "/a"},
		{`(?m)^/a`, ""},
		{`^\x{e9}t\xe9`, "ét\u00e9"},
	}
	for _, tt := range tests {
		if got := anchoredPrefix(tt.expr); got != tt.want {
			t.Errorf("anchoredPrefix(%q) = %q; want %q", tt.expr, got, tt.want)
		}
	}
}
