package policy

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestUpdateStoredHeader(t *testing.T) {
	tests := []struct {
		name              string
		stored, notModifd http.Header
		want              http.Header
	}{
		{"§3.2 304 fields replace stored ones; Content-Length is kept",
			hdr("Cache-Control", "max-age=60", "Etag", `"a"`, "X-Old", "1", "Content-Length", "100"),
			hdr("Cache-Control", "max-age=120", "Date", date(t0), "Content-Length", "0"),
			hdr("Cache-Control", "max-age=120", "Etag", `"a"`, "X-Old", "1", "Content-Length", "100", "Date", date(t0))},
		{"§3.2 fields the stored body depends on are kept",
			hdr("Content-Type", "application/json", "Content-Encoding", "gzip"),
			hdr("Content-Type", "text/plain", "Content-Encoding", "br", "Content-Range", "bytes 0-1/2"),
			hdr("Content-Type", "application/json", "Content-Encoding", "gzip")},
		{"§3.1 hop-by-hop, Connection-listed and proxy fields are not added",
			hdr("X-A", "1"),
			hdr("Connection", "X-Hop", "X-Hop", "1", "Keep-Alive", "timeout=5", "Transfer-Encoding", "chunked", "Proxy-Authentication-Info", "x"),
			hdr("X-A", "1")},
		{"§3.2 every line of a field is replaced",
			hdr("Link", "<a>", "Link", "<b>"), hdr("Link", "<c>"), hdr("Link", "<c>")},
		{"§3.2 nil stored header", nil, hdr("Etag", `"a"`), hdr("Etag", `"a"`)},
		{"§3.1 a 304's Set-Cookie and Set-Cookie2 are never merged",
			hdr("Etag", `"a"`),
			hdr("Set-Cookie", "session=alice", "Set-Cookie2", "b=2", "Etag", `"a"`),
			hdr("Etag", `"a"`)},
		{"§3.1 a stored Set-Cookie is kept, not replaced by the 304's",
			hdr("Set-Cookie", "shared=1"), hdr("Set-Cookie", "session=alice"), hdr("Set-Cookie", "shared=1")},
		{"§3.2 non-canonical key in the 304 is canonicalized",
			hdr("Cache-Control", "max-age=1"), http.Header{"cache-control": {"max-age=2"}}, hdr("Cache-Control", "max-age=2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storedBefore, nmBefore := tt.stored.Clone(), tt.notModifd.Clone()
			got := UpdateStoredHeader(tt.stored, tt.notModifd)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("UpdateStoredHeader = %v; want %v", got, tt.want)
			}
			if !reflect.DeepEqual(tt.stored, storedBefore) || !reflect.DeepEqual(tt.notModifd, nmBefore) {
				t.Errorf("inputs modified: stored %v, 304 %v", tt.stored, tt.notModifd)
			}
			for k, vv := range got { // the result must not alias the inputs
				for i := range vv {
					vv[i] = "changed"
				}
				if v := tt.stored[k]; len(v) > 0 && v[0] == "changed" {
					t.Errorf("result shares %s with stored", k)
				}
				if v := tt.notModifd[k]; len(v) > 0 && v[0] == "changed" {
					t.Errorf("result shares %s with the 304", k)
				}
			}
		})
	}
}

// TestUpdateStoredHeaderPerUserFields is the 304 of a revalidation made for
// one user: the merge drops its cookie, and Storable on the merged header
// refuses to store it.
func TestUpdateStoredHeaderPerUserFields(t *testing.T) {
	stored := hdr("Cache-Control", "max-age=1", "Etag", `"v1"`, "Content-Type", "text/plain", "Surrogate-Key", "public-tag")
	notModified := hdr("Set-Cookie", "session=alice-renewed; HttpOnly", "Cache-Control", "private", "Cache-Control", "no-store",
		"Surrogate-Key", "internal-tag", "Etag", `"v1"`, "Date", date(t0))
	got := UpdateStoredHeader(stored, notModified)
	want := hdr("Cache-Control", "private", "Cache-Control", "no-store", "Etag", `"v1"`, "Content-Type", "text/plain",
		"Surrogate-Key", "internal-tag", "Date", date(t0))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("UpdateStoredHeader = %v; want %v", got, want)
	}
	if ok, reason := Storable(http.MethodGet, hdr("Cookie", "session=alice"), 200, got, DefaultOptions()); ok || reason != ReasonNoStore {
		t.Errorf("Storable(merged) = %v, %v; want false, %v", ok, reason, ReasonNoStore)
	}
	onlyPrivate := UpdateStoredHeader(stored, hdr("Cache-Control", "private", "Set-Cookie", "a=b"))
	if ok, reason := Storable(http.MethodGet, http.Header{}, 200, onlyPrivate, DefaultOptions()); ok || reason != ReasonPrivate {
		t.Errorf("Storable(merged private) = %v, %v; want false, %v", ok, reason, ReasonPrivate)
	}
	if _, ok := onlyPrivate["Set-Cookie"]; ok {
		t.Errorf("merged header has Set-Cookie %q; want none", onlyPrivate["Set-Cookie"])
	}
}

