package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

// End-to-end proof, against the real binary, of the fixes for the findings
// of the December 2026 security review (proxy/security_test.go names each
// finding) that a user can see, plus the RFC rows that came with them. Each test
// asserts what a second user (or the origin) sees. The proxy package's
// security_test.go covers the same findings from the inside.

// secPair starts an origin and a dedupcache in front of it, configured by
// yaml (none if empty).
func secPair(t *testing.T, yaml string) (*origin, *cache) {
	t.Helper()
	o := startOrigin(t)
	var args []string
	if yaml != "" {
		args = []string{"-config", writeFile(t, "dedupcache.yaml", yaml)}
	}
	return o, startCache(t, cacheOptions{upstream: o.url, args: args})
}

// send sends one request with an optional body and "Name", "value" header
// pairs ("Host" sets the request's Host), and reads the whole answer.
func send(method, rawURL, body string, hdr ...string) result {
	start := time.Now()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		return result{err: err}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, length: resp.ContentLength, took: time.Since(start), err: err}
}

// must fails the test when r is an error or its status is not want.
func must(t *testing.T, what string, r result, want int) result {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s: %v", what, r.err)
	}
	if r.status != want {
		t.Fatalf("%s: status %d; want %d (X-Cache %q, Cache-Status %q, body %.200q)",
			what, r.status, want, r.header.Get("X-Cache"), r.header.Get("Cache-Status"), r.body)
	}
	return r
}

// xc is a short description of how the cache answered.
func xc(r result) string {
	return fmt.Sprintf("X-Cache %q, Cache-Status %q", r.header.Get("X-Cache"), r.header.Get("Cache-Status"))
}

// echoEntry mirrors the origin's /echo-log rows.
type echoEntry struct {
	Method  string      `json:"method"`
	Target  string      `json:"target"`
	Header  http.Header `json:"header"`
	BodyLen int         `json:"body_len"`
	Seq     int64       `json:"seq"`
}

