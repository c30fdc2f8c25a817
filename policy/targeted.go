package policy

import (
	"net/http"
	"strings"
)

// ResponseDirectives returns the cache directives this cache obeys for a
// response, and the field they came from. Per RFC 9213 §2.2 that is the first
// field of opt.TargetedFields (in order) with a valid, non-empty value, in
// which case Cache-Control and Expires are ignored; then, with
// opt.SurrogateToken set, Surrogate-Control when a max-age or no-store of
// it is for this cache (see surrogate.go), which replaces them the same
// way; otherwise it is Cache-Control. field is the name as listed in
// opt.TargetedFields, "Surrogate-Control" or "Cache-Control".
//
// Targeted fields are Structured Fields Dictionaries (RFC 9213 §2.1, RFC 8941
// §3.2): keys are lower-case, integers are bare, strings quoted. A field that
// fails to parse is ignored as a whole. Member values of the wrong type are
// not consumed (§2.1): a non-integer max-age or s-maxage counts as 0 (stale,
// as in [CacheControl]), a non-Boolean no-store, no-cache or private counts as
// present, a non-Boolean public or must-understand as absent. Repeated keys:
// the last wins (RFC 8941 §4.2.2). Parameters are ignored.
func ResponseDirectives(respHdr http.Header, opt Options) (cc CacheControl, field string) {
	cc, i := directives(respHdr, opt)
	switch {
	case i < 0:
		return cc, "Cache-Control"
	case i == len(opt.TargetedFields):
		return cc, "Surrogate-Control"
	}
	return cc, opt.TargetedFields[i]
}

// directives is [ResponseDirectives] returning the index of the targeted field
// used, len(opt.TargetedFields) for Surrogate-Control, or -1 for
// Cache-Control.
func directives(respHdr http.Header, opt Options) (CacheControl, int) {
	for i, name := range opt.TargetedFields {
		if lines := fieldLines(respHdr, name); len(lines) > 0 {
			if cc, ok := parseTargeted(lines); ok {
				return cc, i
			}
		}
	}
	if opt.SurrogateToken != "" {
		if lines := surrogateLines(respHdr); len(lines) > 0 {
			if cc, ok := parseSurrogate(lines, opt.SurrogateToken); ok {
				return cc, len(opt.TargetedFields)
			}
		}
	}
	return ParseCacheControl(respHdr, "Cache-Control"), -1
}

// fieldLines returns h.Values(name) without allocating the canonical form of
// a configured name such as "CDN-Cache-Control" on every call: a map index
// with a converted []byte does not allocate.
func fieldLines(h http.Header, name string) []string {
	var buf [64]byte
	if len(name) > len(buf) {
		return h.Values(name)
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isTchar(c) {
			return h[name] // textproto leaves such names as they are
		}
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		buf[i] = c
		upper = c == '-'
	}
	return h[string(buf[:len(name)])]
}

// parseTargeted parses the field lines of a targeted field. ok is false when
// the field is empty or is not a valid Dictionary.
func parseTargeted(lines []string) (cc CacheControl, ok bool) {
	s := lines[0]
	if len(lines) > 1 {
		// RFC 8941 §4.2: lines are combined as one comma-separated value.
		// Empty lines are skipped rather than turned into empty members.
		var b strings.Builder
		for _, l := range lines {
			if l = strings.Trim(l, " "); l != "" {
				if b.Len() > 0 {
					b.WriteByte(',')
				}
				b.WriteString(l)
			}
		}
		s = b.String()
	}
	cc = newCacheControl()
	p := sfParser{s: strings.TrimLeft(s, " ")}
	n := 0
	for p.i < len(p.s) {
		key, ok := p.key()
		if !ok {
			return cc, false
		}
		it := sfItem{kind: sfBoolean, boolean: true}
		if p.i < len(p.s) && p.s[p.i] == '=' {
			p.i++
			if p.i < len(p.s) && p.s[p.i] == '(' {
				ok = p.innerList()
				it = sfItem{kind: sfInnerList}
			} else {
				it, ok = p.item()
			}
		} else {
			ok = p.params()
		}
		if !ok {
			return cc, false
		}
		cc.applyTargeted(key, it)
		n++
		p.skipOWS()
		if p.i == len(p.s) {
			break
		}
		if p.s[p.i] != ',' {
			return cc, false
		}
		p.i++
		p.skipOWS()
		if p.i == len(p.s) {
			return cc, false // trailing comma
		}
	}
	return cc, n > 0
}

