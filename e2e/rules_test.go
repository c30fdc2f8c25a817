package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests of issue 13 (operator rules and defaults) against the
// real binary: cache.default_ttl, rules (ttl, force_ttl, bypass, key,
// stale_if_error, status), Cache-Status naming the rule, X-Cache-Key,
// the PURGE method, soft and multi-value purges, reloading rules on
// SIGHUP, and server.trusted_proxies. Every test asserts what a client
// or the origin sees.

// rulesToken is the admin.token of the tests that purge.
const rulesToken = "e2e-rules-token-0123456789"

// rulesStep is one GET through the cache and what it must answer.
type rulesStep struct {
	path   string   // request target on the proxy
	hdr    []string // request "Name", "value" pairs
	xCache string   // exact X-Cache ("" = not checked)
	notHit bool     // X-Cache must not be HIT
	cs     []string // Cache-Status members (see csHas)
	csNot  []string // members Cache-Status must not have
}

// run sends the step's GET, which must answer 200, and checks X-Cache and
// Cache-Status.
func (st rulesStep) run(t *testing.T, c *cache) result {
	t.Helper()
	what := "GET " + st.path
	r := must(t, what, send("GET", c.url+st.path, "", st.hdr...), http.StatusOK)
	if st.xCache != "" && r.header.Get("X-Cache") != st.xCache {
		t.Errorf("%s: %s; want X-Cache %s", what, xc(r), st.xCache)
	}
	if st.notHit && r.header.Get("X-Cache") == "HIT" {
		t.Errorf("%s: %s; want anything but a HIT", what, xc(r))
	}
	cs := r.header.Get("Cache-Status")
	for _, want := range st.cs {
		if !csHas(cs, want) {
			t.Errorf("%s: Cache-Status %q lacks %q", what, cs, want)
		}
	}
	for _, bad := range st.csNot {
		if csHas(cs, bad) {
			t.Errorf("%s: Cache-Status %q has %q", what, cs, bad)
		}
	}
	return r
}

// rulesSeen checks how many requests the origin's /script/{name} received.
func rulesSeen(t *testing.T, o *origin, name string, want int) {
	t.Helper()
	if l := scripted(o, name).originLog(t, ""); l.Count != want {
		t.Errorf("origin saw %d requests for /script/%s; want %d", l.Count, name, want)
	}
}

// rulesPurge sends an admin purge (POST /api/purge?query, with body as
// JSON when not empty) with the token and returns the decoded answer.
func rulesPurge(t *testing.T, c *cache, query, body string) map[string]int64 {
	t.Helper()
	hdr := []string{"Authorization", "Bearer " + rulesToken}
	if body != "" {
		hdr = append(hdr, "Content-Type", "application/json")
	}
	r := must(t, "POST /api/purge?"+query+" "+body, send("POST", c.adminURL+"/api/purge?"+query, body, hdr...), http.StatusOK)
	var out map[string]int64
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("POST /api/purge?%s: %v in %q", query, err, r.body)
	}
	return out
}

// printable reports whether s is non-empty and only printable ASCII.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

