package rules

import (
	"errors"
	"testing"

	"dedupcache/config"
)

func TestHostsAllows(t *testing.T) {
	h, err := CompileHosts("server.allowed_hosts", []string{"Api.Example.com", "*.example.org", "10.0.0.1", "[::1]"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host string
		want bool
	}{
		{"api.example.com", true},
		{"API.EXAMPLE.COM", true},
		{"api.example.com:8080", true},
		{"api.example.com.", true},
		{"a.example.org", true},
		{"A.B.Example.Org:443", true},
		{"example.org", false}, // the wildcard needs a label before it
		{"10.0.0.1:80", true},
		{"[::1]:8080", true},
		{"::1", true},
		{"evil.example", false},
		{"api.example.com.evil.example", false},
		{"evilapi.example.com", false},
		{"10.0.0.10", false},
		{"", false},
		{":80", false},
	}
	for _, tt := range tests {
		if got := h.Allows(tt.host); got != tt.want {
			t.Errorf("Allows(%q) = %v; want %v", tt.host, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { h.Allows("a.example.org:8080") }); n != 0 {
		t.Errorf("Allows allocates %v times per call; want 0", n)
	}
}

func TestHostsNilAllowsAll(t *testing.T) {
	h, err := CompileHosts("server.allowed_hosts", nil)
	if err != nil || h != nil {
		t.Fatalf("CompileHosts(nil) = %v, %v; want nil, nil", h, err)
	}
	if !h.Allows("anything.example") || !h.Allows("") || h.Len() != 0 {
		t.Errorf("a nil Hosts must allow every host and have length 0")
	}
}

func TestCompileHostsErrors(t *testing.T) {
	_, err := CompileHosts("server.allowed_hosts", []string{"ok.example", "bad host", "*."})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Field != "server.allowed_hosts[1]" {
		t.Fatalf("CompileHosts error %v; want a *config.Error for server.allowed_hosts[1]", err)
	}
	if got := err.Error(); got != "server.allowed_hosts[1]: \"bad host\" is not a host name, *.name or IP address\n"+
		"server.allowed_hosts[2]: \"*.\" is not a host name, *.name or IP address" {
		t.Errorf("error %q", got)
	}
}
