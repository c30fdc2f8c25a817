package benchutil

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"512": 512, "4k": 4096, "16K": 16384, "1m": 1 << 20, "0": 0} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"4x", "", "-1", "k"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) should fail", in)
		}
	}
}

func TestLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:1": true, "127.8.0.1:1": true, "localhost:1": true, "[::1]:1": true,
		"0.0.0.0:1": false, ":1": false, "10.0.0.1:1": false, "example.com:1": false, "127.0.0.1": false,
	} {
		if err := Loopback(addr); (err == nil) != ok {
			t.Errorf("Loopback(%q) = %v", addr, err)
		}
	}
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:28080": true, "http://localhost:1/x": true, "http://[::1]:1": true, "http://127.0.0.1": true,
		"https://127.0.0.1:1": false, "http://10.0.0.1:1": false, "127.0.0.1:1": false, "http://": false,
	} {
		if err := LoopbackURL(raw); (err == nil) != ok {
			t.Errorf("LoopbackURL(%q) = %v", raw, err)
		}
	}
}