// TestRulesDefaultTTL: an origin that sends no caching headers is cached
// under cache.default_ttl or a rule's ttl, and passed through (BYPASS,
// detail=no-freshness) without either.
func TestRulesDefaultTTL(t *testing.T) {
	t.Parallel()
	miss := func(path string, cs ...string) rulesStep {
		return rulesStep{path: path, xCache: "MISS", cs: append([]string{"stored"}, cs...)}
	}
	hit := func(path string) rulesStep { return rulesStep{path: path, xCache: "HIT", cs: []string{"hit"}} }
	// The first pass-through says why; the next finds the hit-for-miss
	// marker that the first one set.
	bypass := func(path string) rulesStep {
		return rulesStep{path: path, xCache: "BYPASS", cs: []string{"detail=no-freshness"}, csNot: []string{"stored"}}
	}
	bypassAgain := func(path string) rulesStep {
		return rulesStep{path: path, xCache: "BYPASS", csNot: []string{"stored"}}
	}
	for _, row := range []struct {
		name  string
		yaml  string
		steps []rulesStep
		seen  map[string]int // origin requests per script name
	}{
		{
			name:  "default_ttl 60s",
			yaml:  "cache:\n  default_ttl: 60s\n",
			steps: []rulesStep{miss("/script/plain"), hit("/script/plain")},
			seen:  map[string]int{"plain": 1},
		},
		{
			name:  "default_ttl off",
			yaml:  "cache:\n  default_ttl: 0s\n",
			steps: []rulesStep{bypass("/script/plain"), bypassAgain("/script/plain")},
			seen:  map[string]int{"plain": 2},
		},
		{
			name: "rule ttl, default_ttl off",
			yaml: "rules:\n  - name: api\n    path_prefix: /script/api-\n    ttl: 60s\n",
			steps: []rulesStep{
				miss("/script/api-1", "detail=rule:api"), hit("/script/api-1"),
				bypass("/script/plain"), bypassAgain("/script/plain"), // outside the rule
			},
			seen: map[string]int{"api-1": 1, "plain": 2},
		},
	} {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			o, c := secPair(t, row.yaml)
			for name := range row.seen {
				scripted(o, name).setScript(t, "", sc("no caching headers: "+name))
			}
			for _, st := range row.steps {
				r := st.run(t, c)
				if k := r.header.Get("X-Cache-Key"); k != "" {
					t.Errorf("GET %s: X-Cache-Key %q without cache.debug_headers", st.path, k)
				}
			}
			for name, n := range row.seen {
				rulesSeen(t, o, name, n)
			}
		})
	}
}

// TestRulesForceTTLAndBypass: force_ttl stores over the origin's
// max-age=0 (and no-cache), and a bypass rule sends every request to the
// origin even when the response says max-age.
func TestRulesForceTTLAndBypass(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, `rules:
  - name: forced
    path_prefix: /script/force-
    force_ttl: 60s
  - name: per-user
    path_prefix: /script/me-
    bypass: true
`)
	for _, row := range []struct {
		name   string
		cc     string    // the origin's Cache-Control
		first  rulesStep // the two GETs (path filled in)
		second rulesStep
		seen   int // requests the origin must see
	}{
		{
			name:   "force-maxage0",
			cc:     "max-age=0",
			first:  rulesStep{xCache: "MISS", cs: []string{"stored", "detail=rule:forced"}},
			second: rulesStep{xCache: "HIT", cs: []string{"hit"}},
			seen:   1,
		},
		{
			name:   "force-nocache",
			cc:     "no-cache",
			first:  rulesStep{xCache: "MISS", cs: []string{"stored", "detail=rule:forced"}},
			second: rulesStep{xCache: "HIT", cs: []string{"hit"}},
			seen:   1,
		},
		{
			// Control: the same response outside the rule is not a hit.
			name:   "plain-maxage0",
			cc:     "max-age=0",
			first:  rulesStep{notHit: true},
			second: rulesStep{notHit: true},
			seen:   2,
		},
		{
			name:   "me-maxage",
			cc:     "public, max-age=300",
			first:  rulesStep{xCache: "BYPASS", cs: []string{"detail=rule:per-user"}, csNot: []string{"stored"}},
			second: rulesStep{xCache: "BYPASS", cs: []string{"detail=rule:per-user"}, csNot: []string{"stored"}},
			seen:   2,
		},
		{
			// Control: the same response outside the bypass rule is a hit.
			name:   "plain-maxage",
			cc:     "public, max-age=300",
			first:  rulesStep{xCache: "MISS", cs: []string{"stored"}},
			second: rulesStep{xCache: "HIT"},
			seen:   1,
		},
	} {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			scripted(o, row.name).setScript(t, "", sc("body of "+row.name, "Cache-Control: "+row.cc))
			row.first.path = "/script/" + row.name
			row.second.path = row.first.path
			row.first.run(t, c)
			row.second.run(t, c)
			rulesSeen(t, o, row.name, row.seen)
		})
	}
}

