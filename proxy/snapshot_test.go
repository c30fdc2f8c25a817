package proxy

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	snap "dedupcache/cachestore/snapshot"
)

// snapshotOrigin serves /k/{i}: a body shared by keys with the same i%4,
// an ETag per body, a surrogate key per key; /v varies on Accept-Language;
// /never is not storable (a hit-for-miss marker).
func snapshotOrigin() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v":
			w.Header().Set("Vary", "Accept-Language")
			w.Header().Set("Cache-Control", "public, max-age=600")
			_, _ = fmt.Fprintf(w, "lang %s", r.Header.Get("Accept-Language"))
		case r.URL.Path == "/never":
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write([]byte("never"))
		default:
			i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/k/"))
			w.Header().Set("Cache-Control", "public, max-age=600")
			w.Header().Set("ETag", fmt.Sprintf(`"b%d"`, i%4))
			w.Header().Set("Surrogate-Key", "key-"+strconv.Itoa(i))
			_, _ = fmt.Fprintf(w, "body %d %s", i%4, strings.Repeat("x", 200))
		}
	}
}

// writeSnapshot writes p's entries to a snapshot in memory.
func writeSnapshot(t *testing.T, p *Proxy) ([]byte, SnapshotStats) {
	t.Helper()
	var buf bytes.Buffer
	w, err := snap.NewWriter(&buf, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.WriteSnapshot(w)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), st
}

// loadSnapshot loads file into p as of now.
func loadSnapshot(t *testing.T, p *Proxy, file []byte, now time.Time) (SnapshotStats, error) {
	t.Helper()
	r, err := snap.NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	return p.LoadSnapshot(r, now)
}

// TestSnapshotRoundTrip: a snapshot written by one proxy and loaded into a
// new one brings back every entry (byte-identical bodies, the same
// validators, Vary variants, surrogate keys), each body stored once, with
// Age counting the time in between; the origin sees no request.
func TestSnapshotRoundTrip(t *testing.T) {
	o := newOrigin(t, snapshotOrigin())
	p1, srv1 := newTestProxy(t, o.URL, nil)
	const n = 12
	for i := range n {
		do(t, "GET", fmt.Sprintf("%s/k/%d", srv1.URL, i))
	}
	for _, lang := range []string{"en", "fr"} {
		do(t, "GET", srv1.URL+"/v", "Accept-Language", lang)
	}
	do(t, "GET", srv1.URL+"/never")
	settle(t, p1)
	file, wst := writeSnapshot(t, p1)
	// n keys, 2 variants and their index; not the hit-for-miss marker.
	if wst.Entries != n+3 {
		t.Errorf("written: %d entries; want %d", wst.Entries, n+3)
	}
	bodies1 := p1.bodies.Stats().Bodies
	time.Sleep(1100 * time.Millisecond) // the downtime Age must show

	p2, srv2 := newTestProxy(t, o.URL, nil)
	host1 := strings.TrimPrefix(srv1.URL, "http://") // the keys' host: a restarted cache answers for the same
	get := func(path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		return do(t, "GET", srv2.URL+path, append(hdr, "Host", host1)...)
	}
	lst, err := loadSnapshot(t, p2, file, time.Now())
	if err != nil || lst.Entries != n+3 || lst.Skipped != 0 || lst.Expired != 0 {
		t.Fatalf("load: %+v, %v; want %d entries, nothing skipped", lst, err, n+3)
	}
	settle(t, p2)
	if got := p2.bodies.Stats().Bodies; got != bodies1 {
		t.Errorf("bodies after load: %d; want %d (each stored once, as before)", got, bodies1)
	}
	before := o.hits.Load()
	for i := range n {
		resp, body := get(fmt.Sprintf("/k/%d", i))
		want := fmt.Sprintf("body %d %s", i%4, strings.Repeat("x", 200))
		if resp.Header.Get("X-Cache") != "HIT" || body != want {
			t.Errorf("/k/%d after load: X-Cache %q, body %q", i, resp.Header.Get("X-Cache"), body)
		}
		if got := resp.Header.Get("ETag"); got != fmt.Sprintf(`"b%d"`, i%4) {
			t.Errorf("/k/%d after load: ETag %q", i, got)
		}
		if age, _ := strconv.Atoi(resp.Header.Get("Age")); age < 1 {
			t.Errorf("/k/%d after load: Age %q; want >= 1 (the time between write and load)", i, resp.Header.Get("Age"))
		}
	}
	for _, lang := range []string{"en", "fr"} {
		resp, body := get("/v", "Accept-Language", lang)
		if resp.Header.Get("X-Cache") != "HIT" || body != "lang "+lang {
			t.Errorf("/v %s after load: X-Cache %q, body %q", lang, resp.Header.Get("X-Cache"), body)
		}
	}
	if got := o.hits.Load() - before; got != 0 {
		t.Errorf("origin requests after load: %d; want 0", got)
	}
	resp, _ := get("/k/3", "If-None-Match", `"b3"`)
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional after load: %d; want 304", resp.StatusCode)
	}
	// Surrogate keys came back: a tag purge reaches the entry.
	if res := p2.PurgeTag("key-5"); res.PurgedEntries != 1 {
		t.Errorf("PurgeTag after load: %+v; want 1 entry", res)
	}
}

