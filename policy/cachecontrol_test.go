package policy

import (
	"math"
	"net/http"
	"reflect"
	"testing"
)

// hdr builds a header from name, value pairs; a repeated name adds a line.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// cc returns the CacheControl with every duration absent, changed by set.
func cc(set func(*CacheControl)) CacheControl {
	c := newCacheControl()
	if set != nil {
		set(&c)
	}
	return c
}

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  CacheControl
	}{
		{"§5.2 absent field: everything absent", nil, cc(nil)},
		{"§5.2 empty field", []string{""}, cc(nil)},
		{"§5.2.2.1 max-age", []string{"max-age=60"}, cc(func(c *CacheControl) { c.MaxAge = 60 })},
		{"§5.2 names compare case-insensitively", []string{"MAX-AGE=60, No-Store"},
			cc(func(c *CacheControl) { c.MaxAge = 60; c.NoStore = true })},
		{"§5.2 odd spacing and empty members", []string{"  max-age = 60 ,,  public  ,"},
			cc(func(c *CacheControl) { c.MaxAge = 60; c.Public = true })},
		{"§5.2 quoted-string argument accepted for max-age", []string{`max-age="60"`},
			cc(func(c *CacheControl) { c.MaxAge = 60 })},
		{"§5.2 several field lines", []string{"max-age=5", "public"},
			cc(func(c *CacheControl) { c.MaxAge = 5; c.Public = true })},
		{"§4.2.1 non-integer max-age is stale", []string{"max-age=abc"}, cc(func(c *CacheControl) { c.MaxAge = 0 })},
		{"§4.2.1 negative max-age is stale", []string{"max-age=-1"}, cc(func(c *CacheControl) { c.MaxAge = 0 })},
		{"§4.2.1 decimal max-age is stale", []string{"max-age=1.5"}, cc(func(c *CacheControl) { c.MaxAge = 0 })},
		{"§4.2.1 max-age without value is stale", []string{"max-age"}, cc(func(c *CacheControl) { c.MaxAge = 0 })},
		{"§4.2.1 max-age with empty value is stale", []string{"max-age="}, cc(func(c *CacheControl) { c.MaxAge = 0 })},
		{"§1.2.2 overflow capped at 2^31", []string{"max-age=99999999999999999999999999"},
			cc(func(c *CacheControl) { c.MaxAge = 1 << 31 })},
		{"§1.2.2 just over 2^31 capped", []string{"s-maxage=2147483649"},
			cc(func(c *CacheControl) { c.SMaxAge = 1 << 31 })},
		{"§1.2.2 2^31-1 kept", []string{"max-age=2147483647"},
			cc(func(c *CacheControl) { c.MaxAge = 2147483647 })},
		{"§4.2.1 repeated equal max-age", []string{"max-age=60, max-age=60"},
			cc(func(c *CacheControl) { c.MaxAge = 60 })},
		{"§4.2.1 conflicting max-age: considered stale", []string{"max-age=60", "max-age=3600"},
			cc(func(c *CacheControl) { c.MaxAge = 0 })},
		{"§4.2.1 conflicting s-maxage: considered stale", []string{"s-maxage=60, s-maxage=10"},
			cc(func(c *CacheControl) { c.SMaxAge = 0 })},
		{"§4.2.1 repeated min-fresh: most restrictive is largest", []string{"min-fresh=5, min-fresh=10"},
			cc(func(c *CacheControl) { c.MinFresh = 10 })},
		{"§5.2.1.2 max-stale without value: any staleness", []string{"max-stale"},
			cc(func(c *CacheControl) { c.MaxStale = math.MaxInt64 })},
		{"§5.2.1.2 max-stale with value", []string{"max-stale=30"}, cc(func(c *CacheControl) { c.MaxStale = 30 })},
		{"§5.2.1.2 max-stale quoted", []string{`max-stale="30"`}, cc(func(c *CacheControl) { c.MaxStale = 30 })},
		{"§4.2.1 max-stale repeated: smallest", []string{"max-stale, max-stale=30"},
			cc(func(c *CacheControl) { c.MaxStale = 30 })},
		{"§5.2.1.2 max-stale with invalid value: 0", []string{"max-stale=soon"}, cc(func(c *CacheControl) { c.MaxStale = 0 })},
		{"RFC 5861 stale-while-revalidate and stale-if-error", []string{"stale-while-revalidate=30, stale-if-error=600"},
			cc(func(c *CacheControl) { c.StaleWhileRevalidate = 30; c.StaleIfError = 600 })},
		{"RFC 5861 repeated stale-while-revalidate: smallest", []string{"stale-while-revalidate=30", "stale-while-revalidate=10"},
			cc(func(c *CacheControl) { c.StaleWhileRevalidate = 10 })},
		{"§5.2.2.4 qualified no-cache lists canonical field names", []string{`no-cache="set-cookie, x-foo"`},
			cc(func(c *CacheControl) { c.NoCacheFields = []string{"Set-Cookie", "X-Foo"} })},
		{"§5.2.2.7 qualified private with comma inside quotes", []string{`private="x-a,x-b", max-age=5`},
			cc(func(c *CacheControl) { c.PrivateFields = []string{"X-A", "X-B"}; c.MaxAge = 5 })},
		{"§5.2 token form of no-cache accepted", []string{"no-cache=Set-Cookie"},
			cc(func(c *CacheControl) { c.NoCacheFields = []string{"Set-Cookie"} })},
		{"§5.2.2.4 no-cache with empty list counts as unqualified", []string{`no-cache=""`},
			cc(func(c *CacheControl) { c.NoCache = true })},
		{"§5.2.2.4 unqualified and qualified no-cache", []string{`no-cache, no-cache="X-A"`},
			cc(func(c *CacheControl) { c.NoCache = true; c.NoCacheFields = []string{"X-A"} })},
		{"§5.2.2.7 private field names de-duplicated", []string{`private="X-A"`, `private="x-a"`},
			cc(func(c *CacheControl) { c.PrivateFields = []string{"X-A"} })},
		{"§5.2.2 every boolean directive", []string{"no-store, no-cache, private, public, must-revalidate, proxy-revalidate, must-understand, no-transform, only-if-cached, immutable"},
			cc(func(c *CacheControl) {
				c.NoStore, c.NoCache, c.Private, c.Public, c.MustRevalidate = true, true, true, true, true
				c.ProxyRevalidate, c.MustUnderstand, c.NoTransform, c.OnlyIfCached, c.Immutable = true, true, true, true, true
			})},
		{"§5.2.3 unknown directives ignored", []string{`community="UCI", foo, bar=baz, an-extension-name-longer-than-any-known=1`}, cc(nil)},
		{"§5.6.4 comma inside an escaped quoted-string is not a separator", []string{`ext="a\",max-age=1", max-age=5`},
			cc(func(c *CacheControl) { c.MaxAge = 5 })},
		{"§5.6.4 escaped characters in a field list are unescaped", []string{`private="X-\A"`},
			cc(func(c *CacheControl) { c.PrivateFields = []string{"X-A"} })},
		{"§5.6.4 unterminated quoted-string runs to the end", []string{`max-age=5, ext="abc, max-age=10`},
			cc(func(c *CacheControl) { c.MaxAge = 5 })},
		{"§5.6.4 junk after a quoted value is skipped", []string{`max-age="5"junk, public`},
			cc(func(c *CacheControl) { c.MaxAge = 5; c.Public = true })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, l := range tt.lines {
				h.Add("Cache-Control", l)
			}
			if got := ParseCacheControl(h, "Cache-Control"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCacheControl(%q) = %+v; want %+v", tt.lines, got, tt.want)
			}
		})
	}
}