// TestRulesKey: key: {query: ignore} makes /x?a=1 and /x?b=2 one entry;
// query_params: [q] with query_mode: only makes /s?q=1&utm=a and
// /s?utm=b&q=1 one entry and /s?q=2 another. With cache.debug_headers the
// responses carry a printable X-Cache-Key, equal for requests sharing an
// entry.
func TestRulesKey(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, `cache:
  debug_headers: true
rules:
  - name: qi
    path_prefix: /script/qi
    key:
      query: ignore
  - name: qp
    path_prefix: /script/qp
    key:
      query_params: [q]
      query_mode: only
  - name: hk
    path_prefix: /script/hk
    key:
      headers: [X-Lang]
      cookies: [sess]
`)
	for _, row := range []struct {
		name  string
		steps []rulesStep
		same  [][2]int // pairs of steps whose X-Cache-Key must be equal
		diff  [][2]int // and different
		seen  int
	}{
		{
			name:  "qi",
			steps: []rulesStep{{path: "/script/qi?a=1", xCache: "MISS"}, {path: "/script/qi?b=2", xCache: "HIT"}},
			same:  [][2]int{{0, 1}},
			seen:  1,
		},
		{
			name: "qp",
			steps: []rulesStep{
				{path: "/script/qp?q=1&utm=a", xCache: "MISS"},
				{path: "/script/qp?utm=b&q=1", xCache: "HIT"},
				{path: "/script/qp?q=2", xCache: "MISS"},
				{path: "/script/qp?q=2&utm=c", xCache: "HIT"},
			},
			same: [][2]int{{0, 1}, {2, 3}},
			diff: [][2]int{{0, 2}},
			seen: 2,
		},
		{
			// Header and cookie values, bytes past ASCII and '\\' included,
			// split the cache and still give a printable X-Cache-Key.
			name: "hk",
			steps: []rulesStep{
				{path: "/script/hk", hdr: []string{"X-Lang", "fr\xe9\\", "Cookie", "sess=\xc3\xa9; other=1"}, xCache: "MISS"},
				{path: "/script/hk", hdr: []string{"X-Lang", "fr\xe9\\", "Cookie", "other=2; sess=\xc3\xa9"}, xCache: "HIT"},
				{path: "/script/hk", hdr: []string{"X-Lang", "de", "Cookie", "sess=\xc3\xa9"}, xCache: "MISS"},
				{path: "/script/hk", hdr: []string{"X-Lang", "fr\xe9\\", "Cookie", "sess=b"}, xCache: "MISS"},
			},
			same: [][2]int{{0, 1}},
			diff: [][2]int{{0, 2}, {0, 3}, {2, 3}},
			seen: 3,
		},
		{
			// Control: without a key rule the query splits the cache.
			name:  "plain",
			steps: []rulesStep{{path: "/script/plain?a=1", xCache: "MISS"}, {path: "/script/plain?b=2", xCache: "MISS"}},
			diff:  [][2]int{{0, 1}},
			seen:  2,
		},
	} {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			scripted(o, row.name).setScript(t, "", sc("keyed "+row.name, "Cache-Control: public, max-age=300"))
			keys := make([]string, len(row.steps))
			for i, st := range row.steps {
				r := st.run(t, c)
				keys[i] = r.header.Get("X-Cache-Key")
				if !printable(keys[i]) {
					t.Errorf("GET %s: X-Cache-Key %q; want a non-empty printable key", st.path, keys[i])
				}
			}
			for _, p := range row.same {
				if keys[p[0]] != keys[p[1]] {
					t.Errorf("X-Cache-Key of %s %q and of %s %q differ; want one entry",
						row.steps[p[0]].path, keys[p[0]], row.steps[p[1]].path, keys[p[1]])
				}
			}
			for _, p := range row.diff {
				if keys[p[0]] == keys[p[1]] {
					t.Errorf("X-Cache-Key of %s and of %s are both %q; want two entries",
						row.steps[p[0]].path, row.steps[p[1]].path, keys[p[0]])
				}
			}
			rulesSeen(t, o, row.name, row.seen)
		})
	}
}

