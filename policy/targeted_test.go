package policy

import (
	"net/http"
	"reflect"
	"testing"
)

func TestResponseDirectives(t *testing.T) {
	twoTargets := DefaultOptions()
	twoTargets.TargetedFields = []string{"Dedupcache-Cache-Control", "CDN-Cache-Control"}
	off := DefaultOptions()
	off.SurrogateToken = ""
	tests := []struct {
		name      string
		h         http.Header
		opt       *Options
		want      CacheControl
		wantField string
	}{
		{"RFC 9213 §3.1 CDN-Cache-Control replaces Cache-Control",
			hdr("Cache-Control", "max-age=60, s-maxage=120", "CDN-Cache-Control", "max-age=600"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 600 }), "CDN-Cache-Control"},
		{"RFC 9213 §3.1 'none' keeps a CDN from obeying Cache-Control: no-store",
			hdr("Cache-Control", "no-store", "CDN-Cache-Control", "none"), nil, cc(nil), "CDN-Cache-Control"},
		{"RFC 9213 §2.2 absent targeted field: Cache-Control",
			hdr("Cache-Control", "max-age=60"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Cache-Control"},
		{"RFC 9213 §2.1 empty targeted field is ignored",
			hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", ""), nil,
			cc(func(c *CacheControl) { c.MaxAge = 60 }), "Cache-Control"},
		{"RFC 9213 §2.1 parse error (trailing comma) ignores the field",
			hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=600,"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 60 }), "Cache-Control"},
		{"RFC 9213 §2.1 upper-case key is a Structured Fields parse error",
			hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", "Max-Age=600"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 60 }), "Cache-Control"},
		{"RFC 9213 §2.1 unterminated string is a parse error",
			hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", `no-cache="x`), nil,
			cc(func(c *CacheControl) { c.MaxAge = 60 }), "Cache-Control"},
		{"RFC 9213 §2.1 parameters are ignored",
			hdr("CDN-Cache-Control", "max-age=60;private"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "CDN-Cache-Control"},
		{"RFC 9213 §2.2 first valid field in target-list order",
			hdr("CDN-Cache-Control", "max-age=5", "Dedupcache-Cache-Control", "max-age=50"), &twoTargets,
			cc(func(c *CacheControl) { c.MaxAge = 50 }), "Dedupcache-Cache-Control"},
		{"RFC 9213 §2.2 invalid first field falls through to the next",
			hdr("CDN-Cache-Control", "max-age=5", "Dedupcache-Cache-Control", "??"), &twoTargets,
			cc(func(c *CacheControl) { c.MaxAge = 5 }), "CDN-Cache-Control"},
		{"RFC 9213 §2.1 String max-age is not consumed: stale",
			hdr("CDN-Cache-Control", `max-age="60"`), nil, cc(func(c *CacheControl) { c.MaxAge = 0 }), "CDN-Cache-Control"},
		{"RFC 9213 §2.1 Decimal max-age is not coerced: stale",
			hdr("CDN-Cache-Control", "max-age=1.5"), nil, cc(func(c *CacheControl) { c.MaxAge = 0 }), "CDN-Cache-Control"},
		{"RFC 9213 §2.1 negative Integer max-age: stale",
			hdr("CDN-Cache-Control", "max-age=-5"), nil, cc(func(c *CacheControl) { c.MaxAge = 0 }), "CDN-Cache-Control"},
		{"RFC 9213 §2.1 large Integer capped at 2^31 (RFC 9111 §1.2.2)",
			hdr("CDN-Cache-Control", "s-maxage=999999999999999"), nil, cc(func(c *CacheControl) { c.SMaxAge = 1 << 31 }), "CDN-Cache-Control"},
		{"RFC 9213 §2.1 no-cache String lists field names",
			hdr("CDN-Cache-Control", `no-cache="set-cookie, x-a"`), nil,
			cc(func(c *CacheControl) { c.NoCacheFields = []string{"Set-Cookie", "X-A"} }), "CDN-Cache-Control"},
		{"RFC 9213 §2.1 Token no-cache counts as unqualified",
			hdr("CDN-Cache-Control", "no-cache=foo"), nil, cc(func(c *CacheControl) { c.NoCache = true }), "CDN-Cache-Control"},
		{"RFC 9213 §2.1 private with a Token counts as private",
			hdr("CDN-Cache-Control", "private=foo"), nil, cc(func(c *CacheControl) { c.Private = true }), "CDN-Cache-Control"},
		{"RFC 9213 §2.1 public with a Token is not consumed",
			hdr("CDN-Cache-Control", "public=yes"), nil, cc(nil), "CDN-Cache-Control"},
		{"RFC 8941 §3.3.6 no-store=?0 is false",
			hdr("CDN-Cache-Control", "no-store=?0, max-age=1"), nil, cc(func(c *CacheControl) { c.MaxAge = 1 }), "CDN-Cache-Control"},
		{"RFC 8941 §4.2.2 repeated key: last wins",
			hdr("CDN-Cache-Control", "max-age=10, max-age=20"), nil, cc(func(c *CacheControl) { c.MaxAge = 20 }), "CDN-Cache-Control"},
		{"RFC 8941 §4.2 field lines are combined",
			hdr("CDN-Cache-Control", "max-age=5", "CDN-Cache-Control", "private"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 5; c.Private = true }), "CDN-Cache-Control"},
		{"RFC 8941 §3 every value type parses",
			hdr("CDN-Cache-Control", `a=:aGVsbG8=:, b=?1, c=-5, d=1.25, e=tok/en:x, f="s\"q", g=(1 "x" y);p=1, h;q=?0, max-age=7`), nil,
			cc(func(c *CacheControl) { c.MaxAge = 7 }), "CDN-Cache-Control"},
		{"RFC 8941 §4.2.4 integer over 15 digits is an error",
			hdr("Cache-Control", "max-age=1", "CDN-Cache-Control", "max-age=1234567890123456"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 1 }), "Cache-Control"},
		{"RFC 8941 §4.2.4 decimal with 4 fraction digits is an error",
			hdr("Cache-Control", "max-age=1", "CDN-Cache-Control", "x=1.2345"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 1 }), "Cache-Control"},
		{"RFC 8941 §4.2.2 separator other than comma is an error",
			hdr("Cache-Control", "max-age=1", "CDN-Cache-Control", "max-age=5 private"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 1 }), "Cache-Control"},
		{"Surrogate-Control: max-age replaces Cache-Control: no-store",
			hdr("Cache-Control", "no-store", "Surrogate-Control", "max-age=600"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 600 }), "Surrogate-Control"},
		{"Surrogate-Control: no-store replaces a fresh Cache-Control",
			hdr("Cache-Control", "max-age=600", "Surrogate-Control", "no-store"), nil,
			cc(func(c *CacheControl) { c.NoStore = true }), "Surrogate-Control"},
		{"Surrogate-Control: targeted at this cache",
			hdr("Surrogate-Control", "max-age=60;dedupcache"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Surrogate-Control"},
		{"Surrogate-Control: the token in any case",
			hdr("Surrogate-Control", "max-age=60;DedupCache"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Surrogate-Control"},
		{"Surrogate-Control: targeted at another surrogate: Cache-Control",
			hdr("Cache-Control", "max-age=5", "Surrogate-Control", "max-age=60;cdn, no-store;cdn"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 5 }), "Cache-Control"},
		{"Surrogate-Control: mixed targets: this cache's members only",
			hdr("Surrogate-Control", "no-store;cdn, max-age=60;dedupcache"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Surrogate-Control"},
		{"Surrogate-Control: max-age=N+M: N",
			hdr("Surrogate-Control", "max-age=60+600"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Surrogate-Control"},
		{"Surrogate-Control: directive names in any case",
			hdr("Surrogate-Control", "MAX-AGE=60"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Surrogate-Control"},
		{"Surrogate-Control: a huge max-age is capped at 2^31",
			hdr("Surrogate-Control", "max-age=99999999999"), nil, cc(func(c *CacheControl) { c.MaxAge = maxDelta }), "Surrogate-Control"},
		{"Surrogate-Control: max-age=0 replaces a future Expires",
			hdr("Expires", "Thu, 01 Jan 2099 00:00:00 GMT", "Surrogate-Control", "max-age=0"), nil, cc(func(c *CacheControl) { c.MaxAge = 0 }), "Surrogate-Control"},
		{"Surrogate-Control: two different max-ages: stale (RFC 9111 §4.2.1)",
			hdr("Surrogate-Control", "max-age=60, max-age=120"), nil, cc(func(c *CacheControl) { c.MaxAge = 0 }), "Surrogate-Control"},
		{"Surrogate-Control: spaces around = : not a directive, Cache-Control",
			hdr("Cache-Control", "max-age=5", "Surrogate-Control", "max-age =60"), nil, cc(func(c *CacheControl) { c.MaxAge = 5 }), "Cache-Control"},
		{"Surrogate-Control: only directives this cache does not obey (content, no-store-remote): Cache-Control",
			hdr("Cache-Control", "max-age=5", "Surrogate-Control", `content="ESI/1.0", no-store-remote`), nil,
			cc(func(c *CacheControl) { c.MaxAge = 5 }), "Cache-Control"},
		{"Surrogate-Control: CDN-Cache-Control comes first",
			hdr("CDN-Cache-Control", "max-age=30", "Surrogate-Control", "max-age=60"), nil, cc(func(c *CacheControl) { c.MaxAge = 30 }), "CDN-Cache-Control"},
		{"Surrogate-Control: no token: ignored",
			hdr("Cache-Control", "max-age=5", "Surrogate-Control", "no-store"), &off, cc(func(c *CacheControl) { c.MaxAge = 5 }), "Cache-Control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := DefaultOptions()
			if tt.opt != nil {
				opt = *tt.opt
			}
			got, field := ResponseDirectives(tt.h, opt)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("directives = %+v; want %+v", got, tt.want)
			}
			if field != tt.wantField {
				t.Errorf("field = %q; want %q", field, tt.wantField)
			}
		})
	}
}

func TestFieldLines(t *testing.T) {
	h := http.Header{}
	names := []string{"CDN-Cache-Control", "cdn-cache-control", "Dedupcache-Cache-Control", "x_y-z", "a b", "ü-x",
		"Very-Long-Targeted-Cache-Control-Field-Name-That-Exceeds-The-Buffer-Size"}
	for i, n := range names {
		h.Add(n, string(rune('a'+i)))
	}
	h["a b"] = []string{"raw"} // textproto keeps invalid names as they are
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			if got, want := fieldLines(h, n), h.Values(n); !reflect.DeepEqual(got, want) {
				t.Errorf("fieldLines(%q) = %q; want %q", n, got, want)
			}
		})
	}
}