// echoLog returns the requests /echo and /graphql received whose raw
// target starts with prefix.
func (o *origin) echoLog(t *testing.T, prefix string) []echoEntry {
	t.Helper()
	var doc struct {
		Requests []echoEntry `json:"requests"`
	}
	getJSON(t, o.url+"/echo-log", &doc)
	var out []echoEntry
	for _, e := range doc.Requests {
		if strings.HasPrefix(e.Target, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// waitEchoLog polls the echo log until cond holds for the requests under
// prefix, for up to 3 s, and returns the last list read.
func (o *origin) waitEchoLog(t *testing.T, prefix string, cond func([]echoEntry) bool) []echoEntry {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		l := o.echoLog(t, prefix)
		if cond(l) || time.Now().After(deadline) {
			return l
		}
		time.Sleep(pollEvery)
	}
}

// scripted returns a handle on the origin's /script/{name}.
func scripted(o *origin, name string) *rfcRun {
	return &rfcRun{name: name, o: o, vars: map[string]string{}}
}

// evilForwarding are the forwarding fields a client makes up.
var evilForwarding = []string{
	"X-Forwarded-Host", "evil.example", "X-Forwarded-For", "10.0.0.1", "Forwarded", "for=10.0.0.1",
}

// checkNoEvilForwarding reports the client's forwarding fields in what the
// origin received.
func checkNoEvilForwarding(t *testing.T, what string, h http.Header) {
	t.Helper()
	if v := h.Get("X-Forwarded-Host"); strings.Contains(v, "evil.example") {
		t.Errorf("%s: the origin saw the client's X-Forwarded-Host %q", what, v)
	}
	for _, k := range []string{"X-Forwarded-For", "Forwarded"} {
		if v := strings.Join(h.Values(k), ", "); strings.Contains(v, "10.0.0.1") {
			t.Errorf("%s: the origin saw the client's %s %q", what, k, v)
		}
	}
}

// F1: a 304 does not bring the revalidating user's Set-Cookie, private or
// the surrogate-key header into the shared entry.
func TestSecurityRevalidation304KeepsUserFieldsOut(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, keepYAML)
	const stale = 1500 * time.Millisecond // past max-age=1

	t.Run("Set-Cookie and Surrogate-Key", func(t *testing.T) {
		x := scripted(o, "f1-cookie")
		x.setScript(t, "", sc("shared page", `ETag: "v1"`, "Cache-Control: max-age=1"))
		must(t, "first GET", send("GET", c.url+x.path(""), ""), 200)
		time.Sleep(stale)
		x.setScript(t, "", sc("", `ETag: "v1"`, "Cache-Control: max-age=30",
			"Set-Cookie: session=alice-renewed; HttpOnly", "Surrogate-Key: internal-tag").honor())
		r := must(t, "alice's revalidating GET", send("GET", c.url+x.path(""), "", "Cookie", "session=alice"), 200)
		if l := x.originLog(t, ""); l.Count != 2 || l.Requests[1].Header.Get("If-None-Match") != `"v1"` {
			t.Fatalf("origin saw %d requests (last If-None-Match %q); want 2, the second a revalidation with \"v1\"",
				l.Count, l.Requests[len(l.Requests)-1].Header.Get("If-None-Match"))
		}
		if string(r.body) != "shared page" {
			t.Errorf("alice: body %q; want the stored \"shared page\"", r.body)
		}
		if sc := r.header.Get("Set-Cookie"); !strings.Contains(sc, "alice-renewed") {
			t.Errorf("alice did not get her own Set-Cookie (got %q; %s)", sc, xc(r))
		}
		if sk := r.header.Get("Surrogate-Key"); sk != "" {
			t.Errorf("alice got Surrogate-Key %q", sk)
		}
		r = must(t, "anonymous GET", send("GET", c.url+x.path(""), ""), 200)
		if r.header.Get("X-Cache") != "HIT" || string(r.body) != "shared page" {
			t.Errorf("anonymous: %s, body %q; want a HIT of \"shared page\" (the 304 refreshes the entry)", xc(r), r.body)
		}
		if sc := r.header.Values("Set-Cookie"); len(sc) > 0 {
			t.Errorf("anonymous client got alice's Set-Cookie %q (%s)", sc, xc(r))
		}
		if sk := r.header.Get("Surrogate-Key"); sk != "" {
			t.Errorf("anonymous client got Surrogate-Key %q (%s)", sk, xc(r))
		}
	})

	t.Run("private 304", func(t *testing.T) {
		x := scripted(o, "f1-private")
		x.setScript(t, "", sc("shared page", `ETag: "v1"`, "Cache-Control: max-age=1"))
		must(t, "first GET", send("GET", c.url+x.path(""), ""), 200)
		time.Sleep(stale)
		x.setScript(t, "", sc("", `ETag: "v1"`, "Cache-Control: private, max-age=30",
			"Set-Cookie: session=alice-renewed; HttpOnly").honor())
		must(t, "alice's revalidating GET", send("GET", c.url+x.path(""), "", "Cookie", "session=alice"), 200)
		// From now on the origin's 304s carry nothing of alice's: any
		// alice data the next client gets comes from the shared entry.
		x.setScript(t, "", sc("", `ETag: "v1"`, "Cache-Control: private, max-age=30").honor())
		r := must(t, "anonymous GET", send("GET", c.url+x.path(""), ""), 200)
		if r.header.Get("X-Cache") == "HIT" {
			t.Errorf("anonymous: a HIT of the response refreshed by a private 304 (%s, Cache-Control %q)", xc(r), r.header.Get("Cache-Control"))
		}
		if sc := strings.Join(r.header.Values("Set-Cookie"), "; "); strings.Contains(sc, "alice") {
			t.Errorf("anonymous client got alice's Set-Cookie %q (%s)", sc, xc(r))
		}
		if l := x.originLog(t, ""); l.Count != 3 {
			t.Errorf("origin saw %d requests; want 3 (the anonymous request is not served from the entry)", l.Count)
		}
	})
}

// F2: a HEAD fill and a stale-while-revalidate refresh send the origin the
// request the normal path sends: no client forwarding fields, the escaped
// path kept.
func TestSecurityBackgroundFetchesRewritten(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, keepYAML)

	t.Run("HEAD fill with forwarding fields", func(t *testing.T) {
		const path = "/echo/f2-head"
		r := must(t, "HEAD", send("HEAD", c.url+path, "", evilForwarding...), 200)
		_ = r
		l := o.waitEchoLog(t, path, func(l []echoEntry) bool { return len(l) >= 1 })
		if len(l) != 1 {
			t.Fatalf("origin saw %d requests for %s after the HEAD; want 1 (the fill)", len(l), path)
		}
		c.waitStats(t, func(s stats) bool { return s.ResponsesStored >= 1 })
		r = must(t, "GET after the HEAD", send("GET", c.url+path, ""), 200)
		if r.header.Get("X-Cache") != "HIT" {
			t.Errorf("GET after the HEAD fill: %s; want HIT", xc(r))
		}
		for _, bad := range []string{"evil.example", "10.0.0.1"} {
			if bytes.Contains(r.body, []byte(bad)) {
				t.Errorf("GET after the HEAD: body shows the HEAD client's %s:\n%s", bad, r.body)
			}
		}
		l = o.echoLog(t, path)
		if len(l) != 1 || l[0].Method != "GET" {
			t.Fatalf("origin saw %+v; want one GET", l)
		}
		checkNoEvilForwarding(t, "HEAD fill", l[0].Header)
	})

	t.Run("stale-while-revalidate refresh of an encoded slash", func(t *testing.T) {
		const path = "/echo/a%2Fb"
		target := path + "?cc=" + url.QueryEscape("max-age=1, stale-while-revalidate=30")
		r := must(t, "first GET", send("GET", c.url+target, ""), 200)
		if !bytes.Contains(r.body, []byte("target="+target+" ")) {
			t.Fatalf("first GET (normal path): body %q; want target=%s", r.body, target)
		}
		time.Sleep(1500 * time.Millisecond)
		stored := c.stats(t).ResponsesStored
		r = must(t, "GET in the stale window", send("GET", c.url+target, "", evilForwarding...), 200)
		if r.header.Get("X-Cache") != "STALE" {
			t.Fatalf("GET in the stale window: %s; want STALE", xc(r))
		}
		all := func(l []echoEntry) bool { return len(l) >= 2 }
		o.waitEchoLog(t, "/echo/a", all)
		l := o.echoLog(t, "/echo/a")
		if len(l) != 2 {
			t.Fatalf("origin saw %d requests under /echo/a; want 2 (the miss and one refresh): %+v", len(l), l)
		}
		if l[1].Target != target {
			t.Errorf("refresh fetched %q; want %q (the escaped path)", l[1].Target, target)
		}
		checkNoEvilForwarding(t, "stale-while-revalidate refresh", l[1].Header)
		c.waitStats(t, func(s stats) bool { return s.ResponsesStored > stored }) // the refresh
		r = must(t, "GET after the refresh", send("GET", c.url+target, ""), 200)
		want := fmt.Sprintf("target=%s method=GET", target)
		seq := fmt.Sprintf(" seq=%d\n", l[1].Seq)
		if !bytes.Contains(r.body, []byte(want)) || !bytes.Contains(r.body, []byte(seq)) {
			t.Errorf("entry under %s after the refresh: %s, body %q; want the refresh's answer (%q, %q)", path, xc(r), r.body, want, seq)
		}
		for _, bad := range []string{"evil.example", "10.0.0.1"} {
			if bytes.Contains(r.body, []byte(bad)) {
				t.Errorf("entry after the refresh shows the stale client's %s:\n%s", bad, r.body)
			}
		}
	})
}