// TestRulesNeverStorePerUser: a ttl or force_ttl rule does not store a
// response with Set-Cookie, private or no-store: the second client gets
// its own answer from the origin, never the first client's cookie or body.
func TestRulesNeverStorePerUser(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, `rules:
  - name: ttl
    path_prefix: /script/ttl-
    ttl: 60s
  - name: forced
    path_prefix: /script/force-
    force_ttl: 60s
`)
	for _, row := range []struct {
		name   string
		fields func(user string) []string // the origin's response header lines for user
	}{
		{"ttl-cookie", func(u string) []string { return []string{"Set-Cookie: session=" + u + "; HttpOnly"} }},
		{"ttl-private", func(u string) []string { return []string{"Cache-Control: private"} }},
		{"force-cookie", func(u string) []string {
			return []string{"Cache-Control: public, max-age=60", "Set-Cookie: session=" + u + "; HttpOnly"}
		}},
		{"force-cookie-maxage0", func(u string) []string {
			return []string{"Cache-Control: max-age=0", "Set-Cookie: session=" + u}
		}},
		{"force-private", func(u string) []string { return []string{"Cache-Control: private, max-age=60"} }},
		{"force-nostore", func(u string) []string { return []string{"Cache-Control: no-store"} }},
	} {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			x := scripted(o, row.name)
			path := x.path("")
			x.setScript(t, "", sc("page of alice", row.fields("alice")...))
			r := must(t, "alice's GET", send("GET", c.url+path, "", "Cookie", "session=alice"), http.StatusOK)
			if string(r.body) != "page of alice" {
				t.Fatalf("alice: body %q; want \"page of alice\"", r.body)
			}
			if r.header.Get("X-Cache") == "HIT" || csHas(r.header.Get("Cache-Status"), "stored") {
				t.Errorf("alice's response was stored: %s", xc(r))
			}
			x.setScript(t, "", sc("page of bob", row.fields("bob")...))
			r = must(t, "bob's GET", send("GET", c.url+path, ""), http.StatusOK)
			if string(r.body) != "page of bob" {
				t.Errorf("bob: body %q (%s); want his own \"page of bob\"", r.body, xc(r))
			}
			if sc := strings.Join(r.header.Values("Set-Cookie"), "; "); strings.Contains(sc, "alice") {
				t.Errorf("bob got alice's cookie: Set-Cookie %q (%s)", sc, xc(r))
			}
			if r.header.Get("X-Cache") == "HIT" {
				t.Errorf("bob: %s; want no HIT", xc(r))
			}
			rulesSeen(t, o, row.name, 2)
		})
	}
}

// TestRulesCacheStatusNamesRule: Cache-Status on the response that is
// stored names the rule that applied (detail=rule:NAME), first match
// winning, status rules included, and the hit's ttl is that rule's.
func TestRulesCacheStatusNamesRule(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, `rules:
  - name: not-found
    path_prefix: /status/
    status: [404]
    ttl: 10s
  - name: statuses
    path_prefix: /status/
    ttl: 30s
  - name: by-regex
    path_regex: ^/script/re-[0-9]+$
    ttl: 40s
  - name: get-only
    path_prefix: /script/m-
    methods: [GET]
    force_ttl: 50s
  - name: catch-all
    ttl: 20s
`)
	scripted(o, "re-7").setScript(t, "", sc("regex"))
	scripted(o, "re-x").setScript(t, "", sc("not the regex"))
	scripted(o, "m-1").setScript(t, "", sc("forced", "Cache-Control: max-age=0"))
	for _, row := range []struct {
		path   string
		status int
		rule   string
		ttl    int // the HIT's ttl is in (ttl-5, ttl]
	}{
		{"/status/404", 404, "not-found", 10},
		{"/status/200", 200, "statuses", 30},
		{"/status/410", 410, "statuses", 30},
		{"/script/re-7", 200, "by-regex", 40},
		{"/script/re-x", 200, "catch-all", 20},
		{"/script/m-1", 200, "get-only", 50},
	} {
		t.Run(strings.TrimPrefix(row.path, "/"), func(t *testing.T) {
			r := must(t, "first GET "+row.path, send("GET", c.url+row.path, ""), row.status)
			cs := r.header.Get("Cache-Status")
			if r.header.Get("X-Cache") != "MISS" || !csHas(cs, "stored") || !csHas(cs, "detail=rule:"+row.rule) {
				t.Errorf("first GET %s: %s; want MISS, stored, detail=rule:%s", row.path, xc(r), row.rule)
			}
			r = must(t, "second GET "+row.path, send("GET", c.url+row.path, ""), row.status)
			if r.header.Get("X-Cache") != "HIT" {
				t.Errorf("second GET %s: %s; want HIT", row.path, xc(r))
				return
			}
			ttl := -1
			for p := range strings.SplitSeq(r.header.Get("Cache-Status"), ";") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(p), "ttl="); ok {
					ttl, _ = strconv.Atoi(v)
				}
			}
			if ttl > row.ttl || ttl <= row.ttl-5 {
				t.Errorf("second GET %s: %s; want ttl in (%d, %d] from rule %s", row.path, xc(r), row.ttl-5, row.ttl, row.rule)
			}
		})
	}
}

