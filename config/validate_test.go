package config

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// valid returns a Config that passes Validate, for rows to break one field.
func valid() Config {
	c := Default()
	c.Upstream = "http://127.0.0.1:3000"
	return c
}

var validateTests = []struct {
	name   string
	change func(*Config)
	want   string // whole error text; "" means valid
}{
	{"defaults with upstream", func(c *Config) {}, ""},
	{"https upstream with prefix", func(c *Config) { c.Upstream = "https://origin.example/api/v1" }, ""},
	{"all interfaces, admin with token", func(c *Config) {
		c.Listen = ":8080"
		c.Admin.Listen = "0.0.0.0:9091"
		c.Admin.Token = "0123456789abcdef"
	}, ""},
	{"admin on localhost and ::1", func(c *Config) { c.Admin.Listen = "localhost:9091"; c.Listen = "[::1]:8080" }, ""},
	{"ephemeral ports", func(c *Config) { c.Listen = "127.0.0.1:0"; c.Admin.Listen = "127.0.0.1:0" }, ""},
	{"zero durations where allowed", func(c *Config) {
		c.Cache.HeuristicMax, c.Cache.Grace, c.Server.ReadTimeout, c.Server.WriteTimeout = 0, 0, 0, 0
	}, ""},
	{"heuristic fraction 1", func(c *Config) { c.Cache.HeuristicFraction = 1 }, ""},
	{"no targeted fields", func(c *Config) { c.Cache.TargetedCacheControl = nil }, ""},

	{"upstream missing", func(c *Config) { c.Upstream = "" },
		`upstream: required: the origin to cache, e.g. http://127.0.0.1:3000 (or run with -demo)`},
	{"upstream without scheme", func(c *Config) { c.Upstream = "localhost:3000" },
		`upstream: "localhost:3000" must start with http:// or https://`},
	{"upstream ftp", func(c *Config) { c.Upstream = "ftp://files.example" },
		`upstream: "ftp://files.example" must start with http:// or https://`},
	{"upstream without host", func(c *Config) { c.Upstream = "http:///x" },
		`upstream: "http:///x" has no host`},
	{"upstream with query", func(c *Config) { c.Upstream = "http://a/?x=1" },
		`upstream: "http://a/?x=1" must not have a query or fragment`},
	{"upstream unparseable", func(c *Config) { c.Upstream = "http://a b/" },
		`upstream: "http://a b/" is not a URL`},
	{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" },
		`listen: "127.0.0.1" is not host:port (want e.g. 127.0.0.1:8080 or :8080)`},
	{"listen port out of range", func(c *Config) { c.Listen = "127.0.0.1:70000" },
		`listen: "127.0.0.1:70000": port must be a number from 0 to 65535`},
	{"listen named port", func(c *Config) { c.Listen = "127.0.0.1:http" },
		`listen: "127.0.0.1:http": port must be a number from 0 to 65535`},
	{"admin same as listen", func(c *Config) { c.Admin.Listen = c.Listen },
		`admin.listen: "127.0.0.1:8080" is also the proxy's listen address`},
	{"admin exposed without token", func(c *Config) { c.Admin.Listen = ":9091" },
		`admin.listen: ":9091" is not a loopback address, so admin.token (or $DEDUPCACHE_ADMIN_TOKEN) is required`},
	{"admin on a host name without token", func(c *Config) { c.Admin.Listen = "myhost:9091" },
		`admin.listen: "myhost:9091" is not a loopback address, so admin.token (or $DEDUPCACHE_ADMIN_TOKEN) is required`},
	{"token with space", func(c *Config) { c.Admin.Token = "two words-long-enough" },
		`admin.token: must be printable ASCII without spaces`},
	{"max memory too small", func(c *Config) { c.Cache.MaxMemory = 512 * KiB; c.Cache.MaxObjectSize = 1 },
		`cache.max_memory: 512KiB is below the minimum 1MiB`},
	{"object size zero", func(c *Config) { c.Cache.MaxObjectSize = 0 },
		`cache.max_object_size: must be greater than 0`},
	{"object size above memory", func(c *Config) { c.Cache.MaxObjectSize = 512 * MiB },
		`cache.max_object_size: 512MiB is more than cache.max_memory (256MiB)`},
	{"negative expected entries", func(c *Config) { c.Cache.ExpectedEntries = -1 },
		`cache.expected_entries: -1 is negative (0 derives it from cache.max_memory)`},
	{"fraction zero", func(c *Config) { c.Cache.HeuristicFraction = 0 },
		`cache.heuristic_fraction: 0 is outside (0, 1]`},
	{"fraction above one", func(c *Config) { c.Cache.HeuristicFraction = 1.5 },
		`cache.heuristic_fraction: 1.5 is outside (0, 1]`},
	{"fraction NaN", func(c *Config) { c.Cache.HeuristicFraction = math.NaN() },
		`cache.heuristic_fraction: NaN is outside (0, 1]`},
	{"negative grace", func(c *Config) { c.Cache.Grace = Duration(-time.Second) },
		`cache.grace: -1s is negative`},
	{"bad surrogate id", func(c *Config) { c.Cache.SurrogateID = "dedup cache" },
		`cache.surrogate_id: "dedup cache" is not a token (letters, digits and !#$%&'*+-.^_` + "`" + `|~)`},
	{"bad targeted field", func(c *Config) { c.Cache.TargetedCacheControl = []string{"CDN Cache-Control"} },
		`cache.targeted_cache_control[0]: "CDN Cache-Control" is not a header field name`},
	{"repeated targeted field", func(c *Config) { c.Cache.TargetedCacheControl = []string{"CDN-Cache-Control", "cdn-cache-control"} },
		`cache.targeted_cache_control[1]: "cdn-cache-control" is listed twice`},
	{"zero dial", func(c *Config) { c.UpstreamTimeouts.Dial = 0 },
		`upstream_timeouts.dial: must be greater than 0, got 0s`},
	{"zero pool", func(c *Config) { c.UpstreamTimeouts.MaxIdleConnsPerHost = 0 },
		`upstream_timeouts.max_idle_conns_per_host: must be greater than 0`},
	{"negative shutdown", func(c *Config) { c.Server.ShutdownTimeout = Duration(-time.Second) },
		`server.shutdown_timeout: -1s is negative`},
	{"snapshot interval without path", func(c *Config) { c.Snapshot.Interval = Duration(time.Minute) },
		`snapshot.interval: is set without snapshot.path`},
	{"snapshot negative interval", func(c *Config) { c.Snapshot.Path, c.Snapshot.Interval = "/tmp/x.snap", Duration(-time.Minute) },
		`snapshot.interval: -1m0s is negative`},
	{"snapshot directory missing", func(c *Config) { c.Snapshot.Path = "/nonexistent-dir/cache.snap" },
		`snapshot.path: "/nonexistent-dir/cache.snap": directory "/nonexistent-dir" does not exist`},
	{"engine", func(c *Config) { c.Server.Engine = "nginx" },
		`server.engine: "nginx" is not "fasthttp" or "net/http"`},
	{"request body zero", func(c *Config) { c.Server.MaxRequestBody = 0 },
		`server.max_request_body: 0 is outside (0, 1GiB]`},
	{"header bytes zero", func(c *Config) { c.Server.MaxHeaderBytes = 0 },
		`server.max_header_bytes: 0 is outside (0, 1GiB]`},
	{"log level", func(c *Config) { c.Log.Level = "verbose" },
		`log.level: "verbose" is not one of debug, info, warn, error`},
	{"log format", func(c *Config) { c.Log.Format = "xml" },
		`log.format: "xml" is not one of text, json`},
	{"no unkeyed headers", func(c *Config) { c.Cache.UnkeyedHeaders = nil }, ""},
	{"unkeyed header not a field name", func(c *Config) { c.Cache.UnkeyedHeaders = []string{"X-Host", "X Host:"} },
		`cache.unkeyed_headers[1]: "X Host:" is not a header field name`},
	{"unkeyed header listed twice", func(c *Config) { c.Cache.UnkeyedHeaders = []string{"X-Host", "x-host"} },
		`cache.unkeyed_headers[1]: "x-host" is listed twice`},
	{"unkeyed header empty", func(c *Config) { c.Cache.UnkeyedHeaders = []string{""} },
		`cache.unkeyed_headers[0]: "" is not a header field name`},
	{"unkeyed action bypass", func(c *Config) { c.Cache.UnkeyedAction = UnkeyedBypass }, ""},
	{"unkeyed action unknown", func(c *Config) { c.Cache.UnkeyedAction = "drop" },
		`cache.unkeyed_action: "drop" is not one of strip, bypass`},
	{"unkeyed action empty", func(c *Config) { c.Cache.UnkeyedAction = "" },
		`cache.unkeyed_action: "" is not one of strip, bypass`},
	{"allowed hosts", func(c *Config) {
		c.Server.AllowedHosts = []string{"api.example.com", "*.Example.org", "10.0.0.1", "::1", "[2001:db8::1]", "api.example.com."}
	}, ""},
	{"allowed hosts bad", func(c *Config) {
		c.Server.AllowedHosts = []string{"ok.example", "api.example.com:8080", "http://api.example.com", "*.", "", "a b"}
	}, `server.allowed_hosts[1]: "api.example.com:8080": want a host name or IP address without a port` + "\n" +
		`server.allowed_hosts[2]: "http://api.example.com": want a host name or IP address without a port` + "\n" +
		`server.allowed_hosts[3]: "*." is not a host name (want e.g. example.com or *.example.com)` + "\n" +
		`server.allowed_hosts[4]: "" is not a host name (want e.g. example.com or *.example.com)` + "\n" +
		`server.allowed_hosts[5]: "a b" is not a host name (want e.g. example.com or *.example.com)`},
	{"max_inflight 1", func(c *Config) { c.Cache.MaxInflight = 1 }, ""},
	{"max_inflight 0", func(c *Config) { c.Cache.MaxInflight = 0 },
		`cache.max_inflight: 0: want 1 or more (concurrent fills that buffer a body for the cache)`},
	{"max_inflight negative", func(c *Config) { c.Cache.MaxInflight = -5 },
		`cache.max_inflight: -5: want 1 or more (concurrent fills that buffer a body for the cache)`},
	{"several at once", func(c *Config) { c.Upstream = ""; c.Log.Level = "INFO"; c.Log.Format = "" },
		"upstream: required: the origin to cache, e.g. http://127.0.0.1:3000 (or run with -demo)\n" +
			`log.level: "INFO" is not one of debug, info, warn, error` + "\n" +
			`log.format: "" is not one of text, json`},
}

