package proxy

import (
	"net"
	"sync/atomic"
)

// NetHTTPListener wraps the listener of the net/http engine (Go's server
// on the proxy listener) so that it refuses an HTTP/1.0 request carrying
// Transfer-Encoding, which Go's server would take as if the field were not
// there (framed by its Content-Length, or empty) and keep the connection
// open after: RFC 9112 §6.1 has a server treat such a message's framing as
// faulty and close the connection. Go's server drops the field before the
// handler could see it, so each connection follows the requests in the
// bytes it reads (see framer) and, in an HTTP/1.0 request's header
// block, replaces the colon after a Transfer-Encoding field's name with a
// space: Go's server then answers 400 itself and closes the connection,
// nothing forwarded, as the fasthttp engine does.
func NetHTTPListener(ln net.Listener) net.Listener { return framingListener{ln} }

// framingListener hands out framingConns.
type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

// framingConn is an accepted connection that follows the requests it
// reads until it can no longer tell where they begin: once the
// connection switches protocols (a 101 written) or a request's framing
// is one Go's server refuses (and closes the connection after), it only
// passes bytes on. Reads come one at a time (Go's server, then whoever
// hijacks the connection); a write may come from another goroutine.
type framingConn struct {
	net.Conn
	off atomic.Bool
	f   framer // the reader's
}

func (c *framingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.off.Load() && !c.f.scan(b[:n]) {
		c.off.Store(true)
	}
	return n, err
}

func (c *framingConn) Write(b []byte) (int, error) {
	if !c.off.Load() && switchesProtocols(b) {
		c.off.Store(true) // what follows is another protocol's
	}
	return c.Conn.Write(b)
}