// applyTargeted records one Dictionary member, replacing any earlier value.
func (cc *CacheControl) applyTargeted(key string, it sfItem) {
	// seconds maps an Integer to delta-seconds; anything else is invalid: 0.
	seconds := func() int64 {
		if it.kind != sfInteger || it.integer < 0 {
			return 0
		}
		return min(it.integer, maxDelta)
	}
	restrictive := it.kind != sfBoolean || it.boolean
	permissive := it.kind == sfBoolean && it.boolean
	switch key {
	case "max-age":
		cc.MaxAge = seconds()
	case "s-maxage":
		cc.SMaxAge = seconds()
	case "stale-while-revalidate":
		cc.StaleWhileRevalidate = seconds()
	case "stale-if-error":
		cc.StaleIfError = seconds()
	case "no-store":
		cc.NoStore = restrictive
	case "no-cache":
		cc.NoCache, cc.NoCacheFields = fieldList(it)
	case "private":
		cc.Private, cc.PrivateFields = fieldList(it)
	case "must-revalidate":
		cc.MustRevalidate = restrictive
	case "proxy-revalidate":
		cc.ProxyRevalidate = restrictive
	case "no-transform":
		cc.NoTransform = restrictive
	case "public":
		cc.Public = permissive
	case "must-understand":
		cc.MustUnderstand = permissive
	case "immutable":
		cc.Immutable = permissive
	}
}

// fieldList reads the value of no-cache or private: Boolean for the
// unqualified form, a String listing field names for the qualified one.
// Any other value, or an empty list, counts as the unqualified form.
func fieldList(it sfItem) (unqualified bool, fields []string) {
	switch {
	case it.kind == sfBoolean:
		return it.boolean, nil
	case it.kind == sfString && appendFieldNames(&fields, it.str):
		return false, fields
	}
	return true, nil
}

// sfKind is the type of a Structured Fields value (RFC 8941 §3).
type sfKind uint8

const (
	sfBoolean sfKind = iota
	sfInteger
	sfDecimal
	sfString
	sfToken
	sfByteSequence
	sfInnerList
)

// sfItem is a parsed bare item; only the parts the directives use are kept.
type sfItem struct {
	kind    sfKind
	boolean bool
	integer int64
	str     string
}

// sfParser implements the parts of RFC 8941 §4.2 a Dictionary needs.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// key parses a key (§4.2.3.3): ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ).
func (p *sfParser) key() (string, bool) {
	start := p.i
	if p.i >= len(p.s) || !(isLower(p.s[p.i]) || p.s[p.i] == '*') {
		return "", false
	}
	for p.i++; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		if !(isLower(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*') {
			break
		}
	}
	return p.s[start:p.i], true
}

// item parses an Item: a bare item followed by parameters (§4.2.3).
func (p *sfParser) item() (sfItem, bool) {
	it, ok := p.bareItem()
	return it, ok && p.params()
}

// innerList parses an Inner List (§4.2.1.2); its contents are not kept.
func (p *sfParser) innerList() bool {
	p.i++ // '('
	for p.i < len(p.s) {
		for p.i < len(p.s) && p.s[p.i] == ' ' {
			p.i++
		}
		if p.i < len(p.s) && p.s[p.i] == ')' {
			p.i++
			return p.params()
		}
		if _, ok := p.item(); !ok {
			return false
		}
		if p.i < len(p.s) && p.s[p.i] != ' ' && p.s[p.i] != ')' {
			return false
		}
	}
	return false
}