// TestSnapshotSkipsExpired: entries whose time is up when the snapshot is
// loaded are not stored.
func TestSnapshotSkipsExpired(t *testing.T) {
	o := newOrigin(t, snapshotOrigin())
	p1, srv1 := newTestProxy(t, o.URL, nil)
	for i := range 3 {
		do(t, "GET", fmt.Sprintf("%s/k/%d", srv1.URL, i))
	}
	settle(t, p1)
	file, _ := writeSnapshot(t, p1)
	p2, _ := newTestProxy(t, o.URL, nil)
	st, err := loadSnapshot(t, p2, file, time.Now().Add(30*24*time.Hour))
	if err != nil || st.Entries != 0 || st.Expired != 3 {
		t.Errorf("load a month later: %+v, %v; want 3 expired, none loaded", st, err)
	}
	settle(t, p2)
	if got := p2.store.Stats().Entries; got != 0 {
		t.Errorf("entries: %d; want 0", got)
	}
	if got := p2.bodies.Stats().Bodies; got != 0 {
		t.Errorf("bodies left by the load: %d; want 0", got)
	}
}

func TestExtraRoundTrip(t *testing.T) {
	for _, x := range []decodedExtra{
		{},
		{etag: `"a"`, lm: "Mon, 07 Dec 2026 10:00:00 GMT", tags: []string{"t1", "t2"}},
		{vary: "Accept-Language,Accept-Encoding"},
	} {
		b := []byte{extraVersion}
		for _, s := range []string{x.etag, x.lm, x.vary} {
			b = append(b, byte(len(s)))
			b = append(b, s...)
		}
		b = append(b, byte(len(x.tags)))
		for _, tg := range x.tags {
			b = append(append(b, byte(len(tg))), tg...)
		}
		got, err := decodeExtra(b)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(x) {
			t.Errorf("decodeExtra(%q) = %+v, %v; want %+v", b, got, err, x)
		}
		for cut := range len(b) {
			if _, err := decodeExtra(b[:cut]); err == nil && cut < len(b) {
				t.Errorf("decodeExtra of %q cut at %d: no error", b, cut)
			}
		}
	}
}

// TestSnapshotLoadStopsAtMaxMemory: a snapshot larger than the loading
// cache's max_memory loads the most recently stored entries and stops.
func TestSnapshotLoadStopsAtMaxMemory(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=600")
		_, _ = w.Write(bytes.Repeat([]byte(r.URL.Path), 20_000/len(r.URL.Path))) // distinct, ~20 KB
	})
	p1, srv1 := newTestProxy(t, o.URL, nil)
	const n = 40
	for i := range n {
		do(t, "GET", fmt.Sprintf("%s/old/%02d", srv1.URL, i))
	}
	time.Sleep(10 * time.Millisecond)
	for i := range n {
		do(t, "GET", fmt.Sprintf("%s/new/%02d", srv1.URL, i))
	}
	settle(t, p1)
	file, _ := writeSnapshot(t, p1)

	// Room for about half: the new ones.
	p2, _ := newTestProxy(t, o.URL, func(c *Config) { c.MaxMemory = 1 << 20 })
	st, err := loadSnapshot(t, p2, file, time.Now())
	if err != nil || st.Full == 0 || st.Entries == 0 {
		t.Fatalf("load into 1 MiB: %+v, %v; want some loaded, the rest refused as full", st, err)
	}
	settle(t, p2)
	host := strings.TrimPrefix(srv1.URL, "http://")
	var oldIn, newIn int
	for i := range n {
		for _, dir := range []string{"old", "new"} {
			path := fmt.Sprintf("/%s/%02d", dir, i)
			if e, _ := p2.lookup(http.Header{}, host, path, keyHash(host, path)); e != nil {
				if dir == "old" {
					oldIn++
				} else {
					newIn++
				}
			}
		}
	}
	t.Logf("load: %+v; newer loaded %d of %d, older %d", st, newIn, n, oldIn)
	if newIn < oldIn || oldIn != 0 && newIn != n {
		t.Errorf("loaded %d of the newer and %d of the older entries; want the newer first", newIn, oldIn)
	}
	if mem := p2.store.Stats().EntryBytes + p2.bodies.Stats().Bytes + p2.headers.Stats().Bytes; mem > 1<<20+64<<10 {
		t.Errorf("memory after load: %d; want about max_memory (1 MiB) at most", mem)
	}
}
