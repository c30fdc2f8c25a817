package rules_test

import (
	"fmt"
	"net/http"
	"time"

	"dedupcache/config"
	"dedupcache/rules"
)

// The issue's two rules: a search endpoint cached 30s whatever its query,
// keyed on Accept-Language, and a per-user path that bypasses the cache.
func ExampleSet() {
	s, err := rules.Compile([]config.Rule{
		{Name: "search", PathPrefix: "/search", TTL: config.Duration(30 * time.Second),
			Key: &config.RuleKey{Query: "ignore", Headers: []string{"Accept-Language"}}},
		{Name: "per-user", PathPrefix: "/me", Bypass: true},
	})
	if err != nil {
		panic(err)
	}
	r := s.Request("shop.example:8080", "/search", "GET")
	key := []byte("shop.example /search")
	if q := r.Key.Query("q=shoes&utm_source=x"); q != "" {
		key = append(key, '?')
		key = append(key, q...)
	}
	key = r.Key.AppendExtra(key, http.Header{"Accept-Language": {"fr"}})
	fmt.Printf("%s: %q\n", r, key)
	fmt.Println(s.Response("shop.example", "/search", "GET", 200).TTL)
	fmt.Println(s.Request("shop.example", "/me/orders", "GET").Bypass)
	fmt.Println(s.Request("shop.example", "/", "GET"))
	// Output:
	// search: "shop.example /search h:accept-language=2:fr"
	// 30s
	// true
	// <nil>
}
