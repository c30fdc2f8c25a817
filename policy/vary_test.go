package policy

import (
	"net/http"
	"slices"
	"testing"
)

func TestParseVary(t *testing.T) {
	tests := []struct {
		name     string
		h        http.Header
		want     []string
		wantStar bool
	}{
		{"§4.1 no Vary", hdr(), nil, false},
		{"RFC 9110 §12.5.5 canonical, de-duplicated, sorted across lines",
			hdr("Vary", "accept-encoding, Accept", "Vary", "ACCEPT-ENCODING,  origin"), []string{"Accept", "Accept-Encoding", "Origin"}, false},
		{"§4.1 star", hdr("Vary", "Accept, *"), []string{"Accept"}, true},
		{"§4.1 star alone", hdr("Vary", "*"), nil, true},
		{"RFC 9110 §5.6.1 empty members skipped", hdr("Vary", " , ,Accept,"), []string{"Accept"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, star := ParseVary(tt.h)
			if !slices.Equal(got, tt.want) || star != tt.wantStar {
				t.Errorf("ParseVary = %q, %v; want %q, %v", got, star, tt.want, tt.wantStar)
			}
		})
	}
}

func TestVaryKey(t *testing.T) {
	lang := []string{"Accept-Language"}
	ae := []string{"Accept-Encoding"}
	tests := []struct {
		name  string
		names []string
		a, b  http.Header
		equal bool
	}{
		{"§4.1 absent differs from empty", lang, hdr(), hdr("Accept-Language", ""), false},
		{"§4.1 whitespace around commas", lang, hdr("Accept-Language", "en,  fr"), hdr("Accept-Language", "en,fr"), true},
		{"§4.1 combining field lines", lang, hdr("Accept-Language", "en", "Accept-Language", "fr"), hdr("Accept-Language", "en, fr"), true},
		{"§4.1 empty list members", lang, hdr("Accept-Language", "en,,fr,"), hdr("Accept-Language", "en,fr"), true},
		{"§4.1 order is kept: its meaning depends on the field", lang, hdr("Accept-Language", "en,fr"), hdr("Accept-Language", "fr,en"), false},
		{"§4.1 different values", lang, hdr("Accept-Language", "en"), hdr("Accept-Language", "de"), false},
		{"RFC 9110 §5.6.4 whitespace inside quotes is kept", []string{"X-Q"}, hdr("X-Q", `"a, b"`), hdr("X-Q", `"a,b"`), false},
		{"§4.1 fields not named are ignored", lang, hdr("Accept-Language", "en", "Cookie", "a"), hdr("Accept-Language", "en", "Cookie", "b"), true},
		{"§4.1 no names: everything matches", nil, hdr("Accept", "a"), hdr("Accept", "b"), true},
		{"§4.1 the value cannot move between names", []string{"A", "B"}, hdr("A", "b"), hdr("B", "b"), false},
		{"§4.1 a value cannot forge the next name", []string{"A", "B"}, hdr("A", "x1:B:y"), hdr("A", "x", "B", "y1:B-"), false},
		{"Accept-Encoding bucket br", ae, hdr("Accept-Encoding", "gzip, deflate, br, zstd"), hdr("Accept-Encoding", "br"), true},
		{"Accept-Encoding bucket gzip", ae, hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "deflate, gzip"), true},
		{"Accept-Encoding gzip and br buckets differ", ae, hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "br"), false},
		{"Accept-Encoding absent is the identity bucket", ae, hdr(), hdr("Accept-Encoding", "br;q=0, gzip;q=0"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := VaryKey(tt.names, tt.a), VaryKey(tt.names, tt.b)
			if (ka == kb) != tt.equal {
				t.Errorf("VaryKey equal = %v (%q vs %q); want %v", ka == kb, ka, kb, tt.equal)
			}
		})
	}
}

func TestAcceptEncodingBucket(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want string
	}{
		{"RFC 9110 §12.5.3 absent", hdr(), "identity"},
		{"RFC 9110 §12.5.3 empty", hdr("Accept-Encoding", ""), "identity"},
		{"br preferred over gzip", hdr("Accept-Encoding", "gzip, br"), "br"},
		{"RFC 9110 §12.4.2 q=0 refuses br", hdr("Accept-Encoding", "br;q=0, gzip"), "gzip"},
		{"RFC 9110 §12.4.2 spaces around the weight", hdr("Accept-Encoding", "br ; q=0 , gzip"), "gzip"},
		{"RFC 9110 §12.4.2 Q is case-insensitive", hdr("Accept-Encoding", "br;Q=0, gzip"), "gzip"},
		{"RFC 9110 §12.4.2 small weight still accepts", hdr("Accept-Encoding", "br;q=0.001"), "br"},
		{"RFC 9110 §12.4.2 invalid weight counts as 0", hdr("Accept-Encoding", "br;q=abc, gzip"), "gzip"},
		{"RFC 9110 §12.4.2 weight above 1 is invalid", hdr("Accept-Encoding", "br;q=2"), "identity"},
		{"RFC 9110 §8.4.1.3 x-gzip is gzip", hdr("Accept-Encoding", "x-gzip"), "gzip"},
		{"RFC 9110 §8.4.1 codings are case-insensitive", hdr("Accept-Encoding", "GZip"), "gzip"},
		{"RFC 9110 §12.5.3 star accepts br", hdr("Accept-Encoding", "*"), "br"},
		{"RFC 9110 §12.5.3 star, but br refused", hdr("Accept-Encoding", "*, br;q=0"), "gzip"},
		{"RFC 9110 §12.5.3 star refused", hdr("Accept-Encoding", "*;q=0"), "identity"},
		{"listed twice: the lower weight", hdr("Accept-Encoding", "br, br;q=0"), "identity"},
		{"other codings only", hdr("Accept-Encoding", "deflate, zstd"), "identity"},
		{"several lines", hdr("Accept-Encoding", "deflate", "Accept-Encoding", "gzip"), "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AcceptEncodingBucket(tt.h); got != tt.want {
				t.Errorf("AcceptEncodingBucket = %q; want %q", got, tt.want)
			}
		})
	}
}
