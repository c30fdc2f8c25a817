package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"dedupcache/internal/testutil"
	"dedupcache/policy"
	"dedupcache/proxy"
)

// TestMain keeps the purge records out of the test output.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	goleak.VerifyTestMain(m, testutil.LeakOptions()...) // and fails the package if a goroutine outlives the tests
}

// newOrigin starts a test upstream serving h.
func newOrigin(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	o := httptest.NewServer(h)
	t.Cleanup(o.Close)
	return o
}

// newProxy starts a real proxy in front of upstream, with every setting
// given (no reliance on proxy.New's defaults), and a server for it.
func newProxy(t *testing.T, upstream string, observe func(time.Duration)) (*proxy.Proxy, *httptest.Server) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Config{
		Upstream:              u,
		MaxMemory:             64 << 20,
		MaxObjectSize:         1 << 20,
		Policy:                policy.DefaultOptions(),
		TagHeader:             "Surrogate-Key",
		DialTimeout:           time.Second,
		ResponseHeaderTimeout: 2 * time.Second,
		ReadTimeout:           5 * time.Second,
		IdleConnTimeout:       time.Minute,
		MaxIdleConnsPerHost:   8,
		ObserveUpstream:       observe,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return p, srv
}

// get fetches url and fails the test on a transport error.
func get(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// serve runs one request through h and returns the recorder.
func serve(h http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.Host = "127.0.0.1:9091"
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// fakeSource is a Source without a cache behind it, for the guard tests.
type fakeSource struct {
	purges int
	last   proxy.PurgeRequest
}

func (f *fakeSource) Stats() proxy.Stats { return proxy.Stats{Hits: 1} }
func (f *fakeSource) TopBodies(int) []proxy.TopBody {
	return []proxy.TopBody{{Hash: 0xab, Size: 3, Refs: 2, ExampleKeys: []string{"example.com /reset?token=secret"}}}
}
func (f *fakeSource) Purge(r proxy.PurgeRequest) (proxy.PurgeResult, error) {
	f.purges++
	f.last = r
	return proxy.PurgeResult{PurgedEntries: 1}, nil
}

func TestReadyz(t *testing.T) {
	o := newOrigin(t, func(http.ResponseWriter, *http.Request) {})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name, upstream string
		want           int
	}{
		{"upstream up", o.URL, 200},
		{"upstream down", down, 503},
		{"no upstream", "", 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Listen: "127.0.0.1:9091"}
			if tt.upstream != "" {
				cfg.Upstream, _ = url.Parse(tt.upstream)
			}
			rec := serve(New(&fakeSource{}, cfg).Handler(), "GET", "/readyz")
			if rec.Code != tt.want {
				t.Errorf("got %d %q; want %d", rec.Code, rec.Body.String(), tt.want)
			}
		})
	}
}

func TestTopBodies(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if strings.HasPrefix(r.URL.Path, "/shared") {
			_, _ = w.Write([]byte("the shared body"))
			return
		}
		_, _ = w.Write([]byte("own " + r.URL.Path))
	})
	p, srv := newProxy(t, o.URL, nil)
	for _, path := range []string{"/shared/1", "/shared/2", "/shared/3", "/own/1"} {
		get(t, srv.URL+path)
	}
	rec := serve(New(p, Config{Listen: "127.0.0.1:9091"}).Handler(), "GET", "/api/top-bodies")
	var top []TopBody
	if err := json.Unmarshal(rec.Body.Bytes(), &top); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if len(top) != 1 || top[0].Refs != 3 || top[0].Size != int64(len("the shared body")) || len(top[0].ExampleKeys) != 3 {
		t.Fatalf("got %+v; want one body with 3 refs and 3 example keys (unshared bodies are left out)", top)
	}
	if len(top[0].Hash) != 16 || strings.Trim(top[0].Hash, "0123456789abcdef") != "" {
		t.Errorf("hash %q; want 16 hex digits", top[0].Hash)
	}
	for _, k := range top[0].ExampleKeys {
		if !strings.Contains(k, "/shared/") {
			t.Errorf("example key %q is not one of the /shared/ entries", k)
		}
	}
}