func TestParseCacheControlFieldName(t *testing.T) {
	// The name is looked up like http.Header.Values: case-insensitively.
	h := hdr("Cdn-Cache-Control", "max-age=7")
	if got := ParseCacheControl(h, "CDN-Cache-Control").MaxAge; got != 7 {
		t.Errorf("MaxAge = %d; want 7", got)
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name       string
		h          http.Header
		wantPragma bool
		wantNoC    bool
		wantOnlyIC bool
	}{
		{"§5.4 Pragma: no-cache without Cache-Control", hdr("Pragma", "no-cache"), true, true, false},
		{"§5.4 Pragma ignored when Cache-Control is present", hdr("Pragma", "no-cache", "Cache-Control", "max-age=10"), false, false, false},
		{"§5.4 Pragma is a case-insensitive list", hdr("Pragma", "foo, No-Cache"), true, true, false},
		{"§5.4 other Pragma directives", hdr("Pragma", "foo"), false, false, false},
		{"§5.2.1.4 request no-cache", hdr("Cache-Control", "no-cache"), false, true, false},
		{"§5.2.1.4 request no-cache with a stray argument still counts", hdr("Cache-Control", `no-cache="x"`), false, true, false},
		{"§5.2.1.7 only-if-cached is parsed", hdr("Cache-Control", "only-if-cached"), false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ParseRequest(tt.h)
			if r.PragmaNoCache != tt.wantPragma {
				t.Errorf("PragmaNoCache = %v; want %v", r.PragmaNoCache, tt.wantPragma)
			}
			if got := r.noCache(); got != tt.wantNoC {
				t.Errorf("noCache() = %v; want %v", got, tt.wantNoC)
			}
			if r.CC.OnlyIfCached != tt.wantOnlyIC {
				t.Errorf("CC.OnlyIfCached = %v; want %v", r.CC.OnlyIfCached, tt.wantOnlyIC)
			}
		})
	}
}
