package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// A toy cache: the first request for a path is a MISS, later ones HIT;
// /obj/13 answers 500.
func toyCache() http.Handler {
	var mu sync.Mutex
	seen := map[string]bool{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hit := seen[r.URL.Path]
		seen[r.URL.Path] = true
		mu.Unlock()
		if hit {
			w.Header().Set("X-Cache", "HIT")
		} else {
			w.Header().Set("X-Cache", "MISS")
		}
		if r.URL.Path == "/obj/13" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		w.Write([]byte("abcd"))
	})
}

func TestPasses(t *testing.T) {
	srv := httptest.NewServer(toyCache())
	defer srv.Close()
	const n = 200
	first := pass(srv.Client(), srv.URL, n, 4, "X-Cache")
	if first.ok != n-1 || first.non200 != 1 || first.errs != 0 || first.bytes != 4*n {
		t.Fatalf("first pass: %s", first.line("X-Cache"))
	}
	if first.values["MISS"] != n || first.check(n, "") == nil {
		t.Fatalf("first pass: %s, check %v", first.line("X-Cache"), first.check(n, ""))
	}
	second := pass(srv.Client(), srv.URL, n, 4, "X-Cache")
	if got := second.line("X-Cache"); !strings.Contains(got, "header=X-Cache HIT:200") {
		t.Fatalf("second pass: %s", got)
	}
	err := second.check(n, "HIT")
	if err == nil || !strings.Contains(err.Error(), "1 answers were not 200") {
		t.Fatalf("second pass check: %v", err)
	}
	if err := second.check(n, "MISS"); err == nil || !strings.Contains(err.Error(), "0 of 200 answers carried MISS") {
		t.Fatalf("expect MISS: %v", err)
	}
}

func TestRefusedConnection(t *testing.T) {
	srv := httptest.NewServer(toyCache())
	url := srv.URL
	srv.Close()
	r := pass(http.DefaultClient, url, 3, 2, "")
	if r.errs != 3 || r.check(3, "") == nil || !strings.Contains(r.line(""), "header=- -") {
		t.Fatalf("closed target: %s", r.line(""))
	}
}
