package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// Strict request parsing on the proxy listener (issue 11, item 4), proven
// against the real binary: each shape is written as raw bytes on a TCP
// connection, and the test checks the status, whether the connection is
// closed after, and what the origin saw (its per-path counters and the
// /echo log).

// rawResp is one response read off a raw connection.
type rawResp struct {
	status int
	header http.Header
	body   []byte
}

func (r rawResp) String() string {
	return fmt.Sprintf("%d (X-Cache %q, Connection %q, body %.120q)", r.status, r.header.Get("X-Cache"), r.header.Get("Connection"), r.body)
}

// rawConn is a client connection to the proxy listener.
type rawConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(reqTimeout))
	return &rawConn{conn: conn, br: bufio.NewReader(conn)}
}

func (c *rawConn) write(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// read reads one response to a request of method (its body too).
func (c *rawConn) read(method string) (rawResp, error) {
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return rawResp{}, err
	}
	var body []byte
	if resp.StatusCode >= 200 {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	return rawResp{status: resp.StatusCode, header: resp.Header, body: body}, err
}

// rest waits up to d for anything more: further responses (read as GET
// answers), then whether the server closed the connection (EOF) or kept
// it open (timeout).
func (c *rawConn) rest(d time.Duration) (more []rawResp, closed bool) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	for {
		r, err := c.read(http.MethodGet)
		if err == nil {
			more = append(more, r)
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return more, false
		}
		return more, true // EOF, reset or garbage: the connection is unusable
	}
}

// parseRow is one request shape.
type parseRow struct {
	name string
	// raw is the request; {M} is the method, {P} the row's path, {H} the
	// proxy's address. {N} in the head is replaced by the length of
	// everything after the blank line (a Content-Length covering the
	// smuggled tail).
	raw string
	// want are the acceptable statuses. A status in processed means the
	// binary may handle the request (RFC 9112 §6.3: with the
	// Transfer-Encoding alone) as long as it closes the connection after.
	want      []int
	processed []int
}

// smuggleTail is a second request hidden after a body: it must never be
// answered on this connection nor reach the origin.
const smuggleTail = "GET {P}/smuggled HTTP/1.1\r\nHost: {H}\r\n\r\n"

// smuggleRows are the framing shapes. Each runs as a POST on a fresh path
// and as a GET on a path whose response is stored.
var smuggleRows = []parseRow{
	{
		name:      "CL+TE",
		raw:       "{M} {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: {N}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggleTail,
		want:      []int{400},
		processed: []int{200},
	},
	{
		name:      "TE+CL",
		raw:       "{M} {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nContent-Length: {N}\r\n\r\n0\r\n\r\n" + smuggleTail,
		want:      []int{400},
		processed: []int{200},
	},
	{
		name: "two different CL",
		raw:  "{M} {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + smuggleTail,
		want: []int{400},
	},
	{
		name: "CL list 1, 2",
		raw:  "{M} {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 1, 2\r\n\r\nab" + smuggleTail,
		want: []int{400},
	},
	{
		name: "negative CL",
		raw:  "{M} {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: -1\r\n\r\n" + smuggleTail,
		want: []int{400},
	},
	{
		name: "non-numeric CL",
		raw:  "{M} {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 0x10\r\n\r\n" + smuggleTail,
		want: []int{400},
	},
	{
		name: "CL with plus sign",
		raw:  "{M} {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: +4\r\n\r\nabcd" + smuggleTail,
		want: []int{400},
	},
	{
		name: "TE gzip alone",
		raw:  "{M} {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: gzip\r\n\r\n" + smuggleTail,
		want: []int{400, 501},
	},
	{
		name: "TE chunked, chunked",
		raw:  "{M} {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + smuggleTail,
		want: []int{400, 501},
	},
	{
		name: "TE chunked twice",
		raw:  "{M} {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggleTail,
		want: []int{400, 501},
	},
	{
		name: "bad chunk size",
		raw:  "{M} {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + smuggleTail,
		want: []int{400},
	},
	{
		name: "chunk size overflow",
		raw:  "{M} {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n" + smuggleTail,
		want: []int{400},
	},
}

