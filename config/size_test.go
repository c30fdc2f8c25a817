package config

import (
	"flag"
	"io"
	"testing"
	"time"
)

var parseSizeTests = []struct {
	in   string
	want int64
	err  string
}{
	{in: "0", want: 0},
	{in: "512", want: 512},
	{in: "512B", want: 512},
	{in: "1KB", want: 1000},
	{in: "1kB", want: 1000},
	{in: "1KiB", want: 1024},
	{in: "256MiB", want: 256 << 20},
	{in: "256MB", want: 256e6},
	{in: "1.5GiB", want: 3 << 29},
	{in: "2GB", want: 2e9},
	{in: "1TiB", want: 1 << 40},
	{in: "3TB", want: 3e12},
	{in: " 64 KiB ", want: 64 << 10},
	{in: "0.1KiB", want: 102}, // rounded down to a whole byte
	{in: "8388608", want: 8 << 20},
	{in: "7TiB", want: 7 << 40},
	{in: "9223372036854775807", want: 1<<63 - 1},

	{in: "", err: `"" is not a size (want e.g. 512MiB)`},
	{in: "12XB", err: `"12XB" is not a size (want e.g. 512MiB)`},
	{in: "256mib", err: `"256mib" is not a size (want e.g. 512MiB)`},
	{in: "256MIB", err: `"256MIB" is not a size (want e.g. 512MiB)`},
	{in: "256Mb", err: `"256Mb" is not a size (want e.g. 512MiB)`},
	{in: "MiB", err: `"MiB" is not a size (want e.g. 512MiB)`},
	{in: "1.MiB", err: `"1.MiB" is not a size (want e.g. 512MiB)`},
	{in: ".5MiB", err: `".5MiB" is not a size (want e.g. 512MiB)`},
	{in: "1.2.3", err: `"1.2.3" is not a size (want e.g. 512MiB)`},
	{in: "1e6", err: `"1e6" is not a size (want e.g. 512MiB)`},
	{in: "0x10", err: `"0x10" is not a size (want e.g. 512MiB)`},
	{in: "+5", err: `"+5" is not a size (want e.g. 512MiB)`},
	{in: "1 2MiB", err: `"1 2MiB" is not a size (want e.g. 512MiB)`},
	{in: "-1", err: `"-1" is negative (want a size such as 512MiB)`},
	{in: "-5MiB", err: `"-5MiB" is negative (want a size such as 512MiB)`},
	{in: "9223372036854775808", err: `"9223372036854775808" is too large (the limit is 8EiB)`},
	{in: "8388608TiB", err: `"8388608TiB" is too large (the limit is 8EiB)`},
}

func TestParseSize(t *testing.T) {
	for _, tt := range parseSizeTests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("ParseSize(%q) = %d, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0"},
		{1, "1"},
		{1023, "1023"},
		{1024, "1KiB"},
		{1000, "1KB"},
		{1500, "1500"},
		{1500_000, "1500KB"},
		{256 * MiB, "256MiB"},
		{3 * GiB / 2, "1536MiB"},
		{2 * TiB, "2TiB"},
		{-5, "-5"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q; want %q", int64(tt.in), got, tt.want)
		}
		if tt.in < 0 {
			continue
		}
		if back, err := ParseSize(tt.in.String()); err != nil || back != int64(tt.in) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in.String(), back, err, int64(tt.in))
		}
	}
}

var parseDurationTests = []struct {
	in   string
	want time.Duration
	err  string
}{
	{in: "30s", want: 30 * time.Second},
	{in: "1h30m", want: 90 * time.Minute},
	{in: "250ms", want: 250 * time.Millisecond},
	{in: "0", want: 0},
	{in: "0s", want: 0},
	{in: "30", want: 30 * time.Second},
	{in: " 45 ", want: 45 * time.Second},
	{in: "-5", want: -5 * time.Second}, // parsed; Validate rejects it
	{in: "-1m", want: -time.Minute},
	{in: "9223372036", want: 9223372036 * time.Second},

	{in: "", err: `"" is not a duration (want e.g. 30s, 5m or 1h30m)`},
	{in: "-", err: `"-" is not a duration (want e.g. 30s, 5m or 1h30m)`},
	{in: "5 minutes", err: `"5 minutes" is not a duration (want e.g. 30s, 5m or 1h30m)`},
	{in: "1d", err: `"1d" is not a duration (want e.g. 30s, 5m or 1h30m)`},
	{in: "9223372037", err: `"9223372037" is too long a duration`},
	{in: "99999999999999999999", err: `"99999999999999999999" is too long a duration`},
}

func TestParseDuration(t *testing.T) {
	for _, tt := range parseDurationTests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestFlagValues checks that *Size and *Duration work as flag.Value.
func TestFlagValues(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	size := 256 * MiB
	d := Duration(time.Second)
	fs.Var(&size, "size", "")
	fs.Var(&d, "d", "")
	if err := fs.Parse([]string{"-size", "1GiB", "-d", "90"}); err != nil {
		t.Fatal(err)
	}
	if size != GiB || d != Duration(90*time.Second) {
		t.Fatalf("got size %v, d %v; want 1GiB, 1m30s", size, d)
	}
	err := fs.Parse([]string{"-size", "12XB"})
	want := `invalid value "12XB" for flag -size: "12XB" is not a size (want e.g. 512MiB)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v; want %s", err, want)
	}
}