func TestHex16(t *testing.T) {
	for _, tt := range []struct {
		h    uint64
		want string
	}{{0, "0000000000000000"}, {0xab, "00000000000000ab"}, {^uint64(0), "ffffffffffffffff"}} {
		if got := hex16(tt.h); got != tt.want {
			t.Errorf("hex16(%#x): got %q; want %q", tt.h, got, tt.want)
		}
	}
}

func TestAdminHostCheck(t *testing.T) {
	tests := []struct {
		name, listen, token, host string
		allowed                   []string
		want                      int
	}{
		{"loopback by address", "127.0.0.1:9091", "", "127.0.0.1:9091", nil, 200},
		{"loopback, other port", "127.0.0.1:9091", "", "127.0.0.1:80", nil, 200},
		{"localhost", "127.0.0.1:9091", "", "localhost:9091", nil, 200},
		{"localhost upper case, trailing dot", "127.0.0.1:9091", "", "LocalHost.:9091", nil, 200},
		{"ipv6 loopback", "127.0.0.1:9091", "", "[::1]:9091", nil, 200},
		{"no Host (HTTP/1.0)", "127.0.0.1:9091", "", "", nil, 200},
		{"rebinding name", "127.0.0.1:9091", "", "attacker.example:9091", nil, 421},
		{"rebinding name without port", "127.0.0.1:9091", "", "attacker.example", nil, 421},
		{"rebinding name, token set", "127.0.0.1:9091", "s3cret-s3cret-s3", "attacker.example", nil, 421},
		{"other loopback address", "127.0.0.1:9091", "", "127.0.0.2:9091", nil, 421},
		{"allowed host", "127.0.0.1:9091", "", "cache.internal:9091", []string{"cache.internal"}, 200},
		{"allowed host given with port", "127.0.0.1:9091", "", "CACHE.internal", []string{"cache.internal:1234"}, 200},
		{"listen host name", "localhost:9091", "", "localhost:9091", nil, 200},
		{"listen on ::1", "[::1]:9091", "", "[::1]:9091", nil, 200},
		{"non-loopback listen address", "10.0.0.5:9091", "", "10.0.0.5:9091", nil, 200},
		{"non-loopback listen, other name, no token", "10.0.0.5:9091", "", "attacker.example", nil, 421},
		{"non-loopback listen, other name, token", "10.0.0.5:9091", "s3cret-s3cret-s3", "cache.example:9091", nil, 200},
		{"wildcard listen, no token", "0.0.0.0:9091", "", "cache.example:9091", nil, 421},
		{"wildcard listen, localhost, no token", "0.0.0.0:9091", "", "localhost:9091", nil, 200},
		{"wildcard listen, token", "0.0.0.0:9091", "s3cret-s3cret-s3", "cache.example:9091", nil, 200},
		{"empty-host listen, token", ":9091", "s3cret-s3cret-s3", "cache.example:9091", nil, 200},
		{"ipv6 wildcard, token", "[::]:9091", "s3cret-s3cret-s3", "10.1.2.3:9091", nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(&fakeSource{}, Config{Listen: tt.listen, Token: tt.token, AllowedHosts: tt.allowed})
			for _, path := range []string{"/healthz", "/api/stats", "/metrics", "/"} {
				rec := serve(a.Handler(), "GET", path, "Host", tt.host)
				if rec.Code != tt.want {
					t.Errorf("GET %s with Host %q: got %d %q; want %d", path, tt.host, rec.Code, rec.Body.String(), tt.want)
				}
				if rec.Code == 421 && !strings.Contains(rec.Body.String(), "admin.allowed_hosts") {
					t.Errorf("421 body %q does not say what to do", rec.Body.String())
				}
			}
		})
	}
}

