// Package admin is dedupcache's operator side: the handler of the admin
// listener (/healthz, /readyz, /api/stats, /api/top-bodies, /api/purge,
// /metrics and the dashboard), the read-only metrics listener (see
// [Admin.MetricsHandler]), their Prometheus metrics and the admin
// listener's guards against requests a browser was tricked into sending
// (see [Admin.Handler]).
//
// It reads and drives the cache only through the exported methods listed
// in [Source], which a [*proxy.Proxy] has; proxy knows nothing of admin.
package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"dedupcache/admin/dashboard"
	"dedupcache/proxy"
)

// Source is what the admin listener needs from the cache. [*proxy.Proxy]
// implements it; every method must be safe for concurrent use.
type Source interface {
	Stats() proxy.Stats
	TopBodies(n int) []proxy.TopBody
	Purge(r proxy.PurgeRequest) (proxy.PurgeResult, error)
}

// Config configures an [Admin]. main builds it from the YAML file's admin
// section.
type Config struct {
	// Listen is the admin listener's address (host:port), as configured.
	// Its host is an allowed Host, and whether it is loopback decides how
	// strict the Host check is (see [Admin.Handler]). Empty means
	// loopback only.
	Listen string
	// AllowedHosts are further host names (or addresses) a request's Host
	// may carry, port ignored, for an admin listener reached by a name other
	// than localhost. Matching ignores case.
	AllowedHosts []string
	// Token, if set, is the bearer token that /api/purge and
	// /api/top-bodies require. [Admin.SetToken] changes it at run time.
	Token string
	// Upstream is the origin /readyz dials. Nil: /readyz answers 503.
	Upstream *url.URL
	// Latency, if set, is exported on /metrics; the proxy feeds it through
	// proxy.Config.ObserveUpstream.
	Latency *Latency
	// Logger receives purge records. Default slog.Default().
	Logger *slog.Logger
	// Build, if its Version is set, is exported on /metrics as
	// dedupcache_build_info.
	Build Build
	// Collectors are more metrics for /metrics (the process's garbage
	// collector pacer, say).
	Collectors []prometheus.Collector
}

// Build describes the running binary for dedupcache_build_info.
type Build struct {
	Version   string // e.g. v1.2.0, or a pseudo-version
	Commit    string // VCS revision, "" when unknown
	GoVersion string // runtime.Version() of the build
}

// Admin serves the admin listener for one [Source]. Make one with [New];
// it is safe for concurrent use.
type Admin struct {
	src     Source
	cfg     Config
	log     *slog.Logger
	token   atomic.Pointer[string]
	hosts   hostCheck
	handler http.Handler
	metrics http.Handler // /metrics, shared by both listeners
}

// New returns the admin side of src.
func New(src Source, cfg Config) *Admin {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Admin{src: src, cfg: cfg, log: cfg.Logger, hosts: newHostCheck(cfg.Listen, cfg.AllowedHosts)}
	a.SetToken(cfg.Token)
	a.metrics = promhttp.HandlerFor(a.newRegistry(), promhttp.HandlerOpts{})
	a.handler = a.guard(a.routes())
	return a
}

// SetToken replaces the bearer token (empty: none), as a reload does.
// Requests in flight may still see the old one.
func (a *Admin) SetToken(token string) {
	a.token.Store(&token)
}

// Handler returns the handler of the admin listener. Every route first
// passes the guards of [Admin.guard]: a Host check against DNS rebinding
// and, for anything but GET and HEAD, a cross-site check against CSRF.
func (a *Admin) Handler() http.Handler { return a.handler }

// MetricsHandler returns the handler of the read-only metrics listener:
// /metrics (the same registry as the admin listener's), /healthz and
// /readyz, and 404 for every other path. It has no Host check and needs no
// token: it lists no cache keys and changes nothing, so it may be exposed
// to Prometheus and to orchestrators' probes while the admin listener
// stays private.
func (a *Admin) MetricsHandler() http.Handler {
	r := chi.NewRouter()
	r.Get("/healthz", handleHealth)
	r.Get("/readyz", a.handleReady)
	r.Handle("/metrics", a.metrics)
	return r
}

// handleHealth answers /healthz: the process is up and serving.
func handleHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// routes is the admin router, behind the guards.
func (a *Admin) routes() http.Handler {
	r := chi.NewRouter()
	r.Get("/healthz", handleHealth)
	r.Get("/api/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.src.Stats())
	})
	r.Get("/readyz", a.handleReady)
	r.Get("/api/top-bodies", a.handleTopBodies)
	r.Post("/api/purge", a.handlePurge)
	r.Handle("/metrics", a.metrics)
	r.Handle("/*", dashboard.Handler())
	return r
}

// handleReady answers /readyz: 200 when the upstream accepts a TCP
// connection within a second, 503 otherwise.
func (a *Admin) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	up := a.cfg.Upstream
	if up == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "no upstream configured\n")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	host := up.Host
	if up.Port() == "" {
		port := "80"
		if up.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(up.Hostname(), port)
	}
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "upstream %s unreachable: %v\n", host, err)
		return
	}
	_ = c.Close()
	if sh := a.src.Stats().Shared; sh != nil && !sh.Healthy {
		// Ready all the same: without the shared tier the cache serves from
		// memory and the origin.
		_, _ = io.WriteString(w, "ready (shared tier unreachable: serving from memory and the origin)\n")
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}
