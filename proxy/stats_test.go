package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"dedupcache/dedupbody"
)

func TestTopBodies(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.URL.Path == "/v" {
			w.Header().Set("Vary", "Accept-Language")
		}
		if strings.HasPrefix(r.URL.Path, "/own") {
			_, _ = io.WriteString(w, "own "+r.URL.Path)
			return
		}
		_, _ = io.WriteString(w, "shared")
	})
	p, srv := newTestProxy(t, o.URL, nil)
	for _, path := range []string{"/a", "/b", "/c", "/d", "/own/1", "/own/2"} {
		do(t, "GET", srv.URL+path)
	}
	do(t, "GET", srv.URL+"/v", "Accept-Language", "fr")
	tests := []struct {
		name     string
		n        int
		wantRows int
	}{
		{"zero rows asked", 0, 0},
		{"unshared bodies left out", 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := p.TopBodies(tt.n)
			if len(top) != tt.wantRows {
				t.Fatalf("got %d rows %+v; want %d", len(top), top, tt.wantRows)
			}
			if tt.wantRows == 0 {
				return
			}
			b := top[0]
			if b.Refs != 5 || b.Size != int64(len("shared")) || b.Hash != dedupbody.Sum([]byte("shared")) || len(b.ExampleKeys) != exampleKeys {
				t.Errorf("got %+v; want 5 refs, size 6, the body's hash and %d keys", b, exampleKeys)
			}
			for _, k := range b.ExampleKeys {
				if strings.Contains(k, "\x00") || strings.Contains(k, "/own") {
					t.Errorf("example key %q: want a key of the shared body, without NUL", k)
				}
			}
		})
	}
}
