package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Misbehaving clients (issue 16, item 2), against the real binary on each
// engine, with faultOrigin as the upstream (it records the framing of
// every request it receives). What TestParsing and TestReadTimeouts cover
// already (smuggling shapes answered 400, slow headers, a slow body
// within read_timeout, 414/431 at an 8 KiB limit) is not repeated here.

// startClientPair starts a fault origin and a cache in front of it.
func startClientPair(t *testing.T, engine, server string) (*faultOrigin, *cache, string) {
	t.Helper()
	o := startFaultOrigin(t)
	cfg := faultConfig(engine)
	if server != "" {
		cfg = strings.Replace(cfg, "server:\n", "server:\n"+server, 1)
	}
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", writeFile(t, "clients.yaml", cfg)}})
	return o, c, strings.TrimPrefix(c.url, "http://")
}

// TestClientStopsReading: a client that stops reading mid-body of a large
// storable response (8 MiB, far above the socket buffers), as the request
// that started the fetch and as a waiter on it. Another waiter gets the
// whole body at the origin's pace, the fetch completes and stores the
// entry intact (the next request is a HIT of the same 8 MiB), and the
// origin is asked once.
func TestClientStopsReading(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			o, c, addr := startClientPair(t, engine, "")
			const size = 8 << 20
			const path = "/slow/stuck"
			target := fmt.Sprintf("%s?size=%d&chunks=32&ms=25", path, size) // ~0.8 s at the origin
			want := foBody(path, size)
			before := waitQuiet(t, c)

			// A tiny receive window: the proxy's writes to it block after a
			// few KiB.
			dial := func() net.Conn {
				d := net.Dialer{Timeout: time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
					var serr error
					err := rc.Control(func(fd uintptr) {
						serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
					})
					if err != nil {
						return err
					}
					return serr
				}}
				conn, err := d.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				return conn
			}
			// stuck sends the request, reads 64 KiB of the answer, and then
			// nothing more.
			stuck := func(name string) net.Conn {
				conn := dial()
				fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, addr)
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(conn, make([]byte, 64<<10)); err != nil {
					t.Errorf("%s: reading the first 64 KiB: %v", name, err)
				}
				return conn
			}
			leader := stuck("leader")
			if n := o.count(path); n != 1 {
				t.Fatalf("the origin saw %s %d times once the leader had 64 KiB; want 1", path, n)
			}
			waiter := stuck("stuck waiter")

			start := time.Now()
			r := rawRequest(addr, "GET", target, 10*time.Second)
			t.Logf("waiter behind two stuck clients: %v", r)
			if r.status != 200 || !r.complete() || sameBytes(r.body, want) != "" {
				t.Errorf("waiter behind two stuck clients: %v; want 200 with the whole %d bytes (%s)", r, size, sameBytes(r.body, want))
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("waiter took %v; want the origin's pace (~1 s)", took)
			}

			s := c.waitStats(t, func(s stats) bool { return s.ResponsesStored >= 1 })
			r = rawRequest(addr, "GET", target, 10*time.Second)
			t.Logf("after the fill: %v; stats: %d stored, %d entries", r, s.ResponsesStored, s.Entries)
			if r.header.Get("X-Cache") != "HIT" || !r.complete() || sameBytes(r.body, want) != "" ||
				r.header.Get("Content-Length") != strconv.Itoa(size) {
				t.Errorf("GET after the fill: %v, Content-Length %q; want a HIT of the whole %d bytes", r, r.header.Get("Content-Length"), size)
			}
			if n := o.count(path); n != 1 {
				t.Errorf("the origin saw %s %d times; want 1 (one fetch for everyone)", path, n)
			}
			after := readFaultStats(t, c)
			if after.Entries != before.Entries+1 || after.BytesStored != before.BytesStored+size {
				t.Errorf("stats after the fill: %s; want one more entry and %d more bytes stored than %s", after, size, before)
			}

			// The stuck clients hang up: what served them goes too.
			leader.Close()
			waiter.Close()
			checkNoGrowth(t, c, "before the stuck clients", before, "after they hung up", waitQuiet(t, c))
		})
	}
}

