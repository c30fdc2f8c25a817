package proxy

import (
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"unsafe"

	"dedupcache/policy"
)

// notStored are response fields that never go into a stored header block
// besides the hop-by-hop ones (policy.RemoveHopByHop): fields the cache
// computes per response (Date is kept in the entry, Age is recomputed,
// Content-Length is set from the stored body) and our own.
var notStored = []string{"Date", "Age", "X-Cache", "Cache-Status", "Content-Length"}

// storedHeader returns the fields of a response header that are stored with
// it: all but the hop-by-hop fields (those named in Connection included),
// notStored, and strip.
func storedHeader(h http.Header, strip []string) http.Header {
	out := make(http.Header, len(h))
	n := 0
	for _, v := range h {
		n += len(v)
	}
	vals := make([]string, 0, n) // one array for all values, each slice full
	for k, v := range h {
		start := len(vals)
		vals = append(vals, v...)
		out[k] = vals[start:len(vals):len(vals)]
	}
	policy.RemoveHopByHop(out)
	for _, k := range notStored {
		delete(out, k)
	}
	for _, k := range strip {
		delete(out, k)
	}
	return out
}

// renderHeader renders h as sorted "Name: value\r\n" lines: the stored,
// shareable form of a header (identical headers give identical blocks).
// Fields named in skip are left out.
func renderHeader(h http.Header, skip ...string) []byte {
	keys := make([]string, 0, len(h))
	n := 0
	for k, vs := range h {
		if slices.Contains(skip, k) {
			continue
		}
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

// field is one field of a parsed block: its name and values, strings that
// point into the block (immutable, never recycled). values is full
// (cap == len), so that a net/http Header.Add on a response header holding
// it reallocates instead of writing into the shared array.
type field struct {
	name   string
	values []string
}

// blockFields is the parsed form of a stored header block (its dedupbody
// aux value): one per distinct block, shared by every entry using the
// block, read-only. A flat slice rather than an http.Header: 40 B per field
// plus one shared values array, against a map's ~330 B group and a slice
// allocation per field, and the hit path copies it into the response header
// by walking the slice instead of iterating a map (BENCHMARKS.md).
type blockFields []field

// get returns the first value of field k, or "".
func (f blockFields) get(k string) string {
	for i := range f {
		if f[i].name == k {
			if len(f[i].values) > 0 {
				return f[i].values[0]
			}
			return ""
		}
	}
	return ""
}

// parseBlock turns a block made by renderHeader back into its fields. It
// returns them and an estimate of the heap they take beyond the block. It
// is a dedupbody aux function.
func parseBlock(block []byte) (any, int64) {
	var s string
	if len(block) > 0 {
		s = unsafe.String(&block[0], len(block))
	}
	n := strings.Count(s, "\r\n")
	vals := make([]string, 0, n)
	fields := make(blockFields, 0, n)
	start := 0 // index in vals of the last field's first value
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
		if last := len(fields) - 1; last >= 0 && fields[last].name == k {
			vals = append(vals, v) // renderHeader keeps a field's values together
			fields[last].values = vals[start:len(vals):len(vals)]
			continue
		}
		if j := slices.IndexFunc(fields, func(f field) bool { return f.name == k }); j >= 0 {
			// Not adjacent (not a renderHeader block): a values array of its own.
			fields[j].values = slices.Clip(append(slices.Clone(fields[j].values), v))
			continue
		}
		start = len(vals)
		vals = append(vals, v)
		fields = append(fields, field{name: k, values: vals[start:len(vals):len(vals)]})
	}
	// The headerBlock, the fields array, the values array, and the fast
	// listener's form of the block (fastHead), counted before it is built
	// so that building it never changes an entry's cost.
	extra := int64(48+40*cap(fields)+16*cap(vals)) + fastHeadCost(len(block), n)
	return &headerBlock{fields: fields}, extra
}

// headerBlock is a stored header block's aux value (see parseBlock): its
// fields, and the fast listener's form of it, built on first use.
type headerBlock struct {
	fields blockFields
	fast   atomic.Pointer[fastHead]
}

// blockOf returns the parsed fields of a header store body's aux value.
func blockOf(aux any) blockFields {
	if b, _ := aux.(*headerBlock); b != nil {
		return b.fields
	}
	return nil
}

// blockHeader returns the fields of a stored block as a new http.Header
// whose value slices are the block's (shared, full: append reallocates).
// For the miss and revalidation paths; the hit path walks blockFields.
func blockHeader(aux any) http.Header {
	f := blockOf(aux)
	if f == nil {
		return nil
	}
	h := make(http.Header, len(f))
	for _, x := range f {
		h[x.name] = x.values
	}
	return h
}
