// Package benchutil holds what the benchmark tools (bench/origin,
// bench/soakload) share: sizes as their flags spell them, and the loopback
// checks that keep their load on 127.0.0.1.
package benchutil

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ParseSize reads a byte count: "512", "4k" or "16K" (KiB), "1m" (MiB).
func ParseSize(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(strings.ToLower(s), "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(strings.ToLower(s), "m"):
		mult, s = 1<<20, s[:len(s)-1]
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}

// Loopback refuses a host:port whose host is not a loopback address
// ("localhost" is one).
func Loopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not a loopback address", hostport)
	}
	return nil
}

// LoopbackURL refuses a URL that is not http:// on a loopback address.
func LoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q: want http://127.0.0.1:PORT", raw)
	}
	hostport := u.Host
	if u.Port() == "" {
		hostport = net.JoinHostPort(u.Hostname(), "80")
	}
	if Loopback(hostport) != nil {
		return fmt.Errorf("%q is not a loopback address", raw)
	}
	return nil
}