// F3: the POST key resists the review's xxhash64 collision and includes
// Content-Type.
func TestSecurityPOSTKeyCollision(t *testing.T) {
	t.Parallel()
	victim := `{"query":"query PublicCatalog { products(first: 20, category: \"shoes\") { id name price currency stock imageUrl description } }","variables":{"locale":"en-GB","currency":"EUR"}}`
	forged := `{"query":"{ promo: __typename }","x":"                           !B6     #6D     !82     #2;    .sI(S%pGn}(na&@noXI<{A[ea5t:Ho#v","variables":{"locale":"en-GB","currency":"EUR"}}`
	if xxhash.Sum64String(victim) != xxhash.Sum64String(forged) {
		t.Skipf("the review's bodies do not collide under xxhash64 (%016x, %016x)", xxhash.Sum64String(victim), xxhash.Sum64String(forged))
	}
	o, c := secPair(t, "cache:\n  post_paths: [\"/graphql\"]\n")
	const ct = "application/json"
	first := must(t, "victim POST", send("POST", c.url+"/graphql", victim, "Content-Type", ct), 200)
	if !bytes.Contains(first.body, []byte(fmt.Sprintf("len=%d ", len(victim)))) {
		t.Fatalf("victim POST: body %q; want the origin's answer to it", first.body)
	}
	if r := must(t, "victim POST again", send("POST", c.url+"/graphql", victim, "Content-Type", ct), 200); r.header.Get("X-Cache") != "HIT" {
		t.Fatalf("victim POST again: %s; want HIT (post_paths caches it)", xc(r))
	}
	forgedAnswer := must(t, "forged POST", send("POST", c.url+"/graphql", forged, "Content-Type", ct, "Cache-Control", "no-cache"), 200)
	if bytes.Equal(forgedAnswer.body, first.body) {
		t.Errorf("forged POST got the victim's answer: %s", xc(forgedAnswer))
	}
	r := must(t, "victim POST after the forged one", send("POST", c.url+"/graphql", victim, "Content-Type", ct), 200)
	if !bytes.Equal(r.body, first.body) {
		t.Errorf("victim after the forged POST: %s, body %q; want the victim's own answer %q", xc(r), r.body, first.body)
	}
	if r.header.Get("X-Cache") != "HIT" {
		t.Errorf("victim after the forged POST: %s; want HIT", xc(r))
	}
	r = must(t, "victim body as text/plain", send("POST", c.url+"/graphql", victim, "Content-Type", "text/plain"), 200)
	if r.header.Get("X-Cache") == "HIT" || bytes.Equal(r.body, first.body) {
		t.Errorf("same body as text/plain: %s, body %q; want its own entry (the answer names text/plain)", xc(r), r.body)
	}
	if n := len(o.echoLog(t, "/graphql")); n != 3 {
		t.Errorf("origin saw %d POSTs; want 3 (victim, forged, text/plain)", n)
	}
}

// F4: a leader that never reads (tiny receive window) does not hold the
// fill, nor a second client for the same URL and Host.
func TestSecuritySlowLeaderDoesNotHoldWaiters(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, "cache:\n  max_memory: \"256MiB\"\n  max_object_size: \"32MiB\"\n")
	const size = 16 << 20
	path := fmt.Sprintf("/obj/0?distinct=1&size=%d", size)
	addr := strings.TrimPrefix(c.url, "http://")

	d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	slow, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() }) // before the cache's graceful stop
	if _, err := fmt.Fprintf(slow, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		t.Fatal(err)
	}
	// The slow client's request reaches the origin first; it then never reads.
	deadline := time.Now().Add(3 * time.Second)
	for o.stats(t).Path["/obj/0"] < 1 && time.Now().Before(deadline) {
		time.Sleep(pollEvery)
	}
	time.Sleep(200 * time.Millisecond)

	cl := &http.Client{Timeout: 6 * time.Second}
	req, _ := http.NewRequest("GET", c.url+path, nil)
	req.Host = addr
	start := time.Now()
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("second client behind a leader that does not read: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil || n != size {
		t.Fatalf("second client got %d bytes in %v (%v); want %d", n, took.Round(time.Millisecond), err, size)
	}
	if took > 5*time.Second {
		t.Errorf("second client took %v; want a few seconds at most", took)
	}
	if got := o.stats(t).Path["/obj/0"]; got != 1 {
		t.Errorf("origin requests: %d; want 1 (the second client shares the one fetch)", got)
	}
}

// F6: a GET with a body bypasses the cache, and its answer never reaches a
// plain GET.
func TestSecurityGETWithBodyBypasses(t *testing.T) {
	t.Parallel()
	_, c := secPair(t, "")
	const fat = "q=evil"
	fatLen := []byte(fmt.Sprintf("len=%d ", len(fat)))

	r := must(t, "cold GET with a body", send("GET", c.url+"/echo/fat", fat, "Content-Type", "application/x-www-form-urlencoded"), 200)
	if r.header.Get("X-Cache") != "BYPASS" {
		t.Errorf("cold GET with a body: %s; want BYPASS", xc(r))
	}
	if !bytes.Contains(r.body, fatLen) {
		t.Fatalf("cold GET with a body: the origin did not see the body (%q)", r.body)
	}
	r = must(t, "plain GET", send("GET", c.url+"/echo/fat", ""), 200)
	if bytes.Contains(r.body, fatLen) {
		t.Errorf("plain GET got the answer to another's body: %s, %q", xc(r), r.body)
	}
	r = must(t, "GET with a body and no-cache", send("GET", c.url+"/echo/fat", fat, "Content-Type", "application/x-www-form-urlencoded", "Cache-Control", "no-cache"), 200)
	if r.header.Get("X-Cache") != "BYPASS" {
		t.Errorf("GET with a body and no-cache: %s; want BYPASS", xc(r))
	}
	r = must(t, "plain GET again", send("GET", c.url+"/echo/fat", ""), 200)
	if bytes.Contains(r.body, fatLen) || r.header.Get("X-Cache") != "HIT" {
		t.Errorf("plain GET after a no-cache GET with a body: %s, %q; want a HIT of the body-less answer", xc(r), r.body)
	}
}