// CloseWrite half-closes the connection, which Go's server does before it
// closes one on which the client may still be sending (so that its last
// response is not lost to a reset).
func (c *framingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// switchesProtocols reports whether b begins a 101 response.
func switchesProtocols(b []byte) bool {
	return len(b) >= 13 && string(b[:7]) == "HTTP/1." && string(b[8:13]) == " 101 "
}

// framer states: where the next byte is in the stream of requests.
const (
	fsHeadStart    = iota // before a request line
	fsRequestLine         // in the request line
	fsFieldStart          // at the start of a header line
	fsFieldCR             // after a CR at the start of a header line
	fsFieldName           // in a field name
	fsFieldValue          // in a field value (or its continuation)
	fsBody                // in a body of known length (n bytes left)
	fsChunkSize           // in a chunk-size line
	fsChunkData           // in a chunk's data (n bytes left)
	fsChunkCR             // after a chunk's data
	fsChunkLF             // after a chunk's data and CR
	fsTrailerStart        // at the start of a trailer line
	fsTrailerCR           // after a CR at the start of a trailer line
	fsTrailerLine         // in a trailer line
)

// The header fields the framer reads.
const (
	fieldOther = iota
	fieldTE
	fieldCL
)

// framer follows HTTP/1 requests through a connection's bytes the way Go's
// server reads them (net/http's readRequest, net/textproto's header
// reader, its Content-Length and chunked rules, its leniencies: bare LF
// line ends in a header block, up to four CR or LF bytes before a request
// that follows a POST), so as to find each request's header block. Where
// it cannot follow (framing Go's server refuses, after which it closes
// the connection) scan reports false and the framer stops for good: it
// never guesses, since a framer out of step with the server could take
// body bytes for a header block.
type framer struct {
	state  uint8
	n      uint64 // bytes left in a body or chunk
	skipLF uint8  // CR or LF bytes still skipped before a request line
	post   bool   // the request is a POST

	// The request line.
	spaces uint8
	method [5]byte
	nm     int // bytes of the method (past len(method): longer)
	vers   [9]byte
	nv     int // bytes of the version (past len(vers): longer)
	http10 bool

	// Header fields.
	fields  int // fields begun
	name    [len("transfer-encoding")]byte
	nn      int // bytes of the name (past len(name): longer)
	field   uint8
	val     [32]byte
	nval    int   // bytes of the value (past len(val): longer)
	te      int   // Transfer-Encoding fields
	chunked bool  // the one Transfer-Encoding is chunked
	cl      int64 // the Content-Length (-1: none)
	clBad   bool  // a Content-Length Go's server refuses

	// A chunk-size line.
	sz      [32]byte
	nsz     int  // bytes of the size, before any extension
	semi    bool // an extension began
	crs     int  // CRs in the line
	lastCR  bool // the last byte was a CR
	lineLen int
}

// scan follows b, rewriting it where an HTTP/1.0 request carries
// Transfer-Encoding; false: the framer cannot follow the stream further.
func (f *framer) scan(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch f.state {
		case fsBody, fsChunkData:
			k := uint64(len(b) - i)
			if k > f.n {
				k = f.n
			}
			f.n -= k
			i += int(k) - 1
			if f.n == 0 {
				if f.state == fsBody {
					f.nextRequest()
				} else {
					f.state = fsChunkCR
				}
			}
			continue
		}
		c := b[i]
		switch f.state {
		case fsHeadStart:
			if f.skipLF > 0 && (c == '\r' || c == '\n') {
				f.skipLF--
				continue
			}
			if c == '\n' || c == '\r' {
				return false // an empty request line: refused
			}
			f.skipLF = 0
			f.spaces, f.nm, f.nv, f.http10 = 0, 0, 0, false
			f.state = fsRequestLine
			fallthrough
		case fsRequestLine:
			switch {
			case c == '\n':
				v := f.vers[:min(f.nv, len(f.vers))]
				if f.nv > 0 && f.nv <= len(f.vers) && v[f.nv-1] == '\r' {
					v = v[:f.nv-1]
				} else if f.nv > len(f.vers) {
					v = nil // longer than any version that is 1.0
				}
				if f.spaces < 2 {
					return false // malformed: refused
				}
				f.http10 = string(v) == "HTTP/1.0"
				f.post = f.nm == 4 && string(f.method[:4]) == "POST"
				f.fields, f.field, f.te, f.chunked, f.cl, f.clBad = 0, fieldOther, 0, false, -1, false
				f.state = fsFieldStart
			case f.spaces == 0 && c == ' ':
				f.spaces = 1
			case f.spaces == 0:
				if f.nm < len(f.method) {
					f.method[f.nm] = c
				}
				f.nm++
			case f.spaces == 1 && c == ' ':
				f.spaces = 2
			case f.spaces == 2:
				if f.nv < len(f.vers) {
					f.vers[f.nv] = c
				}
				f.nv++
			}
		case fsFieldStart:
			if c != ' ' && c != '\t' && !f.fieldDone() {
				return false // the previous field, whole now
			}
			switch c {
			case '\r':
				f.state = fsFieldCR
			case '\n':
				if !f.endHead() {
					return false
				}
			case ' ', '\t':
				if f.fields == 0 {
					return false // a header block that begins with white space: refused
				}
				// An obs-fold: the previous field's value goes on, joined
				// by a space.
				f.addValue(' ')
				f.state = fsFieldValue
			default:
				f.fields++
				f.nn, f.field = 0, fieldOther
				f.state = fsFieldName
				f.addName(c)
			}
		case fsFieldCR:
			if c != '\n' || !f.endHead() {
				return false // a CR that ends no line: refused
			}
		case fsFieldName:
			switch c {
			case ':':
				f.nval = 0
				f.field = fieldOther
				if f.nn <= len(f.name) {
					switch n := f.name[:f.nn]; {
					case equalFold(n, "transfer-encoding"):
						f.field = fieldTE
						if f.http10 {
							// RFC 9112 §6.1: refused. Without its colon the
							// line is no header field: Go's server answers
							// 400 and closes the connection.
							b[i] = ' '
							return false
						}
					case equalFold(n, "content-length"):
						f.field = fieldCL
					}
				}
				f.state = fsFieldValue
			case '\n':
				return false // a line without a colon: refused
			default:
				f.addName(c)
			}
		case fsFieldValue:
			if c != '\n' {
				f.addValue(c)
				continue
			}
			if f.nval > 0 && f.nval <= len(f.val) && f.val[f.nval-1] == '\r' {
				f.nval-- // the line's end
			}
			f.state = fsFieldStart
		case fsChunkSize:
			f.lineLen++
			switch {
			case c == '\n':
				if !f.lastCR || f.crs != 1 || f.lineLen > 4096 {
					return false // refused
				}
				sz := f.sz[:min(f.nsz, len(f.sz))]
				if !f.semi {
					sz = trimTrailingOWS(sz[:len(sz)-1]) // less the CR
				}
				n, ok := parseHex(sz, f.nsz <= len(f.sz))
				if !ok {
					return false
				}
				f.lineLen, f.crs, f.nsz, f.semi, f.lastCR = 0, 0, 0, false, false
				if n == 0 {
					f.state = fsTrailerStart
				} else {
					f.n, f.state = n, fsChunkData
				}
				continue
			case c == '\r':
				f.crs++
			case c == ';':
				f.semi = true
			}
			f.lastCR = c == '\r'
			if !f.semi {
				if f.nsz < len(f.sz) {
					f.sz[f.nsz] = c
				}
				f.nsz++
			}
		case fsChunkCR:
			if c != '\r' {
				return false
			}
			f.state = fsChunkLF
		case fsChunkLF:
			if c != '\n' {
				return false
			}
			f.state = fsChunkSize
		case fsTrailerStart:
			switch c {
			case '\n':
				f.nextRequest()
			case '\r':
				f.state = fsTrailerCR
			default:
				f.state = fsTrailerLine
			}
		case fsTrailerCR:
			if c == '\n' {
				f.nextRequest()
			} else {
				f.state = fsTrailerLine
			}
		case fsTrailerLine:
			if c == '\n' {
				f.state = fsTrailerStart
			}
		}
	}
	return true
}

