package proxy

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"dedupcache/dedupbody"
)

// TestValidatorsOutOfBlock: a response's ETag and Last-Modified are kept in
// its entry, not in its header block, so that responses differing only in
// them share one block; every key still answers with its own validators,
// conditional requests match its own, and a revalidation sends its own.
func TestValidatorsOutOfBlock(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // path -> If-None-Match of its last request
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		i := strings.TrimPrefix(r.URL.Path, "/k/")
		mu.Lock()
		seen[r.URL.Path] = r.Header.Get("If-None-Match")
		mu.Unlock()
		etag := `"e-` + i + `"`
		w.Header().Set("ETag", etag)
		w.Header().Set("Last-Modified", lastMod(i))
		w.Header().Set("Content-Type", "text/plain")
		if strings.HasPrefix(r.URL.RawQuery, "stale") {
			w.Header().Set("Cache-Control", "public, max-age=0")
		} else {
			w.Header().Set("Cache-Control", "public, max-age=60")
		}
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = fmt.Fprintf(w, "body of %s", i)
	})
	p, srv := newTestProxy(t, o.URL, nil)
	const n = 4
	for round, want := range []string{"MISS", "HIT"} {
		for i := range n {
			resp, body := do(t, "GET", fmt.Sprintf("%s/k/%d", srv.URL, i))
			if got := resp.Header.Get("X-Cache"); got != want {
				t.Errorf("round %d, key %d: X-Cache %q; want %q", round, i, got, want)
			}
			if got, w := resp.Header.Get("ETag"), fmt.Sprintf(`"e-%d"`, i); got != w {
				t.Errorf("round %d, key %d: ETag %q; want %q", round, i, got, w)
			}
			if got, w := resp.Header.Get("Last-Modified"), lastMod(fmt.Sprint(i)); got != w {
				t.Errorf("round %d, key %d: Last-Modified %q; want %q", round, i, got, w)
			}
			if len(resp.Header.Values("ETag")) != 1 || len(resp.Header.Values("Last-Modified")) != 1 {
				t.Errorf("round %d, key %d: ETag %q, Last-Modified %q; want one each", round, i, resp.Header.Values("ETag"), resp.Header.Values("Last-Modified"))
			}
			if w := fmt.Sprintf("body of %d", i); body != w {
				t.Errorf("round %d, key %d: body %q; want %q", round, i, body, w)
			}
		}
	}
	settle(t, p)
	if got := p.headers.Stats().Bodies; got != 1 {
		t.Errorf("header blocks stored: %d; want 1 (shared by keys that differ only in their validators)", got)
	}

	// Conditional requests: a key's own ETag gets 304, another key's 200.
	resp, _ := do(t, "GET", srv.URL+"/k/1", "If-None-Match", `"e-1"`)
	if resp.StatusCode != http.StatusNotModified || resp.Header.Get("ETag") != `"e-1"` {
		t.Errorf("If-None-Match own ETag: %d, ETag %q; want 304, \"e-1\"", resp.StatusCode, resp.Header.Get("ETag"))
	}
	resp, _ = do(t, "GET", srv.URL+"/k/1", "If-None-Match", `"e-2"`)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("If-None-Match another key's ETag: %d; want 200", resp.StatusCode)
	}
	resp, _ = do(t, "GET", srv.URL+"/k/2", "If-Modified-Since", lastMod("2"))
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-Modified-Since own Last-Modified: %d; want 304", resp.StatusCode)
	}

	// Revalidation: each stale key sends its own validator and is
	// refreshed by the 304.
	for i := range n {
		do(t, "GET", fmt.Sprintf("%s/k/%d?stale", srv.URL, i))
	}
	for i := range n {
		path := fmt.Sprintf("/k/%d", i)
		resp, body := do(t, "GET", srv.URL+path+"?stale")
		mu.Lock()
		inm := seen[path]
		mu.Unlock()
		if w := fmt.Sprintf(`"e-%d"`, i); inm != w {
			t.Errorf("key %d: revalidation sent If-None-Match %q; want %q", i, inm, w)
		}
		if resp.StatusCode != http.StatusOK || body != fmt.Sprintf("body of %d", i) || resp.Header.Get("ETag") != fmt.Sprintf(`"e-%d"`, i) {
			t.Errorf("key %d after revalidation: %d %q, ETag %q", i, resp.StatusCode, body, resp.Header.Get("ETag"))
		}
	}
}