// TestClientIdleConnections: 500 connections held open and idle (half
// after one request, half without sending anything) do not keep a new
// client from being served, and the server's timeouts close every one of
// them; the process's open files come back to where they were, and its
// goroutines do not grow from one round of 500 to the next (fasthttp keeps
// idle server workers for 10 s, so the first round may leave some).
func TestClientIdleConnections(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			const (
				idle    = time.Second
				header  = time.Second
				hitPath = "/ok/idle?size=2000"
			)
			_, c, addr := startClientPair(t, engine, fmt.Sprintf("  idle_timeout: %q\n  read_header_timeout: %q\n  read_timeout: \"2s\"\n", idle, header))
			if r := rawRequest(addr, "GET", hitPath, reqTimeout); r.status != 200 {
				t.Fatalf("GET %s: %v", hitPath, r)
			}
			before := waitQuiet(t, c)
			var rounds [2]faultStats
			for round := range rounds {
				holdIdle(t, c, addr, hitPath, fmt.Sprintf("/ok/idle-miss-%d?size=2000", round), max(idle, header)+faultMargin)
				rounds[round] = waitQuiet(t, c)
			}
			if rounds[0].files > before.files+leakSlackFiles {
				t.Errorf("open files after the connections were closed: %.0f; want at most %.0f+%d (before them)", rounds[0].files, before.files, leakSlackFiles)
			}
			checkNoGrowth(t, c, "after round 0", rounds[0], "after round 1", rounds[1])
		})
	}
}

// holdIdle opens 500 connections to addr, half of them after a GET of
// hitPath, the other half silent; checks that GETs of hitPath and miss are
// served at once meanwhile; and checks that the server closes every held
// connection within limit.
func holdIdle(t *testing.T, c *cache, addr, hitPath, miss string, limit time.Duration) {
	t.Helper()
	const conns = 500
	held := make([]net.Conn, conns)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	opened := time.Now()
	for i := range held {
		wg.Go(func() {
			conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				errs <- err
				return
			}
			held[i] = conn
			if i%2 == 1 {
				return // says nothing
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", hitPath, addr)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err != nil {
				errs <- fmt.Errorf("keep-alive request: %w", err)
			}
		})
	}
	wg.Wait()
	close(errs)
	defer func() {
		for _, conn := range held {
			if conn != nil {
				conn.Close()
			}
		}
	}()
	for err := range errs {
		t.Fatalf("opening %d connections: %v", conns, err)
	}

	// New clients, while all of them are open.
	for _, p := range []string{hitPath, miss} {
		r := rawRequest(addr, "GET", p, 5*time.Second)
		t.Logf("GET %s with %d idle connections open: %v", p, conns, r)
		if r.status != 200 || !r.complete() || r.took > 2*time.Second {
			t.Errorf("GET %s with %d idle connections open: %v; want a 200 within 2s", p, conns, r)
		}
	}
	mid := readFaultStats(t, c)

	// Every held connection is closed by the server.
	var open, late []int
	var mu sync.Mutex
	for i, conn := range held {
		wg.Go(func() {
			conn.SetReadDeadline(opened.Add(limit + time.Second))
			_, err := io.Copy(io.Discard, conn) // EOF or a reset: closed
			mu.Lock()
			defer mu.Unlock()
			switch {
			case isTimeout(err):
				open = append(open, i)
			case time.Since(opened) > limit:
				late = append(late, i)
			}
		})
	}
	wg.Wait()
	slices.Sort(open)
	slices.Sort(late)
	t.Logf("%d connections: %.0f goroutines, %.0f open files while held; all closed %v after opening: %v",
		conns, mid.goroutines, mid.files, time.Since(opened).Round(time.Millisecond), len(open) == 0 && len(late) == 0)
	if len(open) > 0 || len(late) > 0 {
		t.Errorf("held connections: %d still open %v after opening, %d closed later than %v (first: %v, %v; odd ones never sent anything); want all closed by the server's timeouts",
			len(open), limit+time.Second, len(late), limit, open[:min(len(open), 5)], late[:min(len(late), 5)])
	}
}