// F7: request fields that change an origin's answer but are not in the key
// never reach the origin.
func TestSecurityUnkeyedHeadersStripped(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, "")
	const path = "/echo/f7"
	unkeyed := []string{"X-Forwarded-Port", "1337", "X-Forwarded-Prefix", "/evil", "X-Original-URL", "/admin", "X-HTTP-Method-Override", "DELETE"}
	must(t, "GET with unkeyed fields", send("GET", c.url+path, "", unkeyed...), 200)
	r := must(t, "plain GET", send("GET", c.url+path, ""), 200)
	if r.header.Get("X-Cache") != "HIT" {
		t.Errorf("plain GET: %s; want HIT", xc(r))
	}
	l := o.echoLog(t, path)
	if len(l) != 1 {
		t.Fatalf("origin saw %d requests; want 1", len(l))
	}
	for i := 0; i < len(unkeyed); i += 2 {
		if v := l[0].Header.Get(unkeyed[i]); v != "" {
			t.Errorf("the origin saw the client's %s: %q", unkeyed[i], v)
		}
		if bytes.Contains(r.body, []byte(unkeyed[i+1])) {
			t.Errorf("the stored answer shows the client's %s %q:\n%s", unkeyed[i], unkeyed[i+1], r.body)
		}
	}
}

// F8: a leader that hangs up mid-body of a slow large response: its
// waiters get the whole body from the one fetch, and the entry is stored.
func TestSecurityLeaderHangsUpWaitersServed(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, "")
	const size = 2 << 20
	path := fmt.Sprintf("/slowbody/herd?size=%d&chunks=20&ms=60", size) // ~1.2 s

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.url+path, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("leader: %v", err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatalf("leader: reading the first 64 KiB: %v", err)
	}

	const waiters = 10
	bodies := make([][]byte, waiters)
	errs := make([]error, waiters)
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Go(func() {
			r := send("GET", c.url+path, "")
			bodies[i], errs[i] = r.body, r.err
			if r.err == nil && r.status != 200 {
				errs[i] = fmt.Errorf("status %d", r.status)
			}
		})
	}
	time.Sleep(250 * time.Millisecond) // the waiters have joined the flight
	cancel()                           // the leader hangs up mid-body
	resp.Body.Close()
	wg.Wait()

	for i := range waiters {
		switch {
		case errs[i] != nil:
			t.Errorf("waiter %d: %v", i, errs[i])
		case len(bodies[i]) != size:
			t.Errorf("waiter %d: %d bytes; want %d", i, len(bodies[i]), size)
		case !bytes.Equal(bodies[i], bodies[0]):
			t.Errorf("waiter %d: a body different from waiter 0's", i)
		}
	}
	if got := o.stats(t).Path["/slowbody/herd"]; got != 1 {
		t.Errorf("origin requests: %d; want 1 (the waiters share the leader's fetch)", got)
	}
	c.waitStats(t, func(s stats) bool { return s.ResponsesStored >= 1 })
	r := must(t, "GET after the fill", send("GET", c.url+path, ""), 200)
	if r.header.Get("X-Cache") != "HIT" || len(r.body) != size {
		t.Errorf("GET after the fill: %s, %d bytes; want a HIT of %d", xc(r), len(r.body), size)
	}
}

// F10: the admin listener checks Host (DNS rebinding) and refuses
// cross-site purges (CSRF).
func TestSecurityAdminHostAndCrossSite(t *testing.T) {
	t.Parallel()
	_, c := secPair(t, "")
	must(t, "warm-up", send("GET", c.url+"/obj/1?size=100", ""), 200)
	c.waitStats(t, func(s stats) bool { return s.Entries == 1 })

	r := send("GET", c.adminURL+"/api/stats", "", "Host", "attacker.example")
	if r.err != nil || r.status != http.StatusMisdirectedRequest {
		t.Errorf("GET /api/stats with Host attacker.example: %d %v, body %.100q; want 421", r.status, r.err, r.body)
	}
	for _, h := range [][]string{{"Origin", "http://evil.example"}, {"Sec-Fetch-Site", "cross-site"}} {
		r := send("POST", c.adminURL+"/api/purge?all=1", "", h...)
		if r.err != nil || r.status != http.StatusForbidden {
			t.Errorf("POST /api/purge?all=1 with %s: %s: %d %v, body %.100q; want 403", h[0], h[1], r.status, r.err, r.body)
		}
	}
	if s := c.stats(t); s.Entries != 1 {
		t.Errorf("entries after the refused purges: %d; want 1 (nothing purged)", s.Entries)
	}
	if r := must(t, "GET after the refused purges", send("GET", c.url+"/obj/1?size=100", ""), 200); r.header.Get("X-Cache") != "HIT" {
		t.Errorf("GET after the refused purges: %s; want HIT", xc(r))
	}
}

