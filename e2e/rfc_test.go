package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The HTTP-caching conformance table. Every row names the RFC section that
// sets its expectations and is a sequence of steps against the origin's
// /script/{name} route (see e2e/origin): each step may sleep, rescript the
// origin, or kill it, then sends one request (or many at once) through
// dedupcache and checks what the client got and what the origin saw. The
// expectations come from the RFC text, not from what dedupcache does.

// rfcResponse and rfcScript mirror the origin's script JSON.
type rfcResponse struct {
	Status           int                 `json:"status,omitempty"`
	Headers          map[string][]string `json:"headers,omitempty"`
	Body             string              `json:"body"`
	HonorConditional bool                `json:"honor_conditional,omitempty"`
	DelayMs          int                 `json:"delay_ms,omitempty"`
	EchoHeader       string              `json:"echo_header,omitempty"`
}

type rfcScript struct {
	rfcResponse
	Methods map[string]rfcResponse `json:"methods,omitempty"`
}

// sc returns a script answering 200 with body and the "Name: value" header
// lines given.
func sc(body string, lines ...string) *rfcScript {
	return &rfcScript{rfcResponse: rfcResponse{Body: body, Headers: headerLines(lines)}}
}

func headerLines(lines []string) map[string][]string {
	h := map[string][]string{}
	for _, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			panic("header line without a colon: " + l)
		}
		k = http.CanonicalHeaderKey(strings.TrimSpace(k))
		h[k] = append(h[k], strings.TrimSpace(v))
	}
	return h
}

func (s *rfcScript) status(code int) *rfcScript   { s.Status = code; return s }
func (s *rfcScript) honor() *rfcScript            { s.HonorConditional = true; return s }
func (s *rfcScript) delay(ms int) *rfcScript      { s.DelayMs = ms; return s }
func (s *rfcScript) echo(field string) *rfcScript { s.EchoHeader = field; return s }
func (s *rfcScript) on(method string, code int, body string, lines ...string) *rfcScript {
	if s.Methods == nil {
		s.Methods = map[string]rfcResponse{}
	}
	s.Methods[method] = rfcResponse{Status: code, Body: body, Headers: headerLines(lines)}
	return s
}

// scripts maps a path suffix ("" for the row's own URL /script/{row},
// "b" for /script/{row}-b) to its script.
type scripts map[string]*rfcScript

// rfcEnv is the dedupcache configuration a row runs against.
type rfcEnv int

const (
	envShared rfcEnv = iota // shared pair: keep 30s (stale entries with validators are kept)
	envGrace                // shared pair: keep 30s, grace 30s (operator stale-if-error default)
	envOwn                  // a fresh pair for the row (keep 30s, grace 30s if row.grace)
)

const (
	keepYAML  = "cache:\n  keep: \"30s\"\n"
	graceYAML = "cache:\n  keep: \"30s\"\n  grace: \"30s\"\n"
)

// span is an inclusive integer range.
type span [2]int

type rfcStep struct {
	note      string        // what the step is for, in failure messages
	sleep     time.Duration // before anything else
	set       scripts       // origin scripts to set before the request
	kill      bool          // kill the origin before the request
	noRequest bool          // only check the origin (seen, sent)
	method    string        // default GET
	path      string        // suffix: "" = /script/{row}, "b" = /script/{row}-b
	hdr       []string      // request "Name: value" lines; $name and saved $vars are expanded
	parallel  int           // send this many identical requests at once

	status     int      // default 200
	body       *string  // exact body
	noBody     bool     // empty body
	xCache     string   // exact X-Cache
	xCacheNot  string   // X-Cache must differ
	cs         []string // Cache-Status substrings
	csNot      []string // substrings Cache-Status must not have
	hdrIs      map[string]string
	hdrHas     []string // present, any value
	age        *span    // Age present, in this range
	maxTook    time.Duration
	seen       *int              // requests (any method) the origin has seen for the path
	eventually bool              // seen is reached asynchronously (background request)
	sent       map[string]string // fields of the origin's last request for the path ("" = absent)
	save       map[string]string // variable -> response field, for later $variable
	check      func(t *testing.T, r result, x *rfcRun)
}

type rfcRow struct {
	name  string
	env   rfcEnv
	grace bool // envOwn: configure grace too
	steps []rfcStep
}

// rfcRun is one row's state.
type rfcRun struct {
	name       string
	o          *origin
	c          *cache
	vars       map[string]string
	originDown bool
	log        []string // transcript for failure reports
}

func n(i int) *int          { return &i }
func s(v string) *string    { return &v }
func ages(lo, hi int) *span { return &span{lo, hi} }

// rfcLog is the origin's /script-log document.
type rfcLog struct {
	Count    int `json:"count"`
	Requests []struct {
		Method string      `json:"method"`
		Header http.Header `json:"header"`
	} `json:"requests"`
}

func (x *rfcRun) path(suffix string) string {
	if suffix == "" {
		return "/script/" + x.name
	}
	return "/script/" + x.name + "-" + suffix
}

func (x *rfcRun) expand(v string) string {
	v = strings.ReplaceAll(v, "$name", x.name)
	for k, val := range x.vars {
		v = strings.ReplaceAll(v, "$"+k, val)
	}
	return v
}

func (x *rfcRun) originLog(t *testing.T, suffix string) rfcLog {
	t.Helper()
	name := strings.TrimPrefix(x.path(suffix), "/script/")
	var l rfcLog
	getJSON(t, x.o.url+"/script-log/"+name, &l)
	return l
}

func (x *rfcRun) setScript(t *testing.T, suffix string, sc *rfcScript) {
	t.Helper()
	cp := *sc
	cp.Headers = map[string][]string{}
	for k, vs := range sc.Headers {
		for _, v := range vs {
			cp.Headers[k] = append(cp.Headers[k], x.expand(v))
		}
	}
	if sc.Methods != nil {
		cp.Methods = map[string]rfcResponse{}
		for m, r := range sc.Methods {
			h := map[string][]string{}
			for k, vs := range r.Headers {
				for _, v := range vs {
					h[k] = append(h[k], x.expand(v))
				}
			}
			r.Headers = h
			cp.Methods[m] = r
		}
	}
	body, err := json.Marshal(&cp)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(x.path(suffix), "/script/")
	resp, err := client.Post(x.o.url+"/script-set/"+name, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("script %s: %v", name, err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("script %s: %s %s", name, resp.Status, msg)
	}
}

// doWith sends one request with the header lines given and reads the body.
func doWith(method, url string, hdr http.Header) result {
	start := time.Now()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return result{err: err}
	}
	req.Header = hdr
	resp, err := client.Do(req)
	if err != nil {
		return result{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: body, length: resp.ContentLength, took: time.Since(start), err: err}
}

// TestRFC runs the table against the proxy listener on each HTTP engine.
func TestRFC(t *testing.T) {
	for _, engine := range []string{"fasthttp", "net/http"} {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			testRFC(t, engine)
		})
	}
}

