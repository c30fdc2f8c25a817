package admin

import (
	"net/http"
	"strings"
	"testing"
)

// TestMetricsHandler checks the read-only listener: /metrics (with
// dedupcache_build_info, from the registry the admin listener uses too),
// /healthz and /readyz under any Host and without a token, and 404 for
// the admin API and the dashboard.
func TestMetricsHandler(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, _ *http.Request) {})
	p, _ := newProxy(t, o.URL, nil)
	a := New(p, Config{
		Listen: "127.0.0.1:9091",
		Token:  "secret-secret-secret",
		Build:  Build{Version: "v1.2.3", Commit: "abc123", GoVersion: "go1.26.8"},
	})
	const info = `dedupcache_build_info{commit="abc123",goversion="go1.26.8",version="v1.2.3"} 1`
	tests := []struct {
		name, path string
		status     int
		body       string // a substring of the body; "" for any
	}{
		{"metrics", "/metrics", http.StatusOK, info},
		{"healthz", "/healthz", http.StatusOK, "ok\n"},
		{"readyz without upstream", "/readyz", http.StatusServiceUnavailable, "no upstream configured"},
		{"stats", "/api/stats", http.StatusNotFound, ""},
		{"top bodies", "/api/top-bodies", http.StatusNotFound, ""},
		{"dashboard", "/", http.StatusNotFound, ""},
	}
	h := a.MetricsHandler()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(h, "GET", tt.path, "Host", "pod-10-1-2-3.cluster.example:9090")
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("GET %s: got %d %.200q; want %d with %q", tt.path, rec.Code, rec.Body, tt.status, tt.body)
			}
		})
	}
	if rec := serve(h, "POST", "/api/purge?all=1"); rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/purge: got %d; want 404 or 405", rec.Code)
	}
	if rec := serve(a.Handler(), "GET", "/metrics"); !strings.Contains(rec.Body.String(), info) {
		t.Errorf("admin /metrics lacks %s", info)
	}
}

// TestBuildInfoOff checks that without a version there is no build_info.
func TestBuildInfoOff(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, _ *http.Request) {})
	p, _ := newProxy(t, o.URL, nil)
	rec := serve(New(p, Config{Listen: "127.0.0.1:9091"}).MetricsHandler(), "GET", "/metrics")
	if strings.Contains(rec.Body.String(), "dedupcache_build_info") {
		t.Errorf("dedupcache_build_info exported without a Build")
	}
}