// nextRequest expects the next request's line.
func (f *framer) nextRequest() {
	f.state = fsHeadStart
	if f.post {
		f.skipLF = 4 // net/http's tolerance for old clients
	}
}

func (f *framer) addName(c byte) {
	if f.nn < len(f.name) {
		f.name[f.nn] = c
	}
	f.nn++
}

func (f *framer) addValue(c byte) {
	if f.field == fieldOther {
		return
	}
	if f.nval < len(f.val) {
		f.val[f.nval] = c
	}
	f.nval++
}

// fieldDone judges the field that ended (its value in val, continuation
// lines included), a Transfer-Encoding or Content-Length; false if it is
// one the framer cannot follow.
func (f *framer) fieldDone() bool {
	field := f.field
	f.field = fieldOther
	if field == fieldOther {
		return true
	}
	if f.nval > len(f.val) {
		// Longer than any value the framer needs to read: a coding list
		// net/http refuses, or a length it cannot follow.
		return false
	}
	v := trimOWS(f.val[:f.nval])
	switch field {
	case fieldTE:
		f.te++
		f.chunked = equalFold(v, "chunked")
	case fieldCL:
		n, ok := parseDecimal(v)
		switch {
		case !ok:
			f.clBad = true
		case f.cl >= 0 && f.cl != n:
			f.clBad = true // lengths that differ
		default:
			f.cl = n
		}
	}
	return true
}

// endHead ends a header block and sets the state for the request's body;
// false if net/http refuses its framing.
func (f *framer) endHead() bool {
	switch {
	case f.clBad:
		return false
	case !f.http10 && f.te > 0:
		if f.te != 1 || !f.chunked {
			return false // 501
		}
		f.state = fsChunkSize
		f.lineLen, f.crs, f.nsz, f.semi, f.lastCR = 0, 0, 0, false, false
	case f.cl > 0:
		f.state, f.n = fsBody, uint64(f.cl)
	default:
		f.nextRequest()
	}
	return true
}

// equalFold reports whether b is s (lower case) but for ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// trimOWS removes leading and trailing spaces and tabs.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// trimTrailingOWS removes trailing spaces and tabs.
func trimTrailingOWS(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// parseHex parses a chunk size as net/http does (1 to 16 hex digits);
// whole is false when the size was longer than what was kept of it.
func parseHex(b []byte, whole bool) (uint64, bool) {
	if !whole || len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(c)
	}
	return n, true
}

// parseDecimal parses a Content-Length as net/http does (decimal digits,
// below 2^63).
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	for len(b) > 1 && b[0] == '0' {
		b = b[1:]
	}
	if len(b) > 18 {
		return 0, false // 18 digits are below 2^63; more are not followed
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
