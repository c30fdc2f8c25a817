package policy

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestSurrogateControl(t *testing.T) {
	off := DefaultOptions()
	off.SurrogateToken = ""
	tests := []struct {
		name      string
		h         http.Header
		opt       *Options
		want      CacheControl
		wantField string
	}{
		{"max-age replaces Cache-Control: no-store",
			hdr("Cache-Control", "no-store", "Surrogate-Control", "max-age=600"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 600 }), "Surrogate-Control"},
		{"no-store replaces a fresh Cache-Control",
			hdr("Cache-Control", "max-age=600", "Surrogate-Control", "no-store"), nil,
			cc(func(c *CacheControl) { c.NoStore = true }), "Surrogate-Control"},
		{"targeted at this cache",
			hdr("Surrogate-Control", "max-age=60;dedupcache"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Surrogate-Control"},
		{"the token in any case",
			hdr("Surrogate-Control", "max-age=60;DedupCache"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Surrogate-Control"},
		{"targeted at another surrogate: Cache-Control",
			hdr("Cache-Control", "max-age=5", "Surrogate-Control", "max-age=60;cdn, no-store;cdn"), nil,
			cc(func(c *CacheControl) { c.MaxAge = 5 }), "Cache-Control"},
		{"mixed targets: this cache's members only",
			hdr("Surrogate-Control", "no-store;cdn, max-age=60;dedupcache"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Surrogate-Control"},
		{"max-age=N+M: N",
			hdr("Surrogate-Control", "max-age=60+600"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Surrogate-Control"},
		{"directive names in any case",
			hdr("Surrogate-Control", "MAX-AGE=60"), nil, cc(func(c *CacheControl) { c.MaxAge = 60 }), "Surrogate-Control"},
		{"a huge max-age is capped at 2^31",
			hdr("Surrogate-Control", "max-age=99999999999"), nil, cc(func(c *CacheControl) { c.MaxAge = maxDelta }), "Surrogate-Control"},
		{"max-age=0 replaces a future Expires",
			hdr("Expires", "Thu, 01 Jan 2099 00:00:00 GMT", "Surrogate-Control", "max-age=0"), nil, cc(func(c *CacheControl) { c.MaxAge = 0 }), "Surrogate-Control"},
		{"two different max-ages: stale (RFC 9111 §4.2.1)",
			hdr("Surrogate-Control", "max-age=60, max-age=120"), nil, cc(func(c *CacheControl) { c.MaxAge = 0 }), "Surrogate-Control"},
		{"spaces around = : not a directive, Cache-Control",
			hdr("Cache-Control", "max-age=5", "Surrogate-Control", "max-age =60"), nil, cc(func(c *CacheControl) { c.MaxAge = 5 }), "Cache-Control"},
		{"only directives this cache does not obey (content, no-store-remote): Cache-Control",
			hdr("Cache-Control", "max-age=5", "Surrogate-Control", `content="ESI/1.0", no-store-remote`), nil,
			cc(func(c *CacheControl) { c.MaxAge = 5 }), "Cache-Control"},
		{"CDN-Cache-Control comes first",
			hdr("CDN-Cache-Control", "max-age=30", "Surrogate-Control", "max-age=60"), nil, cc(func(c *CacheControl) { c.MaxAge = 30 }), "CDN-Cache-Control"},
		{"no token: ignored",
			hdr("Cache-Control", "max-age=5", "Surrogate-Control", "no-store"), &off, cc(func(c *CacheControl) { c.MaxAge = 5 }), "Cache-Control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := DefaultOptions()
			if tt.opt != nil {
				opt = *tt.opt
			}
			got, field := ResponseDirectives(tt.h, opt)
			if !reflect.DeepEqual(got, tt.want) || field != tt.wantField {
				t.Errorf("ResponseDirectives = %+v from %s; want %+v from %s", got, field, tt.want, tt.wantField)
			}
		})
	}
}

// TestSurrogateControlDecisions: what the directives make of storing and
// freshness, and the field is not stored (the cache consumed it).
func TestSurrogateControlDecisions(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opt := DefaultOptions()
	h := hdr("Date", date(now), "Cache-Control", "no-store", "Surrogate-Control", "max-age=600")
	if ok, why := Storable("GET", nil, 200, h, opt); !ok {
		t.Errorf("Surrogate-Control: max-age over Cache-Control: no-store: not storable (%v)", why)
	}
	if f := ResponseFreshness(200, h, now, opt); f.Lifetime != 600*time.Second {
		t.Errorf("lifetime %v; want 10m", f.Lifetime)
	}
	if got := StripFields(h, opt); !reflect.DeepEqual(got, []string{"Surrogate-Control"}) {
		t.Errorf("StripFields = %q; want the consumed Surrogate-Control", got)
	}
	h = hdr("Date", date(now), "Cache-Control", "max-age=600", "Surrogate-Control", "no-store", "Expires", date(now.Add(time.Hour)))
	if ok, _ := Storable("GET", nil, 200, h, opt); ok {
		t.Errorf("Surrogate-Control: no-store: storable")
	}
	h = hdr("Cache-Control", "max-age=600", "Surrogate-Control", "max-age=60;cdn")
	if got := StripFields(h, opt); got != nil {
		t.Errorf("StripFields = %q; want nothing (the field is for another surrogate)", got)
	}
}
