package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// RFC 9112 §6.1: an HTTP/1.0 request with Transfer-Encoding has faulty
// framing. Go's server would take it as if the field were absent (framed
// by its Content-Length, or empty) and keep the connection; through
// NetHTTPListener it is refused with 400, never forwarded, and the
// connection closed, wherever it comes in a connection's requests. Every
// other request (bodies that look like such a request included) reaches
// the origin as sent.
func TestHTTP10TransferEncodingRefused(t *testing.T) {
	var mu sync.Mutex
	var seen []string // method, target and body of each request the origin got
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" "+string(b))
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})
	p, _ := newTestProxy(t, o.URL, nil)
	addr := netHTTPServer(t, p, 5*time.Second)
	const (
		bad       = "POST /bad HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		smuggled  = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
		lookAlike = "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" // as a body
	)
	rows := []struct {
		name   string
		raw    string
		status []int    // the responses, in order, before the connection closes
		origin []string // what the origin gets
	}{
		{"alone", bad + smuggled, []int{400}, nil},
		{"with Content-Length", "POST /bad HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}, nil},
		{"lower case, bare LF", "POST /bad HTTP/1.0\nHost: x\ntransfer-encoding: chunked\n\n0\r\n\r\n" + smuggled, []int{400}, nil},
		{"folded", "POST /bad HTTP/1.0\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}, nil},
		{"GET", "GET /bad HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}, nil},
		{"after a request with a look-alike body",
			"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(lookAlike)) + "\r\n\r\n" + lookAlike + bad + smuggled,
			[]int{200, 400}, []string{"POST /first " + lookAlike}},
		{"after a chunked request",
			"POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nTrailer-X: 1\r\n\r\n" + bad + smuggled,
			[]int{200}, []string{"POST /first abc"}}, // a chunked request ends its connection (see forward)
		{"after a POST and CRLF",
			"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab\r\n" + bad + smuggled,
			[]int{200, 400}, []string{"POST /first ab"}},
		{"after GETs",
			"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n" + bad + smuggled,
			[]int{200, 200, 400}, []string{"GET /a ", "GET /b "}},
		{"control: HTTP/1.0 without it", "POST /ok HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi" + smuggled,
			[]int{200, 200}, []string{"POST /ok hi", "GET /smuggled "}},
		{"control: HTTP/1.1 with it", "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
			[]int{200}, []string{"POST /ok hi"}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			// A byte at a time: the framer follows requests across reads.
			go func() {
				for i := range len(row.raw) {
					if _, err := c.Write([]byte{row.raw[i]}); err != nil {
						return
					}
				}
			}()
			br := bufio.NewReader(c)
			var got []int
			closed := false
			for len(got) <= len(row.status) {
				if len(got) == len(row.status) {
					_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					closed = !isTimeout(err)
					break
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				got = append(got, resp.StatusCode)
			}
			if refused := got[len(got)-1] == http.StatusBadRequest; refused && !closed {
				t.Errorf("the connection is open after the 400; want it closed")
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(got, row.status) || !slices.Equal(seen, row.origin) {
				t.Errorf("responses %v, origin got %q; want %v, %q", got, seen, row.status, row.origin)
			}
		})
	}
}

// The framer follows well-framed requests however the bytes are split
// into reads, and changes none of them, bodies that look like an HTTP/1.0
// request with Transfer-Encoding included; after a 101 it changes nothing
// either (the bytes are another protocol's).
func TestFramerFollowsRequests(t *testing.T) {
	lookAlike := "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
	stream := "GET /a HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(lookAlike)) + "\r\n\r\n" + lookAlike +
		"\r\n" + // tolerated after a POST
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  Chunked \r\nContent-Length: 3\r\n\r\n" +
		strconv.FormatInt(int64(len(lookAlike)), 16) + ";ext=\"a;b\"\r\n" + lookAlike + "\r\n" +
		"1 \t\r\nx\r\n" +
		"0\r\nX-Trailer: " + lookAlike[:10] + "\r\n\r\n" +
		"PUT /d HTTP/1.0\r\nContent-Length:\r\n 0" + strconv.Itoa(len(lookAlike)) + "\r\nX-A: b\r\n\r\n" + lookAlike +
		"GET /e HTTP/1.0\r\n\r\n"
	for split := 1; split <= 64; split *= 2 {
		var f framer
		b := []byte(stream)
		for i := 0; i < len(b); i += split {
			if !f.scan(b[i:min(i+split, len(b))]) {
				t.Fatalf("reads of %d bytes: the framer gave up at byte %d (%q)", split, i, b[max(0, i-20):i])
			}
		}
		if string(b) != stream || f.state != fsHeadStart {
			t.Errorf("reads of %d bytes: state %d, bytes changed: %v", split, f.state, string(b) != stream)
		}
	}

	// A connection that switched protocols.
	server, client := net.Pipe()
	defer client.Close()
	c := &framingConn{Conn: server}
	defer c.Close()
	const upgrade = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	go func() {
		_, _ = io.WriteString(client, upgrade)
		_, _ = io.Copy(io.Discard, io.LimitReader(client, 19))
		_, _ = io.WriteString(client, lookAlike)
	}()
	buf := make([]byte, 256)
	n, _ := io.ReadAtLeast(c, buf, len(upgrade))
	_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\n"[:19]))
	m, _ := io.ReadFull(c, buf[n:n+len(lookAlike)])
	if got := string(buf[n : n+m]); got != lookAlike {
		t.Errorf("after a 101: read %q; want %q as sent", got, lookAlike)
	}
}