// TestRulesPurgeMethod: PURGE on the proxy listener. With admin.token set,
// no or a wrong token gets 401 and the entry stays a hit; the right token
// gets 200 JSON, purges that URL only, and never reaches the origin.
// Without a token, PURGE is an ordinary method forwarded to the origin.
func TestRulesPurgeMethod(t *testing.T) {
	t.Parallel()
	t.Run("token", func(t *testing.T) {
		t.Parallel()
		o, c := secPair(t, "admin:\n  token: "+rulesToken+"\n")
		for _, p := range []string{"/echo/pm", "/echo/other"} {
			rulesStep{path: p, xCache: "MISS"}.run(t, c)
			rulesStep{path: p, xCache: "HIT"}.run(t, c)
		}
		for _, auth := range []string{"", "Bearer wrong-token", "Basic " + rulesToken, "Bearer " + rulesToken + "x"} {
			var hdr []string
			if auth != "" {
				hdr = []string{"Authorization", auth}
			}
			r := send("PURGE", c.url+"/echo/pm", "", hdr...)
			if r.err != nil || r.status != http.StatusUnauthorized {
				t.Errorf("PURGE with Authorization %q: got %d %v; want 401", auth, r.status, r.err)
			}
			rulesStep{path: "/echo/pm", xCache: "HIT"}.run(t, c)
		}
		r := must(t, "PURGE with the token", send("PURGE", c.url+"/echo/pm", "", "Authorization", "Bearer "+rulesToken), http.StatusOK)
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("PURGE: Content-Type %q; want application/json", ct)
		}
		var res map[string]int64
		if err := json.Unmarshal(r.body, &res); err != nil || res["purged_entries"] != 1 {
			t.Errorf("PURGE: body %q (%v); want JSON with purged_entries 1", r.body, err)
		}
		rulesStep{path: "/echo/pm", xCache: "MISS"}.run(t, c)
		rulesStep{path: "/echo/other", xCache: "HIT"}.run(t, c) // not named: kept
		for _, e := range o.echoLog(t, "/echo/") {
			if e.Method == "PURGE" {
				t.Errorf("the origin saw a PURGE %s; want PURGE answered by the cache", e.Target)
			}
		}
	})
	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		o, c := secPair(t, "")
		rulesStep{path: "/echo/pm", xCache: "MISS"}.run(t, c)
		r := must(t, "PURGE without admin.token", send("PURGE", c.url+"/echo/pm", "", "Authorization", "Bearer anything"), http.StatusOK)
		if !strings.Contains(string(r.body), "method=PURGE") {
			t.Errorf("PURGE without admin.token: body %q (%s); want the origin's answer to a PURGE", r.body, xc(r))
		}
		var purges int
		for _, e := range o.waitEchoLog(t, "/echo/pm", func(l []echoEntry) bool { return len(l) >= 2 }) {
			if e.Method == "PURGE" {
				purges++
			}
		}
		if purges != 1 {
			t.Errorf("the origin saw %d PURGE requests; want 1 (forwarded)", purges)
		}
	})
}