// F11: concurrent Upgrade requests are tunnelled each on its own, not
// coalesced behind the first tunnel.
func TestSecurityUpgradesNotCoalesced(t *testing.T) {
	t.Parallel()
	_, c := secPair(t, "")
	addr := strings.TrimPrefix(c.url, "http://")
	const path = "/ws/f11?delay_ms=300&hold_ms=4000" // both requests reach the origin before its first 101

	type tunnel struct {
		conn   net.Conn
		status int
		echo   string
		took   time.Duration
		err    error
	}
	open := func() (tn tunnel) {
		start := time.Now()
		defer func() { tn.took = time.Since(start) }()
		tn.conn, tn.err = net.DialTimeout("tcp", addr, time.Second)
		if tn.err != nil {
			return tn
		}
		tn.conn.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(tn.conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", path, addr)
		br := bufio.NewReader(tn.conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			tn.err = err
			return tn
		}
		tn.status = resp.StatusCode
		if tn.status != http.StatusSwitchingProtocols {
			return tn
		}
		if _, tn.err = io.WriteString(tn.conn, "ping"); tn.err != nil {
			return tn
		}
		b := make([]byte, 4)
		_, tn.err = io.ReadFull(br, b)
		tn.echo = string(b)
		return tn
	}
	tunnels := make([]tunnel, 2)
	var wg sync.WaitGroup
	for i := range tunnels {
		wg.Go(func() { tunnels[i] = open() })
	}
	wg.Wait()
	for i, tn := range tunnels {
		if tn.conn != nil {
			tn.conn.Close()
		}
		if tn.err != nil || tn.status != http.StatusSwitchingProtocols || tn.echo != "ping" {
			t.Errorf("upgrade %d of 2 at once: status %d, echo %q, %v after %v; want 101 and the echo within 2 s",
				i+1, tn.status, tn.echo, tn.err, tn.took.Round(time.Millisecond))
		}
	}
}

// F12: a Host longer than a DNS name can be is refused.
func TestSecurityLongHostRefused(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, "")
	r := send("GET", c.url+"/obj/2?size=10", "", "Host", strings.Repeat("a", 300))
	if r.err != nil || r.status != http.StatusBadRequest {
		t.Errorf("GET with a 300-byte Host: %d %v; want 400", r.status, r.err)
	}
	if got := o.stats(t).Path["/obj/2"]; got != 0 {
		t.Errorf("origin saw %d requests; want 0", got)
	}
}

// F13: a Range request on a cold URL fills the cache with the whole
// response and serves the range from it.
func TestSecurityColdRangeFillsCache(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, "")
	x := scripted(o, "f13-range")
	x.setScript(t, "", sc("0123456789", "Cache-Control: max-age=60", `ETag: "v1"`))
	r := must(t, "cold GET with Range: bytes=0-0", send("GET", c.url+x.path(""), "", "Range", "bytes=0-0"), http.StatusPartialContent)
	if string(r.body) != "0" || r.header.Get("Content-Range") != "bytes 0-0/10" {
		t.Errorf("cold Range: body %q, Content-Range %q; want \"0\", bytes 0-0/10", r.body, r.header.Get("Content-Range"))
	}
	r = must(t, "plain GET", send("GET", c.url+x.path(""), ""), 200)
	if r.header.Get("X-Cache") != "HIT" || string(r.body) != "0123456789" {
		t.Errorf("plain GET after a cold Range: %s, body %q; want a HIT of the whole body", xc(r), r.body)
	}
	l := x.originLog(t, "")
	if l.Count != 1 {
		t.Fatalf("origin saw %d requests; want 1", l.Count)
	}
	if v := l.Requests[0].Header.Get("Range"); v != "" || l.Requests[0].Method != "GET" {
		t.Errorf("origin saw %s with Range %q; want a GET without Range", l.Requests[0].Method, v)
	}
}

// F14: a HEAD with a matching If-None-Match on a cold URL is answered 304
// from one GET fill, without a panic or a second origin request.
func TestSecurityColdConditionalHEAD(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, "")
	x := scripted(o, "f14-head")
	x.setScript(t, "", sc("cond", "Cache-Control: max-age=60", `ETag: "v1"`).honor())
	r := send("HEAD", c.url+x.path(""), "", "If-None-Match", `"v1"`)
	must(t, "cold HEAD with If-None-Match", r, http.StatusNotModified)
	l := x.originLog(t, "")
	deadline := time.Now().Add(time.Second) // a second request would come at once
	for time.Now().Before(deadline) && l.Count < 2 {
		time.Sleep(pollEvery)
		l = x.originLog(t, "")
	}
	var methods []string
	for _, q := range l.Requests {
		methods = append(methods, q.Method)
		if v := q.Header.Get("If-None-Match"); v != "" {
			t.Errorf("the fill forwarded the client's If-None-Match %q", v)
		}
	}
	if len(methods) != 1 || methods[0] != "GET" {
		t.Errorf("origin saw %v; want exactly one GET", methods)
	}
	if r := must(t, "GET after the HEAD", send("GET", c.url+x.path(""), ""), 200); r.header.Get("X-Cache") != "HIT" || string(r.body) != "cond" {
		t.Errorf("GET after the HEAD: %s, body %q; want a HIT of \"cond\"", xc(r), r.body)
	}
	for line := range strings.SplitSeq(c.stderr.String(), "\n") {
		if strings.Contains(line, "panic") {
			t.Errorf("dedupcache logged: %s", line)
		}
	}
}

