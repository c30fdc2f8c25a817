package rules

import (
	"net/http"
	"testing"

	"dedupcache/config"
)

// key compiles a key block or fails the test; nil when it changes nothing.
func key(t testing.TB, c config.RuleKey) *Key {
	t.Helper()
	s := compile(t, config.Rule{Key: &c})
	return s.rules[0].Key
}

var queryTests = []struct {
	name string
	key  config.RuleKey
	in   string
	want string
}{
	{"sort", config.RuleKey{Query: "sort"}, "b=2&a=1&c", "a=1&b=2&c"},
	{"sort repeated names by value", config.RuleKey{Query: "sort"}, "a=2&b=0&a=1&a=10", "a=1&a=10&a=2&b=0"},
	{"sort keeps raw encoding", config.RuleKey{Query: "sort"}, "z=%20&a=x+y", "a=x+y&z=%20"},
	{"sort by name before value", config.RuleKey{Query: "sort"}, "a-b=1&a=2", "a=2&a-b=1"},
	{"sort is stable for equal parameters", config.RuleKey{Query: "sort"}, "b&a=&a", "a=&a&b"},
	{"sort drops empty parameters", config.RuleKey{Query: "sort"}, "&b=1&&a=1&", "a=1&b=1"},
	{"sort of only empty parameters", config.RuleKey{Query: "sort"}, "&&", ""},
	{"sort empty", config.RuleKey{Query: "sort"}, "", ""},
	{"ignore", config.RuleKey{Query: "ignore"}, "a=1&b=2", ""},
	{"ignore empty", config.RuleKey{Query: "ignore"}, "", ""},
	{"only", config.RuleKey{QueryParams: []string{"q", "page"}, QueryMode: "only"}, "utm_source=x&q=go&session=1&page=2", "q=go&page=2"},
	{"only keeps order and repeats", config.RuleKey{QueryParams: []string{"q"}, QueryMode: "only"}, "q=2&x=1&q=1", "q=2&q=1"},
	{"only with none present", config.RuleKey{QueryParams: []string{"q"}, QueryMode: "only"}, "a=1&b=2", ""},
	{"only compares unescaped names", config.RuleKey{QueryParams: []string{"q"}, QueryMode: "only"}, "%71=evil&x=1", "%71=evil"},
	{"only keeps names that do not unescape", config.RuleKey{QueryParams: []string{"q"}, QueryMode: "only"}, "q%zz=1&x=1", "q%zz=1"},
	{"only with a prefix", config.RuleKey{QueryParams: []string{"filter_*"}, QueryMode: "only"}, "filter_a=1&sort=2&filter_=3", "filter_a=1&filter_=3"},
	{"only then sort", config.RuleKey{Query: "sort", QueryParams: []string{"q", "page"}, QueryMode: "only"}, "page=2&x=1&q=go", "page=2&q=go"},
	{"drop", config.RuleKey{QueryParams: []string{"utm_*", "fbclid"}, QueryMode: "drop"}, "q=go&utm_source=x&fbclid=1&utm_medium=y&page=2", "q=go&page=2"},
	{"drop compares unescaped names", config.RuleKey{QueryParams: []string{"utm_source"}, QueryMode: "drop"}, "utm%5Fsource=x&q=1", "q=1"},
	{"drop keeps names that do not unescape", config.RuleKey{QueryParams: []string{"a"}, QueryMode: "drop"}, "a%=1&a=2", "a%=1"},
	{"drop never removes a parameter holding ;", config.RuleKey{QueryParams: []string{"utm_a"}, QueryMode: "drop"}, "utm_a=1;q=evil&utm_a=2", "utm_a=1;q=evil"},
	{"drop then sort", config.RuleKey{Query: "sort", QueryParams: []string{"x"}, QueryMode: "drop"}, "c=1&x=1&b=2&a=3", "a=3&b=2&c=1"},
	{"drop with nothing to drop", config.RuleKey{QueryParams: []string{"x"}, QueryMode: "drop"}, "b=1&a=2", "b=1&a=2"},
	{"drop everything", config.RuleKey{QueryParams: []string{"x"}, QueryMode: "drop"}, "x=1&x=2", ""},
	{"keep with headers only", config.RuleKey{Headers: []string{"Accept"}}, "b=1&&a=2", "b=1&&a=2"},
	{"a name with no value", config.RuleKey{QueryParams: []string{"flag"}, QueryMode: "only"}, "flag&other", "flag"},
	{"plus in a name", config.RuleKey{QueryParams: []string{"a b"}, QueryMode: "only"}, "a+b=1&ab=2", "a+b=1"},
}