func TestAdminRejectsCrossSite(t *testing.T) {
	const host = "127.0.0.1:9091"
	tests := []struct {
		name   string
		method string
		hdr    []string
		want   int
	}{
		{"curl: no Origin, no Sec-Fetch-Site", "POST", nil, 200},
		{"same origin (dashboard)", "POST", []string{"Origin", "http://" + host, "Sec-Fetch-Site", "same-origin"}, 200},
		{"same origin, old browser", "POST", []string{"Origin", "http://" + host}, 200},
		{"typed by the user", "POST", []string{"Sec-Fetch-Site", "none"}, 200},
		{"cross-site form", "POST", []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, 403},
		{"cross-site, Sec-Fetch-Site only", "POST", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"same-site", "POST", []string{"Origin", "http://localhost:8080", "Sec-Fetch-Site", "same-site"}, 403},
		{"foreign Origin, old browser", "POST", []string{"Origin", "http://evil.example"}, 403},
		{"other port, old browser", "POST", []string{"Origin", "http://127.0.0.1:8080"}, 403},
		{"https Origin on an http listener", "POST", []string{"Origin", "https://" + host}, 403},
		{"null Origin (sandboxed page)", "POST", []string{"Origin", "null"}, 403},
		{"GET is not a mutation", "GET", []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, 404}, // no GET route: not a purge
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeSource{}
			a := New(src, Config{Listen: host})
			rec := serve(a.Handler(), tt.method, "/api/purge?all=1", append([]string{"Host", host}, tt.hdr...)...)
			if rec.Code != tt.want {
				t.Errorf("got %d %q; want %d", rec.Code, rec.Body.String(), tt.want)
			}
			if wantPurged := tt.want == 200; (src.purges == 1) != wantPurged {
				t.Errorf("purges run: %d; want purged %v", src.purges, wantPurged)
			}
			if rec.Code == 403 && !strings.Contains(rec.Body.String(), "cross-site") {
				t.Errorf("403 body %q does not say why", rec.Body.String())
			}
		})
	}
}

func TestTopBodiesNeedsToken(t *testing.T) {
	const token = "s3cret-s3cret-s3cret"
	tests := []struct {
		name, listen, token, auth string
		want                      int
	}{
		{"loopback, no token set", "127.0.0.1:9091", "", "", 200},
		{"token set, none sent", "127.0.0.1:9091", token, "", 401},
		{"token set, wrong one", "127.0.0.1:9091", token, "Bearer wrong", 401},
		{"token set, not bearer", "127.0.0.1:9091", token, token, 401},
		{"token set, sent", "127.0.0.1:9091", token, "Bearer " + token, 200},
		{"exposed, none sent", "0.0.0.0:9091", token, "", 401},
		{"exposed, sent", "0.0.0.0:9091", token, "Bearer " + token, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(&fakeSource{}, Config{Listen: tt.listen, Token: tt.token})
			var hdr []string
			if tt.auth != "" {
				hdr = []string{"Authorization", tt.auth}
			}
			rec := serve(a.Handler(), "GET", "/api/top-bodies", hdr...)
			if rec.Code != tt.want {
				t.Fatalf("got %d %q; want %d", rec.Code, rec.Body.String(), tt.want)
			}
			if leaked := strings.Contains(rec.Body.String(), "token=secret"); leaked != (tt.want == 200) {
				t.Errorf("body %q shows the example key: %v; want %v", rec.Body.String(), leaked, tt.want == 200)
			}
			if tt.want == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			// What the scripts and probes read stays open.
			for _, path := range []string{"/healthz", "/api/stats", "/metrics"} {
				if rec := serve(a.Handler(), "GET", path); rec.Code != 200 {
					t.Errorf("GET %s without token: got %d; want 200", path, rec.Code)
				}
			}
		})
	}
}