// RFC 9111 §4.4: a non-error response to an unsafe request, extension
// methods included, invalidates the target URI.
func TestRFCExtensionMethodInvalidates(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, "")
	for _, method := range []string{"M-SEARCH", "PURGE"} {
		t.Run(method, func(t *testing.T) {
			x := scripted(o, "rfc44-"+strings.ToLower(method))
			x.setScript(t, "", sc("page", "Cache-Control: max-age=60").on(method, 200, "done"))
			must(t, "first GET", send("GET", c.url+x.path(""), ""), 200)
			if r := must(t, "second GET", send("GET", c.url+x.path(""), ""), 200); r.header.Get("X-Cache") != "HIT" {
				t.Fatalf("second GET: %s; want HIT", xc(r))
			}
			r := must(t, method, send(method, c.url+x.path(""), ""), 200)
			if string(r.body) != "done" {
				t.Errorf("%s: body %q; want the origin's \"done\"", method, r.body)
			}
			r = must(t, "GET after "+method, send("GET", c.url+x.path(""), ""), 200)
			if r.header.Get("X-Cache") != "MISS" {
				t.Errorf("GET after %s: %s; want MISS (the stored response was invalidated)", method, xc(r))
			}
			l := x.originLog(t, "")
			var methods []string
			for _, q := range l.Requests {
				methods = append(methods, q.Method)
			}
			if want := []string{"GET", method, "GET"}; fmt.Sprint(methods) != fmt.Sprint(want) {
				t.Errorf("origin saw %v; want %v", methods, want)
			}
		})
	}
}

// RFC 9110 §5.6.7, RFC 9111 §5.3: an Expires that is not a valid
// IMF-fixdate (two spaces) means already expired, and, being present,
// rules out heuristic freshness.
func TestRFCInvalidExpiresIsExpired(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, "")
	const expires = "Thu,  01 Dec 2094 16:00:00 GMT"
	lm := time.Now().Add(-240 * time.Hour).UTC().Format(http.TimeFormat)
	x := scripted(o, "rfc-expires")
	x.setScript(t, "", sc("exp", "Expires: "+expires, "Last-Modified: "+lm))
	direct := must(t, "direct GET", send("GET", o.url+x.path(""), ""), 200)
	if got := direct.header.Get("Expires"); got != expires {
		t.Skipf("the origin sends Expires %q, not %q; nothing to show", got, expires)
	}
	must(t, "first GET", send("GET", c.url+x.path(""), ""), 200)
	r := must(t, "second GET", send("GET", c.url+x.path(""), ""), 200)
	if r.header.Get("X-Cache") == "HIT" {
		t.Errorf("second GET: %s; want no fresh HIT (an invalid Expires is already expired)", xc(r))
	}
	if l := x.originLog(t, ""); l.Count != 3 { // the direct GET, then both through the cache
		t.Errorf("origin saw %d requests; want 3", l.Count)
	}
}

// RFC 9111 §3: a response with a status code the cache does not know may
// be stored when it has explicit freshness, and not otherwise.
func TestRFCUnknownStatus299(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, "")
	lm := time.Now().Add(-240 * time.Hour).UTC().Format(http.TimeFormat)
	tests := []struct {
		name  string
		lines []string
		hit   bool
	}{
		{"max-age", []string{"Cache-Control: max-age=60"}, true},
		{"no explicit freshness", []string{"Last-Modified: " + lm}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := scripted(o, "rfc-299-"+strings.ReplaceAll(tt.name, " ", "-"))
			x.setScript(t, "", sc("s299", tt.lines...).status(299))
			must(t, "first GET", send("GET", c.url+x.path(""), ""), 299)
			r := must(t, "second GET", send("GET", c.url+x.path(""), ""), 299)
			if hit := r.header.Get("X-Cache") == "HIT"; hit != tt.hit {
				t.Errorf("second GET: %s; want HIT=%v", xc(r), tt.hit)
			}
			want := 1
			if !tt.hit {
				want = 2
			}
			if l := x.originLog(t, ""); l.Count != want {
				t.Errorf("origin saw %d requests; want %d", l.Count, want)
			}
		})
	}
}

