package rules

import (
	"net/http"
	"strings"
	"testing"

	"dedupcache/config"
)

// fuzzKeys are the key blocks FuzzQuery checks every input against, one
// per query behaviour.
var fuzzKeys = []config.RuleKey{
	{Query: "sort"},
	{Query: "ignore"},
	{QueryParams: []string{"q", "page", "f_*"}, QueryMode: "only"},
	{QueryParams: []string{"utm_*", "x"}, QueryMode: "drop"},
	{Query: "sort", QueryParams: []string{"q", "a b"}, QueryMode: "only"},
	{Query: "sort", QueryParams: []string{"utm_*"}, QueryMode: "drop"},
}

// FuzzQuery checks that Query never panics, is idempotent, only ever
// removes or reorders parameters, and keeps an unchanged query as it is.
func FuzzQuery(f *testing.F) {
	for _, tt := range queryTests {
		f.Add(tt.in)
	}
	f.Add("a=1&&b=%zz;c&utm_x=1;q=2&=&&=x&%71=1&f_=2")
	keys := make([]*Key, len(fuzzKeys))
	for i, c := range fuzzKeys {
		keys[i] = key(f, c)
	}
	f.Fuzz(func(t *testing.T, q string) {
		in := make(map[string]int)
		for p := range strings.SplitSeq(q, "&") {
			in[p]++
		}
		for i, k := range keys {
			once := k.Query(q)
			if twice := k.Query(once); twice != once {
				t.Fatalf("key %+v: Query(%q) = %q, but Query(%q) = %q", fuzzKeys[i], q, once, once, twice)
			}
			if once == "" {
				continue
			}
			out := make(map[string]int)
			for p := range strings.SplitSeq(once, "&") {
				out[p]++
				if p == "" || out[p] > in[p] {
					t.Fatalf("key %+v: Query(%q) = %q has parameter %q that the input does not", fuzzKeys[i], q, once, p)
				}
			}
		}
	})
}

// FuzzMatch feeds arbitrary hosts, paths and methods to a Set and a key's
// headers: nothing may panic, and AppendExtra output never holds NUL.
func FuzzMatch(f *testing.F) {
	for _, tt := range matchTests {
		f.Add(tt.host, tt.path, tt.method, tt.status, "session=1")
	}
	f.Add("[", "/", "", 0, ";;=;")
	f.Add("[::1", "", "GET", -1, "s=\x00")
	s := compile(f, matchRules...)
	k := key(f, config.RuleKey{Headers: []string{"X-A"}, Cookies: []string{"s"}})
	f.Fuzz(func(t *testing.T, host, path, method string, status int, cookie string) {
		s.Request(host, path, method)
		s.Response(host, path, method, status)
		out := k.AppendExtra(nil, http.Header{"X-A": {host}, "Cookie": {cookie}})
		if strings.IndexByte(string(out), 0) >= 0 {
			t.Fatalf("AppendExtra(%q, %q) = %q holds NUL", host, cookie, out)
		}
	})
}
