package rules

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"dedupcache/config"
)

// Key is a compiled key block: what of a request goes into its cache key
// besides the host and path. It only shapes the key; the request sent to
// the origin is not changed. Immutable and safe for concurrent use.
type Key struct {
	query    queryMode
	filter   bool     // query_params given: only keeps them, otherwise they are dropped
	only     bool     // query_mode: only
	names    []string // query_params without a trailing '*'
	prefixes []string // query_params with one, the '*' cut off
	headers  []string // canonical header names
	cookies  []string
	tags     []string // " h:accept-language", " c:session": one per header, then per cookie
}

// queryMode is the query setting of a key block.
type queryMode uint8

const (
	queryKeep queryMode = iota
	querySort
	queryIgnore
)

// compileKey compiles the key block at path p; nil if it changes nothing.
func compileKey(p string, c config.RuleKey) (*Key, error) {
	fail := func(field, format string, args ...any) error {
		return &config.Error{Field: p + "." + field, Problem: fmt.Sprintf(format, args...)}
	}
	k := &Key{}
	switch c.Query {
	case "", "keep":
	case "sort":
		k.query = querySort
	case "ignore":
		k.query = queryIgnore
	default:
		return nil, fail("query", "%q is not one of keep, sort, ignore", c.Query)
	}
	if len(c.QueryParams) > 0 && k.query != queryIgnore {
		switch c.QueryMode {
		case "only":
			k.only = true
		case "drop":
		default:
			return nil, fail("query_mode", "%q is not one of only, drop", c.QueryMode)
		}
		k.filter = true
		for _, n := range c.QueryParams {
			if pre, ok := strings.CutSuffix(n, "*"); ok {
				k.prefixes = append(k.prefixes, pre)
			} else {
				k.names = append(k.names, n)
			}
		}
	}
	for _, h := range c.Headers {
		k.headers = append(k.headers, http.CanonicalHeaderKey(h))
		k.tags = append(k.tags, " h:"+strings.ToLower(h))
	}
	for _, c := range c.Cookies {
		k.cookies = append(k.cookies, c)
		k.tags = append(k.tags, " c:"+c)
	}
	if k.query == queryKeep && !k.filter && len(k.tags) == 0 {
		return nil, nil
	}
	return k, nil
}

// Query returns the part of rawQuery (the query without '?', as sent) that
// goes into the cache key:
//
//   - keep: rawQuery as it is;
//   - ignore: "";
//   - sort: the parameters sorted by name, then value, compared as sent
//     (escaped), keeping the order of equal ones;
//   - with query_params, first only those parameters are kept (only) or
//     all but those (drop), then sort applies if set.
//
// Names are compared with query_params once unescaped ("utm%5Fsource" is
// utm_source). Whenever parameters are filtered or sorted, empty ones
// ("a=1&&b=2") are left out. Two cases err towards keeping a parameter in
// the key, since leaving out what the origin does read would let one
// client's response be served for another request: a name that does not
// unescape is never filtered out, and drop never removes a parameter that
// holds ';', which some servers read as a separator.
//
// Query(Query(q)) == Query(q). When the key keeps rawQuery unchanged,
// Query returns it without allocating (unless a name needs unescaping to be
// compared with query_params).
func (k *Key) Query(rawQuery string) string {
	switch {
	case k.query == queryIgnore:
		return ""
	case !k.filter && k.query == queryKeep, rawQuery == "":
		return rawQuery
	}
	if !k.rewrites(rawQuery) {
		return rawQuery
	}
	params := make([]string, 0, strings.Count(rawQuery, "&")+1)
	for p := range strings.SplitSeq(rawQuery, "&") {
		if p != "" && k.keeps(p) {
			params = append(params, p)
		}
	}
	if k.query == querySort {
		slices.SortStableFunc(params, compareParams)
	}
	return strings.Join(params, "&")
}

// rewrites reports whether Query changes rawQuery: it has an empty
// parameter, one to filter out, or one out of order.
func (k *Key) rewrites(rawQuery string) bool {
	prev := ""
	for p := range strings.SplitSeq(rawQuery, "&") {
		if p == "" || !k.keeps(p) {
			return true
		}
		if k.query == querySort && prev != "" && compareParams(prev, p) > 0 {
			return true
		}
		prev = p
	}
	return false
}

// keeps reports whether the query_params filter keeps the parameter p
// ("name=value" or "name", as sent).
func (k *Key) keeps(p string) bool {
	if !k.filter {
		return true
	}
	name, _, _ := strings.Cut(p, "=")
	if strings.ContainsAny(name, "%+") {
		n, err := url.QueryUnescape(name)
		if err != nil {
			return true
		}
		name = n
	}
	listed := slices.Contains(k.names, name) ||
		slices.ContainsFunc(k.prefixes, func(pre string) bool { return strings.HasPrefix(name, pre) })
	if k.only {
		return listed
	}
	return !listed || strings.IndexByte(p, ';') >= 0
}

// compareParams orders query parameters by name, then value.
func compareParams(a, b string) int {
	an, av, _ := strings.Cut(a, "=")
	bn, bv, _ := strings.Cut(b, "=")
	return cmp.Or(strings.Compare(an, bn), strings.Compare(av, bv))
}

// AppendExtra appends to dst what the configured request headers and
// cookies add to the cache key, and returns the extended slice; dst is
// returned as it is when the key names none. h is the request header with
// canonical keys, as net/http provides it.
//
// Each header adds " h:NAME" (the name in lower case) and each cookie
// " c:NAME", in the configured order; when the header is present, or the
// cookie is found in any Cookie header, '=' follows, then each value (each
// field line of the header, each occurrence of the cookie) as its length in
// decimal, ':' and its bytes as sent. So an absent field (" h:accept") and
// an empty one (" h:accept=0:") differ, and no value can pose as another
// field. A value holding a NUL byte, which net/http's server rejects, is
// written instead as 'q' and a Go-quoted string, so that the result never
// holds NUL. Example: " h:accept-language=2:fr c:session=3:abc".
//
// AppendExtra allocates only to grow dst.
func (k *Key) AppendExtra(dst []byte, h Fields) []byte {
	for i, name := range k.headers {
		dst = append(dst, k.tags[i]...)
		if vv := h.Values(name); len(vv) > 0 {
			dst = append(dst, '=')
			for _, v := range vv {
				dst = appendValue(dst, v)
			}
		}
	}
	for i, name := range k.cookies {
		dst = append(dst, k.tags[len(k.headers)+i]...)
		found := false
		for _, line := range h.Values("Cookie") {
			for part := range strings.SplitSeq(line, ";") {
				n, v, _ := strings.Cut(part, "=")
				if strings.TrimSpace(n) != name {
					continue
				}
				if !found {
					dst = append(dst, '=')
					found = true
				}
				dst = appendValue(dst, strings.TrimSpace(v))
			}
		}
	}
	return dst
}

// Fields is read access to a request's header fields by canonical name
// (http.Header implements it): Values returns the field's lines, nil when
// absent, valid until the next call.
type Fields interface {
	Values(name string) []string
}

// appendValue appends one length-prefixed value (or a quoted one, if it
// holds NUL).
func appendValue(dst []byte, v string) []byte {
	if strings.IndexByte(v, 0) >= 0 {
		return strconv.AppendQuote(append(dst, 'q'), v)
	}
	dst = strconv.AppendInt(dst, int64(len(v)), 10)
	dst = append(dst, ':')
	return append(dst, v...)
}