func TestValidate(t *testing.T) {
	for _, tt := range validateTests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v; want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate: nil; want %s", tt.want)
			case err != nil && err.Error() != tt.want:
				t.Fatalf("Validate:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

// TestValidateNamesOrigin checks that validation errors say where the bad
// value came from: file and line, flag, or environment variable.
func TestValidateNamesOrigin(t *testing.T) {
	c, err := loadString(t, "upstream: http://127.0.0.1:3000\ncache:\n  max_memory: 100KiB\n  max_object_size: 64KiB\nadmin:\n  listen: 0.0.0.0:9091\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set("log.level", "loud", "flag -log-level"); err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyEnv(func(string) string { return "has space" }); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		`$DEDUPCACHE_ADMIN_TOKEN: admin.token: must be printable ASCII without spaces`,
		`config.yaml:3: cache.max_memory: 100KiB is below the minimum 1MiB`,
		`flag -log-level: log.level: "loud" is not one of debug, info, warn, error`,
	}, "\n")
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate:\n%v\nwant:\n%s", err, want)
	}
}

func TestWarnings(t *testing.T) {
	if w := valid().Warnings(); len(w) != 0 {
		t.Fatalf("Warnings() for defaults = %q; want none", w)
	}
	c, err := loadString(t, "cache:\n  max_object_size: 100MiB\n  cache_set_cookie: true\nserver:\n  read_header_timeout: 0\n  read_timeout: 0\n")
	if err != nil {
		t.Fatal(err)
	}
	c.Admin.Token = "short"
	want := []string{
		`config.yaml:2: cache.max_object_size: 100MiB is more than a quarter of cache.max_memory; bodies above 64MiB will not be stored`,
		`config.yaml:3: cache.cache_set_cookie: responses with Set-Cookie are stored and replayed to every client; enable only if the upstream never sets per-user cookies on cacheable responses`,
		`config.yaml:5: server.read_header_timeout: 0 with server.read_timeout 0: slow clients can hold connections open forever`,
		`admin.token: shorter than 16 characters; use a long random token`,
	}
	if got := c.Warnings(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Warnings():\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRestartFields(t *testing.T) {
	a := Default()
	tests := []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"reloadable only", func(c *Config) {
			c.Log.Level, c.Cache.Grace, c.Admin.Token, c.Log.Access = "debug", Duration(time.Minute), "t", "on"
		}, nil},
		{"listen and max_memory", func(c *Config) { c.Listen, c.Cache.MaxMemory = ":1", GiB }, []string{"listen", "cache.max_memory"}},
		{"every reloadable field with a restart field", func(c *Config) {
			c.Log.Level, c.Log.Access, c.Log.AccessSample, c.Admin.Token = "debug", "sampled", 7, "t"
			c.Cache.Grace, c.Cache.Keep, c.Cache.MaxInflight = Duration(time.Minute), 0, 1
		}, []string{"cache.max_inflight"}},
		{"a list field", func(c *Config) { c.Cache.UnkeyedHeaders = []string{"X-Host"} }, []string{"cache.unkeyed_headers"}},
		{"unkeyed action needs a restart", func(c *Config) { c.Cache.UnkeyedAction = UnkeyedBypass }, []string{"cache.unkeyed_action"}},
		{"allowed hosts reload", func(c *Config) { c.Server.AllowedHosts = []string{"api.example.com"} }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Default()
			tt.change(&b)
			if got := RestartFields(a, b); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

// TestReloadableIsTheOnlyList checks that adding a path to Reloadable is all
// RestartFields needs to stop reporting that field.
func TestReloadableIsTheOnlyList(t *testing.T) {
	a, b := Default(), Default()
	b.Cache.MaxInflight, b.Cache.UnkeyedHeaders, b.UpstreamTimeouts.Dial = 1, nil, Duration(time.Second)
	want := []string{"cache.unkeyed_headers", "cache.max_inflight", "upstream_timeouts.dial"}
	if got := RestartFields(a, b); !reflect.DeepEqual(got, want) {
		t.Fatalf("RestartFields = %v; want %v", got, want)
	}
	saved := Reloadable
	t.Cleanup(func() { Reloadable = saved })
	Reloadable = append(slices.Clone(saved), "cache.max_inflight", "cache.unkeyed_headers", "upstream_timeouts.dial", "no.such.field")
	if got := RestartFields(a, b); got != nil {
		t.Errorf("RestartFields with the paths made reloadable = %v; want none", got)
	}
}

// TestReloadablePathsExist checks that every path in Reloadable names a
// setting, so a typo cannot silently make a field need a restart.
func TestReloadablePathsExist(t *testing.T) {
	c := Default()
	for _, path := range Reloadable {
		f, ok := fieldByPath(reflect.ValueOf(&c).Elem(), path)
		if !ok {
			t.Errorf("Reloadable path %q names no field", path)
			continue
		}
		if f.Kind() == reflect.Struct && f.Type() != reflect.TypeFor[Duration]() && f.Type() != reflect.TypeFor[Size]() {
			t.Errorf("Reloadable path %q names a section, not a setting", path)
		}
	}
}

// TestValidateNamesLine checks that the new proxy-side security settings
// are reported with the file, line and field of the bad value.
func TestValidateNamesLine(t *testing.T) {
	c, err := loadString(t, "upstream: http://127.0.0.1:3000\ncache:\n  unkeyed_action: pass\nserver:\n  allowed_hosts:\n    - api.example.com\n    - \"api.example.com:8443\"\n")
	if err != nil {
		t.Fatal(err)
	}
	want := `config.yaml:3: cache.unkeyed_action: "pass" is not one of strip, bypass` + "\n" +
		`config.yaml:7: server.allowed_hosts[1]: "api.example.com:8443": want a host name or IP address without a port`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate:\n%v\nwant:\n%s", err, want)
	}
}