// TestRulesSoftPurge: a soft purge (soft=1 on /api/purge, Soft-Purge: 1
// on PURGE) marks the entry stale, so when the origin then fails the
// client gets the stale body under stale-if-error (the origin's or a
// rule's); a hard purge in the same situation gives the client the error.
func TestRulesSoftPurge(t *testing.T) {
	t.Parallel()
	o, c := secPair(t, "admin:\n  token: "+rulesToken+`
rules:
  - name: sie
    path_prefix: /script/rule-
    ttl: 300s
    stale_if_error: 300s
`)
	const sie = "Cache-Control: max-age=300, stale-if-error=300"
	apiPurge := func(soft bool) func(t *testing.T, path string) map[string]int64 {
		return func(t *testing.T, path string) map[string]int64 {
			q := "url=" + url.QueryEscape(path)
			if soft {
				q += "&soft=1"
			}
			return rulesPurge(t, c, q, "")
		}
	}
	methodPurge := func(soft bool) func(t *testing.T, path string) map[string]int64 {
		return func(t *testing.T, path string) map[string]int64 {
			hdr := []string{"Authorization", "Bearer " + rulesToken}
			if soft {
				hdr = append(hdr, "Soft-Purge", "1")
			}
			r := must(t, "PURGE "+path, send("PURGE", c.url+path, "", hdr...), http.StatusOK)
			var res map[string]int64
			if err := json.Unmarshal(r.body, &res); err != nil {
				t.Fatalf("PURGE %s: %v in %q", path, err, r.body)
			}
			return res
		}
	}
	for _, row := range []struct {
		name   string
		fields []string
		purge  func(t *testing.T, path string) map[string]int64
		stale  bool // the client gets the stale body (else the 503)
	}{
		{"api-soft", []string{sie}, apiPurge(true), true},
		{"api-hard", []string{sie}, apiPurge(false), false},
		{"method-soft", []string{sie}, methodPurge(true), true},
		{"method-hard", []string{sie}, methodPurge(false), false},
		{"rule-api-soft", nil, apiPurge(true), true}, // stale_if_error from the rule
		{"rule-api-hard", nil, apiPurge(false), false},
	} {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			x := scripted(o, row.name)
			path := x.path("")
			good := "good " + row.name
			x.setScript(t, "", sc(good, row.fields...))
			rulesStep{path: path, xCache: "MISS", cs: []string{"stored"}}.run(t, c)
			rulesStep{path: path, xCache: "HIT"}.run(t, c)
			if res := row.purge(t, path); res["purged_entries"] != 1 {
				t.Errorf("purge %s: %v; want purged_entries 1", path, res)
			}
			x.setScript(t, "", sc("origin down", row.fields...).status(http.StatusServiceUnavailable))
			r := send("GET", c.url+path, "")
			if r.err != nil {
				t.Fatalf("GET %s after the purge: %v", path, r.err)
			}
			if row.stale {
				if r.status != 200 || string(r.body) != good || r.header.Get("X-Cache") != "STALE" ||
					!csHas(r.header.Get("Cache-Status"), "detail=stale-if-error") {
					t.Errorf("GET %s after a soft purge, origin 503: %d %q (%s); want 200 %q, STALE, detail=stale-if-error",
						path, r.status, r.body, xc(r), good)
				}
			} else if r.status != http.StatusServiceUnavailable || string(r.body) != "origin down" {
				t.Errorf("GET %s after a hard purge, origin 503: %d %q (%s); want the origin's 503", path, r.status, r.body, xc(r))
			}
			rulesSeen(t, o, row.name, 2)
		})
	}
	t.Run("origin stopped", func(t *testing.T) {
		t.Parallel()
		o, c := secPair(t, "admin:\n  token: "+rulesToken+"\n")
		for _, name := range []string{"soft", "hard"} {
			scripted(o, name).setScript(t, "", sc("good "+name, sie))
			rulesStep{path: "/script/" + name, xCache: "MISS", cs: []string{"stored"}}.run(t, c)
		}
		if res := rulesPurge(t, c, "url=/script/soft&soft=1", ""); res["purged_entries"] != 1 {
			t.Errorf("soft purge: %v; want purged_entries 1", res)
		}
		if res := rulesPurge(t, c, "url=/script/hard", ""); res["purged_entries"] != 1 {
			t.Errorf("hard purge: %v; want purged_entries 1", res)
		}
		o.kill()
		r := send("GET", c.url+"/script/soft", "")
		if r.err != nil || r.status != 200 || string(r.body) != "good soft" || r.header.Get("X-Cache") != "STALE" {
			t.Errorf("GET /script/soft after a soft purge, origin down: %d %q %v (%s); want 200 \"good soft\", STALE",
				r.status, r.body, r.err, xc(r))
		}
		r = send("GET", c.url+"/script/hard", "")
		if r.err != nil || r.status != http.StatusBadGateway {
			t.Errorf("GET /script/hard after a hard purge, origin down: %d %q %v (%s); want 502", r.status, r.body, r.err, xc(r))
		}
	})
}