func testRFC(t *testing.T, engine string) {
	start := time.Now()
	now := time.Now().UTC()
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	lm := date(-time.Hour) // a Last-Modified for validation rows
	tenDays := date(-240 * time.Hour)

	const (
		cc60   = "Cache-Control: max-age=60"
		etagV1 = `ETag: "v1"`
		stale  = 1500 * time.Millisecond // past a max-age of 1
		digits = "0123456789"
	)
	type envPair struct {
		o *origin
		c *cache
	}
	pairs := map[rfcEnv]envPair{}
	for env, yaml := range map[rfcEnv]string{envShared: keepYAML, envGrace: graceYAML} {
		o := startOrigin(t)
		cfg := writeFile(t, "rfc.yaml", yaml)
		pairs[env] = envPair{o, startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", cfg, "-engine", engine}})}
	}

	var rows []rfcRow

	// §3: what is stored.
	rows = append(rows, rfcRow{
		name: "RFC 9111 §3 200 with max-age stored; RFC 9211 fwd=uri-miss stored then hit",
		steps: []rfcStep{
			{set: scripts{"": sc("s200", cc60)}, body: s("s200"), xCache: "MISS",
				cs: []string{"dedupcache", "fwd=uri-miss", "stored"}, csNot: []string{"hit"},
				hdrIs: map[string]string{"Age": ""}, seen: n(1)},
			{body: s("s200"), xCache: "HIT", cs: []string{"dedupcache; hit"}, csNot: []string{"fwd="}, age: ages(0, 1), seen: n(1)},
		},
	})
	for _, code := range []int{203, 204, 301, 404, 410} {
		body := fmt.Sprintf("status %d", code)
		lines := []string{cc60}
		if code == 204 {
			body = ""
		}
		if code == 301 {
			lines = append(lines, "Location: /moved")
		}
		var want *string
		if code != 204 {
			want = s(body)
		}
		rows = append(rows, rfcRow{
			name: fmt.Sprintf("RFC 9111 §3 status %d with max-age stored (MAY)", code),
			steps: []rfcStep{
				{set: scripts{"": sc(body, lines...).status(code)}, status: code, body: want, seen: n(1)},
				{status: code, body: want, xCache: "HIT", seen: n(1)},
			},
		})
	}
	rows = append(rows,
		rfcRow{
			name: "RFC 9111 §5.2.2.5 response no-store not stored; RFC 9211 no stored param",
			steps: []rfcStep{
				{set: scripts{"": sc("ns", "Cache-Control: no-store")}, body: s("ns"), csNot: []string{"stored"}, seen: n(1)},
				{body: s("ns"), xCacheNot: "HIT", csNot: []string{"stored", "hit"}, seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §5.2.2.7 response private not stored by a shared cache",
			steps: []rfcStep{
				{set: scripts{"": sc("pv", "Cache-Control: private, max-age=60")}, body: s("pv"), seen: n(1)},
				{body: s("pv"), xCacheNot: "HIT", seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §3.5 Authorization with plain max-age not reused",
			steps: []rfcStep{
				{set: scripts{"": sc("auth", cc60)}, hdr: []string{"Authorization: Bearer alice"}, body: s("auth"), seen: n(1)},
				{hdr: []string{"Authorization: Bearer alice"}, body: s("auth"), xCacheNot: "HIT", seen: n(2)},
				{note: "nor for a request without Authorization", body: s("auth"), xCacheNot: "HIT", seen: n(3)},
			},
		},
	)
	for _, d := range []struct{ cc, may string }{
		{"s-maxage=60", ""}, {"public, max-age=60", ""}, {"max-age=60, must-revalidate", " (MAY)"},
	} {
		rows = append(rows, rfcRow{
			name: "RFC 9111 §3.5 Authorization with " + d.cc + " reused" + d.may,
			steps: []rfcStep{
				{set: scripts{"": sc("auth-ok", "Cache-Control: "+d.cc)}, hdr: []string{"Authorization: Bearer alice"}, body: s("auth-ok"), seen: n(1)},
				{hdr: []string{"Authorization: Bearer alice"}, body: s("auth-ok"), xCache: "HIT", seen: n(1)},
			},
		})
	}
	rows = append(rows, rfcRow{
		name: "RFC 9111 §3 Set-Cookie response not stored (dedupcache default cache_set_cookie=false)",
		steps: []rfcStep{
			{set: scripts{"": sc("cookie", cc60, "Set-Cookie: id=1")}, body: s("cookie"), seen: n(1)},
			{body: s("cookie"), xCacheNot: "HIT", seen: n(2)},
		},
	})

	// §4.2: freshness and age.
	rows = append(rows,
		rfcRow{
			name: "RFC 9111 §4.2.1 s-maxage overrides a shorter max-age",
			steps: []rfcStep{
				{set: scripts{"": sc("sm", "Cache-Control: max-age=1, s-maxage=60")}, seen: n(1)},
				{sleep: stale, body: s("sm"), xCache: "HIT", seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.1 s-maxage overrides a longer max-age",
			steps: []rfcStep{
				{set: scripts{"": sc("sm2", "Cache-Control: max-age=60, s-maxage=1", etagV1).honor()}, seen: n(1)},
				{sleep: stale, body: s("sm2"), seen: n(2), sent: map[string]string{"If-None-Match": `"v1"`}},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.1 §5.3 max-age overrides Expires",
			steps: []rfcStep{
				{set: scripts{"": sc("ma-past", cc60, "Expires: "+date(-time.Hour)),
					"b": sc("ma-future", "Cache-Control: max-age=1", "Expires: "+date(time.Hour), etagV1).honor()}, seen: n(1)},
				{path: "b", body: s("ma-future"), seen: n(1)},
				{sleep: stale, note: "max-age=60 with a past Expires is fresh", body: s("ma-past"), xCache: "HIT", seen: n(1)},
				{path: "b", note: "max-age=1 with a future Expires is stale", body: s("ma-future"), seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.1 §5.3 Expires in the future gives freshness",
			steps: []rfcStep{
				{set: scripts{"": sc("exp", "Expires: "+date(time.Minute))}, seen: n(1)},
				{body: s("exp"), xCache: "HIT", seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9111 §5.3 Expires in the past is stale",
			steps: []rfcStep{
				{set: scripts{"": sc("past", "Expires: "+date(-time.Hour))}, seen: n(1)},
				{body: s("past"), xCacheNot: "HIT", seen: n(2)},
			},
		},
		rfcRow{
			name: `RFC 9111 §5.3 invalid Expires "0" is already expired`,
			steps: []rfcStep{
				{set: scripts{"": sc("zero", "Expires: 0")}, seen: n(1)},
				{body: s("zero"), xCacheNot: "HIT", seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.3 upstream Age counted; RFC 9211 ttl is the remaining freshness",
			steps: []rfcStep{
				{set: scripts{"": sc("aged", cc60, "Age: 30")}, seen: n(1)},
				{body: s("aged"), xCache: "HIT", age: ages(30, 35), seen: n(1), check: ttlIn(25, 30)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.3 upstream Age beyond max-age is stale on arrival",
			steps: []rfcStep{
				{set: scripts{"": sc("old", "Cache-Control: max-age=10", "Age: 20", etagV1).honor()}, seen: n(1)},
				{note: "validated, not reused as is", body: s("old"), seen: n(2), sent: map[string]string{"If-None-Match": `"v1"`}},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.2 heuristic freshness from Last-Modified (200)",
			steps: []rfcStep{
				{set: scripts{"": sc("heur", "Last-Modified: "+tenDays)}, seen: n(1)},
				{body: s("heur"), xCache: "HIT", seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.2 no heuristic freshness for 302 (not heuristically cacheable)",
			steps: []rfcStep{
				{set: scripts{"": sc("found", "Location: /elsewhere", "Last-Modified: "+tenDays).status(302)}, status: 302, seen: n(1)},
				{status: 302, xCacheNot: "HIT", seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.3 §5.1 Age absent on a miss, present on hits and increasing",
			steps: []rfcStep{
				{set: scripts{"": sc("age", cc60)}, xCache: "MISS", hdrIs: map[string]string{"Age": ""}, seen: n(1)},
				{xCache: "HIT", age: ages(0, 1), seen: n(1)},
				{sleep: 1200 * time.Millisecond, xCache: "HIT", age: ages(1, 3), seen: n(1)},
			},
		},
	)

	// §4.1: Vary.
	rows = append(rows,
		rfcRow{
			name: "RFC 9111 §4.1 Vary Accept-Language variants stored separately; RFC 9211 fwd=vary-miss",
			steps: []rfcStep{
				{set: scripts{"": sc("lang=", cc60, "Vary: Accept-Language").echo("Accept-Language")},
					hdr: []string{"Accept-Language: en"}, body: s("lang=en"), xCache: "MISS", cs: []string{"fwd=uri-miss", "stored"}, seen: n(1)},
				{hdr: []string{"Accept-Language: fr"}, body: s("lang=fr"), xCache: "MISS", cs: []string{"fwd=vary-miss", "stored"}, seen: n(2)},
				{hdr: []string{"Accept-Language: en"}, body: s("lang=en"), xCache: "HIT", hdrIs: map[string]string{"Vary": "Accept-Language"}, seen: n(2)},
				{hdr: []string{"Accept-Language: fr"}, body: s("lang=fr"), xCache: "HIT", seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.1 Vary * never served from cache",
			steps: []rfcStep{
				{set: scripts{"": sc("star", cc60, "Vary: *")}, body: s("star"), seen: n(1)},
				{body: s("star"), xCacheNot: "HIT", seen: n(2)},
				{body: s("star"), xCacheNot: "HIT", seen: n(3)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.1 Accept-Encoding normalised (gzip, deflate = deflate, gzip; br differs)",
			steps: []rfcStep{
				{set: scripts{"": sc("ae", cc60, "Vary: Accept-Encoding")}, hdr: []string{"Accept-Encoding: gzip, deflate"},
					body: s("ae"), xCache: "MISS", seen: n(1), check: originAcceptEncodingWithin("gzip", "deflate")},
				{hdr: []string{"Accept-Encoding: deflate, gzip"}, body: s("ae"), xCache: "HIT", seen: n(1)},
				{hdr: []string{"Accept-Encoding: br"}, body: s("ae"), xCacheNot: "HIT", cs: []string{"fwd=vary-miss"}, seen: n(2),
					check: originAcceptEncodingWithin("br")},
			},
		},
	)

	// §4.3: validation.
	rows = append(rows,
		rfcRow{
			name: "RFC 9111 §4.3.1 §4.3.4 304 updates stored headers, body and Content-Length kept; RFC 9211 fwd=stale fwd-status=304",
			steps: []rfcStep{
				{set: scripts{"": sc("body-v1", "Cache-Control: max-age=1", etagV1, "X-Custom: a").honor()},
					body: s("body-v1"), hdrIs: map[string]string{"X-Custom": "a"}, seen: n(1)},
				{sleep: stale, set: scripts{"": sc("body-v1 but longer now", "Cache-Control: max-age=1", etagV1, "X-Custom: b").honor()},
					body: s("body-v1"), hdrIs: map[string]string{"X-Custom": "b", "Etag": `"v1"`}, check: wantLength(len("body-v1")),
					cs: []string{"fwd=stale", "fwd-status=304"}, seen: n(2), sent: map[string]string{"If-None-Match": `"v1"`}},
				{note: "the freshened entry", body: s("body-v1"), xCache: "HIT", hdrIs: map[string]string{"X-Custom": "b"},
					check: wantLength(len("body-v1")), seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.3.3 200 to a revalidation replaces the stored response",
			steps: []rfcStep{
				{set: scripts{"": sc("old", "Cache-Control: max-age=1", etagV1).honor()}, body: s("old"), seen: n(1)},
				{sleep: stale, set: scripts{"": sc("new", cc60, `ETag: "v2"`).honor()}, body: s("new"),
					hdrIs: map[string]string{"Etag": `"v2"`}, cs: []string{"fwd=stale", "fwd-status=200", "stored"},
					seen: n(2), sent: map[string]string{"If-None-Match": `"v1"`}},
				{body: s("new"), xCache: "HIT", hdrIs: map[string]string{"Etag": `"v2"`}, seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.3.1 stale entry with only Last-Modified revalidated with If-Modified-Since",
			steps: []rfcStep{
				{set: scripts{"": sc("lm", "Cache-Control: max-age=1", "Last-Modified: "+lm).honor()}, body: s("lm"), seen: n(1)},
				{sleep: stale, body: s("lm"), cs: []string{"fwd=stale", "fwd-status=304"}, seen: n(2),
					sent: map[string]string{"If-Modified-Since": lm, "If-None-Match": ""}},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.3.2 RFC 9110 §13.1.2 client If-None-Match (weak comparison) on a fresh entry answered 304 by the cache",
			steps: []rfcStep{
				{set: scripts{"": sc("inm", cc60, etagV1, "Last-Modified: "+lm)}, body: s("inm"), seen: n(1)},
				{hdr: []string{`If-None-Match: W/"v1"`}, status: 304, noBody: true, xCache: "HIT",
					hdrIs: map[string]string{"Etag": `"v1"`}, hdrHas: []string{"Date", "Cache-Control"}, seen: n(1)},
				{hdr: []string{`If-None-Match: "x", "v1"`}, status: 304, noBody: true, seen: n(1)},
				{hdr: []string{`If-None-Match: *`}, status: 304, noBody: true, seen: n(1)},
				{hdr: []string{`If-None-Match: "nope"`}, body: s("inm"), xCache: "HIT", seen: n(1)},
				{note: "If-Modified-Since is ignored when If-None-Match is present (RFC 9110 §13.1.3)",
					hdr: []string{`If-None-Match: "nope"`, "If-Modified-Since: " + date(time.Hour)}, body: s("inm"), seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.3.2 RFC 9110 §13.1.3 client If-Modified-Since on a fresh entry",
			steps: []rfcStep{
				{set: scripts{"": sc("ims", cc60, "Last-Modified: "+lm)}, body: s("ims"), seen: n(1)},
				{hdr: []string{"If-Modified-Since: " + lm}, status: 304, noBody: true, hdrHas: []string{"Date", "Cache-Control"}, seen: n(1)},
				{hdr: []string{"If-Modified-Since: " + date(-2*time.Hour)}, body: s("ims"), seen: n(1)},
				{note: "an invalid date is ignored", hdr: []string{"If-Modified-Since: yesterday"}, body: s("ims"), seen: n(1)},
			},
		},
	)

	// §5.2.1: request directives.
	rows = append(rows,
		rfcRow{
			name: "RFC 9111 §5.2.1.4 request no-cache and §5.4 Pragma no-cache force validation; RFC 9211 fwd=request",
			steps: []rfcStep{
				{set: scripts{"": sc("nc", cc60, etagV1).honor()}, body: s("nc"), seen: n(1)},
				{hdr: []string{"Cache-Control: no-cache"}, body: s("nc"), cs: []string{"fwd=request"}, seen: n(2)},
				{hdr: []string{"Pragma: no-cache"}, body: s("nc"), cs: []string{"fwd=request"}, seen: n(3)},
				{body: s("nc"), xCache: "HIT", seen: n(3)},
			},
		},
		rfcRow{
			name: "RFC 9111 §5.2.1.1 request max-age=0 forces validation of a fresh entry",
			steps: []rfcStep{
				{set: scripts{"": sc("ma0", cc60, etagV1).honor()}, body: s("ma0"), seen: n(1)},
				{sleep: 1100 * time.Millisecond, hdr: []string{"Cache-Control: max-age=30"}, body: s("ma0"), xCache: "HIT", seen: n(1)},
				{hdr: []string{"Cache-Control: max-age=0"}, body: s("ma0"), seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §5.2.1.3 request min-fresh",
			steps: []rfcStep{
				{set: scripts{"": sc("mf", cc60, etagV1).honor()}, body: s("mf"), seen: n(1)},
				{hdr: []string{"Cache-Control: min-fresh=30"}, body: s("mf"), xCache: "HIT", seen: n(1)},
				{hdr: []string{"Cache-Control: min-fresh=120"}, body: s("mf"), seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §5.2.1.2 request max-stale serves a stale entry within its bound",
			steps: []rfcStep{
				{set: scripts{"": sc("mst", "Cache-Control: max-age=1", etagV1).honor()}, body: s("mst"), seen: n(1)},
				{sleep: 2500 * time.Millisecond, hdr: []string{"Cache-Control: max-stale=30"}, body: s("mst"), cs: []string{"hit"}, age: ages(2, 4), seen: n(1)},
				{hdr: []string{"Cache-Control: max-stale"}, body: s("mst"), seen: n(1)},
				{note: "stale by 1.5 s > max-stale=1", hdr: []string{"Cache-Control: max-stale=1"}, body: s("mst"), seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §5.2.1.7 only-if-cached: 504 without a usable stored response",
			steps: []rfcStep{
				{set: scripts{"": sc("oic", cc60), "b": sc("oic-b", "Cache-Control: max-age=1", etagV1).honor()},
					note: "nothing stored", hdr: []string{"Cache-Control: only-if-cached"}, status: 504, seen: n(0)},
				{body: s("oic"), seen: n(1)},
				{hdr: []string{"Cache-Control: only-if-cached"}, body: s("oic"), xCache: "HIT", seen: n(1)},
				{path: "b", body: s("oic-b"), seen: n(1)},
				{sleep: stale, path: "b", note: "only a stale response stored", hdr: []string{"Cache-Control: only-if-cached"}, status: 504, seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9111 §5.2.1.5 request no-store: response not stored",
			steps: []rfcStep{
				{set: scripts{"": sc("rns", cc60)}, hdr: []string{"Cache-Control: no-store"}, body: s("rns"), csNot: []string{"stored"}, seen: n(1)},
				{body: s("rns"), xCacheNot: "HIT", seen: n(2)},
				{body: s("rns"), xCache: "HIT", seen: n(2)},
			},
		},
	)

	// §5.2.2: response directives.
	rows = append(rows,
		rfcRow{
			name: "RFC 9111 §5.2.2.4 response no-cache stored but validated on every use",
			steps: []rfcStep{
				{set: scripts{"": sc("rnc", "Cache-Control: max-age=60, no-cache", etagV1).honor()}, body: s("rnc"), seen: n(1)},
				{body: s("rnc"), seen: n(2), sent: map[string]string{"If-None-Match": `"v1"`}},
				{body: s("rnc"), seen: n(3), sent: map[string]string{"If-None-Match": `"v1"`}},
			},
		},
	)
	for _, d := range []struct{ sec, cc string }{
		{"§5.2.2.2 must-revalidate", "max-age=1, must-revalidate"},
		{"§5.2.2.8 proxy-revalidate", "max-age=1, proxy-revalidate"},
		{"§5.2.2.10 s-maxage (implies proxy-revalidate)", "s-maxage=1"},
	} {
		rows = append(rows, rfcRow{
			name: "RFC 9111 " + d.sec + " never served stale on upstream 503 (grace configured)",
			env:  envGrace,
			steps: []rfcStep{
				{set: scripts{"": sc("mr", "Cache-Control: "+d.cc, etagV1).honor()}, body: s("mr"), seen: n(1)},
				{sleep: stale, set: scripts{"": sc("down", "Cache-Control: no-store").status(503)}, status: 503, body: s("down"), seen: n(2)},
			},
		})
	}
	rows = append(rows,
		rfcRow{
			name: "RFC 9111 §4.2.4 grace (out-of-band configuration) serves stale on upstream 503",
			env:  envGrace,
			steps: []rfcStep{
				{set: scripts{"": sc("gr", "Cache-Control: max-age=1", etagV1).honor()}, body: s("gr"), seen: n(1)},
				{sleep: stale, set: scripts{"": sc("down", "Cache-Control: no-store").status(503)}, body: s("gr"), xCache: "STALE",
					cs: []string{"fwd=stale", "fwd-status=503"}, seen: n(2)},
			},
		},
		rfcRow{
			name:  "RFC 9111 §5.2.2.2 must-revalidate with the origin down: an error (SHOULD be 504), not the stale response",
			env:   envOwn,
			grace: true,
			steps: []rfcStep{
				{set: scripts{"": sc("mrd", "Cache-Control: max-age=1, must-revalidate", etagV1).honor()}, body: s("mrd"), seen: n(1)},
				{sleep: stale, kill: true, status: -1, check: func(t *testing.T, r result, x *rfcRun) {
					if r.status < 500 || bytes.Equal(r.body, []byte("mrd")) {
						t.Errorf("status %d body %q; want a 5xx error, not the stale response", r.status, r.body)
					}
					if r.status != http.StatusGatewayTimeout {
						t.Logf("note: status %d; RFC 9111 §5.2.2.2: the generated status code SHOULD be 504 unless another error status code is more applicable", r.status)
					}
				}},
			},
		},
	)

	// §4.4: invalidation.
	rows = append(rows,
		rfcRow{
			name: "RFC 9111 §4.4 POST 2xx invalidates the target URI and the Location URI; RFC 9211 fwd=method",
			steps: []rfcStep{
				{set: scripts{"": sc("a", cc60).on(http.MethodPost, 201, "created", "Location: /script/$name-b"), "b": sc("b", cc60)},
					body: s("a"), seen: n(1)},
				{body: s("a"), xCache: "HIT", seen: n(1)},
				{path: "b", body: s("b"), seen: n(1)},
				{path: "b", body: s("b"), xCache: "HIT", seen: n(1)},
				{method: http.MethodPost, status: 201, body: s("created"), cs: []string{"fwd=method"}, seen: n(2)},
				{body: s("a"), xCache: "MISS", seen: n(3)},
				{path: "b", body: s("b"), xCache: "MISS", seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.4 PUT 204 and DELETE 200 invalidate the target URI",
			steps: []rfcStep{
				{set: scripts{"": sc("x", cc60).on(http.MethodPut, 204, "").on(http.MethodDelete, 200, "deleted")}, body: s("x"), seen: n(1)},
				{body: s("x"), xCache: "HIT", seen: n(1)},
				{method: http.MethodPut, status: 204, seen: n(2)},
				{body: s("x"), xCache: "MISS", seen: n(3)},
				{body: s("x"), xCache: "HIT", seen: n(3)},
				{method: http.MethodDelete, body: s("deleted"), seen: n(4)},
				{body: s("x"), xCache: "MISS", seen: n(5)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.4 POST with 5xx does not invalidate (only non-error responses must)",
			steps: []rfcStep{
				{set: scripts{"": sc("k", cc60).on(http.MethodPost, 500, "boom")}, body: s("k"), seen: n(1)},
				{body: s("k"), xCache: "HIT", seen: n(1)},
				{method: http.MethodPost, status: 500, body: s("boom"), seen: n(2)},
				{body: s("k"), xCache: "HIT", seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.4 Location on another origin is not invalidated",
			steps: []rfcStep{
				{set: scripts{"": sc("a", cc60).on(http.MethodPost, 201, "created", "Location: http://other.invalid/script/$name-b"), "b": sc("b", cc60)},
					path: "b", body: s("b"), seen: n(1)},
				{method: http.MethodPost, status: 201, seen: n(1)},
				{path: "b", body: s("b"), xCache: "HIT", seen: n(1)},
			},
		},
	)

	// RFC 5861.
	rows = append(rows,
		rfcRow{
			name: "RFC 5861 §3 stale-while-revalidate serves STALE at once; one background revalidation",
			steps: []rfcStep{
				{set: scripts{"": sc("swr-v1", "Cache-Control: max-age=1, stale-while-revalidate=30", etagV1)}, body: s("swr-v1"), seen: n(1)},
				{sleep: stale, set: scripts{"": sc("swr-v2", "Cache-Control: max-age=60", `ETag: "v2"`).delay(400)},
					body: s("swr-v1"), xCache: "STALE", cs: []string{"hit"}, maxTook: 300 * time.Millisecond},
				{body: s("swr-v1"), xCache: "STALE", maxTook: 300 * time.Millisecond},
				{noRequest: true, note: "one background request, conditional", seen: n(2), eventually: true,
					sent: map[string]string{"If-None-Match": `"v1"`}},
				{sleep: 700 * time.Millisecond, note: "the refreshed response", body: s("swr-v2"), xCache: "HIT", seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 5861 §3 beyond the stale-while-revalidate window: not served stale",
			steps: []rfcStep{
				{set: scripts{"": sc("swr", "Cache-Control: max-age=1, stale-while-revalidate=1", etagV1).honor()}, body: s("swr"), seen: n(1)},
				{sleep: 2500 * time.Millisecond, body: s("swr"), xCacheNot: "STALE", seen: n(2), sent: map[string]string{"If-None-Match": `"v1"`}},
			},
		},
		rfcRow{
			name: "RFC 5861 §4 stale-if-error serves the stale response on 500 and 503",
			steps: []rfcStep{
				{set: scripts{"": sc("sie", "Cache-Control: max-age=1, stale-if-error=30", etagV1).honor()}, body: s("sie"), seen: n(1)},
				{sleep: stale, set: scripts{"": sc("err", "Cache-Control: no-store").status(500)}, body: s("sie"), xCache: "STALE",
					cs: []string{"fwd=stale", "fwd-status=500", "detail=stale-if-error"}, seen: n(2)},
				{set: scripts{"": sc("err", "Cache-Control: no-store").status(503)}, body: s("sie"), xCache: "STALE",
					cs: []string{"fwd-status=503"}, seen: n(3)},
			},
		},
		rfcRow{
			name: "RFC 5861 §4 beyond the stale-if-error window the error is passed on",
			steps: []rfcStep{
				{set: scripts{"": sc("sie", "Cache-Control: max-age=1, stale-if-error=1", etagV1).honor()}, body: s("sie"), seen: n(1)},
				{sleep: 2500 * time.Millisecond, set: scripts{"": sc("err", "Cache-Control: no-store").status(500)}, status: 500, body: s("err"), seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 5861 §4 stale-if-error with the origin down",
			env:  envOwn,
			steps: []rfcStep{
				{set: scripts{"": sc("sie", "Cache-Control: max-age=1, stale-if-error=30", etagV1).honor()}, body: s("sie"), seen: n(1)},
				{sleep: stale, kill: true, body: s("sie"), xCache: "STALE", cs: []string{"detail=stale-if-error"}},
				{note: "the client's own, non-matching validator", hdr: []string{`If-None-Match: "other"`}, body: s("sie"), xCache: "STALE"},
			},
		},
	)

	// RFC 9211 details not covered above.
	rows = append(rows,
		rfcRow{
			name: "RFC 9211 §2.2 fwd=request when request max-age=0 or min-fresh rejects a fresh entry",
			steps: []rfcStep{
				{set: scripts{"": sc("fr", cc60, etagV1).honor()}, body: s("fr"), seen: n(1)},
				{sleep: 1100 * time.Millisecond, hdr: []string{"Cache-Control: max-age=0"}, body: s("fr"), cs: []string{"fwd=request"}, seen: n(2)},
				{hdr: []string{"Cache-Control: min-fresh=120"}, body: s("fr"), cs: []string{"fwd=request"}, seen: n(3)},
			},
		},
		rfcRow{
			name: "RFC 9211 §2.2 only-if-cached 504 has no fwd (nothing went forward)",
			steps: []rfcStep{
				{set: scripts{"": sc("oic", cc60)}, hdr: []string{"Cache-Control: only-if-cached"}, status: 504,
					cs: []string{"dedupcache"}, csNot: []string{"fwd=", "hit"}, seen: n(0)},
			},
		},
	)

	// RFC 9213.
	rows = append(rows,
		rfcRow{
			name: "RFC 9213 §2.1 CDN-Cache-Control max-age overrides Cache-Control no-store and private",
			steps: []rfcStep{
				{set: scripts{"": sc("cdn", "Cache-Control: no-store", "CDN-Cache-Control: max-age=60"),
					"b": sc("cdn-b", "Cache-Control: private", "CDN-Cache-Control: max-age=60")}, body: s("cdn"), seen: n(1)},
				{body: s("cdn"), xCache: "HIT", seen: n(1)},
				{path: "b", body: s("cdn-b"), seen: n(1)},
				{path: "b", body: s("cdn-b"), xCache: "HIT", seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9213 §2.1 CDN-Cache-Control no-store overrides Cache-Control max-age",
			steps: []rfcStep{
				{set: scripts{"": sc("cdn-ns", cc60, "CDN-Cache-Control: no-store")}, body: s("cdn-ns"), seen: n(1)},
				{body: s("cdn-ns"), xCacheNot: "HIT", seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9213 §2.1 CDN-Cache-Control max-age=1 overrides a longer Cache-Control max-age",
			steps: []rfcStep{
				{set: scripts{"": sc("cdn-short", cc60, "CDN-Cache-Control: max-age=1", etagV1).honor()}, body: s("cdn-short"), seen: n(1)},
				{sleep: stale, body: s("cdn-short"), seen: n(2)},
			},
		},
	)

	// RFC 9110 §14: ranges, and HEAD.
	rows = append(rows,
		rfcRow{
			name: "RFC 9110 §14.2 §15.3.7 Range on a cached 200 answered 206 from the cache",
			steps: []rfcStep{
				{set: scripts{"": sc(digits, cc60, `ETag: "r1"`)}, body: s(digits), seen: n(1)},
				{hdr: []string{"Range: bytes=0-3"}, status: 206, body: s("0123"), hdrIs: map[string]string{"Content-Range": "bytes 0-3/10"},
					check: wantLength(4), seen: n(1)},
				{hdr: []string{"Range: bytes=-3"}, status: 206, body: s("789"), hdrIs: map[string]string{"Content-Range": "bytes 7-9/10"}, seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9110 §15.5.17 unsatisfiable Range gives 416 with a Content-Range giving the length",
			steps: []rfcStep{
				{set: scripts{"": sc(digits, cc60, `ETag: "r1"`)}, body: s(digits), seen: n(1)},
				{hdr: []string{"Range: bytes=20-30"}, status: 416, hdrIs: map[string]string{"Content-Range": "bytes */10"}, seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9110 §13.1.5 If-Range: non-matching or weak ETag gives the full 200",
			steps: []rfcStep{
				{set: scripts{"": sc(digits, cc60, `ETag: "r1"`)}, body: s(digits), seen: n(1)},
				{hdr: []string{"Range: bytes=0-3", `If-Range: "other"`}, body: s(digits), seen: n(1)},
				{hdr: []string{"Range: bytes=0-3", `If-Range: W/"r1"`}, body: s(digits), seen: n(1)},
				{hdr: []string{"Range: bytes=0-3", `If-Range: "r1"`}, status: 206, body: s("0123"), seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9110 §9.3.2 RFC 9111 §4 HEAD after GET served from the stored GET",
			steps: []rfcStep{
				{set: scripts{"": sc(digits, cc60)}, body: s(digits), seen: n(1)},
				{method: http.MethodHead, noBody: true, xCache: "HIT", cs: []string{"hit"}, check: wantLength(10), seen: n(1)},
			},
		},
	)

	// Collapsing, synthesized validators, Via.
	rows = append(rows,
		rfcRow{
			name: "RFC 9111 §4 collapsed requests: 200 concurrent misses, one origin request",
			steps: []rfcStep{
				{set: scripts{"": sc("coalesced", cc60).delay(300)}, parallel: 200, body: s("coalesced"), seen: n(1)},
				{body: s("coalesced"), xCache: "HIT", seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9110 §8.8.3 synthesized strong ETag on hits; If-None-Match with it gives 304 (synthesize_etag)",
			steps: []rfcStep{
				{set: scripts{"": sc("synth", cc60)}, body: s("synth"), seen: n(1)},
				{body: s("synth"), xCache: "HIT", save: map[string]string{"etag": "Etag"}, check: func(t *testing.T, r result, x *rfcRun) {
					if e := r.header.Get("Etag"); !regexp.MustCompile(`^"dc-[0-9a-f]+"$`).MatchString(e) {
						t.Errorf(`ETag %q; want a strong "dc-<hex>"`, e)
					}
				}},
				{hdr: []string{"If-None-Match: $etag"}, status: 304, noBody: true, seen: n(1)},
			},
		},
		rfcRow{
			// "An HTTP-to-HTTP gateway MUST send an appropriate Via header
			// field in each inbound request message and MAY send a Via
			// header field in forwarded response messages." dedupcache is a
			// gateway (reverse proxy): Via on requests, none added to
			// responses (a tenth of hit throughput, BENCHMARKS.md).
			name: "RFC 9110 §7.6.3 gateway: Via on the forwarded request, the response's own Via kept",
			steps: []rfcStep{
				{set: scripts{"": sc("via", cc60, "Via: 1.1 origin-side")}, body: s("via"), seen: n(1), check: func(t *testing.T, r result, x *rfcRun) {
					if v := strings.Join(r.header.Values("Via"), ","); v != "1.1 origin-side" {
						t.Errorf("response Via %q; want the upstream's, unchanged", v)
					}
					l := x.originLog(t, "")
					if len(l.Requests) == 0 || !strings.Contains(strings.Join(l.Requests[len(l.Requests)-1].Header.Values("Via"), ","), "dedupcache") {
						t.Errorf("origin saw no Via naming dedupcache: %v", l.Requests)
					}
				}},
				{body: s("via"), xCache: "HIT", check: func(t *testing.T, r result, x *rfcRun) {
					if v := strings.Join(r.header.Values("Via"), ","); v != "1.1 origin-side" {
						t.Errorf("hit Via %q; want the stored upstream Via", v)
					}
				}},
			},
		},
	)

	// Further RFC 9111 requirements around the ones above.
	rows = append(rows,
		rfcRow{
			// The cache fills itself with the full response (the client's
			// validator is not sent: a 304 could not be stored) and answers
			// the client's condition from it, as nginx and Varnish do.
			name: "RFC 9111 §4.3.2 conditional request on a cold URL: the cache fetches the full response, stores it and answers 304 itself",
			steps: []rfcStep{
				{set: scripts{"": sc("cond", cc60, etagV1).honor()}, hdr: []string{`If-None-Match: "v1"`}, status: 304, noBody: true,
					seen: n(1), sent: map[string]string{"If-None-Match": ""}},
				{body: s("cond"), seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.3.2 §4.3.3 client conditional on a stale entry: 304 if its validator matches, else the full response",
			steps: []rfcStep{
				{set: scripts{"": sc("sc", "Cache-Control: max-age=1", etagV1).honor()}, body: s("sc"), seen: n(1)},
				{sleep: stale, hdr: []string{`If-None-Match: "v1"`}, status: 304, noBody: true, seen: n(2), sent: map[string]string{"If-None-Match": `"v1"`}},
				{sleep: stale, hdr: []string{`If-None-Match: "zzz"`}, body: s("sc"), seen: n(3)},
			},
		},
		rfcRow{
			name: "RFC 9110 §9.3.2 RFC 9111 §4 a HEAD response does not answer a later GET without its body",
			steps: []rfcStep{
				{set: scripts{"": sc(digits, cc60)}, method: http.MethodHead, noBody: true, seen: n(1)},
				{body: s(digits)},
			},
		},
		rfcRow{
			name: "RFC 9111 §5.2 Cache-Control directive names are case-insensitive",
			steps: []rfcStep{
				{set: scripts{"": sc("case", "Cache-Control: MAX-AGE=60")}, body: s("case"), seen: n(1)},
				{body: s("case"), xCache: "HIT", seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.1 duplicate max-age: the first occurrence or stale, never the last",
			steps: []rfcStep{
				{set: scripts{"": sc("dup", "Cache-Control: max-age=1, max-age=60", etagV1).honor()}, body: s("dup"), seen: n(1)},
				{sleep: stale, body: s("dup"), seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.4 invalidation covers every Vary variant of the target URI",
			steps: []rfcStep{
				{set: scripts{"": sc("lang=", cc60, "Vary: Accept-Language").echo("Accept-Language").on(http.MethodPost, 200, "ok")},
					hdr: []string{"Accept-Language: en"}, body: s("lang=en"), seen: n(1)},
				{hdr: []string{"Accept-Language: fr"}, body: s("lang=fr"), seen: n(2)},
				{hdr: []string{"Accept-Language: en"}, body: s("lang=en"), xCache: "HIT", seen: n(2)},
				{method: http.MethodPost, body: s("ok"), seen: n(3)},
				{hdr: []string{"Accept-Language: en"}, body: s("lang=en"), xCache: "MISS", seen: n(4)},
				{hdr: []string{"Accept-Language: fr"}, body: s("lang=fr"), xCache: "MISS", seen: n(5)},
			},
		},
		rfcRow{
			name: "RFC 9111 §5.2.2.4 response no-cache not served when validation fails (grace configured)",
			env:  envGrace,
			steps: []rfcStep{
				{set: scripts{"": sc("rnc", "Cache-Control: max-age=60, no-cache", etagV1).honor()}, body: s("rnc"), seen: n(1)},
				{set: scripts{"": sc("down", "Cache-Control: no-store").status(503)}, status: 503, body: s("down"), seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.4 request max-stale does not override must-revalidate",
			steps: []rfcStep{
				{set: scripts{"": sc("mrs", "Cache-Control: max-age=1, must-revalidate", etagV1).honor()}, body: s("mrs"), seen: n(1)},
				{sleep: stale, hdr: []string{"Cache-Control: max-stale=30"}, body: s("mrs"), seen: n(2), sent: map[string]string{"If-None-Match": `"v1"`}},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.1 a request with the varying field does not match a response stored for one without it",
			steps: []rfcStep{
				{set: scripts{"": sc("lang=", cc60, "Vary: Accept-Language").echo("Accept-Language")}, body: s("lang="), seen: n(1)},
				{hdr: []string{"Accept-Language: en"}, body: s("lang=en"), seen: n(2)},
				{body: s("lang="), xCache: "HIT", seen: n(2)},
			},
		},
		rfcRow{
			name: "RFC 9111 §4.2.3 apparent age from an old Date counted",
			steps: []rfcStep{
				{set: scripts{"": sc("dated", "Cache-Control: max-age=300", "Date: "+date(-100*time.Second))}, body: s("dated"), seen: n(1)},
				{body: s("dated"), xCache: "HIT", age: ages(100, 110), seen: n(1)},
			},
		},
		rfcRow{
			name: "RFC 9211 §2.2 fwd=stale (not uri-miss) when revalidating a stored response fails with the origin down",
			env:  envOwn,
			steps: []rfcStep{
				{set: scripts{"": sc("x", "Cache-Control: max-age=1", etagV1).honor()}, body: s("x"), seen: n(1)},
				{sleep: stale, kill: true, status: -1, cs: []string{"fwd=stale"}, csNot: []string{"fwd=uri-miss"}},
			},
		},
	)

	// The rows run concurrently, each in its own goroutine (t.Run may be
	// called from several goroutines), so that the table takes about as
	// long as its slowest row whatever -parallel is.
	var mu sync.Mutex
	results := map[string]bool{}
	var wg sync.WaitGroup
	for i, row := range rows {
		wg.Go(func() {
			t.Run(row.name, func(t *testing.T) {
				x := &rfcRun{name: fmt.Sprintf("r%02d", i), vars: map[string]string{}}
				switch row.env {
				case envOwn:
					x.o = startOrigin(t)
					yaml := keepYAML
					if row.grace {
						yaml = graceYAML
					}
					cfg := writeFile(t, "rfc.yaml", yaml)
					x.c = startCache(t, cacheOptions{upstream: x.o.url, args: []string{"-config", cfg, "-engine", engine}})
				default:
					x.o, x.c = pairs[row.env].o, pairs[row.env].c
				}
				defer func() {
					if t.Failed() {
						t.Logf("transcript of %s:\n  %s", x.name, strings.Join(x.log, "\n  "))
					}
					mu.Lock()
					results[row.name] = !t.Failed()
					mu.Unlock()
				}()
				for j, st := range row.steps {
					runStep(t, x, j+1, st)
				}
			})
		})
	}
	wg.Wait()
	// Connections the concurrent rows dialed but never used would hold up
	// the caches' graceful shutdown.
	client.CloseIdleConnections()

	failed := 0
	var b strings.Builder
	for _, r := range rows {
		verdict := "PASS"
		if !results[r.name] {
			verdict = "FAIL"
			failed++
		}
		fmt.Fprintf(&b, "  %s  %s\n", verdict, r.name)
	}
	t.Logf("RFC table: %d rows, %d failed, %v (origins and caches started included)\n%s",
		len(rows), failed, time.Since(start).Round(10*time.Millisecond), b.String())
}

// runStep performs one step and checks its expectations.
func runStep(t *testing.T, x *rfcRun, num int, st rfcStep) {
	t.Helper()
	if st.sleep > 0 {
		time.Sleep(st.sleep)
	}
	if st.kill {
		x.o.kill()
		x.originDown = true
	}
	for suffix, script := range st.set {
		x.setScript(t, suffix, script)
	}
	method := st.method
	if method == "" {
		method = http.MethodGet
	}
	p := x.path(st.path)
	hdr := http.Header{}
	for _, l := range st.hdr {
		k, v, _ := strings.Cut(l, ":")
		hdr.Add(strings.TrimSpace(k), x.expand(strings.TrimSpace(v)))
	}
	label := fmt.Sprintf("step %d: %s %s %v", num, method, p, st.hdr)
	if st.note != "" {
		label += " (" + st.note + ")"
	}
	if st.noRequest {
		label = fmt.Sprintf("step %d: (no request: %s)", num, st.note)
	}
	errorf := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: %s", label, fmt.Sprintf(format, args...))
	}

	var results []result
	switch {
	case st.noRequest:
	case st.parallel > 0:
		results = make([]result, st.parallel)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for k := range results {
			wg.Go(func() {
				<-gate
				results[k] = doWith(method, x.c.url+p, hdr.Clone())
			})
		}
		close(gate)
		wg.Wait()
	default:
		results = []result{doWith(method, x.c.url+p, hdr)}
	}
	for k, r := range results {
		if k == 0 {
			x.log = append(x.log, fmt.Sprintf("%s -> %d %.60q X-Cache=%q Cache-Status=%q Age=%q took=%v",
				label, r.status, r.body, r.header.Get("X-Cache"), r.header.Get("Cache-Status"), r.header.Get("Age"), r.took.Round(time.Millisecond)))
		}
		if r.err != nil {
			errorf("request #%d: %v", k, r.err)
			return
		}
		want := st.status
		if want == 0 {
			want = http.StatusOK
		}
		if want > 0 && r.status != want {
			errorf("status %d; want %d (body %.100q, Cache-Status %q)", r.status, want, r.body, r.header.Get("Cache-Status"))
		}
		if st.body != nil && string(r.body) != *st.body {
			errorf("body %.100q; want %q", r.body, *st.body)
		}
		if st.noBody && len(r.body) != 0 {
			errorf("body %.100q; want none", r.body)
		}
		if st.parallel > 0 {
			if k > 0 && t.Failed() {
				return // one report is enough
			}
			continue
		}
		xc := r.header.Get("X-Cache")
		if st.xCache != "" && xc != st.xCache {
			errorf("X-Cache %q; want %q (Cache-Status %q)", xc, st.xCache, r.header.Get("Cache-Status"))
		}
		if st.xCacheNot != "" && xc == st.xCacheNot {
			errorf("X-Cache %q; want anything else (Cache-Status %q)", xc, r.header.Get("Cache-Status"))
		}
		cs := strings.Join(r.header.Values("Cache-Status"), ", ")
		for _, want := range st.cs {
			if !csHas(cs, want) {
				errorf("Cache-Status %q; want %q in it", cs, want)
			}
		}
		for _, want := range st.csNot {
			if csHas(cs, want) {
				errorf("Cache-Status %q; want no %q in it", cs, want)
			}
		}
		for k, v := range st.hdrIs {
			got, present := r.header[http.CanonicalHeaderKey(k)]
			switch {
			case v == "" && present:
				errorf("%s %q; want it absent", k, got)
			case v != "" && r.header.Get(k) != v:
				errorf("%s %q; want %q", k, r.header.Get(k), v)
			}
		}
		for _, k := range st.hdrHas {
			if r.header.Get(k) == "" {
				errorf("no %s field", k)
			}
		}
		if st.age != nil {
			a, err := strconv.Atoi(r.header.Get("Age"))
			if err != nil || a < st.age[0] || a > st.age[1] {
				errorf("Age %q; want an integer in [%d, %d]", r.header.Get("Age"), st.age[0], st.age[1])
			}
		}
		if st.maxTook > 0 && r.took > st.maxTook {
			errorf("took %v; want at most %v", r.took, st.maxTook)
		}
		for v, field := range st.save {
			x.vars[v] = r.header.Get(field)
		}
		if st.check != nil {
			st.check(t, r, x)
		}
	}
	if st.seen == nil && st.sent == nil {
		return
	}
	if x.originDown {
		t.Fatalf("%s: test bug: origin checks after the origin was killed", label)
	}
	l := x.originLog(t, st.path)
	if st.seen != nil {
		if st.eventually {
			deadline := time.Now().Add(3 * time.Second)
			for l.Count < *st.seen && time.Now().Before(deadline) {
				time.Sleep(pollEvery)
				l = x.originLog(t, st.path)
			}
			time.Sleep(150 * time.Millisecond) // and no more than that
			l = x.originLog(t, st.path)
		}
		if l.Count != *st.seen {
			var seen []string
			for _, rq := range l.Requests {
				seen = append(seen, rq.Method+" "+fmt.Sprint(condFields(rq.Header)))
			}
			errorf("origin saw %d requests for %s; want %d (%v)", l.Count, x.path(st.path), *st.seen, seen)
		}
		x.log = append(x.log, fmt.Sprintf("   origin has seen %d requests for %s", l.Count, x.path(st.path)))
	}
	if st.sent != nil {
		if len(l.Requests) == 0 {
			errorf("origin saw no request; want one with %v", st.sent)
			return
		}
		last := l.Requests[len(l.Requests)-1].Header
		for k, v := range st.sent {
			got := last.Get(k)
			if got != v {
				errorf("origin's last request had %s %q; want %q (conditional fields %v)", k, got, v, condFields(last))
			}
		}
	}
}

// csHas reports whether a Cache-Status value has want: with a ";", as a
// substring; otherwise as one of its members' items or parameters, exactly
// ("hit", "stored", "fwd=stale"), or as a prefix when want ends in "="
// ("fwd=", "ttl=").
func csHas(cs, want string) bool {
	if strings.Contains(want, ";") {
		return strings.Contains(cs, want)
	}
	for member := range strings.SplitSeq(cs, ",") {
		for p := range strings.SplitSeq(member, ";") {
			p = strings.TrimSpace(p)
			if p == want || (strings.HasSuffix(want, "=") && strings.HasPrefix(p, want)) {
				return true
			}
		}
	}
	return false
}

// condFields returns the conditional and cache fields of a request header.
func condFields(h http.Header) map[string]string {
	out := map[string]string{}
	for _, k := range []string{"If-None-Match", "If-Modified-Since", "If-Range", "Range", "Cache-Control", "Pragma", "Accept-Encoding"} {
		if v := h.Get(k); v != "" {
			out[k] = v
		}
	}
	return out
}

// wantLength checks the response's Content-Length.
func wantLength(want int) func(*testing.T, result, *rfcRun) {
	return func(t *testing.T, r result, _ *rfcRun) {
		t.Helper()
		if r.length != int64(want) {
			t.Errorf("Content-Length %d (field %q); want %d", r.length, r.header.Get("Content-Length"), want)
		}
	}
}

// ttlIn checks the ttl parameter of Cache-Status.
func ttlIn(lo, hi int) func(*testing.T, result, *rfcRun) {
	return func(t *testing.T, r result, _ *rfcRun) {
		t.Helper()
		cs := r.header.Get("Cache-Status")
		m := regexp.MustCompile(`ttl=(-?\d+)`).FindStringSubmatch(cs)
		if m == nil {
			t.Errorf("Cache-Status %q has no ttl", cs)
			return
		}
		if ttl, _ := strconv.Atoi(m[1]); ttl < lo || ttl > hi {
			t.Errorf("Cache-Status ttl %d; want in [%d, %d] (%q)", ttl, lo, hi, cs)
		}
	}
}

// originAcceptEncodingWithin checks that the origin's last request had an
// Accept-Encoding naming only codings the client accepted.
func originAcceptEncodingWithin(codings ...string) func(*testing.T, result, *rfcRun) {
	return func(t *testing.T, _ result, x *rfcRun) {
		t.Helper()
		l := x.originLog(t, "")
		if len(l.Requests) == 0 {
			t.Errorf("origin saw no request")
			return
		}
		ae := l.Requests[len(l.Requests)-1].Header.Get("Accept-Encoding")
		x.log = append(x.log, fmt.Sprintf("   origin saw Accept-Encoding %q", ae))
		if strings.TrimSpace(ae) == "" {
			t.Errorf("origin saw no Accept-Encoding; want a subset of %v", codings)
		}
		for m := range strings.SplitSeq(ae, ",") {
			c, _, _ := strings.Cut(m, ";")
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" && !slices.Contains(codings, c) {
				t.Errorf("origin saw Accept-Encoding %q; coding %q is not among the client's %v", ae, c, codings)
			}
		}
	}
}
