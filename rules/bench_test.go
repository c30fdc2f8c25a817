package rules

import (
	"fmt"
	"testing"

	"dedupcache/config"
)

// benchRules is a 20-rule set of the usual kinds; the request benchmarked
// matches none but the last, so every rule is tried.
func benchRules() []config.Rule {
	var rs []config.Rule
	for i := range 6 {
		rs = append(rs, config.Rule{Name: fmt.Sprintf("prefix-%d", i), PathPrefix: fmt.Sprintf("/api/v%d/", i), TTL: sec(30)})
	}
	for i := range 4 {
		rs = append(rs, config.Rule{Name: fmt.Sprintf("host-%d", i), Hosts: []string{fmt.Sprintf("h%d.example.com", i), "*.cdn.example.net"}, TTL: sec(60)})
	}
	for i := range 4 {
		rs = append(rs, config.Rule{Name: fmt.Sprintf("regex-%d", i), PathRegex: fmt.Sprintf(`^/items/%d[0-9]*/(edit|view)$`, i), ForceTTL: sec(5)})
	}
	for i := range 3 {
		rs = append(rs, config.Rule{Name: fmt.Sprintf("status-%d", i), Status: []int{404 + i}, TTL: sec(1)})
	}
	rs = append(rs,
		config.Rule{Name: "methods", Methods: []string{"PUT", "DELETE", "PATCH"}, Bypass: true},
		config.Rule{Name: "me", PathPrefix: "/me", Bypass: true},
		config.Rule{Name: "rest", PathPrefix: "/", TTL: sec(10)},
	)
	return rs
}

func BenchmarkRequest(b *testing.B) {
	s := compile(b, benchRules()...)
	if s.Len() != 20 {
		b.Fatalf("%d rules; want 20", s.Len())
	}
	if r := s.Request("www.example.com:8080", "/items/9/edit", "GET"); r == nil || r.Name != "rest" {
		b.Fatalf("Request matched %v; want rest", r)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Request("www.example.com:8080", "/items/9/edit", "GET")
	}
}

func BenchmarkQuery(b *testing.B) {
	const q = "q=golang&page=2&utm_source=news&utm_medium=email&lang=en"
	for _, bc := range []struct {
		name string
		key  config.RuleKey
	}{
		{"keep", config.RuleKey{Headers: []string{"Accept-Language"}}},
		{"sort", config.RuleKey{Query: "sort"}},
		{"sort-sorted", config.RuleKey{Query: "sort"}},
		{"only", config.RuleKey{QueryParams: []string{"q", "page"}, QueryMode: "only"}},
		{"drop", config.RuleKey{QueryParams: []string{"utm_*"}, QueryMode: "drop"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			k := key(b, bc.key)
			in := q
			if bc.name == "sort-sorted" {
				in = k.Query(q)
			}
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				k.Query(in)
			}
		})
	}
}