// TestRulesPurgeMany: /api/purge with repeated url= values, then with a
// JSON body of urls and tags, purges every named entry and nothing else.
func TestRulesPurgeMany(t *testing.T) {
	t.Parallel()
	_, c := secPair(t, "admin:\n  token: "+rulesToken+"\n")
	tagged := func(tag string, n int) string {
		return fmt.Sprintf("/headers?h=Cache-Control:max-age%%3D300&h=Surrogate-Key:%s&n=%d", tag, n)
	}
	all := map[string]bool{ // path -> purged
		"/echo/m1": true, "/echo/m2": true, "/echo/m3": true, "/echo/m4": false, "/echo/m5": false,
		tagged("ta", 1): true, tagged("ta", 2): true, tagged("tb", 3): false,
	}
	for p := range all {
		rulesStep{path: p, xCache: "MISS", cs: []string{"stored"}}.run(t, c)
	}
	if s := c.waitStats(t, func(s stats) bool { return s.Entries == 8 }); s.Entries != 8 {
		t.Fatalf("entries after warm-up: %d; want 8", s.Entries)
	}
	if res := rulesPurge(t, c, "url=/echo/m1&url=/echo/m2", ""); res["purged_entries"] != 2 {
		t.Errorf("purge url=/echo/m1&url=/echo/m2: %v; want purged_entries 2", res)
	}
	if res := rulesPurge(t, c, "", `{"url": ["/echo/m3"], "tag": ["ta"]}`); res["purged_entries"] != 3 {
		t.Errorf(`purge {"url": ["/echo/m3"], "tag": ["ta"]}: %v; want purged_entries 3`, res)
	}
	if s := c.stats(t); s.Entries != 3 {
		t.Errorf("entries after the purges: %d; want 3", s.Entries)
	}
	for p, purged := range all {
		want := "HIT"
		if purged {
			want = "MISS"
		}
		rulesStep{path: p, xCache: want}.run(t, c)
	}
}

// TestRulesReload: a rule changed in the file applies on SIGHUP, without a
// restart; a reload with a bad regex keeps the running rules.
func TestRulesReload(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	cfg := writeFile(t, "dedupcache.yaml", "rules:\n  - name: v1\n    path_prefix: /script/a\n    ttl: 60s\n")
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", cfg}})
	pid := c.cmd.Process.Pid
	scripted(o, "a").setScript(t, "", sc("a"))
	scripted(o, "b").setScript(t, "", sc("b"))
	scripted(o, "b2").setScript(t, "", sc("b2"))
	reload := func(yaml, want string) {
		t.Helper()
		before := strings.Count(c.stderr.String(), want)
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(c.stderr.String(), want) <= before {
			if time.Now().After(deadline) {
				t.Fatalf("stderr never showed %q after SIGHUP:\n%s", want, c.stderr.String())
			}
			time.Sleep(pollEvery)
		}
	}

	rulesStep{path: "/script/a", xCache: "MISS", cs: []string{"stored", "detail=rule:v1"}}.run(t, c)
	rulesStep{path: "/script/a", xCache: "HIT"}.run(t, c)
	rulesStep{path: "/script/b", xCache: "BYPASS", cs: []string{"detail=no-freshness"}}.run(t, c)

	reload(`rules:
  - name: v2-bypass
    path_prefix: /script/a
    bypass: true
  - name: v2
    path_prefix: /script/b
    ttl: 60s
`, "msg=reloaded")
	rulesStep{path: "/script/a", xCache: "BYPASS", cs: []string{"detail=rule:v2-bypass"}}.run(t, c)
	// /script/b carries the hit-for-miss marker of its BYPASS above, which
	// Cache-Status names instead of the rule; the response is stored all
	// the same. /script/b2, new, shows the rule's name.
	rulesStep{path: "/script/b", xCache: "MISS", cs: []string{"stored"}}.run(t, c)
	rulesStep{path: "/script/b", xCache: "HIT"}.run(t, c)
	rulesStep{path: "/script/b2", xCache: "MISS", cs: []string{"stored", "detail=rule:v2"}}.run(t, c)
	rulesStep{path: "/script/b2", xCache: "HIT"}.run(t, c)
	rulesSeen(t, o, "a", 2)
	rulesSeen(t, o, "b", 2)
	rulesSeen(t, o, "b2", 1)

	reload("rules:\n  - name: broken\n    path_regex: \"([\"\n    ttl: 1s\n", "reload failed")
	if !strings.Contains(c.stderr.String(), "path_regex") {
		t.Errorf("the failed reload does not name path_regex:\n%s", c.stderr.String())
	}
	rulesStep{path: "/script/a", xCache: "BYPASS", cs: []string{"detail=rule:v2-bypass"}}.run(t, c)
	rulesStep{path: "/script/b", xCache: "HIT"}.run(t, c)
	if c.exited() || c.cmd.Process.Pid != pid {
		t.Errorf("dedupcache restarted or exited during the reloads")
	}
}