// TestTopBodiesWhileFilling polls /api/top-bodies while a real proxy
// stores 200 entries: fills keep committing between polls (run it with
// -race) and the rows come out right. What runs under the body store's
// lock (one walk, one allocation, no formatting) is pinned by dedupbody's
// TestMostSharedLockHeldBriefly.
func TestTopBodiesWhileFilling(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "body "+r.URL.Path[1:2]) // /a..., /b...: two shared bodies
	})
	p, srv := newProxy(t, o.URL, nil)
	h := New(p, Config{Listen: "127.0.0.1:9091"}).Handler()
	done := make(chan struct{})
	polls := 0
	go func() {
		defer close(done)
		for i := range 200 {
			resp, err := http.Get(fmt.Sprintf("%s/a/%d", srv.URL, i))
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	for running := true; running; polls++ {
		select {
		case <-done:
			running = false
		default:
		}
		if rec := serve(h, "GET", "/api/top-bodies"); rec.Code != 200 {
			t.Fatalf("poll %d: %d", polls, rec.Code)
		}
	}
	for _, path := range []string{"/b1", "/b2"} {
		get(t, srv.URL+path)
	}
	var top []TopBody
	if err := json.Unmarshal(serve(h, "GET", "/api/top-bodies").Body.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Entries != 202 || len(top) != 2 || top[0].Refs != 200 || top[1].Refs != 2 {
		t.Errorf("after %d polls: %d entries, rows %+v; want 202 entries, rows of 200 and 2 refs", polls, st.Entries, top)
	}
}

func TestSetToken(t *testing.T) {
	src := &fakeSource{}
	a := New(src, Config{Listen: "127.0.0.1:9091"})
	if rec := serve(a.Handler(), "POST", "/api/purge?all=1"); rec.Code != 200 {
		t.Fatalf("purge before a token: got %d; want 200", rec.Code)
	}
	a.SetToken("t0ken-t0ken-t0ken")
	if rec := serve(a.Handler(), "POST", "/api/purge?all=1"); rec.Code != 401 {
		t.Errorf("purge without token after SetToken: got %d; want 401", rec.Code)
	}
	if rec := serve(a.Handler(), "POST", "/api/purge?all=1", "Authorization", "Bearer t0ken-t0ken-t0ken"); rec.Code != 200 {
		t.Errorf("purge with the new token: got %d; want 200", rec.Code)
	}
}

// TestPurgeRequests: several selectors in one request, as repeated query
// parameters or a JSON body, and soft purges.
func TestPurgeRequests(t *testing.T) {
	tests := []struct {
		name   string
		target string
		body   string
		want   proxy.PurgeRequest
		code   int
	}{
		{"repeated parameters", "/api/purge?url=/a&url=/b&tag=t&prefix=/p", "",
			proxy.PurgeRequest{URLs: []string{"/a", "/b"}, Tags: []string{"t"}, Prefixes: []string{"/p"}}, 200},
		{"soft", "/api/purge?url=/a&soft=1", "", proxy.PurgeRequest{URLs: []string{"/a"}, Soft: true}, 200},
		{"JSON body", "/api/purge", `{"url":["/a","/b"],"tag":["x"],"soft":true}`,
			proxy.PurgeRequest{URLs: []string{"/a", "/b"}, Tags: []string{"x"}, Soft: true}, 200},
		{"JSON with an unknown field", "/api/purge", `{"urls":["/a"]}`, proxy.PurgeRequest{}, 400},
		{"nothing named", "/api/purge?soft=1", "", proxy.PurgeRequest{}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeSource{}
			a := New(src, Config{Listen: "127.0.0.1:9091"})
			req := httptest.NewRequest("POST", tt.target, strings.NewReader(tt.body))
			req.Host = "127.0.0.1:9091"
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			rec := httptest.NewRecorder()
			a.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("status %d %q; want %d", rec.Code, rec.Body.String(), tt.code)
			}
			if tt.code == 200 && !reflect.DeepEqual(src.last, tt.want) {
				t.Errorf("purge request %+v; want %+v", src.last, tt.want)
			}
		})
	}
}