// lastMod is key i's Last-Modified.
func lastMod(i string) string {
	d, _ := strconv.Atoi(i)
	return time.Date(2026, 12, d+1, 10, 0, 0, 0, time.UTC).Format(http.TimeFormat)
}

// TestBodyOwnsValidators: keys whose responses carry the same body with the
// same validators share the validators the body keeps (nothing per entry);
// a key with the same body but other validators keeps its own.
func TestBodyOwnsValidators(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		etag := `"same"`
		if r.URL.Path == "/other" {
			etag = `"other"`
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write([]byte("one body for every key"))
	})
	p, srv := newTestProxy(t, o.URL, nil)
	for _, path := range []string{"/a", "/b", "/other"} {
		do(t, "GET", srv.URL+path)
	}
	settle(t, p)
	host := strings.TrimPrefix(srv.URL, "http://")
	extra := func(path string) any {
		e, _ := p.lookup(http.Header{}, host, path, keyHash(host, path))
		if e == nil {
			t.Fatalf("%s not stored", path)
		}
		return e.Extra
	}
	a, b, other := extra("/a"), extra("/b"), extra("/other")
	av, aok := a.(bodyValidators)
	bv, bok := b.(bodyValidators)
	if !aok || !bok || av.v != bv.v || av.v.v[0] != `"same"` {
		t.Errorf("/a and /b: Extra %#v and %#v; want the body's validators, shared", a, b)
	}
	if ov, ok := other.(*validators); !ok || ov.v[0] != `"other"` {
		t.Errorf("/other: Extra %#v; want its own validators", other)
	}
	for _, path := range []string{"/a", "/other"} {
		resp, _ := do(t, "GET", srv.URL+path)
		want := `"same"`
		if path == "/other" {
			want = `"other"`
		}
		if resp.Header.Get("X-Cache") != "HIT" || resp.Header.Get("ETag") != want {
			t.Errorf("%s: X-Cache %q, ETag %q; want HIT, %s", path, resp.Header.Get("X-Cache"), resp.Header.Get("ETag"), want)
		}
	}
}

// TestValidatorsOwnTheirBytes: the validators an entry keeps are a copy,
// never a view of the response header's values, which share one buffer
// (fieldsHeader) that a view would keep alive for as long as the entry.
func TestValidatorsOwnTheirBytes(t *testing.T) {
	for _, tc := range []struct{ name, etag, lm string }{
		{"etag", `"abc"`, ""},
		{"last-modified", "", "Mon, 07 Dec 2026 10:00:00 GMT"},
		{"both", `"abc"`, "Mon, 07 Dec 2026 10:00:00 GMT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := tc.etag + tc.lm + "other fields' bytes"
			h := http.Header{}
			if tc.etag != "" {
				h["Etag"] = []string{buf[:len(tc.etag)]}
			}
			if tc.lm != "" {
				h["Last-Modified"] = []string{buf[len(tc.etag) : len(tc.etag)+len(tc.lm)]}
			}
			auxed, _ := headerValidators(h).aux()(nil) // what a new body keeps
			kept := entryExtra(headerValidators(h), dedupbody.Ref{})
			for name, x := range map[string]any{"a new body's aux": auxed, "an entry's Extra": kept} {
				v, ok := x.(*validators)
				if !ok || v.v[0] != tc.etag || v.v[1] != tc.lm {
					t.Fatalf("%s: %#v, want validators %q %q", name, x, tc.etag, tc.lm)
				}
				lo, hi := uintptr(unsafe.Pointer(unsafe.StringData(buf))), uintptr(unsafe.Pointer(unsafe.StringData(buf)))+uintptr(len(buf))
				for _, s := range v.v {
					if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); s != "" && p >= lo && p < hi {
						t.Fatalf("%s: validator %q is a view of the header's buffer", name, s)
					}
				}
			}
		})
	}
}