// Issue 16 item 3: with server.allowed_hosts set, a request for a host not
// listed, by its Host field, by an absolute-form target naming another
// host (with a listed Host field), or over TLS and HTTP/2, gets 421 on
// both proxy engines; it never reaches the origin and stores nothing.
// Listed hosts (wildcards, any port) are cached as before.
func TestSecurityHostAllowList(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"fasthttp", "net/http"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			cert := newTestCert(t, "allow-list")
			certFile, keyFile := cert.write(t, t.TempDir())
			o, c := secPair(t, "server:\n  engine: "+engine+"\n  allowed_hosts: [allowed.example, \"*.apps.example\"]\n"+
				"listen_tls: \"127.0.0.1:0\"\ntls_cert: "+certFile+"\ntls_key: "+keyFile+"\n")
			tlsBase := tlsURL(t, c)
			h2 := tlsClient(false, cert.cert)

			refused := func(what string, status int, hdr http.Header, body []byte) {
				t.Helper()
				if status != http.StatusMisdirectedRequest || !bytes.Contains(body, []byte("misdirected request")) {
					t.Errorf("%s: %d, body %.100q; want 421 with a short text", what, status, body)
				}
				if hdr.Get("X-Cache") != "" || hdr.Get("Cache-Control") != "no-store" {
					t.Errorf("%s: X-Cache %q, Cache-Control %q; want none and no-store", what, hdr.Get("X-Cache"), hdr.Get("Cache-Control"))
				}
			}
			r := send("GET", c.url+"/echo/hosts-evil", "", "Host", "evil.example")
			refused("Host evil.example", r.status, r.header, r.body)
			r = send("GET", c.url+"/echo/hosts-suffix", "", "Host", "allowed.example.evil.example")
			refused("Host allowed.example.evil.example", r.status, r.header, r.body)

			rc := dialRaw(t, strings.TrimPrefix(c.url, "http://"))
			rc.write(t, "GET http://evil.example/echo/hosts-absolute HTTP/1.1\r\nHost: allowed.example\r\n\r\n")
			if ar, err := rc.read("GET"); err != nil {
				t.Errorf("absolute-form: %v", err)
			} else {
				refused("absolute-form http://evil.example/ with Host allowed.example", ar.status, ar.header, ar.body)
			}

			req, _ := http.NewRequest("GET", tlsBase+"/echo/hosts-tls-evil", nil)
			req.Host = "evil.example"
			if resp, err := h2.Do(req); err != nil {
				t.Errorf("TLS: %v", err)
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != 2 {
					t.Errorf("TLS: %s; want HTTP/2", resp.Proto)
				}
				refused("TLS, HTTP/2, :authority evil.example", resp.StatusCode, resp.Header, b)
			}

			// Listed hosts (any case, any port: the port stays in the
			// key) are cached as before, on both listeners.
			for i, host := range []string{"allowed.example", "allowed.example", "Allowed.Example:8080"} {
				r := must(t, "GET Host "+host, send("GET", c.url+"/echo/hosts-ok", "", "Host", host), 200)
				if want := []string{"MISS", "HIT", "MISS"}[i]; r.header.Get("X-Cache") != want {
					t.Errorf("GET Host %s: %s; want %s", host, xc(r), want)
				}
				c.waitStats(t, func(s stats) bool { return s.ResponsesStored >= 1 })
			}
			req, _ = http.NewRequest("GET", tlsBase+"/echo/hosts-tls-ok", nil)
			req.Host = "x.apps.example"
			if resp, err := h2.Do(req); err != nil || resp.StatusCode != 200 {
				t.Errorf("TLS with a listed wildcard host: %v %v; want 200", resp, err)
			} else {
				resp.Body.Close()
			}

			for _, p := range []string{"/echo/hosts-evil", "/echo/hosts-suffix", "/echo/hosts-absolute", "/echo/hosts-tls-evil"} {
				if l := o.echoLog(t, p); len(l) != 0 {
					t.Errorf("the origin saw %d requests for %s; want 0 (refused before any forward)", len(l), p)
				}
			}
			var doc struct {
				Entries     int64 `json:"entries"`
				Misdirected int64 `json:"misdirected"`
			}
			deadline := time.Now().Add(3 * time.Second)
			for getJSON(t, c.adminURL+"/api/stats", &doc); doc.Entries < 3 && time.Now().Before(deadline); getJSON(t, c.adminURL+"/api/stats", &doc) {
				time.Sleep(pollEvery)
			}
			if doc.Entries != 3 || doc.Misdirected != 4 {
				t.Errorf("stats: entries %d, misdirected %d; want 3 (the listed hosts' answers only) and 4", doc.Entries, doc.Misdirected)
			}
		})
	}
}

// Issue 16 item 3: the request fields that commonly change an origin's
// answer without being keyed, in both cache.unkeyed_action modes and on
// both engines. A first user sends them (and '_' spellings CGI origins
// read the same); a second user asks for the same URL plainly and must
// neither see nor be steered by them. strip: the origin never gets them
// and the one stored answer is the plain one. bypass: the origin gets them,
// the first user is answered BYPASS and nothing is stored, the second
// user's plain answer is the one cached, and the first user's next request
// bypasses it again. X-Forwarded-Host is never a client's: the proxy's own
// value (the keyed Host) replaces it.
func TestSecurityUnkeyedHeaderModes(t *testing.T) {
	t.Parallel()
	poison := []string{
		"X-Forwarded-Host", "evil.example", "X-Forwarded-Scheme", "nothttp", "X-Original-URL", "/admin",
		"X-Rewrite-URL", "/admin2", "X-HTTP-Method-Override", "DELETE", "X_Forwarded_Prefix", "/evilprefix",
		"X-Method-Override", "PATCH", "X-Forwarded-Uri", "/evil-uri", "X-Original-Host", "evil-host.example",
	}
	seen := func(h http.Header) []string {
		var out []string
		for i := 0; i < len(poison); i += 2 {
			if strings.Contains(strings.Join(h.Values(poison[i]), ","), poison[i+1]) {
				out = append(out, poison[i])
			}
		}
		return out
	}
	shows := func(body []byte) []string {
		var out []string
		for i := 1; i < len(poison); i += 2 {
			if bytes.Contains(body, []byte(poison[i])) {
				out = append(out, poison[i])
			}
		}
		return out
	}
	for _, engine := range []string{"fasthttp", "net/http"} {
		for _, mode := range []string{"strip", "bypass"} {
			t.Run(engine+"/"+mode, func(t *testing.T) {
				t.Parallel()
				o, c := secPair(t, "server:\n  engine: "+engine+"\ncache:\n  unkeyed_action: "+mode+"\n")
				const path = "/echo/unkeyed"
				a := must(t, "first user, with the fields", send("GET", c.url+path, "", poison...), 200)
				if mode == "strip" {
					if a.header.Get("X-Cache") != "MISS" || len(shows(a.body)) != 0 {
						t.Errorf("first user: %s, body shows %v; want a MISS built without them", xc(a), shows(a.body))
					}
				} else if a.header.Get("X-Cache") != "BYPASS" || !strings.Contains(a.header.Get("Cache-Status"), "detail=unkeyed-header") {
					t.Errorf("first user: %s; want BYPASS, detail=unkeyed-header", xc(a))
				}
				c.waitStats(t, func(s stats) bool { return mode == "bypass" || s.ResponsesStored == 1 })
				b := must(t, "second user, plain", send("GET", c.url+path, ""), 200)
				if got := shows(b.body); len(got) != 0 {
					t.Errorf("second user: the answer shows the first user's %v:\n%s", got, b.body)
				}
				wantB := map[string]string{"strip": "HIT", "bypass": "MISS"}[mode]
				if b.header.Get("X-Cache") != wantB {
					t.Errorf("second user: %s; want %s", xc(b), wantB)
				}
				l := o.echoLog(t, path)
				wantReqs := map[string]int{"strip": 1, "bypass": 2}[mode]
				if len(l) != wantReqs {
					t.Fatalf("origin saw %d requests; want %d", len(l), wantReqs)
				}
				if got := seen(l[0].Header); mode == "strip" && len(got) != 0 {
					t.Errorf("strip: the origin saw the client's %v", got)
				} else if mode == "bypass" && len(got) != len(poison)/2-1 { // all but X-Forwarded-Host
					t.Errorf("bypass: the origin saw %v; want every field but X-Forwarded-Host", got)
				}
				if xfh := l[0].Header.Get("X-Forwarded-Host"); xfh != strings.TrimPrefix(c.url, "http://") {
					t.Errorf("the origin saw X-Forwarded-Host %q; want the proxy's own (the request's Host)", xfh)
				}
				if got := seen(l[len(l)-1].Header); len(got) != 0 {
					t.Errorf("the second user's request carried %v upstream", got)
				}
				c.waitStats(t, func(s stats) bool { return s.ResponsesStored == 1 })
				a2 := must(t, "first user again", send("GET", c.url+path, "", poison...), 200)
				wantA2 := map[string]string{"strip": "HIT", "bypass": "BYPASS"}[mode]
				if a2.header.Get("X-Cache") != wantA2 {
					t.Errorf("first user again: %s; want %s", xc(a2), wantA2)
				}
				b2 := must(t, "second user again", send("GET", c.url+path, ""), 200)
				if b2.header.Get("X-Cache") != "HIT" || !bytes.Equal(b2.body, b.body) {
					t.Errorf("second user again: %s, body %q; want a HIT of %q", xc(b2), b2.body, b.body)
				}
				if s := c.stats(t); s.Entries != 1 || s.ResponsesStored != 1 {
					t.Errorf("entries %d, stored %d; want 1 and 1", s.Entries, s.ResponsesStored)
				}
			})
		}
	}
}

