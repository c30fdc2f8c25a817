package proxy

import (
	"fmt"
	"math/bits"
	"net/http"
	"strings"
	"unicode"

	"github.com/cespare/xxhash/v2"

	"dedupcache/cachestore"
	"dedupcache/policy"
	"dedupcache/rules"
)

// A cache key is "host uri": the request target's authority and its
// path and query as the client sent them (RFC 9111 §2: the target URI).
// GET and HEAD share keys. A variant of a response that has Vary is stored
// under "host uri\x00" + policy.VaryKey(...).
//
// The store is keyed by a 64-bit hash of the key; entries hold the key
// itself, and readers compare it, so a hash collision is a miss.

// keyParts returns the host and uri of r's cache key without allocating
// in the common case (lower-case host, origin-form request target).
func keyParts(r *http.Request) (host, uri string) {
	host = r.Host
	if hasUpper(host) {
		host = strings.ToLower(host)
	}
	uri = r.RequestURI
	if uri == "" || uri[0] != '/' {
		uri = r.URL.RequestURI()
	}
	if r.Method == http.MethodPost {
		if k, ok := r.Context().Value(postKey{}).(postBody); ok {
			uri += k.suffix // a cacheable POST: keyed by its body too
		}
	}
	return host, uri
}

// fwdSep separates, in a key's host part, the host from the forwarded
// context the response was fetched in (see Proxy.keyHost). No Host holds
// it: net/http and fasthttp refuse control bytes in a field value.
const fwdSep = "\x03"

// keyHost returns the host part of r's cache key: the request's host, or,
// when the upstream will see a scheme other than http or a forwarded host
// other than the host (X-Forwarded-Proto and -Host, see outbound), the
// host followed by both. Origins build redirects and absolute links from
// those fields: an http-to-https redirect stored for a plain request and
// served to a TLS one loops, and a page built for one forwarded host must
// not reach another (cache poisoning through an unkeyed forwarded field).
// Untrusted peers' fields are replaced before the upstream sees them, so
// only the listener's scheme counts for them. nginx keys by $scheme for
// the same reason.
func (p *Proxy) keyHost(r *http.Request, host string) string {
	proto, fhost := "http", ""
	if r.TLS != nil {
		proto = "https"
	}
	if p.trustedPeer(r.RemoteAddr) {
		if v := r.Header["X-Forwarded-Proto"]; len(v) > 0 {
			proto = fwdValue(v)
		}
		if v := r.Header["X-Forwarded-Host"]; len(v) > 0 {
			fhost = fwdValue(v)
		}
	}
	if proto == "http" && (fhost == "" || fhost == host) {
		return host
	}
	return host + fwdSep + proto + fwdSep + fhost
}

// fwdValue is a forwarded field's values as keyHost keys them: joined
// with commas, lower-cased, without spaces and tabs (a key's host part
// ends at its first space).
func fwdValue(v []string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' {
			return -1
		}
		return unicode.ToLower(r)
	}, strings.Join(v, ","))
}

// requestKey returns the host and uri parts of r's cache key: keyParts
// with the forwarded context (keyHost).
func (p *Proxy) requestKey(r *http.Request) (host, uri string) {
	host, uri = keyParts(r)
	return p.keyHost(r, host), uri
}

// baseHost returns the request host of a key's host part, without the
// forwarded context keyHost may have added: what rules and same-origin
// checks compare.
func baseHost(host string) string {
	h, _, _ := strings.Cut(host, fwdSep)
	return h
}

// keyHash hashes the key "host uri" without building it.
func keyHash(host, uri string) uint64 {
	return xxhash.Sum64String(uri) ^ bits.RotateLeft64(xxhash.Sum64String(host)*0x9E3779B97F4A7C15, 31)
}

// keyString builds the key "host uri".
func keyString(host, uri string) string { return host + " " + uri }

// keyIs reports whether key == keyString(host, uri), without building it.
func keyIs(key, host, uri string) bool {
	return len(key) == len(host)+1+len(uri) &&
		key[len(host)] == ' ' &&
		key[:len(host)] == host &&
		key[len(host)+1:] == uri
}

// variantKey returns the key of the variant of primary selected by vary.
func variantKey(primary, vary string) string { return primary + "\x00" + vary }

// keyHashString hashes a full key string (a variant key).
func keyHashString(k string) uint64 { return xxhash.Sum64String(k) }

// entryHashes returns the store hash of an entry, the hash of its primary
// key, and whether it is a Vary variant (then the two differ).
func entryHashes(e *cachestore.Entry) (h, primary uint64, isVariant bool) {
	p, _, isVariant := strings.Cut(e.Key, "\x00")
	primary = primaryHash(p)
	if isVariant {
		return keyHashString(e.Key), primary, true
	}
	return primary, primary, false
}

// primaryHash hashes a primary key string "host uri".
func primaryHash(key string) uint64 {
	host, uri, _ := strings.Cut(key, " ")
	return keyHash(host, uri)
}

// shapeKey applies a rule's key block to uri: its query as the rule keeps
// it, and the request fields the rule adds, after "\x02" (a byte no
// request target holds). A cached POST's body suffix is kept.
func shapeKey(k *rules.Key, uri string, h policy.Fields) string {
	base, post, hasPost := strings.Cut(uri, "\x01")
	path, query, _ := strings.Cut(base, "?")
	out := path
	if q := k.Query(query); q != "" {
		out += "?" + q
	}
	if hasPost {
		out += "\x01" + post
	}
	if extra := k.AppendExtra(nil, h); len(extra) > 0 {
		out += "\x02" + string(extra)
	}
	return out
}

// uriPath returns the path of a key's uri: up to its query, cached-POST
// suffix or shaped-key fields.
func uriPath(uri string) string {
	if i := strings.IndexAny(uri, "?\x01\x02"); i >= 0 {
		return uri[:i]
	}
	return uri
}

// displayKey returns a key as the dashboard shows it: a variant's request
// fields after " | vary ", a forwarded context (keyHost) after " | fwd ".
func displayKey(k string) string { return keyDisplay.Replace(k) }

var keyDisplay = strings.NewReplacer("\x00", " | vary ", fwdSep, " | fwd ")

// printableKey writes a key for a header field: control bytes (the
// separators of cached-POST and shaped keys), bytes past ASCII and '\\'
// as \xHH.
func printableKey(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c < 0x20 || c >= 0x7f || c == '\\':
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
