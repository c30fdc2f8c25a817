package policy

import (
	"net/http"
	"reflect"
	"slices"
	"testing"
)

func TestStorable(t *testing.T) {
	withCookies := DefaultOptions()
	withCookies.CacheSetCookie = true
	future := "Thu, 01 Dec 2044 16:00:00 GMT"
	tests := []struct {
		name   string
		method string
		req    http.Header
		status int
		resp   http.Header
		opt    *Options
		want   bool
		reason Reason
	}{
		{"§3 GET 200 with max-age", "GET", nil, 200, hdr("Cache-Control", "max-age=60"), nil, true, ReasonOK},
		{"§3 HEAD is not stored: no body", "HEAD", nil, 200, hdr("Cache-Control", "max-age=60"), nil, false, ReasonMethod},
		{"§3 POST is not stored", "POST", nil, 200, hdr("Cache-Control", "max-age=60"), nil, false, ReasonMethod},
		{"§5.2.1.5 request no-store", "GET", hdr("Cache-Control", "no-store"), 200, hdr("Cache-Control", "max-age=60"), nil, false, ReasonRequestNoStore},
		{"§3 206 not understood here", "GET", nil, 206, hdr("Cache-Control", "max-age=60"), nil, false, ReasonStatus},
		{"§3 304 not stored", "GET", nil, 304, hdr("Cache-Control", "max-age=60"), nil, false, ReasonStatus},
		{"§3 1xx is not final", "GET", nil, 103, hdr("Cache-Control", "max-age=60"), nil, false, ReasonStatus},
		{"§3 status not understood, with max-age: stored", "GET", nil, 418, hdr("Cache-Control", "max-age=60"), nil, true, ReasonOK},
		{"§3 unknown 299 with max-age", "GET", nil, 299, hdr("Cache-Control", "max-age=60"), nil, true, ReasonOK},
		{"§3 unknown 499 with s-maxage", "GET", nil, 499, hdr("Cache-Control", "s-maxage=60"), nil, true, ReasonOK},
		{"§3 unknown 599 with public", "GET", nil, 599, hdr("Cache-Control", "public"), nil, true, ReasonOK},
		{"§3 unknown 218 with Expires", "GET", nil, 218, hdr("Expires", future), nil, true, ReasonOK},
		{"§3 401 with max-age", "GET", nil, 401, hdr("Cache-Control", "max-age=60"), nil, true, ReasonOK},
		{"§3 unknown 299 without explicit permission", "GET", nil, 299, hdr(), nil, false, ReasonStatus},
		{"§3 unknown 599 with Last-Modified only", "GET", nil, 599, hdr("Last-Modified", future), nil, false, ReasonStatus},
		{"§3 unknown 418 with no-cache only", "GET", nil, 418, hdr("Cache-Control", "no-cache"), nil, false, ReasonStatus},
		{"§3 unknown 299 with max-age and no-store", "GET", nil, 299, hdr("Cache-Control", "max-age=60, no-store"), nil, false, ReasonNoStore},
		{"§3 unknown 299 with max-age and private", "GET", nil, 299, hdr("Cache-Control", "max-age=60, private"), nil, false, ReasonPrivate},
		{"§3.5 unknown 299 with max-age, request with Authorization", "GET", hdr("Authorization", "x"), 299, hdr("Cache-Control", "max-age=60"), nil, false, ReasonAuthorization},
		{"§3 206 with public", "GET", nil, 206, hdr("Cache-Control", "public"), nil, false, ReasonStatus},
		{"§3 304 with Expires", "GET", nil, 304, hdr("Expires", future), nil, false, ReasonStatus},
		{"§3 1xx with public", "GET", nil, 100, hdr("Cache-Control", "public"), nil, false, ReasonStatus},
		{"§3 status above 599 is not a status", "GET", nil, 600, hdr("Cache-Control", "max-age=60"), nil, false, ReasonStatus},
		{"§3 status 0", "GET", nil, 0, hdr("Cache-Control", "max-age=60"), nil, false, ReasonStatus},
		{"§5.2.2.3 must-understand on 206", "GET", nil, 206, hdr("Cache-Control", "must-understand, max-age=60"), nil, false, ReasonMustUnderstand},
		{"§5.2.2.3 must-understand on unknown 299 with max-age", "GET", nil, 299, hdr("Cache-Control", "must-understand, max-age=60"), nil, false, ReasonMustUnderstand},
		{"§3 heuristically cacheable 200 without freshness", "GET", nil, 200, hdr(), nil, true, ReasonOK},
		{"§3 heuristically cacheable 404", "GET", nil, 404, hdr(), nil, true, ReasonOK},
		{"§3 302 without explicit freshness", "GET", nil, 302, hdr(), nil, false, ReasonNoFreshness},
		{"§3 302 with max-age", "GET", nil, 302, hdr("Cache-Control", "max-age=60"), nil, true, ReasonOK},
		{"§3 302 with s-maxage", "GET", nil, 302, hdr("Cache-Control", "s-maxage=60"), nil, true, ReasonOK},
		{"§3 302 with Expires", "GET", nil, 302, hdr("Expires", future), nil, true, ReasonOK},
		{"§3 302 with invalid Expires still has explicit freshness (stale, §5.3)", "GET", nil, 302, hdr("Expires", "0"), nil, true, ReasonOK},
		{"§5.2.2.9 public on a 500", "GET", nil, 500, hdr("Cache-Control", "public"), nil, true, ReasonOK},
		{"§5.2.2.5 no-store", "GET", nil, 200, hdr("Cache-Control", "max-age=60, no-store"), nil, false, ReasonNoStore},
		{"§5.2.2.3 must-understand on an understood status overrides no-store", "GET", nil, 200,
			hdr("Cache-Control", "no-store, must-understand, max-age=60"), nil, true, ReasonOK},
		{"§5.2.2.3 must-understand on a status not understood", "GET", nil, 418,
			hdr("Cache-Control", "no-store, must-understand, max-age=60"), nil, false, ReasonMustUnderstand},
		{"§5.2.2.7 unqualified private", "GET", nil, 200, hdr("Cache-Control", "private, max-age=60"), nil, false, ReasonPrivate},
		{"§5.2.2.7 qualified private: store without the fields", "GET", nil, 200,
			hdr("Cache-Control", `private="X-User", max-age=60`, "X-User", "bob"), nil, true, ReasonOK},
		{"§3.5 Authorization without a permitting directive", "GET", hdr("Authorization", "Bearer x"), 200,
			hdr("Cache-Control", "max-age=60"), nil, false, ReasonAuthorization},
		{"§3.5 Authorization with public", "GET", hdr("Authorization", "Bearer x"), 200,
			hdr("Cache-Control", "public, max-age=60"), nil, true, ReasonOK},
		{"§3.5 Authorization with s-maxage", "GET", hdr("Authorization", "Bearer x"), 200,
			hdr("Cache-Control", "s-maxage=60"), nil, true, ReasonOK},
		{"§3.5 Authorization with must-revalidate", "GET", hdr("Authorization", "Bearer x"), 200,
			hdr("Cache-Control", "must-revalidate, max-age=60"), nil, true, ReasonOK},
		{"§3.5 Authorization with proxy-revalidate is not enough", "GET", hdr("Authorization", "Bearer x"), 200,
			hdr("Cache-Control", "proxy-revalidate, max-age=60"), nil, false, ReasonAuthorization},
		{"§4.1 Vary: * never matches", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Vary", "Accept, *"), nil, false, ReasonVaryStar},
		{"§4.1 Vary: * on its own line", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Vary", "Accept", "Vary", " * "), nil, false, ReasonVaryStar},
		{"§7.3 Set-Cookie refused by default", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Set-Cookie", "a=b"), nil, false, ReasonSetCookie},
		{"§7.3 Set-Cookie allowed by option", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Set-Cookie", "a=b"), &withCookies, true, ReasonOK},
		{"§5.2.2.7 Set-Cookie named by private= is stripped, so storable", "GET", nil, 200,
			hdr("Cache-Control", `max-age=60, private="Set-Cookie"`, "Set-Cookie", "a=b"), nil, true, ReasonOK},
		{"§5.2.2.4 Set-Cookie named by no-cache= is stripped, so storable", "GET", nil, 200,
			hdr("Cache-Control", `max-age=60, no-cache="set-cookie"`, "Set-Cookie", "a=b"), nil, true, ReasonOK},
		{"RFC 9213 §2.2 targeted no-store beats Cache-Control", "GET", nil, 200,
			hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-store"), nil, false, ReasonNoStore},
		{"RFC 9213 §3.1 targeted 'none' stores despite Cache-Control: no-store", "GET", nil, 200,
			hdr("Cache-Control", "no-store", "CDN-Cache-Control", "none"), nil, true, ReasonOK},
		{"RFC 9213 §2.2 Expires is ignored with a targeted field", "GET", nil, 302,
			hdr("CDN-Cache-Control", "must-revalidate", "Expires", future), nil, false, ReasonNoFreshness},
		{"RFC 9213 §2.2 Authorization judged on the targeted field", "GET", hdr("Authorization", "x"), 200,
			hdr("Cache-Control", "public", "CDN-Cache-Control", "max-age=60"), nil, false, ReasonAuthorization},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := DefaultOptions()
			if tt.opt != nil {
				opt = *tt.opt
			}
			req := tt.req
			if req == nil {
				req = http.Header{}
			}
			got, reason := Storable(tt.method, req, tt.status, tt.resp, opt)
			if got != tt.want || reason != tt.reason {
				t.Errorf("Storable = %v, %v; want %v, %v", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestStripFields(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want []string
	}{
		{"§3.1 nothing to strip", hdr("Cache-Control", "max-age=60", "Content-Type", "text/plain"), nil},
		{"§5.2.2.7 qualified private fields present",
			hdr("Cache-Control", `private="set-cookie, x-user"`, "Set-Cookie", "a=b", "X-User", "bob", "X-Other", "1"),
			[]string{"Set-Cookie", "X-User"}},
		{"§5.2.2.4 qualified no-cache fields are stripped, not revalidated",
			hdr("Cache-Control", `max-age=60, no-cache="X-Debug"`, "X-Debug", "1"), []string{"X-Debug"}},
		{"§5.2.2.7 listed but absent fields are not returned",
			hdr("Cache-Control", `private="X-User"`), nil},
		{"§3.1 hop-by-hop and Connection-listed fields",
			hdr("Connection", "close, X-Hop", "Keep-Alive", "timeout=5", "X-Hop", "1", "Transfer-Encoding", "chunked", "X-Keep", "1"),
			[]string{"Connection", "Keep-Alive", "Transfer-Encoding", "X-Hop"}},
		{"§3.1 proxy-specific fields",
			hdr("Proxy-Authenticate", "Basic", "Proxy-Authentication-Info", "x"), []string{"Proxy-Authenticate", "Proxy-Authentication-Info"}},
		{"§3.1 a field listed twice is returned once",
			hdr("Cache-Control", `private="X-A", no-cache="X-A"`, "Connection", "X-A", "X-A", "1"), []string{"Connection", "X-A"}},
		{"RFC 9213 §2.2 lists come from the targeted field",
			hdr("Cache-Control", `private="X-A"`, "CDN-Cache-Control", `private="X-B"`, "X-A", "1", "X-B", "1"), []string{"X-B"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := StripFields(tt.h, DefaultOptions())
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("StripFields = %q; want %q", got, want)
			}
		})
	}
}

func TestRemoveHopByHop(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"RFC 9110 §7.6.1 the fixed hop-by-hop fields",
			hdr("Connection", "keep-alive", "Keep-Alive", "timeout=5", "Proxy-Connection", "keep-alive",
				"Proxy-Authenticate", "Basic", "Proxy-Authorization", "Basic eA==", "Te", "trailers", "Trailer", "X-T",
				"Transfer-Encoding", "chunked", "Upgrade", "websocket", "Accept", "*/*"),
			hdr("Accept", "*/*")},
		{"RFC 9110 §7.6.1 fields named in Connection, over several lines and in any case",
			hdr("Connection", "close, x-hop", "Connection", " X-Other ,, ", "X-Hop", "1", "X-Other", "2", "X-Keep", "3"),
			hdr("X-Keep", "3")},
		{"RFC 9110 §7.6.1 Connection naming an end-to-end field removes it too",
			hdr("Connection", "Cache-Control", "Cache-Control", "max-age=5", "Accept", "*/*"),
			hdr("Accept", "*/*")},
		{"nothing to remove", hdr("Accept", "*/*"), hdr("Accept", "*/*")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			RemoveHopByHop(tt.in)
			if !reflect.DeepEqual(tt.in, tt.want) {
				t.Errorf("RemoveHopByHop left %v; want %v", tt.in, tt.want)
			}
		})
	}
}

func TestConnectionFields(t *testing.T) {
	h := hdr("Connection", "keep-alive, X-Foo", "Connection", "x-foo,  Upgrade ,")
	got := ConnectionFields(h)
	want := []string{"Keep-Alive", "X-Foo", "Upgrade"}
	if !slices.Equal(got, want) {
		t.Errorf("ConnectionFields = %q; want %q", got, want)
	}
	if got := ConnectionFields(http.Header{}); got != nil {
		t.Errorf("ConnectionFields(empty) = %q; want nil", got)
	}
}

func TestHopByHopCanonical(t *testing.T) {
	for _, name := range hopByHop {
		if c := http.CanonicalHeaderKey(name); c != name {
			t.Errorf("hopByHop holds %q; want canonical %q", name, c)
		}
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]Reason{}
	for r := ReasonOK; r <= ReasonRequestMinFresh; r++ {
		s := r.String()
		if s == "" || s == "unknown" {
			t.Errorf("Reason(%d).String() = %q; want a token", r, s)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("Reason(%d) and Reason(%d) both render %q", prev, r, s)
		}
		seen[s] = r
	}
	if got := (ReasonRequestMinFresh + 1).String(); got != "unknown" {
		t.Errorf("out-of-range Reason renders %q; want %q", got, "unknown")
	}
	for _, tt := range []struct {
		r    Reason
		want string
	}{{ReasonVaryStar, "vary-star"}, {ReasonSetCookie, "set-cookie"}, {ReasonNoFreshness, "no-freshness"}, {ReasonStaleWhileRevalidate, "stale-while-revalidate"}} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("Reason(%d).String() = %q; want %q", tt.r, got, tt.want)
		}
	}
}