// Issue 16 item 3: server.allowed_hosts applies on SIGHUP. A host cached
// before the list named it is refused (421, not a HIT of what it stored)
// once the reloaded list leaves it out; cache.unkeyed_action is reported
// as needing a restart.
func TestSecurityHostAllowListReload(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	cfg := writeFile(t, "reload.yaml", "server:\n  allowed_hosts: []\n")
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", cfg}})
	const path = "/obj/5?size=50"
	must(t, "old host, before the list", send("GET", c.url+path, "", "Host", "old.example"), 200)
	c.waitStats(t, func(s stats) bool { return s.Entries == 1 })
	if r := must(t, "old host again", send("GET", c.url+path, "", "Host", "old.example"), 200); r.header.Get("X-Cache") != "HIT" {
		t.Fatalf("old host again: %s; want HIT", xc(r))
	}
	if err := os.WriteFile(cfg, []byte("server:\n  allowed_hosts: [new.example]\ncache:\n  unkeyed_action: bypass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(c.stderr.String(), "msg=reloaded"); time.Sleep(pollEvery) {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", c.stderr.String())
		}
	}
	if r := send("GET", c.url+path, "", "Host", "old.example"); r.status != http.StatusMisdirectedRequest {
		t.Errorf("old host after the reload: %d, %s; want 421 (its stored entry must not be served)", r.status, xc(r))
	}
	if r := must(t, "new host", send("GET", c.url+path, "", "Host", "new.example"), 200); r.header.Get("X-Cache") != "MISS" {
		t.Errorf("new host: %s; want MISS", xc(r))
	}
	logs := c.stderr.String()
	if strings.Contains(logs, "field=server.allowed_hosts") || !strings.Contains(logs, "field=cache.unkeyed_action") {
		t.Errorf("restart warnings: want cache.unkeyed_action and not server.allowed_hosts:\n%s", logs)
	}
	if got := o.stats(t).Path["/obj/5"]; got != 2 {
		t.Errorf("origin requests for /obj/5: %d; want 2 (old host once, new host once)", got)
	}
}

// Issue 16 item 6: the binary logs who purged what: the peer, whether a
// token was presented (never the token), and the URLs, prefixes and tags
// named; a purge refused for its token is logged too.
func TestSecurityPurgeLogged(t *testing.T) {
	t.Parallel()
	const token = "purge-log-token-0123456789"
	_, c := secPair(t, "admin:\n  token: "+token+"\n")
	if r := send("POST", c.adminURL+"/api/purge?url=/obj/1&prefix=/echo/&tag=t1", "", "Authorization", "Bearer wrong"); r.status != 401 {
		t.Fatalf("purge with a wrong token: %d %v; want 401", r.status, r.err)
	}
	if r := send("POST", c.adminURL+"/api/purge?url=/obj/1&prefix=/echo/&tag=t1", "", "Authorization", "Bearer "+token); r.status != 200 {
		t.Fatalf("purge: %d %v; want 200", r.status, r.err)
	}
	want := []string{
		`msg="purge refused: no valid token" remote=127.0.0.1:`,
		`msg=purge remote=127.0.0.1:`,
		`token_presented=true urls=[/obj/1] url_count=1 prefixes=[/echo/] prefix_count=1 tags=[t1] tag_count=1`,
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		logs := c.stderr.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(logs, w) {
				missing = w
			}
		}
		if strings.Contains(logs, token) {
			t.Fatalf("the token is in the log:\n%s", logs)
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", missing, logs)
		}
		time.Sleep(pollEvery)
	}
}
