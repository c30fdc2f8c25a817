package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseSize(f *testing.F) {
	for _, tt := range parseSizeTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d; want >= 0", s, n)
		}
		back, err := ParseSize(Size(n).String())
		if err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d, %v after ParseSize(%q) = %d", Size(n).String(), back, err, s, n)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, tt := range parseDurationTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		back, err := ParseDuration(Duration(d).String())
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v, %v after ParseDuration(%q) = %v", Duration(d).String(), back, err, s, d)
		}
	})
}

// FuzzLoad feeds arbitrary files to Load: it must not panic, every problem
// it reports must name the file, and whatever it accepts must survive
// Validate and Warnings.
func FuzzLoad(f *testing.F) {
	if data, err := os.ReadFile(exampleFile); err == nil {
		f.Add(data)
	}
	for _, tt := range loadErrorTests {
		f.Add([]byte(tt.yaml))
	}
	f.Add([]byte("a: &a [*a]\ncache: &c {grace: *c}\n"))
	f.Add([]byte(rulesYAML))
	f.Add([]byte("rules: &r [{key: *r}, *r, {status: [1, x], key: {query_params: [a*b]}}]\n"))
	// One file per worker process: inputs run one at a time within a worker,
	// and a fresh t.TempDir per input makes minimising crawl.
	path := filepath.Join(f.TempDir(), "fuzz.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			for line := range strings.Lines(err.Error()) {
				if !strings.HasPrefix(line, path) {
					t.Fatalf("problem does not name the file: %q", line)
				}
			}
			return
		}
		_ = c.Validate()
		_ = c.Warnings()
	})
}