// TestClientSlowBody: a request body slower than server.read_timeout
// (stalled, or trickling) is cut off within the timeout, the client told
// so (408 or 400, or the connection closed: never a success, nor an
// upstream error), and it never reaches the origin as a complete request:
// the origin sees nothing, or a body that ends early (its framing says it
// is incomplete).
func TestClientSlowBody(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			const readTimeout = time.Second
			o, _, addr := startClientPair(t, engine, fmt.Sprintf("  read_timeout: %q\n  read_header_timeout: \"500ms\"\n", readTimeout))
			rows := []struct {
				name string
				head string
				send func(net.Conn) // what follows the head, until the connection fails
			}{
				{"Content-Length, stalled", "Content-Length: 100", func(c net.Conn) {
					io.WriteString(c, strings.Repeat("a", 10))
				}},
				{"Content-Length, trickling", "Content-Length: 100", func(c net.Conn) {
					for range 100 {
						if _, err := io.WriteString(c, "a"); err != nil {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}},
				{"chunked, stalled", "Transfer-Encoding: chunked", func(c net.Conn) {
					io.WriteString(c, "5\r\nhello\r\n")
				}},
				{"chunked, trickling", "Transfer-Encoding: chunked", func(c net.Conn) {
					for range 100 {
						if _, err := io.WriteString(c, "1\r\na\r\n"); err != nil {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}},
			}
			var wg sync.WaitGroup
			for i, row := range rows {
				wg.Go(func() {
					path := fmt.Sprintf("/echo/slow-body-%d", i)
					conn, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						t.Error(err)
						return
					}
					defer conn.Close()
					start := time.Now()
					fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n", path, addr, row.head)
					go row.send(conn)
					conn.SetReadDeadline(start.Add(readTimeout + faultMargin + 2*time.Second))
					resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
					status := 0
					if err == nil {
						status = resp.StatusCode
						_, err = io.Copy(io.Discard, resp.Body)
					}
					took := time.Since(start)
					t.Logf("%s: status %d, %v, after %v", row.name, status, err, took.Round(time.Millisecond))
					if isTimeout(err) {
						t.Errorf("%s: the connection is still open %v after the head; want it ended within read_timeout %v", row.name, took.Round(time.Millisecond), readTimeout)
					} else if took > readTimeout+faultMargin {
						t.Errorf("%s: ended after %v; want within read_timeout %v (+%v)", row.name, took.Round(time.Millisecond), readTimeout, faultMargin)
					}
					if status != 0 && status != http.StatusBadRequest && status != http.StatusRequestTimeout {
						t.Errorf("%s: status %d; want 408 or 400, or the connection closed", row.name, status)
					}
					// What reached the origin must say it is incomplete.
					deadline := time.Now().Add(3 * time.Second)
					for {
						reqs := o.requests(path)
						done := !slices.ContainsFunc(reqs, func(h foHead) bool { return !h.BodyDone })
						if done || time.Now().After(deadline) {
							for _, h := range reqs {
								framing, _ := h.framing()
								switch {
								case !h.BodyDone:
									t.Errorf("%s: the origin's request (%s) is still open %v after the client's body stopped; want it ended", row.name, framing, time.Since(start).Round(time.Millisecond))
								case h.BodyErr == nil:
									t.Errorf("%s: the origin got a complete request (%s, %d body bytes) from a body the client never finished", row.name, framing, h.BodyLen)
								}
							}
							break
						}
						time.Sleep(pollEvery)
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestClientHugeHead: a request line or header block far past
// server.max_header_bytes (the default, 64 KiB) is refused at once (414 or
// 431) without being read whole or forwarded; one just under it is
// served.
func TestClientHugeHead(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			o, _, addr := startClientPair(t, engine, "")
			field := func(n int) string { return "X-Big: " + strings.Repeat("b", n) + "\r\n" }
			rows := []struct {
				name   string
				target string // path, then more
				fields string
				want   []int
			}{
				{"1 MiB target", "/echo/huge-target?q=" + strings.Repeat("t", 1<<20), "", []int{414, 431}},
				{"1 MiB field", "/echo/huge-field", field(1 << 20), []int{431}},
				{"10 000 fields", "/echo/many-fields", strings.Repeat("X-Small: 0123456789\r\n", 10000), []int{431}},
				{"40 KiB target", "/echo/big-target?q=" + strings.Repeat("t", 40<<10), "", []int{200}},
				{"40 KiB field", "/echo/big-field", field(40 << 10), []int{200}},
			}
			for _, row := range rows {
				t.Run(row.name, func(t *testing.T) {
					path, _, _ := strings.Cut(row.target, "?")
					conn, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						t.Fatal(err)
					}
					defer conn.Close()
					start := time.Now()
					conn.SetDeadline(start.Add(5 * time.Second))
					// Written while the answer is read: the server may answer
					// and close long before the last byte.
					go io.WriteString(conn, "GET "+row.target+" HTTP/1.1\r\nHost: "+addr+"\r\n"+row.fields+"\r\n")
					br := bufio.NewReader(conn)
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("no answer after %v: %v", time.Since(start).Round(time.Millisecond), err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					took := time.Since(start)
					t.Logf("%s: %s after %v", row.name, resp.Status, took.Round(time.Millisecond))
					if !slices.Contains(row.want, resp.StatusCode) {
						t.Errorf("%s: %s; want one of %v", row.name, resp.Status, row.want)
					}
					if took > 2*time.Second {
						t.Errorf("%s: answered after %v; want at once", row.name, took)
					}
					seen := o.count(path)
					if resp.StatusCode == 200 {
						if seen != 1 {
							t.Errorf("%s: the origin saw %s %d times; want 1", row.name, path, seen)
						}
						return
					}
					if seen != 0 {
						t.Errorf("%s: refused, but the origin saw %s %d times", row.name, path, seen)
					}
					conn.SetReadDeadline(time.Now().Add(2 * time.Second))
					if _, err := br.ReadByte(); err == nil || isTimeout(err) {
						t.Errorf("%s: after the %d the connection stays open (%v); want it closed", row.name, resp.StatusCode, err)
					}
				})
			}
		})
	}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// clientSmuggleRows are request framings TestParsing does not try: each is
// refused, or processed in a way that leaves nothing ambiguous (the
// connection closed after it, or the whole message read as one body), and
// the origin only ever receives requests with one unambiguous framing.
// {P} is the row's path, {H} the proxy's address, {N} the length of
// everything after the head; tail is the request hidden behind the body.
var clientSmuggleRows = []struct {
	name      string
	raw       string
	want      []int // refusals
	processed bool  // a 200 is acceptable too, if nothing else is answered or forwarded
	bodyLen   int   // when processed, the body the origin must get (bodyN: everything after the head)
	// pipelined: when processed, the tail is a request of its own (the
	// fold replaced by SP, as RFC 9112 §5.2 allows), answered and forwarded.
	pipelined bool
}{
	// RFC 9110 §8.6: identical values may be taken as one.
	{name: "Content-Length twice, same value", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", want: []int{400}, processed: true, bodyLen: 5},
	{name: "Content-Length list, same value", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 5, 5\r\n\r\nhello", want: []int{400}, processed: true, bodyLen: 5},
	{name: "Transfer-Encoding folded, with Content-Length", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: {N}\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{T}", want: []int{400}},
	// RFC 9112 §5.2: a fold is refused or replaced by SP, and then these
	// are well framed.
	{name: "Transfer-Encoding folded", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{T}", want: []int{400, 501}, processed: true, bodyLen: 0, pipelined: true},
	{name: "Content-Length folded", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length:\r\n {N}\r\n\r\nhello{T}", want: []int{400}, processed: true, bodyLen: bodyN},
	{name: "fold hiding Transfer-Encoding", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: {N}\r\nX-Note: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{T}", want: []int{400}, processed: true, bodyLen: bodyN},
	{name: "Transfer-Encoding CHUNKED with Content-Length", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: {N}\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n{T}", want: []int{400}},
	{name: "Transfer-Encoding with a vertical tab", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: {N}\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n{T}", want: []int{400, 501}},
	{name: "Transfer-Encoding xchunked", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{T}", want: []int{400, 501}},
	{name: "Transfer-Encoding chunked, identity", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{T}", want: []int{400, 501}},
	// RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
	{name: "HTTP/1.0 with Transfer-Encoding", raw: "POST {P} HTTP/1.0\r\nHost: {H}\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{T}", want: []int{400, 501}},
	{name: "HTTP/1.0 with Transfer-Encoding and Content-Length", raw: "POST {P} HTTP/1.0\r\nHost: {H}\r\nConnection: keep-alive\r\nContent-Length: {N}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{T}", want: []int{400, 501}},
	{name: "chunks with bare LF", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n{T}", want: []int{400}, processed: true, bodyLen: 5},
	{name: "control: chunk extension", raw: "POST {P} HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n", processed: true, bodyLen: 5},
}

// bodyN stands for the length of everything after the head.
const bodyN = -1

// TestClientSmuggling sends each of clientSmuggleRows on a connection of
// its own and checks the answer, the connection, and what the origin
// received.
func TestClientSmuggling(t *testing.T) {
	for _, engine := range testEngines {
		t.Run(strings.ReplaceAll(engine, "/", ""), func(t *testing.T) {
			t.Parallel()
			o, _, addr := startClientPair(t, engine, "")
			for i, row := range clientSmuggleRows {
				t.Run(row.name, func(t *testing.T) {
					path := fmt.Sprintf("/echo/smuggle-%d", i)
					tail := "GET " + path + "/smuggled HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"
					raw := strings.NewReplacer("{P}", path, "{H}", addr, "{T}", tail).Replace(row.raw)
					head, body, _ := strings.Cut(raw, "\r\n\r\n")
					raw = strings.Replace(head, "{N}", strconv.Itoa(len(body)), 1) + "\r\n\r\n" + body
					wantLen := row.bodyLen
					if wantLen == bodyN {
						wantLen = len(body)
					}
					hasTail := strings.Contains(row.raw, "{T}")
					smuggled := hasTail // the tail must be neither answered nor forwarded
					rc := dialRaw(t, addr)
					rc.write(t, raw)
					first, err := rc.read(http.MethodPost)
					if err != nil {
						t.Fatalf("%q: no response: %v", raw, err)
					}
					more, closed := rc.rest(time.Second)
					t.Logf("%q: %v; then %d more responses, closed: %v", raw, first, len(more), closed)
					reqs := o.requests(path)
					switch {
					case slices.Contains(row.want, first.status):
						if len(reqs) > 0 {
							t.Errorf("refused with %d, but the origin got %d requests for %s", first.status, len(reqs), path)
						}
					case first.status == 200 && row.processed:
						smuggled = !row.pipelined
						for _, h := range reqs {
							if h.Target == path && h.BodyLen != wantLen {
								t.Errorf("processed: the origin got a %d-byte body; want %d", h.BodyLen, wantLen)
							}
						}
						if smuggled && wantLen != len(body) && !closed {
							t.Errorf("processed with bytes after the message, and the connection stayed open; want it closed (RFC 9112 §6.3)")
						}
					case first.status == 200 && hasTail:
						if !closed {
							t.Errorf("processed (%v) but the connection stayed open; want a refusal %v, or the connection closed after it", first, row.want)
						}
					default:
						t.Errorf("got %v; want one of %v%s", first, row.want, map[bool]string{true: " or a 200", false: ""}[row.processed])
					}
					if len(more) > 0 && smuggled {
						t.Errorf("the bytes after the message were answered as %d more requests (first: %v)", len(more), more[0])
					}
					if n := o.count(path + "/smuggled"); n != 0 && smuggled {
						t.Errorf("the smuggled request reached the origin %d times", n)
					}
					for _, h := range reqs {
						if framing, ambiguous := h.framing(); ambiguous {
							t.Errorf("the origin got %s %s framed by %s (fields %q): ambiguous", h.Method, h.Target, framing, h.Fields)
						}
					}
				})
			}
		})
	}
}
