package proxy

import (
	"bytes"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"unsafe"
)

// notStored are response fields that never go into a stored header block:
// hop-by-hop fields (RFC 9110 §7.6.1), fields the cache computes per
// response (Date is kept in the entry, Age is recomputed) and our own.
var notStored = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
	"Date":                true,
	"Age":                 true,
	"X-Cache":             true,
	"Content-Length":      true, // set from the stored body
}

// storedHeader returns the fields of a response header that are stored with
// it: everything but notStored, fields named in Connection, and strip.
func storedHeader(h http.Header, strip []string) http.Header {
	drop := func(k string) bool { return notStored[k] || slices.Contains(strip, k) }
	for _, line := range h["Connection"] {
		for _, f := range strings.Split(line, ",") {
			if f = textproto.TrimString(f); f != "" {
				strip = append(strip, http.CanonicalHeaderKey(f))
			}
		}
	}
	out := make(http.Header, len(h))
	for k, v := range h {
		if !drop(k) {
			out[k] = slices.Clone(v)
		}
	}
	return out
}

// renderHeader renders h as sorted "Name: value\r\n" lines: the stored,
// shareable form of a header (identical headers give identical blocks).
func renderHeader(h http.Header) []byte {
	keys := make([]string, 0, len(h))
	n := 0
	for k, vs := range h {
		keys = append(keys, k)
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	for _, k := range keys {
		for _, v := range h[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// parseBlock turns a block made by renderHeader back into a header whose
// strings point into the block (which is immutable and never recycled) and
// whose value slices are full (cap == len), so that a net/http Header.Add on
// a response header holding them reallocates instead of writing into the
// shared array. It returns the header and an estimate of the heap it takes
// beyond the block. It is a dedupbody aux function.
func parseBlock(block []byte) (any, int64) {
	h := make(http.Header)
	var s string
	if len(block) > 0 {
		s = unsafe.String(&block[0], len(block))
	}
	var extra int64 = 48 // map header
	for len(s) > 0 {
		i := strings.Index(s, "\r\n")
		if i < 0 {
			break
		}
		line := s[:i]
		s = s[i+2:]
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		vs := h[k]
		if vs == nil {
			extra += 64 // map slot, key and slice headers
		}
		vs = append(vs, v)
		h[k] = vs[:len(vs):len(vs)]
		extra += 16 + 16 // value string header, growth slack
	}
	return h, extra
}

// blockHeader returns the parsed header of a stored block.
func blockHeader(aux any) http.Header {
	h, _ := aux.(http.Header)
	return h
}

// blockField returns the first value of field k in a parsed block, or "".
func blockField(h http.Header, k string) string {
	if vs := h[k]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

var crlf = []byte("\r\n")

// validBlock reports whether every line of b has the "Name: value" form.
func validBlock(b []byte) bool {
	for len(b) > 0 {
		i := bytes.Index(b, crlf)
		if i < 0 || bytes.IndexByte(b[:i], ':') <= 0 {
			return false
		}
		b = b[i+2:]
	}
	return true
}
