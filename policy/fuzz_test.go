package policy

import (
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// checkCacheControl fails t if c breaks the invariants every parse result keeps.
func checkCacheControl(t *testing.T, c CacheControl) {
	t.Helper()
	for _, d := range []int64{c.MaxAge, c.SMaxAge, c.MinFresh, c.StaleWhileRevalidate, c.StaleIfError} {
		if d < -1 || d > maxDelta {
			t.Fatalf("duration %d outside [-1, 2^31] in %+v", d, c)
		}
	}
	if c.MaxStale < -1 || (c.MaxStale > maxDelta && c.MaxStale != math.MaxInt64) {
		t.Fatalf("MaxStale %d invalid", c.MaxStale)
	}
	for _, list := range [][]string{c.NoCacheFields, c.PrivateFields} {
		for i, f := range list {
			if f == "" || http.CanonicalHeaderKey(f) != f || slices.Contains(list[:i], f) {
				t.Fatalf("field list %q: %q empty, not canonical or repeated", list, f)
			}
		}
	}
}

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{
		"", "max-age=60", "MAX-AGE = 60 , public", `max-age="60"`, "max-age=abc", "max-age=99999999999999999999",
		"max-age=60, max-age=10", "max-stale", "max-stale=5, max-stale", `no-cache="set-cookie, x-a", private="x-b"`,
		`ext="a\",b", max-age=5`, `x="unterminated`, "no-store, must-understand", ",,,=,=\"", "s-maxage=1;p=2",
		`a=:aGk=:, b=?1, c=-5, d=1.25, e=(1 "x");q=1`, "stale-while-revalidate=30, stale-if-error=600",
	} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		h := http.Header{"Cache-Control": {a, b}, "Cdn-Cache-Control": {a, b}}
		c := ParseCacheControl(h, "Cache-Control")
		checkCacheControl(t, c)
		if got := ParseCacheControl(h, "cache-control"); !equalCC(got, c) {
			t.Fatalf("field name case changed the result: %+v vs %+v", got, c)
		}
		// Two lines read as one comma-joined line, unless a quoted-string
		// could run across the join.
		if !strings.Contains(a, `"`) {
			joined := ParseCacheControl(http.Header{"Cache-Control": {a + "," + b}}, "Cache-Control")
			if !equalCC(joined, c) {
				t.Fatalf("lines %q, %q: %+v; joined: %+v", a, b, c, joined)
			}
		}
		d, field := ResponseDirectives(h, DefaultOptions())
		checkCacheControl(t, d)
		if field == "Cache-Control" {
			if !equalCC(d, c) {
				t.Fatalf("fallback to Cache-Control gave %+v; want %+v", d, c)
			}
		} else if d.MinFresh != -1 || d.MaxStale != -1 || d.OnlyIfCached {
			t.Fatalf("request-only directive set from a targeted field: %+v", d)
		}
	})
}

func equalCC(a, b CacheControl) bool { return reflect.DeepEqual(a, b) }

func FuzzParseVary(f *testing.F) {
	for _, s := range []string{"", "*", "Accept-Encoding", "accept, ACCEPT ,, origin", "Accept, *", " , ", "a\tb, c d"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		names, star := ParseVary(http.Header{"Vary": {a, b}})
		if !slices.IsSorted(names) {
			t.Fatalf("names %q not sorted", names)
		}
		for i, n := range names {
			if n == "" || n == "*" || http.CanonicalHeaderKey(n) != n || (i > 0 && names[i-1] == n) {
				t.Fatalf("names %q: bad member %q", names, n)
			}
		}
		wantStar := false
		for _, line := range []string{a, b} {
			for m := range strings.SplitSeq(line, ",") {
				wantStar = wantStar || trimOWS(m) == "*"
			}
		}
		if star != wantStar || varyStar(http.Header{"Vary": {a, b}}) != wantStar {
			t.Fatalf("star = %v; want %v", star, wantStar)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-499", "bytes=500-", "bytes=-500", "bytes=-0", "bytes=5-2", "bytes=0-1,5-6",
		"BYTES = 0-1", "bytes=99999999999999999999-", "bytes=0-99999999999999999999", "items=1-2", "bytes=,,0-1,,"} {
		f.Add(s, int64(1000))
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, value string, size int64) {
		start, end, ok, unsat := ParseRange(value, size)
		switch {
		case ok && unsat:
			t.Fatalf("ParseRange(%q, %d): ok and unsatisfiable", value, size)
		case ok && !(0 <= start && start <= end && end < size):
			t.Fatalf("ParseRange(%q, %d) = %d-%d; want 0 <= start <= end < size", value, size, start, end)
		case !ok && (start != 0 || end != 0):
			t.Fatalf("ParseRange(%q, %d) = %d-%d with ok false; want zeros", value, size, start, end)
		}
	})
}

