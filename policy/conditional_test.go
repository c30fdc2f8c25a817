package policy

import (
	"net/http"
	"reflect"
	"testing"
)

func TestIfRangeMatches(t *testing.T) {
	lm := date(t0)
	tests := []struct {
		name              string
		ifRange, etag, lm string
		want              bool
	}{
		{"RFC 9110 §13.1.5 absent", "", `"a"`, lm, true},
		{"RFC 9110 §13.1.5 same strong entity-tag", `"a"`, `"a"`, lm, true},
		{"RFC 9110 §13.1.5 entity-tag with surrounding whitespace", ` "a" `, `"a"`, "", true},
		{"RFC 9110 §13.1.5 different entity-tag", `"b"`, `"a"`, lm, false},
		{"RFC 9110 §8.8.3.2 weak If-Range never matches", `W/"a"`, `W/"a"`, lm, false},
		{"RFC 9110 §8.8.3.2 strong If-Range against a weak stored ETag", `"a"`, `W/"a"`, lm, false},
		{"RFC 9110 §13.1.5 entity-tag, no stored ETag", `"a"`, "", lm, false},
		{"RFC 9110 §8.8.3 malformed entity-tag", `"a`, `"a`, lm, false},
		{"RFC 9110 §8.8.3 entity-tag with trailing junk", `"a"x`, `"a"`, lm, false},
		{"RFC 9110 §13.1.5 entity-tag does not match Last-Modified", `"a"`, "", `"a"`, false},
		{"RFC 9110 §13.1.5 date equal to Last-Modified", lm, `"a"`, lm, true},
		{"RFC 9110 §13.1.5 date different from Last-Modified", date(t0.Add(-1)), `"a"`, date(t0.Add(-3600e9)), false},
		{"RFC 9110 §13.1.5 date, no Last-Modified", lm, `"a"`, "", false},
		{"RFC 9110 §13.1.5 equal but not an HTTP-date", "Mon, 01 Jan 2024 1:00:00 GMT", "", "Mon, 01 Jan 2024 1:00:00 GMT", false},
		{"RFC 9110 §13.1.5 equal garbage", "yesterday", "", "yesterday", false},
		{"RFC 9110 §13.1.5 same instant in another format is not an exact match", "Mon Jan  1 12:00:00 2024", "", lm, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IfRangeMatches(tt.ifRange, tt.etag, tt.lm); got != tt.want {
				t.Errorf("IfRangeMatches(%q, %q, %q) = %v; want %v", tt.ifRange, tt.etag, tt.lm, got, tt.want)
			}
		})
	}
}

func TestStripConditionals(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"RFC 9111 §4.3.1 every precondition and Range removed",
			hdr("If-Match", `"a"`, "If-None-Match", `"b"`, "If-None-Match", `"c"`, "If-Modified-Since", date(t0),
				"If-Unmodified-Since", date(t0), "If-Range", `"a"`, "Range", "bytes=0-1", "Accept", "*/*", "Cookie", "a=b"),
			hdr("Accept", "*/*", "Cookie", "a=b")},
		{"nothing to remove", hdr("Accept", "*/*"), hdr("Accept", "*/*")},
		{"empty header", http.Header{}, http.Header{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			StripConditionals(tt.in)
			if !reflect.DeepEqual(tt.in, tt.want) {
				t.Errorf("StripConditionals left %v; want %v", tt.in, tt.want)
			}
		})
	}
}

func FuzzIfRangeMatches(f *testing.F) {
	for _, s := range []string{"", `"a"`, `W/"a"`, ` "a" `, `"a`, "Sun, 06 Nov 1994 08:49:37 GMT", "yesterday", "W/", `"`} {
		f.Add(s, `"a"`, "Sun, 06 Nov 1994 08:49:37 GMT")
	}
	f.Fuzz(func(t *testing.T, ifRange, etag, lm string) {
		got := IfRangeMatches(ifRange, etag, lm)
		if trimOWS(ifRange) == "" && !got {
			t.Fatalf("IfRangeMatches(%q, ...) = false; want true for an absent field", ifRange)
		}
		if got && trimOWS(ifRange) != "" {
			_, weak, isTag := entityTag(ifRange)
			_, isDate := ParseHTTPDate(trimOWS(ifRange))
			if (!isTag || weak) && !isDate {
				t.Fatalf("IfRangeMatches(%q, %q, %q) = true for neither a strong entity-tag nor an HTTP-date", ifRange, etag, lm)
			}
		}
	})
}
