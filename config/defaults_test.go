package config_test

import (
	"reflect"
	"testing"
	"time"

	"dedupcache/config"
	"dedupcache/policy"
)

// TestDefaultHoldsEveryDefault pins the defaults the proxy and the policy
// need, so that config.Default stays the one place where they live. The
// policy rows compare with policy.DefaultOptions, which this test (and only
// this test) imports: config itself imports nothing from dedupcache.
func TestDefaultHoldsEveryDefault(t *testing.T) {
	c := config.Default()
	pol := policy.DefaultOptions()
	tests := []struct {
		name      string
		got, want any
	}{
		{"cache.max_memory", c.Cache.MaxMemory, 256 * config.MiB},
		{"cache.max_object_size", c.Cache.MaxObjectSize, 8 * config.MiB},
		{"cache.expected_entries (derived)", c.Cache.ExpectedEntries, int64(0)},
		{"cache.tag_header", c.Cache.TagHeader, "Surrogate-Key"},
		{"cache.max_inflight", c.Cache.MaxInflight, 64},
		{"cache.unkeyed_headers", c.Cache.UnkeyedHeaders, []string{
			"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Forwarded-Server",
			"X-Host", "X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override",
			"X-Forwarded-Path", "X-Forwarded-Uri", "X-Original-Host", "X-HTTP-Method", "X-Method-Override", "X-Original-Method"}},
		{"admin.listen (loopback only)", c.Admin.Listen, "127.0.0.1:9091"},
		{"admin.token (none: loopback needs none)", c.Admin.Token, ""},
		{"metrics.listen (off)", c.Metrics.Listen, ""},
		{"cache.unkeyed_action (strip: the safe default)", c.Cache.UnkeyedAction, config.UnkeyedStrip},
		{"server.allowed_hosts (empty: every host)", c.Server.AllowedHosts, []string{}},
		{"upstream_timeouts.dial", c.UpstreamTimeouts.Dial, config.Duration(5 * time.Second)},
		{"upstream_timeouts.response_header", c.UpstreamTimeouts.ResponseHeader, config.Duration(30 * time.Second)},
		{"upstream_timeouts.read", c.UpstreamTimeouts.Read, config.Duration(60 * time.Second)},
		{"upstream_timeouts.idle", c.UpstreamTimeouts.Idle, config.Duration(90 * time.Second)},
		{"upstream_timeouts.max_idle_conns_per_host", c.UpstreamTimeouts.MaxIdleConnsPerHost, 256},
		{"cache.cache_set_cookie = policy", c.Cache.CacheSetCookie, pol.CacheSetCookie},
		{"cache.heuristic_fraction = policy", c.Cache.HeuristicFraction, pol.HeuristicFraction},
		{"cache.heuristic_max = policy", time.Duration(c.Cache.HeuristicMax), pol.HeuristicMax},
		{"cache.targeted_cache_control = policy", c.Cache.TargetedCacheControl, pol.TargetedFields},
		{"cache.surrogate_id = policy", c.Cache.SurrogateID, pol.SurrogateToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("Default() %s = %v; want %v", tt.name, tt.got, tt.want)
			}
		})
	}
}

// TestDefaultReturnsFreshSlices checks that a caller may change the lists of
// one Default() without changing the next.
func TestDefaultReturnsFreshSlices(t *testing.T) {
	a := config.Default()
	a.Cache.UnkeyedHeaders[0] = "changed"
	a.Cache.TargetedCacheControl[0] = "changed"
	b := config.Default()
	if b.Cache.UnkeyedHeaders[0] == "changed" || b.Cache.TargetedCacheControl[0] == "changed" {
		t.Errorf("Default() shares its lists between calls: %v, %v", b.Cache.UnkeyedHeaders, b.Cache.TargetedCacheControl)
	}
}