func FuzzVaryKey(f *testing.F) {
	for _, s := range []string{"", "en", "en, fr", `"a, b"`, "gzip, br;q=0", "*", "x1:B-", "\x00", "a,,b,"} {
		f.Add("Accept-Language", s, s)
		f.Add("Accept-Encoding", s, s)
	}
	f.Fuzz(func(t *testing.T, name, a, b string) {
		name = http.CanonicalHeaderKey(name)
		names := []string{name, "X-Other"}
		two := http.Header{name: {a, b}}
		k := VaryKey(names, two)
		if VaryKey(names, two) != k {
			t.Fatal("VaryKey is not deterministic")
		}
		// §4.1: combining field lines does not change the key, nor does
		// whitespace around the comma, when no quoted-string spans the join.
		if !strings.Contains(a, `"`) {
			if j := VaryKey(names, http.Header{name: {a + " , " + b}}); j != k {
				t.Fatalf("lines %q, %q: key %q; combined: %q", a, b, k, j)
			}
		}
		// Absent differs from present, whatever the value (but
		// Accept-Encoding is bucketed).
		if name != "Accept-Encoding" && VaryKey(names, http.Header{}) == k {
			t.Fatalf("absent and %q give the same key %q", []string{a, b}, k)
		}
		// A value never spills into the next name's part.
		if VaryKey(names, http.Header{name: {a}}) == VaryKey(names, http.Header{name: {a}, "X-Other": {b}}) {
			t.Fatalf("X-Other %q not reflected in the key", b)
		}
		if bucket := AcceptEncodingBucket(two); bucket != "br" && bucket != "gzip" && bucket != "identity" {
			t.Fatalf("bucket %q", bucket)
		}
	})
}

func FuzzParseHTTPDate(f *testing.F) {
	for _, s := range []string{
		"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Sun Nov 06 08:49:37 1994", "Sat, 31 Dec 2016 23:59:60 GMT", "Thu, 29 Feb 2024 12:00:00 GMT",
		"Wednesday, 31-Dec-69 23:59:59 GMT", "0", "", "Sun, 06 Nov 1994 8:49:37 GMT ", "Sun, 06 Nov 1994 08:49:37 gmt",
		"Mon, 06 Nov 1994 08:49:37 GMT", "Wed, 00 Jan 0000 00:00:00 GMT", "Wednesday,", "Sun Nov 6  08:49:37 1994",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := ParseHTTPDate(s)
		if !ok {
			if !got.IsZero() {
				t.Fatalf("ParseHTTPDate(%q) = %v with ok false; want the zero time", s, got)
			}
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("ParseHTTPDate(%q) in %v; want UTC", s, got.Location())
		}
		// Every accepted date has an IMF-fixdate form, which parses back to
		// it; an accepted IMF-fixdate is already that form up to case and
		// the day name (read robustly, the date counts), except for a leap
		// second, which reads as the next minute.
		imf := got.Format(http.TimeFormat)
		if back, ok := ParseHTTPDate(imf); !ok || !back.Equal(got) {
			t.Fatalf("ParseHTTPDate(%q) = %v; its form %q reads back as %v, %v", s, got, imf, back, ok)
		}
		if len(s) == len(http.TimeFormat) && s[3] == ',' && !strings.EqualFold(imf[3:], s[3:]) && s[23:25] != "60" {
			t.Fatalf("ParseHTTPDate(%q) = %v, formatted %q", s, got, imf)
		}
	})
}