// TestRulesTrustedProxies: from a peer in server.trusted_proxies the
// client's X-Forwarded-For is appended to and X-Forwarded-Proto/-Host are
// kept; from any other peer they are replaced.
func TestRulesTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, row := range []struct {
		name                      string
		yaml                      string
		wantFor, wantProto, wantH string // wantH "" = the cache's own listener host
	}{
		{"trusted 127.0.0.1", "server:\n  trusted_proxies: [127.0.0.1]\n", "203.0.113.7, 127.0.0.1", "https", "lb.example"},
		{"trusted 127.0.0.0/8", "server:\n  trusted_proxies: [\"127.0.0.0/8\"]\n", "203.0.113.7, 127.0.0.1", "https", "lb.example"},
		{"other peers trusted", "server:\n  trusted_proxies: [\"10.0.0.0/8\"]\n", "127.0.0.1", "http", ""},
		{"none trusted", "", "127.0.0.1", "http", ""},
	} {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			o, c := secPair(t, row.yaml)
			must(t, "GET /echo/xff", send("GET", c.url+"/echo/xff?cc=no-store", "",
				"X-Forwarded-For", "203.0.113.7", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "lb.example"), http.StatusOK)
			l := o.waitEchoLog(t, "/echo/xff", func(l []echoEntry) bool { return len(l) >= 1 })
			if len(l) != 1 {
				t.Fatalf("origin saw %d requests for /echo/xff; want 1", len(l))
			}
			h := l[0].Header
			wantH := row.wantH
			if wantH == "" {
				wantH = strings.TrimPrefix(c.url, "http://")
			}
			if got := strings.Join(h.Values("X-Forwarded-For"), ", "); got != row.wantFor {
				t.Errorf("origin's X-Forwarded-For: %q; want %q", got, row.wantFor)
			}
			if got := strings.Join(h.Values("X-Forwarded-Proto"), ", "); got != row.wantProto {
				t.Errorf("origin's X-Forwarded-Proto: %q; want %q", got, row.wantProto)
			}
			if got := strings.Join(h.Values("X-Forwarded-Host"), ", "); got != wantH {
				t.Errorf("origin's X-Forwarded-Host: %q; want %q", got, wantH)
			}

			// Stored responses: what the origin saw is keyed. A trusted
			// balancer's https request and a plain one get a response each,
			// never the other's; an untrusted client's fields change nothing.
			front := []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "lb.example"}
			keyed := row.wantProto == "https"
			for i, step := range []struct {
				hdr    []string
				xCache string
				proto  string
			}{
				{front, "MISS", row.wantProto},
				{nil, map[bool]string{true: "MISS", false: "HIT"}[keyed], "http"},
				{front, "HIT", row.wantProto},
				{nil, "HIT", "http"},
			} {
				r := must(t, fmt.Sprintf("GET /echo/fwd-key %d", i+1), send("GET", c.url+"/echo/fwd-key", "", step.hdr...), http.StatusOK)
				if got := r.header.Get("X-Cache"); got != step.xCache {
					t.Errorf("GET %d %v: X-Cache %q; want %s", i+1, step.hdr, got, step.xCache)
				}
				if want := "X-Forwarded-Proto: " + step.proto + "\n"; !strings.Contains(string(r.body), want) {
					t.Errorf("GET %d %v: body %q; want the response built for %q", i+1, step.hdr, r.body, want)
				}
			}
		})
	}
}
