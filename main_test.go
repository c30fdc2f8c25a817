package main

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"dedupcache/config"
	"dedupcache/internal/gcpace"
	"dedupcache/policy"
	"dedupcache/proxy"
)

// TestProxyConfig checks that main hands the proxy every value from the
// config as it is, without translating or re-defaulting any.
func TestProxyConfig(t *testing.T) {
	base := config.Default()
	base.Upstream = "http://127.0.0.1:3000/prefix"
	tests := []struct {
		name  string
		mod   func(*config.Config)
		check func(proxy.Config) bool
	}{
		{"defaults reach the proxy", func(*config.Config) {}, func(p proxy.Config) bool {
			return p.MaxMemory == 256<<20 && p.MaxObjectSize == 8<<20 && p.Keep == 10*time.Minute &&
				p.TagHeader == "Surrogate-Key" && p.SynthesizeETag && p.DialTimeout == 5*time.Second &&
				p.ResponseHeaderTimeout == 30*time.Second && p.ReadTimeout == time.Minute &&
				p.IdleConnTimeout == 90*time.Second && p.MaxIdleConnsPerHost == 256 &&
				reflect.DeepEqual(p.Policy, policy.DefaultOptions()) &&
				p.MaxInflight == 64 && slices.Contains(p.UnkeyedHeaders, "X-Original-URL") &&
				!p.UnkeyedBypass && p.AllowedHosts == nil
		}},
		{"unkeyed bypass and allowed hosts", func(c *config.Config) {
			c.Cache.UnkeyedAction, c.Server.AllowedHosts = config.UnkeyedBypass, []string{"api.example.com", "*.example.org"}
		}, func(p proxy.Config) bool {
			return p.UnkeyedBypass && p.AllowedHosts.Len() == 2 && p.AllowedHosts.Allows("API.example.com:8080") &&
				p.AllowedHosts.Allows("a.example.org") && !p.AllowedHosts.Allows("evil.example")
		}},
		{"upstream parsed", func(*config.Config) {}, func(p proxy.Config) bool {
			return p.Upstream.String() == "http://127.0.0.1:3000/prefix"
		}},
		{"empty tag header stays empty", func(c *config.Config) { c.Cache.TagHeader = "" }, func(p proxy.Config) bool {
			return p.TagHeader == ""
		}},
		{"tag header as written", func(c *config.Config) { c.Cache.TagHeader = "x-tags" }, func(p proxy.Config) bool {
			return p.TagHeader == "x-tags"
		}},
		{"policy fields", func(c *config.Config) {
			c.Cache.CacheSetCookie, c.Cache.HeuristicFraction, c.Cache.HeuristicMax = true, 0, 0
			c.Cache.TargetedCacheControl = []string{}
		}, func(p proxy.Config) bool {
			return p.Policy.CacheSetCookie && p.Policy.HeuristicFraction == 0 && p.Policy.HeuristicMax == 0 &&
				p.Policy.TargetedFields != nil && len(p.Policy.TargetedFields) == 0
		}},
		{"live settings", func(c *config.Config) {
			c.Cache.Grace, c.Cache.Keep, c.Log.Access = config.Duration(time.Minute), 0, "on"
		}, func(p proxy.Config) bool {
			return p.Grace == time.Minute && p.Keep == 0 && p.AccessLogEvery == 1
		}},
		{"sizes and pool", func(c *config.Config) {
			c.Cache.MaxObjectSize, c.Cache.ExpectedEntries, c.UpstreamTimeouts.MaxIdleConnsPerHost = 1, 7, 3
			c.Cache.PostPaths = []string{"/graphql"}
		}, func(p proxy.Config) bool {
			return p.MaxObjectSize == 1 && p.ExpectedEntries == 7 && p.MaxIdleConnsPerHost == 3 &&
				reflect.DeepEqual(p.CachePOSTPaths, []string{"/graphql"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mod(&cfg)
			if got := proxyConfig(cfg); !tt.check(got) {
				t.Errorf("got %+v", got)
			}
		})
	}
}

// TestLiveOf checks that the live settings cover config.Reloadable: each
// reloadable field, changed, changes what liveOf returns.
func TestLiveOf(t *testing.T) {
	base := config.Default()
	changes := map[string]func(*config.Config){
		"log.level":            func(c *config.Config) { c.Log.Level = "debug" },
		"log.access":           func(c *config.Config) { c.Log.Access = "on" },
		"log.access_sample":    func(c *config.Config) { c.Log.Access, c.Log.AccessSample = "sampled", 7 },
		"admin.token":          func(c *config.Config) { c.Admin.Token = "t0ken-t0ken-t0ken" },
		"cache.grace":          func(c *config.Config) { c.Cache.Grace = config.Duration(time.Second) },
		"cache.keep":           func(c *config.Config) { c.Cache.Keep = 0 },
		"log.access_format":    func(c *config.Config) { c.Log.AccessFormat = "combined" },
		"cache.default_ttl":    func(c *config.Config) { c.Cache.DefaultTTL = config.Duration(time.Minute) },
		"cache.debug_headers":  func(c *config.Config) { c.Cache.DebugHeaders = true },
		"rules":                func(c *config.Config) { c.Rules = []config.Rule{{Name: "r", PathPrefix: "/x", Bypass: true}} },
		"tls_cert":             func(c *config.Config) { c.TLSCert = "renewed.pem" },
		"tls_key":              func(c *config.Config) { c.TLSKey = "renewed-key.pem" },
		"server.allowed_hosts": func(c *config.Config) { c.Server.AllowedHosts = []string{"api.example.com"} },
	}
	for _, field := range config.Reloadable {
		t.Run(field, func(t *testing.T) {
			change, ok := changes[field]
			if !ok {
				t.Fatalf("no case for reloadable field %s: add it to live and here", field)
			}
			cfg := base
			if field == "log.access_sample" {
				base.Log.Access = "sampled"
			}
			change(&cfg)
			if reflect.DeepEqual(liveOf(cfg), liveOf(base)) {
				t.Errorf("changing %s does not change the live settings", field)
			}
			base = config.Default()
		})
	}
}

// TestPacerMetrics: the pacer's two counters register cleanly (a pedantic
// registry checks their descriptions against what they collect), are
// named as Prometheus counters, and are absent without a pacer (GOGC set
// by the operator).
func TestPacerMetrics(t *testing.T) {
	if m := pacerMetrics(nil); m != nil {
		t.Errorf("pacerMetrics(nil) = %v, want none", m)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(pacerMetrics(gcpace.New(gcpace.Config{}))...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
		if f.GetType().String() != "COUNTER" || len(f.GetMetric()) != 1 {
			t.Errorf("%s: %s with %d series, want one counter", f.GetName(), f.GetType(), len(f.GetMetric()))
		}
	}
	if want := []string{"dedupcache_gc_pacer_releases_total", "dedupcache_gc_pacer_switches_total"}; !slices.Equal(names, want) {
		t.Errorf("families %v, want %v", names, want)
	}
}
