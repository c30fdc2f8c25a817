package proxy

import (
	"net/http"
	"slices"
	"testing"
)

// FuzzParseBlock checks that a rendered header block parses back to the
// same fields (names, values and their order), and that any bytes at all
// parse without a panic.
func FuzzParseBlock(f *testing.F) {
	f.Add("Content-Type", "text/plain", "Etag", `"x"`, "Vary", "A, B")
	f.Add("X", "", "Y", "a: b", "Z", "\t")
	f.Add("A", "1", "A", "2", "B", "3")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		_, _ = parseBlock([]byte(k1 + v1 + "\r\n" + k2 + ": " + v2 + "\r\n" + k3)) // arbitrary bytes
		h := http.Header{}
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}, {k3, v3}} {
			k, v := kv[0], kv[1]
			if !validFieldName(k) || !validFieldValue(v) {
				return
			}
			h[http.CanonicalHeaderKey(k)] = append(h[http.CanonicalHeaderKey(k)], v)
		}
		aux, extra := parseBlock(renderHeader(h))
		if extra <= 0 {
			t.Errorf("extra: got %d; want > 0", extra)
		}
		got := blockHeader(aux)
		if len(got) != len(h) {
			t.Fatalf("fields: got %v; want %v", got, h)
		}
		for k, vs := range h {
			if !slices.Equal(got[k], vs) {
				t.Errorf("%s: got %q; want %q", k, got[k], vs)
			}
			if cap(got[k]) != len(got[k]) {
				t.Errorf("%s: values not full (cap %d, len %d): an append could write into the shared block", k, cap(got[k]), len(got[k]))
			}
		}
	})
}

// validFieldName reports whether s is a token (RFC 9110 §5.1), as net/http
// accepts from an upstream.
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == '"' || c == '(' || c == ')' || c == ',' || c == '/' ||
			c == ';' || c == '<' || c == '=' || c == '>' || c == '?' || c == '@' || c == '[' || c == '\\' ||
			c == ']' || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// validFieldValue reports whether s can be a field value net/http hands
// over (no CR, LF or NUL).
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// TestLabel: label's Cache-Status values, the prebuilt ones included; an
// upstream cache's entry stays first (RFC 9211 §2: the cache nearest the
// user comes last); and a prebuilt value is shared read-only: appending to
// one response's field leaves the next response's alone.
func TestLabel(t *testing.T) {
	for _, tc := range []struct {
		name       string
		upstream   []string
		st         Status
		fwd        string
		withStatus bool
		stored     bool
		detail     string
		want       []string
	}{
		{"stored miss", nil, StatusMiss, "uri-miss", false, true, "", []string{"dedupcache; fwd=uri-miss; stored"}},
		{"bypass", nil, StatusBypass, "method", false, false, "", []string{"dedupcache; fwd=method"}},
		{"with status", nil, StatusMiss, "stale", true, true, "", []string{"dedupcache; fwd=stale; fwd-status=200; stored"}},
		{"with detail", nil, StatusBypass, "request", true, false, "request-body", []string{"dedupcache; fwd=request; fwd-status=200; detail=request-body"}},
		{"unknown fwd", nil, StatusMiss, "other", false, false, "", []string{"dedupcache; fwd=other"}},
		{"after an upstream cache", []string{"edge; hit"}, StatusMiss, "uri-miss", false, true, "", []string{"edge; hit", "dedupcache; fwd=uri-miss; stored"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.upstream != nil {
				h["Cache-Status"] = slices.Clone(tc.upstream)
			}
			label(h, tc.st, tc.fwd, tc.withStatus, 200, tc.stored, tc.detail)
			if !slices.Equal(h["Cache-Status"], tc.want) || h.Get("X-Cache") != xCache[tc.st][0] {
				t.Errorf("Cache-Status %q, X-Cache %q; want %q, %q", h["Cache-Status"], h.Get("X-Cache"), tc.want, xCache[tc.st][0])
			}
			if cs := h["Cache-Status"]; cap(cs) != len(cs) {
				t.Errorf("Cache-Status has room (len %d, cap %d): an append would write into a slice another response may share", len(cs), cap(cs))
			}
		})
	}
	first, second := http.Header{}, http.Header{}
	label(first, StatusMiss, "uri-miss", false, 200, true, "")
	first.Add("Cache-Status", "appended")
	first["Cache-Status"] = withFwdStatus(first["Cache-Status"], 304)
	label(second, StatusMiss, "uri-miss", false, 200, true, "")
	if want := []string{"dedupcache; fwd=uri-miss; stored"}; !slices.Equal(second["Cache-Status"], want) {
		t.Errorf("after changes to another response's field: %q, want %q", second["Cache-Status"], want)
	}
}
