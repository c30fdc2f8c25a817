package config

import "testing"

// opsValidateTests cover metrics.listen and log.access_format, in the
// manner of validateTests.
var opsValidateTests = []struct {
	name   string
	change func(*Config)
	want   string // whole error text; "" means valid
}{
	{"metrics off", func(c *Config) { c.Metrics.Listen = "" }, ""},
	{"metrics on a wildcard without token", func(c *Config) { c.Metrics.Listen = ":9090" }, ""},
	{"metrics on port 0 beside proxy port 0", func(c *Config) { c.Listen, c.Metrics.Listen = "127.0.0.1:0", "127.0.0.1:0" }, ""},
	{"metrics not host:port", func(c *Config) { c.Metrics.Listen = "9090" },
		`metrics.listen: "9090" is not host:port (want e.g. 127.0.0.1:8080 or :8080)`},
	{"metrics on the proxy address", func(c *Config) { c.Metrics.Listen = c.Listen },
		`metrics.listen: "127.0.0.1:8080" is also the listen address`},
	{"metrics on the admin address", func(c *Config) { c.Metrics.Listen = c.Admin.Listen },
		`metrics.listen: "127.0.0.1:9091" is also the admin.listen address`},
	{"access format combined", func(c *Config) { c.Log.AccessFormat = "combined" }, ""},
	{"access format json", func(c *Config) { c.Log.AccessFormat = "json" }, ""},
	{"access format text", func(c *Config) { c.Log.AccessFormat = "text" }, ""},
	{"access format unknown", func(c *Config) { c.Log.AccessFormat = "common" },
		`log.access_format: "common" is not one of combined, text, json`},
}

func TestValidateOps(t *testing.T) {
	for _, tt := range opsValidateTests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			got := ""
			if err := c.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestOpsFieldsLoad checks that both fields load from a file with their
// origin recorded, and that access_format is reloadable while
// metrics.listen needs a restart.
func TestOpsFieldsLoad(t *testing.T) {
	c, err := loadString(t, "metrics:\n  listen: \":9090\"\nlog:\n  access_format: combined\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Listen != ":9090" || c.Log.AccessFormat != "combined" {
		t.Errorf("got metrics.listen %q, log.access_format %q; want \":9090\", \"combined\"", c.Metrics.Listen, c.Log.AccessFormat)
	}
	if got, want := c.origin("metrics.listen"), "config.yaml:2"; got != want {
		t.Errorf("origin of metrics.listen = %q; want %q", got, want)
	}
	got := RestartFields(Default(), c)
	if len(got) != 1 || got[0] != "metrics.listen" {
		t.Errorf("RestartFields = %q; want [metrics.listen]", got)
	}
}