// params parses Parameters (§4.2.3.2); they are not kept.
func (p *sfParser) params() bool {
	for p.i < len(p.s) && p.s[p.i] == ';' {
		p.i++
		for p.i < len(p.s) && p.s[p.i] == ' ' {
			p.i++
		}
		if _, ok := p.key(); !ok {
			return false
		}
		if p.i < len(p.s) && p.s[p.i] == '=' {
			p.i++
			if _, ok := p.bareItem(); !ok {
				return false
			}
		}
	}
	return true
}

// bareItem parses a Bare Item (§4.2.3.1).
func (p *sfParser) bareItem() (sfItem, bool) {
	if p.i >= len(p.s) {
		return sfItem{}, false
	}
	switch c := p.s[p.i]; {
	case c == '-' || isDigit(c):
		return p.number()
	case c == '"':
		return p.string()
	case c == '*' || isAlpha(c):
		return p.token(), true
	case c == ':':
		return p.byteSequence()
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			b := p.s[p.i+1] == '1'
			p.i += 2
			return sfItem{kind: sfBoolean, boolean: b}, true
		}
	}
	return sfItem{}, false
}

// number parses an Integer or Decimal (§4.2.4).
func (p *sfParser) number() (sfItem, bool) {
	neg := p.s[p.i] == '-'
	if neg {
		p.i++
	}
	start := p.i
	if p.i >= len(p.s) || !isDigit(p.s[p.i]) {
		return sfItem{}, false
	}
	var n int64
	dot := -1
digits:
	for ; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case isDigit(c):
			if dot < 0 {
				n = n*10 + int64(c-'0')
			}
		case c == '.' && dot < 0:
			if p.i-start > 12 {
				return sfItem{}, false
			}
			dot = p.i
		default:
			break digits
		}
		if l := p.i + 1 - start; (dot < 0 && l > 15) || l > 16 {
			return sfItem{}, false
		}
	}
	if dot < 0 {
		if neg {
			n = -n
		}
		return sfItem{kind: sfInteger, integer: n}, true
	}
	if frac := p.i - dot - 1; frac < 1 || frac > 3 {
		return sfItem{}, false
	}
	return sfItem{kind: sfDecimal}, true
}

// string parses a String (§4.2.5): printable ASCII, with \" and \\ escapes.
func (p *sfParser) string() (sfItem, bool) {
	p.i++ // '"'
	start := p.i
	escaped := false
	for ; p.i < len(p.s); p.i++ {
		switch c := p.s[p.i]; {
		case c == '\\':
			p.i++
			if p.i >= len(p.s) || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return sfItem{}, false
			}
			escaped = true
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			if escaped {
				v = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(v)
			}
			return sfItem{kind: sfString, str: v}, true
		case c < 0x20 || c > 0x7e:
			return sfItem{}, false
		}
	}
	return sfItem{}, false
}

// token parses a Token (§4.2.6); the first character is already checked.
func (p *sfParser) token() sfItem {
	start := p.i
	for p.i++; p.i < len(p.s); p.i++ {
		if c := p.s[p.i]; !isTchar(c) && c != ':' && c != '/' {
			break
		}
	}
	return sfItem{kind: sfToken, str: p.s[start:p.i]}
}

// byteSequence parses a Byte Sequence (§4.2.7); its contents are not decoded.
func (p *sfParser) byteSequence() (sfItem, bool) {
	for p.i++; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		if c == ':' {
			p.i++
			return sfItem{kind: sfByteSequence}, true
		}
		if !(isAlpha(c) || isDigit(c) || c == '+' || c == '/' || c == '=') {
			return sfItem{}, false
		}
	}
	return sfItem{}, false
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isTchar reports whether c may appear in a token (RFC 9110 §5.6.2).
func isTchar(c byte) bool {
	return isAlpha(c) || isDigit(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
