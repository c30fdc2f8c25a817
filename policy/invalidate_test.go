package policy

import "testing"

func TestInvalidates(t *testing.T) {
	tests := []struct {
		name   string
		method string
		status int
		want   bool
	}{
		{"§4.4 POST 200", "POST", 200, true},
		{"§4.4 PUT 204", "PUT", 204, true},
		{"§4.4 PATCH 302", "PATCH", 302, true},
		{"§4.4 DELETE 404 is an error", "DELETE", 404, false},
		{"§4.4 POST 500 is an error", "POST", 500, false},
		{"§4.4 POST 1xx is not a non-error final status", "POST", 103, false},
		{"§4.4 unknown method: safety unknown", "PURGE", 200, true},
		{"§4.4 extension method M-SEARCH", "M-SEARCH", 200, true},
		{"§4.4 WebDAV LOCK", "LOCK", 201, true},
		{"§4.4 CONNECT is not safe", "CONNECT", 200, true},
		{"§4.4 DELETE 204", "DELETE", 204, true},
		{"§4.4 POST 399 is a non-error status", "POST", 399, true},
		{"§4.4 POST 400 is an error", "POST", 400, false},
		{"§4.4 PURGE 404 is an error", "PURGE", 404, false},
		{"§4.4 extension method, 1xx", "M-SEARCH", 100, false},
		{"RFC 9110 §9.1 methods are case-sensitive: 'get' is unknown", "get", 200, true},
		{"§4.4 GET is safe", "GET", 200, false},
		{"§4.4 HEAD is safe", "HEAD", 200, false},
		{"§4.4 OPTIONS is safe", "OPTIONS", 200, false},
		{"§4.4 TRACE is safe", "TRACE", 200, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Invalidates(tt.method, tt.status); got != tt.want {
				t.Errorf("Invalidates(%q, %d) = %v; want %v", tt.method, tt.status, got, tt.want)
			}
		})
	}
}

func TestSameOrigin(t *testing.T) {
	tests := []struct {
		name                      string
		scheme, host, target, ref string
		want                      string
		ok                        bool
	}{
		{"§4.4 absolute path", "http", "example.com", "/a/b", "/c?x=1", "/c?x=1", true},
		{"§4.4 relative path resolved against the target", "http", "example.com", "/a/b?q", "c", "/a/c", true},
		{"§4.4 dot segments removed", "http", "example.com", "/a/b/c", "../d", "/a/d", true},
		{"§4.4 query-only reference", "http", "example.com", "/a/b?q", "?r=2", "/a/b?r=2", true},
		{"§4.4 absolute URI, same origin", "http", "example.com", "/a", "http://example.com/x", "/x", true},
		{"RFC 9110 §4.2.3 host compared case-insensitively", "http", "example.com", "/a", "http://EXAMPLE.com/x", "/x", true},
		{"RFC 9110 §4.2.3 scheme compared case-insensitively", "http", "example.com", "/a", "HTTP://example.com/x", "/x", true},
		{"RFC 9110 §4.2.3 default port made explicit", "http", "example.com", "/a", "http://example.com:80/x", "/x", true},
		{"RFC 9110 §4.2.3 default port in the key host", "https", "example.com:443", "/a", "https://example.com/x", "/x", true},
		{"§4.4 userinfo ignored", "http", "example.com", "/a", "http://u@example.com/x", "/x", true},
		{"§4.4 fragment dropped", "http", "example.com", "/a", "/x#frag", "/x", true},
		{"§4.4 percent-encoding kept", "http", "example.com", "/a", "/x%2Fy?a=%20", "/x%2Fy?a=%20", true},
		{"§4.4 IPv6 host with port", "http", "[::1]:8080", "/a", "http://[::1]:8080/x", "/x", true},
		{"§4.4 whitespace around the value", "http", "example.com", "/a", " /x ", "/x", true},

		{"§4.4 other host", "http", "example.com", "/a", "http://evil.com/x", "", false},
		{"§4.4 scheme-relative other host", "http", "example.com", "/a", "//evil.com/x", "", false},
		{"§4.4 subdomain is another host", "http", "example.com", "/a", "http://www.example.com/x", "", false},
		{"§4.4 other scheme", "http", "example.com", "/a", "https://example.com/x", "", false},
		{"§4.4 other port", "http", "example.com", "/a", "http://example.com:8080/x", "", false},
		{"§4.4 non-default port against the default", "https", "example.com:8443", "/a", "https://example.com/x", "", false},
		{"§4.4 opaque URI", "http", "example.com", "/a", "mailto:a@example.com", "", false},
		{"§4.4 empty reference", "http", "example.com", "/a", "", "", false},
		{"§4.4 unparsable reference", "http", "example.com", "/a", "http://[::1/x", "", false},
		{"§4.4 target not in origin-form", "http", "example.com", "http://example.com/a", "/x", "", false},
		{"§4.4 empty target", "http", "example.com", "", "/x", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := SameOrigin(tt.scheme, tt.host, tt.target, tt.ref)
			if got != tt.want || ok != tt.ok {
				t.Errorf("SameOrigin(%q, %q, %q, %q) = %q, %v; want %q, %v", tt.scheme, tt.host, tt.target, tt.ref, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzSameOrigin(f *testing.F) {
	for _, ref := range []string{"/x", "c", "../../d", "?q", "//evil.com/", "http://EXAMPLE.com:80/x", "https://example.com/x",
		"mailto:x", "http://[::1/", "%zz", "http://example.com@evil.com/", "http://evil.com\\@example.com/"} {
		f.Add("http", "example.com", "/a/b?c", ref)
	}
	f.Fuzz(func(t *testing.T, scheme, host, target, ref string) {
		uri, ok := SameOrigin(scheme, host, target, ref)
		if !ok {
			if uri != "" {
				t.Fatalf("SameOrigin(...) = %q with ok false; want empty", uri)
			}
			return
		}
		if uri == "" || (uri[0] != '/' && uri != "*") {
			t.Fatalf("SameOrigin(%q, %q, %q, %q) = %q; want an origin-form request-target", scheme, host, target, ref, uri)
		}
	})
}