func TestCanFreshen(t *testing.T) {
	lm := date(t0)
	tests := []struct {
		name      string
		stored    http.Header
		notModifd http.Header
		want      bool
	}{
		{"§4.3.4 same strong ETag", hdr("Etag", `"a"`), hdr("Etag", `"a"`), true},
		{"§4.3.4 different strong ETag: must not update", hdr("Etag", `"a"`), hdr("Etag", `"b"`), false},
		{"§4.3.4 strong ETag against a weak stored one", hdr("Etag", `W/"a"`), hdr("Etag", `"a"`), false},
		{"§4.3.4 weak ETag matches a strong stored one weakly", hdr("Etag", `"a"`), hdr("Etag", `W/"a"`), true},
		{"§4.3.4 weak matches weak", hdr("Etag", `W/"a"`), hdr("Etag", `W/"a"`), true},
		{"§4.3.4 ETag in the 304, none stored", hdr(), hdr("Etag", `"a"`), false},
		{"§4.3.4 invalid ETag in the 304", hdr("Etag", `"a"`), hdr("Etag", `a`), false},
		{"§4.3.4 same Last-Modified", hdr("Last-Modified", lm), hdr("Last-Modified", lm), true},
		{"§4.3.4 different Last-Modified", hdr("Last-Modified", lm), hdr("Last-Modified", date(t0.Add(time.Second))), false},
		{"§4.3.4 Last-Modified that is not an HTTP-date never matches", hdr("Last-Modified", "Mon, 01 Jan 2024 1:00:00 GMT"),
			hdr("Last-Modified", "Mon, 01 Jan 2024 1:00:00 GMT"), false},
		{"§4.3.4 no validator in the 304", hdr("Etag", `"a"`), hdr("Cache-Control", "max-age=5"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CanFreshen(tt.stored, tt.notModifd); got != tt.want {
				t.Errorf("CanFreshen = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestNotModified(t *testing.T) {
	lm := date(t0)
	tests := []struct {
		name     string
		req      http.Header
		etag, lm string
		want     bool
	}{
		{"RFC 9110 §8.8.3.2 weak comparison: W/ against strong", hdr("If-None-Match", `W/"a"`), `"a"`, "", true},
		{"RFC 9110 §8.8.3.2 weak comparison: strong against W/", hdr("If-None-Match", `"a"`), `W/"a"`, "", true},
		{"RFC 9110 §13.1.2 one of a list", hdr("If-None-Match", `"x", "a"`), `"a"`, "", true},
		{"RFC 9110 §13.1.2 list over several lines", hdr("If-None-Match", `"x"`, "If-None-Match", `"a"`), `"a"`, "", true},
		{"RFC 9110 §13.1.2 no match", hdr("If-None-Match", `"x", "y"`), `"a"`, "", false},
		{"RFC 9110 §13.1.2 star", hdr("If-None-Match", "*"), `"a"`, "", true},
		{"RFC 9110 §8.8.3 comma inside an entity-tag", hdr("If-None-Match", `"a,b"`), `"a,b"`, "", true},
		{"RFC 9110 §5.6.1 empty list members", hdr("If-None-Match", ` , "a" ,`), `"a"`, "", true},
		{"RFC 9110 §13.1.2 unparsable list: no", hdr("If-None-Match", `abc, "a"`), `"a"`, "", false},
		{"RFC 9110 §13.1.2 stored response without ETag", hdr("If-None-Match", `"a"`), "", lm, false},
		{"RFC 9110 §13.2.2 If-None-Match takes precedence over If-Modified-Since",
			hdr("If-None-Match", `"x"`, "If-Modified-Since", lm), `"a"`, lm, false},
		{"RFC 9110 §13.1.3 Last-Modified equal to If-Modified-Since", hdr("If-Modified-Since", lm), "", lm, true},
		{"RFC 9110 §13.1.3 Last-Modified earlier", hdr("If-Modified-Since", date(t0.Add(time.Hour))), "", lm, true},
		{"RFC 9110 §13.1.3 Last-Modified later", hdr("If-Modified-Since", date(t0.Add(-time.Hour))), "", lm, false},
		{"RFC 9110 §13.1.3 invalid date is ignored", hdr("If-Modified-Since", "yesterday"), "", lm, false},
		{"RFC 9110 §13.1.3 If-Modified-Since with a one-digit hour is ignored", hdr("If-Modified-Since", "Tue, 02 Jan 2024 9:00:00 GMT"), "", lm, false},
		{"RFC 9110 §13.1.3 If-Modified-Since with lowercase gmt is ignored", hdr("If-Modified-Since", "Mon, 01 Jan 2024 13:00:00 gmt"), "", lm, false},
		{"RFC 9110 §13.1.3 If-Modified-Since with a wrong day name is ignored", hdr("If-Modified-Since", "Tue, 01 Jan 2024 13:00:00 GMT"), "", lm, false},
		{"RFC 9110 §13.1.3 If-Modified-Since with an upper-case month is ignored", hdr("If-Modified-Since", "Mon, 01 JAN 2024 13:00:00 GMT"), "", lm, false},
		{"RFC 9110 §13.1.3 If-Modified-Since in the asctime format", hdr("If-Modified-Since", "Mon Jan  1 13:00:00 2024"), "", lm, true},
		{"RFC 9110 §13.1.3 more than one member is ignored", hdr("If-Modified-Since", lm, "If-Modified-Since", lm), "", lm, false},
		{"RFC 9111 §4.3.2 no Last-Modified: Date passed instead still works", hdr("If-Modified-Since", lm), `"a"`, lm, true},
		{"RFC 9110 §13.1.3 no stored date", hdr("If-Modified-Since", lm), "", "", false},
		{"no conditional fields", hdr(), `"a"`, lm, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NotModified(tt.req, tt.etag, tt.lm); got != tt.want {
				t.Errorf("NotModified = %v; want %v", got, tt.want)
			}
		})
	}
}
