package rules

import (
	"errors"
	"fmt"

	"dedupcache/config"
)

// Hosts is a compiled list of host patterns (server.allowed_hosts): exact
// names, "*.example.com" wildcards and IP addresses, matched as a rule's
// hosts are (case ignored, port ignored). It is immutable and safe for
// concurrent use. A nil *Hosts stands for "no list" and allows every host.
type Hosts struct {
	pats []hostPattern
}

// CompileHosts compiles list, whose elements should have passed
// [config.Config.Validate]; an element it cannot parse is reported as a
// [*config.Error] naming field[i]. An empty list gives nil: every host is
// allowed.
func CompileHosts(field string, list []string) (*Hosts, error) {
	if len(list) == 0 {
		return nil, nil
	}
	h := &Hosts{pats: make([]hostPattern, 0, len(list))}
	var errs []error
	for i, s := range list {
		hp, ok := parseHostPattern(s)
		if !ok {
			errs = append(errs, &config.Error{Field: fmt.Sprintf("%s[%d]", field, i), Problem: fmt.Sprintf("%q is not a host name, *.name or IP address", s)})
			continue
		}
		h.pats = append(h.pats, hp)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return h, nil
}

// Allows reports whether host, a request's Host as received (with or
// without a port, "[::1]:8080" for IPv6), matches one of the patterns; a
// nil Hosts allows every host, and an empty host matches no pattern. It
// allocates nothing for names and IPv4 addresses.
func (h *Hosts) Allows(host string) bool {
	if h == nil {
		return true
	}
	name := hostOnly(host)
	if name == "" {
		return false
	}
	for i := range h.pats {
		if h.pats[i].match(name) {
			return true
		}
	}
	return false
}

// Len returns the number of patterns (0 for nil).
func (h *Hosts) Len() int {
	if h == nil {
		return 0
	}
	return len(h.pats)
}