// headRows are malformed heads and request lines: refused, never
// forwarded.
var headRows = []parseRow{
	{name: "obs-fold on the first field", raw: "GET {P} HTTP/1.1\r\n X-Fold: a\r\nHost: {H}\r\n\r\n", want: []int{400}},
	{name: "space before colon", raw: "GET {P} HTTP/1.1\r\nHost : {H}\r\n\r\n", want: []int{400}},
	{name: "space before colon, not Host", raw: "GET {P} HTTP/1.1\r\nHost: {H}\r\nX-A : 1\r\n\r\n", want: []int{400}},
	{name: "tab before colon", raw: "GET {P} HTTP/1.1\r\nHost: {H}\r\nX-A\t: 1\r\n\r\n", want: []int{400}},
	{name: "NUL in a value", raw: "GET {P} HTTP/1.1\r\nHost: {H}\r\nX-A: a\x00b\r\n\r\n", want: []int{400}},
	{name: "bare CR in a value", raw: "GET {P} HTTP/1.1\r\nHost: {H}\r\nX-A: a\rb\r\n\r\n", want: []int{400}},
	{name: "space in a field name", raw: "GET {P} HTTP/1.1\r\nHost: {H}\r\nX A: 1\r\n\r\n", want: []int{400}},
	{name: "double space after method", raw: "GET  {P} HTTP/1.1\r\nHost: {H}\r\n\r\n", want: []int{400}},
	{name: "double space before version", raw: "GET {P}  HTTP/1.1\r\nHost: {H}\r\n\r\n", want: []int{400}},
	{name: "trailing space in request line", raw: "GET {P} HTTP/1.1 \r\nHost: {H}\r\n\r\n", want: []int{400}},
	{name: "method not a token", raw: "ge(t {P} HTTP/1.1\r\nHost: {H}\r\n\r\n", want: []int{400}},
	{name: "no Host", raw: "GET {P} HTTP/1.1\r\n\r\n", want: []int{400}},
	{name: "two Hosts", raw: "GET {P} HTTP/1.1\r\nHost: {H}\r\nHost: other.example\r\n\r\n", want: []int{400}},
	{name: "over-long target", raw: "GET {P}?" + strings.Repeat("a", 16<<10) + " HTTP/1.1\r\nHost: {H}\r\n\r\n", want: []int{414, 431}},
	{name: "over-long header block", raw: "GET {P} HTTP/1.1\r\nHost: {H}\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 100)+"\r\n", 160) + "\r\n", want: []int{431}},
}

func TestParsing(t *testing.T) {
	for _, engine := range []string{"fasthttp", "net/http"} {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			testParsing(t, engine)
		})
	}
}

