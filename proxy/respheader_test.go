package proxy

import (
	"bufio"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestResponseHeader(t *testing.T) {
	tests := []struct {
		name string
		raw  string // the fields after the status line
		want http.Header
	}{
		{"common and uncommon names", "Content-Type: text/plain\r\nX-Custom-Thing: a b\r\nETag: \"v1\"\r\n",
			http.Header{"Content-Type": {"text/plain"}, "X-Custom-Thing": {"a b"}, "Etag": {`"v1"`}}},
		{"repeated fields keep their order", "Set-Cookie: a=1\r\nVary: X\r\nSet-Cookie: b=2\r\nx-odd: 1\r\nX-Odd: 2\r\n",
			http.Header{"Set-Cookie": {"a=1", "b=2"}, "Vary": {"X"}, "X-Odd": {"1", "2"}}},
		{"empty value", "X-Empty: \r\nCache-Control: max-age=60\r\n",
			http.Header{"X-Empty": {""}, "Cache-Control": {"max-age=60"}}},
		{"hop-by-hop and Connection-named fields go", "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nServer: o\r\n",
			http.Header{"Server": {"o"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rh fasthttp.ResponseHeader
			rh.SetNoDefaultContentType(true)
			raw := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + tt.raw + "\r\n"
			if err := rh.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Fatal(err)
			}
			got := responseHeader(&rh)
			delete(got, "Content-Length")
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			// The strings are copies: fasthttp reuses the header's buffer.
			kept := make(http.Header)
			for k, vs := range got {
				for _, v := range vs {
					kept[strings.Clone(k)] = append(kept[strings.Clone(k)], strings.Clone(v))
				}
			}
			other := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + strings.Repeat("Zzzzzz: zzzzzzzzzzzzzzzzzzzz\r\n", 20) + "\r\n"
			rh.Reset()
			if err := rh.Read(bufio.NewReader(strings.NewReader(other))); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, kept) {
				t.Fatalf("after the header was reused: %q, want %q", got, kept)
			}
			// Values do not share spare capacity: an Add to one field may
			// not overwrite another's value.
			for k := range got {
				got.Add(k, "added")
			}
			for k, vs := range kept {
				if !reflect.DeepEqual(got[k][:len(vs)], vs) {
					t.Fatalf("an Add changed %s: %q, was %q", k, got[k], vs)
				}
			}
		})
	}
}

func TestRequestHeader(t *testing.T) {
	var rq fasthttp.RequestHeader
	raw := "GET /x HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\nX-Thing: 1\r\nAccept: text/html\r\nIf-None-Match: \"v\"\r\nX-Empty: \r\n\r\n"
	if err := rq.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	got := requestHeader(&rq)
	want := http.Header{"Accept": {"*/*", "text/html"}, "X-Thing": {"1"}, "If-None-Match": {`"v"`}, "X-Empty": {""}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	rq.Reset()
	if err := rq.Read(bufio.NewReader(strings.NewReader("GET /y HTTP/1.1\r\nHost: b\r\nZzzzzzzz: zzzzzzzzzzzzzzzzzzzzzzzzzzzzz\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after the request header was reused: %q, want %q", got, want)
	}
	got.Add("X-Thing", "2") // full value slices: no other field changes
	if got["If-None-Match"][0] != `"v"` || got["Accept"][1] != "text/html" {
		t.Fatalf("an Add changed another field: %q", got)
	}
}
