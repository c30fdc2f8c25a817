package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func get(t *testing.T, h http.Handler, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestObjects(t *testing.T) {
	o := newOrigin(10, 3, 1000, 1, 0)
	r0, r3, r1 := get(t, o, "/obj/0"), get(t, o, "/obj/3"), get(t, o, "/obj/1")
	b0, b3, b1 := body(t, r0), body(t, r3), body(t, r1)
	if r0.StatusCode != 200 || len(b0) != 1000 || r0.Header.Get("Content-Length") != "1000" {
		t.Fatalf("/obj/0: %d, %d bytes", r0.StatusCode, len(b0))
	}
	if r0.Header.Get("Cache-Control") != "public, max-age=3600" {
		t.Fatalf("Cache-Control %q", r0.Header.Get("Cache-Control"))
	}
	// 0 and 3 share body 0 (mod 3); 1 has another body and ETag.
	if !bytes.Equal(b0, b3) || r0.Header.Get("Etag") != r3.Header.Get("Etag") {
		t.Fatal("objects 0 and 3 should share body and ETag")
	}
	if bytes.Equal(b0, b1) || r0.Header.Get("Etag") == r1.Header.Get("Etag") {
		t.Fatal("objects 0 and 1 should differ")
	}
	// Deterministic across instances; another seed gives other bytes.
	if again := body(t, get(t, newOrigin(10, 3, 1000, 1, 0), "/obj/0")); !bytes.Equal(b0, again) {
		t.Fatal("same flags, different body")
	}
	if other := body(t, get(t, newOrigin(10, 3, 1000, 2, 0), "/obj/0")); bytes.Equal(b0, other) {
		t.Fatal("other seed, same body")
	}
	etag := r0.Header.Get("Etag")
	if etag == "" || etag[0] != '"' {
		t.Fatalf("ETag %q is not a strong one", etag)
	}
	if r := get(t, o, "/obj/6", "If-None-Match", `"x", `+etag); r.StatusCode != 304 || len(body(t, r)) != 0 {
		t.Fatalf("If-None-Match: %d", r.StatusCode)
	}
	if r := get(t, o, "/obj/1", "If-None-Match", etag); r.StatusCode != 200 {
		t.Fatalf("If-None-Match of another body: %d", r.StatusCode)
	}
	for _, p := range []string{"/obj/10", "/obj/-1", "/obj/x", "/other"} {
		if r := get(t, o, p); r.StatusCode != 404 {
			t.Fatalf("%s: %d", p, r.StatusCode)
		}
	}
	var st stats
	if err := json.Unmarshal(body(t, get(t, o, "/stats")), &st); err != nil {
		t.Fatal(err)
	}
	want := stats{ObjRequests: 9, OK: 4, NotModified: 1, NotFound: 4, BodyBytes: 4000, Objects: 10, Bodies: 3, BadRequest: 0}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

// max-age= and tag= change the header of an object, not its body or ETag;
// other query parameters change nothing, and an object revalidates with 304.
func TestQueryParameters(t *testing.T) {
	o := newOrigin(10, 3, 100, 1, 0)
	plain := get(t, o, "/obj/4")
	b := body(t, plain)
	short := get(t, o, "/obj/4?max-age=1&tag=r4&u=x")
	if short.StatusCode != 200 || !bytes.Equal(body(t, short), b) || short.Header.Get("Etag") != plain.Header.Get("Etag") {
		t.Fatalf("/obj/4?max-age=1: %d, another body or ETag", short.StatusCode)
	}
	if cc := short.Header.Get("Cache-Control"); cc != "public, max-age=1" {
		t.Fatalf("max-age=1: Cache-Control %q", cc)
	}
	if sk := short.Header.Get("Surrogate-Key"); sk != "r4" {
		t.Fatalf("tag=r4: Surrogate-Key %q", sk)
	}
	if plain.Header.Get("Surrogate-Key") != "" {
		t.Fatal("Surrogate-Key without tag=")
	}
	other := get(t, o, "/obj/4?u=123")
	if other.Header.Get("Cache-Control") != "public, max-age=3600" || !bytes.Equal(body(t, other), b) {
		t.Fatal("an unknown query parameter changed the answer")
	}
	if r := get(t, o, "/obj/4?max-age=0", "If-None-Match", plain.Header.Get("Etag")); r.StatusCode != 304 || r.Header.Get("Cache-Control") != "public, max-age=0" {
		t.Fatalf("revalidation: %d, Cache-Control %q", r.StatusCode, r.Header.Get("Cache-Control"))
	}
	for _, q := range []string{"max-age=-1", "max-age=x", "max-age=1.5", "max-age="} {
		if r := get(t, o, "/obj/4?"+q); r.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", q, r.StatusCode)
		}
	}
	var st stats
	if err := json.Unmarshal(body(t, get(t, o, "/stats")), &st); err != nil {
		t.Fatal(err)
	}
	if st.ObjRequests != 8 || st.OK != 3 || st.NotModified != 1 || st.BadRequest != 4 {
		t.Fatalf("stats %+v", st)
	}
}