func testParsing(t *testing.T, engine string) {
	o, c := secPair(t, "server:\n  max_header_bytes: \"8KiB\"\n  engine: \""+engine+"\"\n")
	addr := strings.TrimPrefix(c.url, "http://")

	expand := func(raw, method, path string) string {
		raw = strings.NewReplacer("{M}", method, "{P}", path, "{H}", addr).Replace(raw)
		if head, body, ok := strings.Cut(raw, "\r\n\r\n"); ok && strings.Contains(head, "{N}") {
			raw = strings.Replace(head, "{N}", fmt.Sprint(len(body)), 1) + "\r\n\r\n" + body
		}
		return raw
	}
	pathSeen := func(t *testing.T, path string) int64 { return o.stats(t).Path[path] }

	// A framing shape: the status, the connection, the smuggled tail
	// never answered nor forwarded, what the origin saw of the request.
	runShape := func(t *testing.T, row parseRow, method, path string, before int64) {
		raw := expand(row.raw, method, path)
		rc := dialRaw(t, addr)
		rc.write(t, raw)
		first, err := rc.read(method)
		if err != nil {
			t.Errorf("%q: no response: %v", raw, err)
			return
		}
		more, closed := rc.rest(time.Second)
		t.Logf("%s %s: %v; then %d more responses, connection closed: %v", method, path, first, len(more), closed)
		processed := slices.Contains(row.processed, first.status)
		if got := pathSeen(t, path); !processed && got != before {
			t.Errorf("%q: answered %d but the origin saw %s %d times; want %d (never forwarded)", raw, first.status, path, got, before)
		}
		switch {
		case slices.Contains(row.want, first.status):
		case processed:
			if !closed {
				t.Errorf("%q: processed (%d) but the connection stayed open; want it closed after the response (RFC 9112 §6.3)", raw, first.status)
			}
			for _, e := range o.echoLog(t, path) {
				if e.Target == path && e.BodyLen != 0 {
					t.Errorf("%q: the origin got a %d-byte body; want the chunked framing (empty body)", raw, e.BodyLen)
				}
			}
		default:
			t.Errorf("%q: got %v; want one of %v (or %v with the connection closed)", raw, first, row.want, row.processed)
		}
		if len(more) > 0 {
			t.Errorf("%q: the bytes after the body were answered as %d more requests (first: %v)", raw, len(more), more[0])
		}
		if got := pathSeen(t, path+"/smuggled"); got != 0 {
			t.Errorf("%q: the smuggled request reached the origin %d times", raw, got)
		}
	}

	t.Run("smuggling", func(t *testing.T) {
		for i, row := range smuggleRows {
			t.Run(row.name+"/POST", func(t *testing.T) {
				t.Parallel()
				runShape(t, row, http.MethodPost, fmt.Sprintf("/echo/smug-post-%d", i), 0)
			})
			t.Run(row.name+"/GET-on-stored", func(t *testing.T) {
				t.Parallel()
				path := fmt.Sprintf("/echo/smug-get-%d", i)
				warm := must(t, "warming GET", send("GET", c.url+path, ""), 200)
				if r := must(t, "second GET", send("GET", c.url+path, ""), 200); r.header.Get("X-Cache") != "HIT" || !bytes.Equal(r.body, warm.body) {
					t.Fatalf("second GET: %s, %q; want a HIT of %q", xc(r), r.body, warm.body)
				}
				runShape(t, row, http.MethodGet, path, 1)
				r := must(t, "GET after the shape", send("GET", c.url+path, ""), 200)
				if r.header.Get("X-Cache") != "HIT" || !bytes.Equal(r.body, warm.body) {
					t.Errorf("GET after the shape: %s, %q; want a HIT of the stored %q", xc(r), r.body, warm.body)
				}
			})
		}
	})

	t.Run("head", func(t *testing.T) {
		for i, row := range headRows {
			t.Run(row.name, func(t *testing.T) {
				t.Parallel()
				path := fmt.Sprintf("/echo/head-%d", i)
				raw := expand(row.raw, "GET", path)
				rc := dialRaw(t, addr)
				rc.write(t, raw)
				r, err := rc.read(http.MethodGet)
				if err != nil {
					t.Errorf("%.200q: no response: %v", raw, err)
					return
				}
				t.Logf("%.120q: %v", raw, r)
				if !slices.Contains(row.want, r.status) {
					t.Errorf("%.200q: got %v; want one of %v", raw, r, row.want)
				}
				if got := pathSeen(t, path); got != 0 {
					t.Errorf("%.200q: the origin saw %s %d times; want 0", raw, path, got)
				}
			})
		}
	})

	// obs-fold after the first field: RFC 9112 §5.2 allows a 400 or
	// replacing the fold with SP before forwarding.
	t.Run("obs-fold", func(t *testing.T) {
		t.Parallel()
		const path = "/echo/fold"
		rc := dialRaw(t, addr)
		rc.write(t, expand("GET {P} HTTP/1.1\r\nHost: {H}\r\nAccept: text/plain\r\nX-Fold: a\r\n\tb\r\n c\r\n\r\n", "GET", path))
		r, err := rc.read(http.MethodGet)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("obs-fold: %v", r)
		switch r.status {
		case 400:
			if got := pathSeen(t, path); got != 0 {
				t.Errorf("refused but the origin saw it %d times", got)
			}
		case 200:
			for _, e := range o.echoLog(t, path) {
				for k, vs := range e.Header {
					for _, v := range vs {
						if strings.ContainsAny(v, "\r\n") {
							t.Errorf("the origin got %s: %q, a fold not replaced by SP", k, v)
						}
					}
				}
				if v := e.Header.Get("X-Fold"); v != "a b c" {
					t.Errorf("the origin got X-Fold %q; want %q (each fold replaced by SP)", v, "a b c")
				}
			}
		default:
			t.Errorf("obs-fold: got %v; want 400, or 200 with the fold replaced by SP", r)
		}
	})

	// "get" is a token, so an extension method, not GET: forwarded, never
	// answered from GET's stored response; as an unsafe method its 200
	// invalidates the stored GET (RFC 9111 §4.4, as in
	// TestRFCExtensionMethodInvalidates), so the next GET is a MISS.
	t.Run("lowercase method", func(t *testing.T) {
		t.Parallel()
		const path = "/echo/lower"
		warm := must(t, "warming GET", send("GET", c.url+path, ""), 200)
		rc := dialRaw(t, addr)
		rc.write(t, expand("get {P} HTTP/1.1\r\nHost: {H}\r\n\r\n", "", path))
		r, err := rc.read("get")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("lowercase get: %v", r)
		switch {
		case r.status == 400 || r.status == 405 || r.status == 501:
		case r.status == 200 && r.header.Get("X-Cache") == "BYPASS" && bytes.Contains(r.body, []byte("method=get ")):
		default:
			t.Errorf("lowercase get: %v; want 400/405/501, or BYPASS with the origin seeing method get", r)
		}
		if r.status == 200 && bytes.Equal(r.body, warm.body) {
			t.Errorf("lowercase get answered with GET's stored response %q", r.body)
		}
		if r := must(t, "GET after", send("GET", c.url+path, ""), 200); !bytes.Contains(r.body, []byte("method=GET ")) {
			t.Errorf("GET after: %s, %q; want GET's own answer", xc(r), r.body)
		}
	})

	// RFC 9112 §3.2.2: with an absolute-form target the target's
	// authority wins over Host; the entry stored under Host is untouched.
	t.Run("absolute-form other host", func(t *testing.T) {
		t.Parallel()
		const path = "/echo/absolute"
		warm := must(t, "warming GET", send("GET", c.url+path, ""), 200)
		rc := dialRaw(t, addr)
		rc.write(t, expand("GET http://other.example{P} HTTP/1.1\r\nHost: {H}\r\n\r\n", "GET", path))
		r, err := rc.read(http.MethodGet)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("absolute-form: %v", r)
		switch {
		case r.status == 400:
		case r.status == 200 && r.header.Get("X-Cache") != "HIT" && !bytes.Equal(r.body, warm.body):
			l := o.echoLog(t, path)
			if len(l) != 2 || l[1].Header.Get("X-Forwarded-Host") != "other.example" {
				t.Errorf("origin log %+v; want a second request with X-Forwarded-Host other.example", l)
			}
		default:
			t.Errorf("absolute-form target for another host: %v; want 400, or a MISS keyed by other.example (not %q's stored answer)", r, addr)
		}
		if r := must(t, "GET after", send("GET", c.url+path, ""), 200); r.header.Get("X-Cache") != "HIT" || !bytes.Equal(r.body, warm.body) {
			t.Errorf("GET after: %s, %q; want a HIT of %q", xc(r), r.body, warm.body)
		}
	})

	t.Run("pipelined", func(t *testing.T) {
		t.Parallel()
		rc := dialRaw(t, addr)
		rc.write(t, expand("GET /slow?ms=200 HTTP/1.1\r\nHost: {H}\r\n\r\nGET {P} HTTP/1.1\r\nHost: {H}\r\n\r\n", "GET", "/echo/pipelined"))
		a, err := rc.read(http.MethodGet)
		if err != nil {
			t.Fatal(err)
		}
		b, err := rc.read(http.MethodGet)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pipelined: %v then %v", a, b)
		if a.status != 200 || string(a.body) != "slow 200\n" {
			t.Errorf("first answer: %v; want 200 \"slow 200\\n\"", a)
		}
		if b.status != 200 || !bytes.HasPrefix(b.body, []byte("target=/echo/pipelined ")) {
			t.Errorf("second answer: %v; want 200 for /echo/pipelined", b)
		}
	})

	t.Run("expect 100-continue", func(t *testing.T) {
		t.Parallel()
		const path, body = "/echo/continue", "hello world"
		rc := dialRaw(t, addr)
		rc.write(t, expand("POST {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n", "POST", path))
		rc.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		r, err := rc.read(http.MethodPost)
		if err != nil {
			t.Fatalf("waiting for 100 Continue: %v", err)
		}
		if r.status != http.StatusContinue {
			t.Fatalf("before the body: %v; want 100 Continue", r)
		}
		rc.write(t, body)
		if r, err = rc.read(http.MethodPost); err != nil {
			t.Fatal(err)
		}
		t.Logf("100 Continue, then %v", r)
		if r.status != 200 || r.header.Get("X-Cache") != "BYPASS" || !bytes.Contains(r.body, []byte(" len=11 ")) {
			t.Errorf("after the body: %v; want 200 BYPASS with the origin seeing 11 bytes", r)
		}
		if l := o.echoLog(t, path); len(l) != 1 || l[0].BodyLen != len(body) || l[0].Method != "POST" {
			t.Errorf("origin log %+v; want one POST with an 11-byte body", l)
		}
	})

	t.Run("upgrade", func(t *testing.T) {
		t.Parallel()
		rc := dialRaw(t, addr)
		rc.write(t, expand("GET /ws/parsing?hold_ms=3000 HTTP/1.1\r\nHost: {H}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "GET", ""))
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %s; want 101", resp.Status)
		}
		rc.write(t, "ping")
		b := make([]byte, 4)
		if _, err := io.ReadFull(rc.br, b); err != nil || string(b) != "ping" {
			t.Errorf("tunnel echo: %q, %v; want \"ping\"", b, err)
		}
	})

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		t.Run(method+" with a body", func(t *testing.T) {
			t.Parallel()
			path := "/echo/body-" + strings.ToLower(method)
			rc := dialRaw(t, addr)
			rc.write(t, expand("{M} {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 5\r\n\r\nq=bad", method, path))
			r, err := rc.read(method)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s with a body: %v", method, r)
			if r.status != 200 || r.header.Get("X-Cache") != "BYPASS" {
				t.Errorf("%s with a body: %v; want 200 BYPASS", method, r)
			}
			if l := o.echoLog(t, path); len(l) != 1 || l[0].BodyLen != 5 {
				t.Errorf("origin log %+v; want one request with the 5-byte body", l)
			}
			p := must(t, "plain GET", send("GET", c.url+path, ""), 200)
			if p.header.Get("X-Cache") == "HIT" || bytes.Contains(p.body, []byte(" len=5 ")) {
				t.Errorf("plain GET after the %s with a body: %s, %q; want a MISS of its own (nothing stored)", method, xc(p), p.body)
			}
		})
	}
}

