package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// loadString writes data to config.yaml in a fresh working directory and
// loads it by that relative name, so messages read "config.yaml:N: ...".
func loadString(t *testing.T, data string) (Config, error) {
	t.Helper()
	t.Chdir(t.TempDir())
	if err := os.WriteFile("config.yaml", []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load("config.yaml")
}

// loadErrorTests has one row per class of problem Load reports; want is the
// whole error text, one problem per line.
var loadErrorTests = []struct {
	name string
	yaml string
	want string
}{
	{
		name: "bad size",
		yaml: "cache:\n  max_memory: 12XB\n",
		want: `config.yaml:2: cache.max_memory: "12XB" is not a size (want e.g. 512MiB)`,
	},
	{
		name: "negative size",
		yaml: "server:\n  max_header_bytes: -1KiB\n",
		want: `config.yaml:2: server.max_header_bytes: "-1KiB" is negative (want a size such as 512MiB)`,
	},
	{
		name: "size as a mapping",
		yaml: "cache:\n  max_object_size: {a: 1}\n",
		want: `config.yaml:2: cache.max_object_size: want a size (e.g. 512MiB), got a mapping`,
	},
	{
		name: "bad duration",
		yaml: "upstream_timeouts:\n  dial: 5 seconds\n",
		want: `config.yaml:2: upstream_timeouts.dial: "5 seconds" is not a duration (want e.g. 30s, 5m or 1h30m)`,
	},
	{
		name: "duration as a sequence",
		yaml: "cache:\n  grace: [1s]\n",
		want: `config.yaml:2: cache.grace: want a duration (e.g. 30s), got a sequence`,
	},
	{
		name: "unknown top-level field",
		yaml: "listen: 127.0.0.1:8080\nlisten_addr: x\n",
		want: `config.yaml:2: listen_addr: unknown field`,
	},
	{
		name: "unknown nested field",
		yaml: "# comment\n\n\n\n\ncache:\n  max_memroy: 1GiB\n",
		want: `config.yaml:7: cache.max_memroy: unknown field`,
	},
	{
		name: "repeated field",
		yaml: "log:\n  level: info\n  level: debug\n",
		want: `config.yaml:3: log.level: repeated field (first set on line 2)`,
	},
	{
		name: "string given a sequence",
		yaml: "upstream: http://x\n\nlisten: [a, b]\n",
		want: `config.yaml:3: listen: want a string, got a sequence`,
	},
	{
		name: "string given a mapping",
		yaml: "admin:\n  token: {secret: x}\n",
		want: `config.yaml:2: admin.token: want a string, got a mapping`,
	},
	{
		name: "section given a scalar",
		yaml: "cache: 256MiB\n",
		want: `config.yaml:1: cache: want a mapping of settings, got "256MiB"`,
	},
	{
		name: "bad bool",
		yaml: "cache:\n  cache_set_cookie: yes\n",
		want: `config.yaml:2: cache.cache_set_cookie: want true or false, got "yes"`,
	},
	{
		name: "bad integer",
		yaml: "upstream_timeouts:\n  max_idle_conns_per_host: 1.5\n",
		want: `config.yaml:2: upstream_timeouts.max_idle_conns_per_host: want an integer, got "1.5"`,
	},
	{
		name: "bad number",
		yaml: "cache:\n  heuristic_fraction: ten percent\n",
		want: `config.yaml:2: cache.heuristic_fraction: want a number, got "ten percent"`,
	},
	{
		name: "list given a scalar",
		yaml: "cache:\n  targeted_cache_control: CDN-Cache-Control\n",
		want: `config.yaml:2: cache.targeted_cache_control: want a list such as [CDN-Cache-Control], got "CDN-Cache-Control"`,
	},
	{
		name: "list element not a string",
		yaml: "cache:\n  targeted_cache_control:\n    - CDN-Cache-Control\n    - [x]\n",
		want: `config.yaml:4: cache.targeted_cache_control[1]: want a string, got a sequence`,
	},
	{
		name: "top level not a mapping",
		yaml: "- listen\n",
		want: `config.yaml:1: want a mapping of settings, got a sequence`,
	},
	{
		name: "field name not a scalar",
		yaml: "? [a]\n: b\n",
		want: `config.yaml:1: want a field name, got a sequence`,
	},
	{
		name: "syntax error",
		yaml: "listen: x\nupstream\ncache: {}\n",
		want: `config.yaml:2: could not find expected ':'`,
	},
	{
		name: "tab indentation",
		yaml: "cache:\n\tmax_memory: 1GiB\n",
		want: `config.yaml:2: found character that cannot start any token`,
	},
	{
		name: "two documents",
		yaml: "listen: a:1\n---\nlisten: b:2\n",
		want: `config.yaml:2: a second YAML document; put all settings in one`,
	},
	{
		name: "alias to the wrong kind",
		yaml: "x: &m {a: 1}\n",
		want: `config.yaml:1: x: unknown field`,
	},
	{
		name: "all problems reported in file order",
		yaml: "listen: [x]\ncache:\n  max_memory: 12XB\n  max_memroy: 1GiB\n  grace: soon\nlog:\n  level: {}\n",
		want: strings.Join([]string{
			`config.yaml:1: listen: want a string, got a sequence`,
			`config.yaml:3: cache.max_memory: "12XB" is not a size (want e.g. 512MiB)`,
			`config.yaml:4: cache.max_memroy: unknown field`,
			`config.yaml:5: cache.grace: "soon" is not a duration (want e.g. 30s, 5m or 1h30m)`,
			`config.yaml:7: log.level: want a string, got a mapping`,
		}, "\n"),
	},
}

func TestLoadErrors(t *testing.T) {
	for _, tt := range loadErrorTests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadString(t, tt.yaml)
			if err == nil {
				t.Fatalf("Load succeeded with %+v; want error\n%s", c, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Fatalf("Load error:\n%s\nwant:\n%s", got, tt.want)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("Load returned %+v with its error; want the zero Config", c)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not an *Error", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Chdir(t.TempDir())
	_, err := Load("nope.yaml")
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v; want an error naming nope.yaml that wraps os.ErrNotExist", err)
	}
}

func TestLoadEmptyKeepsDefaults(t *testing.T) {
	for _, data := range []string{"", "\n", "# nothing here\n", "---\n", "~\n", "null\n", "cache:\n", "cache: {}\nlog: ~\n"} {
		c, err := loadString(t, data)
		if err != nil {
			t.Fatalf("Load(%q): %v", data, err)
		}
		c.origins = nil
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("Load(%q) = %+v; want Default()", data, c)
		}
	}
}

func TestLoadValues(t *testing.T) {
	c, err := loadString(t, `
listen: ":8080"
upstream: https://origin.example:8443/api
admin:
  token: &tok s3cr3t-s3cr3t-s3cr3t
cache:
  max_memory: 1073741824      # a bare integer is bytes
  max_object_size: "1.5MiB"
  expected_entries: 100000
  cache_set_cookie: true
  heuristic_fraction: 0.25
  heuristic_max: 3600         # a bare integer is seconds
  grace: 1m30s
  targeted_cache_control: [Fastly-Cache-Control, CDN-Cache-Control]
upstream_timeouts:
  dial: ~                     # null keeps the default
  idle: "45"
server:
  max_header_bytes: 64KiB
log: {level: debug, format: json}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Listen = ":8080"
	want.Upstream = "https://origin.example:8443/api"
	want.Admin.Token = "s3cr3t-s3cr3t-s3cr3t"
	want.Cache = Cache{
		MaxMemory:            GiB,
		MaxObjectSize:        3 * MiB / 2,
		ExpectedEntries:      100000,
		CacheSetCookie:       true,
		HeuristicFraction:    0.25,
		HeuristicMax:         Duration(time.Hour),
		Grace:                Duration(90 * time.Second),
		TargetedCacheControl: []string{"Fastly-Cache-Control", "CDN-Cache-Control"},
		SurrogateID:          "dedupcache",
		SynthesizeETag:       true,
		TagHeader:            "Surrogate-Key",
		PostPaths:            []string{},
		Keep:                 Duration(10 * time.Minute),
		UnkeyedHeaders:       Default().Cache.UnkeyedHeaders,
		UnkeyedAction:        UnkeyedStrip,
		MaxInflight:          64,
	}
	want.UpstreamTimeouts.Idle = Duration(45 * time.Second)
	want.Server.MaxHeaderBytes = 64 * KiB
	want.Log.Level, want.Log.Format = "debug", "json"
	origins := c.origins
	c.origins = nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Load:\n got %+v\nwant %+v", c, want)
	}
	for field, line := range map[string]string{
		"listen":                          "config.yaml:2",
		"cache.max_memory":                "config.yaml:7",
		"cache.targeted_cache_control[1]": "config.yaml:14",
		"log.format":                      "config.yaml:20",
	} {
		if origins[field] != line {
			t.Errorf("origin of %s = %q; want %q", field, origins[field], line)
		}
	}
	if o, ok := origins["upstream_timeouts.dial"]; ok {
		t.Errorf("origin of upstream_timeouts.dial = %q; want none (null keeps the default)", o)
	}
}

func TestSet(t *testing.T) {
	c := Default()
	for _, s := range []struct{ field, value string }{
		{"listen", ":9000"},
		{"upstream", "http://a:1"},
		{"cache.max_memory", "1GiB"},
		{"cache.heuristic_fraction", "0.5"},
		{"cache.cache_set_cookie", "true"},
		{"cache.targeted_cache_control", "A-Cache-Control, B-Cache-Control"},
		{"server.write_timeout", "5m"},
		{"cache.unkeyed_headers", "X-Host, X-Original-URL"},
		{"cache.max_inflight", "8"},
	} {
		if err := c.Set(s.field, s.value, "flag -x"); err != nil {
			t.Fatalf("Set(%q, %q): %v", s.field, s.value, err)
		}
	}
	if c.Listen != ":9000" || c.Upstream != "http://a:1" || c.Cache.MaxMemory != GiB || c.Cache.HeuristicFraction != 0.5 ||
		!c.Cache.CacheSetCookie || !reflect.DeepEqual(c.Cache.TargetedCacheControl, []string{"A-Cache-Control", "B-Cache-Control"}) ||
		c.Server.WriteTimeout != Duration(5*time.Minute) ||
		!reflect.DeepEqual(c.Cache.UnkeyedHeaders, []string{"X-Host", "X-Original-URL"}) || c.Cache.MaxInflight != 8 {
		t.Fatalf("after Set: %+v", c)
	}

	tests := []struct{ field, value, want string }{
		{"cache.max_memory", "12XB", `flag -max-memory: cache.max_memory: "12XB" is not a size (want e.g. 512MiB)`},
		{"cache.max_memroy", "1GiB", `flag -max-memory: cache.max_memroy: unknown field`},
		{"cache.cache_set_cookie", "maybe", `flag -max-memory: cache.cache_set_cookie: want true or false, got "maybe"`},
		{"cache.max_inflight", "many", `flag -max-memory: cache.max_inflight: want an integer, got "many"`},
		{"cache", "1GiB", `flag -max-memory: cache: want a mapping of settings, got "1GiB"`},
		{"listen.port", "1", `flag -max-memory: listen.port: unknown field`},
	}
	for _, tt := range tests {
		before := c.Cache.MaxMemory
		err := c.Set(tt.field, tt.value, "flag -max-memory")
		if err == nil || err.Error() != tt.want {
			t.Errorf("Set(%q, %q) = %v; want %s", tt.field, tt.value, err, tt.want)
		}
		if c.Cache.MaxMemory != before {
			t.Errorf("failed Set changed max_memory to %v", c.Cache.MaxMemory)
		}
	}
}

// TestSetDoesNotAliasCopies checks that Set on a copy leaves the original's
// origins alone (Config is held by value).
func TestSetDoesNotAliasCopies(t *testing.T) {
	c, err := loadString(t, "listen: 127.0.0.1:1\n")
	if err != nil {
		t.Fatal(err)
	}
	cp := c
	if err := cp.Set("listen", "x", "flag -listen"); err != nil {
		t.Fatal(err)
	}
	if c.origin("listen") != "config.yaml:1" || cp.origin("listen") != "flag -listen" {
		t.Fatalf("origins: original %q, copy %q", c.origin("listen"), cp.origin("listen"))
	}
}

func TestApplyEnv(t *testing.T) {
	c := Default()
	env := map[string]string{EnvAdminToken: "from-env"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.Admin.Token != "from-env" || c.origin("admin.token") != "$DEDUPCACHE_ADMIN_TOKEN" {
		t.Fatalf("token %q from %q; want from-env from $DEDUPCACHE_ADMIN_TOKEN", c.Admin.Token, c.origin("admin.token"))
	}
	c.Admin.Token = "kept"
	if err := c.ApplyEnv(func(string) string { return "" }); err != nil || c.Admin.Token != "kept" {
		t.Fatalf("empty env changed token to %q (%v)", c.Admin.Token, err)
	}
}

// TestYAMLRoundTrip checks that a marshalled Config loads back unchanged, so
// Size and Duration render in forms their parsers accept.
func TestYAMLRoundTrip(t *testing.T) {
	want := Default()
	want.Upstream = "http://127.0.0.1:3000"
	want.Cache.MaxObjectSize = 1500
	want.Cache.Grace = Duration(1500 * time.Millisecond)
	data, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadString(t, string(data))
	if err != nil {
		t.Fatalf("Load(marshalled):\n%s\n%v", data, err)
	}
	got.origins = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v\nyaml:\n%s", got, want, data)
	}
}