func TestQuery(t *testing.T) {
	for _, tt := range queryTests {
		t.Run(tt.name, func(t *testing.T) {
			k := key(t, tt.key)
			if got := k.Query(tt.in); got != tt.want {
				t.Errorf("Query(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestQueryNoAllocs checks that Query returns its input without allocating
// when it keeps it unchanged.
func TestQueryNoAllocs(t *testing.T) {
	tests := []struct {
		name string
		key  config.RuleKey
		in   string
	}{
		{"keep with headers", config.RuleKey{Headers: []string{"Accept"}}, "b=2&a=1"},
		{"sort, already sorted", config.RuleKey{Query: "sort"}, "a=1&a=2&b=x+y"},
		{"only, all listed", config.RuleKey{QueryParams: []string{"a", "b"}, QueryMode: "only"}, "a=1&b=2"},
		{"drop, none listed", config.RuleKey{QueryParams: []string{"utm_*"}, QueryMode: "drop"}, "q=go&page=2"},
		{"ignore", config.RuleKey{Query: "ignore"}, "a=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := key(t, tt.key)
			if n := testing.AllocsPerRun(100, func() { _ = k.Query(tt.in) }); n != 0 {
				t.Errorf("Query(%q) allocates %v times; want 0", tt.in, n)
			}
		})
	}
}

var extraTests = []struct {
	name string
	key  config.RuleKey
	h    http.Header
	want string
}{
	{"header present", config.RuleKey{Headers: []string{"accept-language"}},
		http.Header{"Accept-Language": {"fr"}}, " h:accept-language=2:fr"},
	{"header absent", config.RuleKey{Headers: []string{"Accept-Language"}},
		http.Header{}, " h:accept-language"},
	{"header empty", config.RuleKey{Headers: []string{"Accept-Language"}},
		http.Header{"Accept-Language": {""}}, " h:accept-language=0:"},
	{"header with no values is absent", config.RuleKey{Headers: []string{"Accept-Language"}},
		http.Header{"Accept-Language": {}}, " h:accept-language"},
	{"header on several lines", config.RuleKey{Headers: []string{"X-Tenant"}},
		http.Header{"X-Tenant": {"a", "bc"}}, " h:x-tenant=1:a2:bc"},
	{"one line with a comma is another value", config.RuleKey{Headers: []string{"X-Tenant"}},
		http.Header{"X-Tenant": {"a,bc"}}, " h:x-tenant=4:a,bc"},
	{"a value cannot pose as a field", config.RuleKey{Headers: []string{"A", "B"}},
		http.Header{"A": {"x h:b=1:y"}}, " h:a=9:x h:b=1:y h:b"},
	{"NUL is quoted", config.RuleKey{Headers: []string{"A"}},
		http.Header{"A": {"x\x00y"}}, ` h:a=q"x\x00y"`},
	{"headers in configured order", config.RuleKey{Headers: []string{"B", "A"}},
		http.Header{"A": {"1"}, "B": {"2"}}, " h:b=1:2 h:a=1:1"},
	{"cookie among several", config.RuleKey{Cookies: []string{"session"}},
		http.Header{"Cookie": {"theme=dark; session=abc; lang=fr"}}, " c:session=3:abc"},
	{"cookie absent", config.RuleKey{Cookies: []string{"session"}},
		http.Header{"Cookie": {"theme=dark; sessionid=1"}}, " c:session"},
	{"no Cookie header", config.RuleKey{Cookies: []string{"session"}},
		http.Header{}, " c:session"},
	{"cookie empty", config.RuleKey{Cookies: []string{"session"}},
		http.Header{"Cookie": {"session=; a=1"}}, " c:session=0:"},
	{"cookie without =", config.RuleKey{Cookies: []string{"session"}},
		http.Header{"Cookie": {"session"}}, " c:session=0:"},
	{"cookie names are case-sensitive", config.RuleKey{Cookies: []string{"session"}},
		http.Header{"Cookie": {"Session=1"}}, " c:session"},
	{"cookie repeated across lines", config.RuleKey{Cookies: []string{"s"}},
		http.Header{"Cookie": {"s=1", "a=2;s=22 "}}, " c:s=1:12:22"},
	{"cookie value as sent, quotes kept", config.RuleKey{Cookies: []string{"s"}},
		http.Header{"Cookie": {`s="x"`}}, ` c:s=3:"x"`},
	{"headers then cookies", config.RuleKey{Headers: []string{"Accept-Language"}, Cookies: []string{"a", "b"}},
		http.Header{"Accept-Language": {"fr"}, "Cookie": {"b=2; a=1"}}, " h:accept-language=2:fr c:a=1:1 c:b=1:2"},
}

func TestAppendExtra(t *testing.T) {
	for _, tt := range extraTests {
		t.Run(tt.name, func(t *testing.T) {
			k := key(t, tt.key)
			got := k.AppendExtra([]byte("host /p"), tt.h)
			if want := "host /p" + tt.want; string(got) != want {
				t.Errorf("AppendExtra = %q; want %q", got, want)
			}
		})
	}
}

// TestAppendExtraNoAllocs checks that AppendExtra allocates only to grow
// dst.
func TestAppendExtraNoAllocs(t *testing.T) {
	k := key(t, config.RuleKey{Headers: []string{"Accept-Language", "X-Absent"}, Cookies: []string{"session", "none"}})
	h := http.Header{"Accept-Language": {"fr"}, "Cookie": {"theme=dark; session=abc; lang=fr"}}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = k.AppendExtra(buf[:0], h) }); n != 0 {
		t.Errorf("AppendExtra allocates %v times with room in dst; want 0", n)
	}
}

// TestKeyNilWhenNoChange checks which key blocks compile to a nil Key.
func TestKeyNilWhenNoChange(t *testing.T) {
	tests := []struct {
		key     config.RuleKey
		wantNil bool
	}{
		{config.RuleKey{}, true},
		{config.RuleKey{Query: "keep"}, true},
		{config.RuleKey{Query: "sort"}, false},
		{config.RuleKey{Query: "ignore"}, false},
		{config.RuleKey{QueryParams: []string{"a"}, QueryMode: "drop"}, false},
		{config.RuleKey{Headers: []string{"A"}}, false},
		{config.RuleKey{Cookies: []string{"a"}}, false},
	}
	for _, tt := range tests {
		if got := key(t, tt.key) == nil; got != tt.wantNil {
			t.Errorf("key %+v compiles to nil: %v; want %v", tt.key, got, tt.wantNil)
		}
	}
}