// TestReadTimeouts checks server.read_header_timeout and read_timeout on
// each engine: a header that trickles in past the first is cut off (the
// Slowloris defence), while a body may take up to the second.
func TestReadTimeouts(t *testing.T) {
	for _, engine := range []string{"fasthttp", "net/http"} {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			_, c := secPair(t, "server:\n  read_header_timeout: \"400ms\"\n  read_timeout: \"5s\"\n  engine: \""+engine+"\"\n")
			addr := strings.TrimPrefix(c.url, "http://")

			slow := dialRaw(t, addr)
			start := time.Now()
			slow.write(t, "GET /echo/slow-header HTTP/1.1\r\nHost: "+addr+"\r\n")
			time.Sleep(200 * time.Millisecond)
			slow.write(t, "X-A: 1\r\n") // still trickling
			more, closed := slow.rest(3 * time.Second)
			if !closed || time.Since(start) > 2*time.Second {
				t.Errorf("slow header: closed %v after %v (answers %v); want closed within read_header_timeout", closed, time.Since(start), more)
			}

			body := dialRaw(t, addr)
			body.write(t, "POST /echo/slow-body HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 5\r\n\r\n")
			time.Sleep(time.Second) // past read_header_timeout, within read_timeout
			body.write(t, "hello")
			r, err := body.read(http.MethodPost)
			if err != nil || r.status != http.StatusOK {
				t.Errorf("slow body: %v, %v; want 200", r, err)
			}
		})
	}
}
