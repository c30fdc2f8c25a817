package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// purgeOrigin serves /{group}/{i}: the body depends only on the group's
// first letter (so many entries share a body), tagged with the group.
func purgeOrigin(t *testing.T) *origin {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/")
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Surrogate-Key", "all group-"+parts[1])
		if r.URL.Path == "/v/x" {
			w.Header().Set("Vary", "Accept-Language")
		}
		_, _ = io.WriteString(w, "body of "+parts[1][:1])
	})
}

// purge runs the purge a /api/purge query string asks for, through the
// exported methods the admin handler calls.
func purge(t *testing.T, p *Proxy, query string) (int, PurgeResult) {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case q.Get("url") != "":
		res, err := p.PurgeURL(q.Get("url"))
		if err != nil {
			return http.StatusBadRequest, res
		}
		return http.StatusOK, res
	case q.Get("prefix") != "":
		return http.StatusOK, p.PurgePrefix(q.Get("prefix"))
	case q.Get("tag") != "":
		return http.StatusOK, p.PurgeTag(q.Get("tag"))
	case q.Get("all") == "1":
		return http.StatusOK, p.PurgeAll()
	}
	return http.StatusBadRequest, PurgeResult{}
}

func TestPurge(t *testing.T) {
	o := purgeOrigin(t)
	p, srv := newTestProxy(t, o.URL, nil)
	warm := func() {
		for _, g := range []string{"alpha", "apple", "beta"} {
			for i := 0; i < 5; i++ {
				do(t, "GET", fmt.Sprintf("%s/%s/%d", srv.URL, g, i))
			}
		}
		do(t, "GET", srv.URL+"/v/x", "Accept-Language", "en")
		do(t, "GET", srv.URL+"/v/x", "Accept-Language", "fr")
	}
	warm()
	if st := p.Stats(); st.Entries != 17 || st.BodiesUnique != 3 {
		t.Fatalf("warm: entries %d bodies %d; want 17, 3", st.Entries, st.BodiesUnique)
	}
	// The tag header never reaches clients.
	resp, _ := do(t, "GET", srv.URL+"/alpha/0")
	if resp.Header.Get("Surrogate-Key") != "" {
		t.Errorf("Surrogate-Key sent to the client")
	}
	tests := []struct {
		query  string
		purged int
		freed  int64
	}{
		{"url=/alpha/0", 1, 0},                         // body "body of a" still used by alpha/1..4 and apple/*
		{"url=/v/x", 2, int64(len("body of v"))},       // both variants, the only users of "body of v"
		{"tag=group-beta", 5, int64(len("body of b"))}, // the last users of "body of b"
		{"prefix=/al", 4, 0},                           // alpha/1..4; apple/* keep "body of a"
		{"prefix=/ap", 5, int64(len("body of a"))},
	}
	for _, tt := range tests {
		settle(t, p)
		code, res := purge(t, p, tt.query)
		if code != 200 || res.PurgedEntries != tt.purged || res.FreedBytes != tt.freed {
			t.Errorf("%s: got %d %+v; want 200 {%d %d}", tt.query, code, res, tt.purged, tt.freed)
		}
	}
	if st := p.Stats(); st.Entries != 0 || st.BodiesUnique != 0 {
		t.Errorf("after purges: entries %d bodies %d; want 0 0", st.Entries, st.BodiesUnique)
	}
	warm()
	if code, res := purge(t, p, "all=1"); code != 200 || res.PurgedEntries != 17 {
		t.Errorf("all=1: got %d %+v; want 17 entries", code, res)
	}
	if code, _ := purge(t, p, ""); code != 400 {
		t.Errorf("no selector: got %d; want 400", code)
	}
}

func TestPurgeTagScalesWithTagNotStore(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		if r.URL.Path == "/tagged" {
			w.Header().Set("Surrogate-Key", "rare")
		}
		_, _ = io.WriteString(w, "x")
	})
	p, srv := newTestProxy(t, o.URL, nil)
	for i := 0; i < 300; i++ {
		do(t, "GET", fmt.Sprintf("%s/n/%d", srv.URL, i))
	}
	do(t, "GET", srv.URL+"/tagged")
	if got := len(p.index.taggedWith("rare")); got != 1 {
		t.Errorf("tag index for rare: %d entries; want 1 (the index is per tag, not a scan)", got)
	}
	if _, res := purge(t, p, "tag=rare"); res.PurgedEntries != 1 {
		t.Errorf("purged %d; want 1", res.PurgedEntries)
	}
}
