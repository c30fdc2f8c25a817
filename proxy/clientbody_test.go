package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// netHTTPServer serves p's handler on Go's server (the net/http engine,
// whatever DEDUPCACHE_TEST_ENGINE says) with read timeout rt, through
// NetHTTPListener.
func netHTTPServer(t *testing.T, p *Proxy, rt time.Duration) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(p.Handler())
	srv.Listener = NetHTTPListener(srv.Listener)
	srv.Config.ReadTimeout = rt
	srv.Start()
	t.Cleanup(srv.Close) // before the proxy closes: registered after it
	return srv.Listener.Addr().String()
}

// A request body that its client fails to send (stalled or trickling past
// the server's read timeout, or cut off) while it is forwarded is the
// client's error: 408 (too slow) or 400 (cut off), with X-Cache and
// Cache-Status, the connection closed; not an upstream error (no 504, and
// not counted in upstream_errors), and not an empty 200 either (net/http
// cancels the request's context on the failed read).
func TestClientBodyFailsWhileForwarded(t *testing.T) {
	var got atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			got.Add(1) // a whole body: must never happen here
		}
		_, _ = io.WriteString(w, "ok")
	})
	p, _ := newTestProxy(t, o.URL, nil)
	const readTimeout = 300 * time.Millisecond
	addr := netHTTPServer(t, p, readTimeout)
	rows := []struct {
		name string
		send func(net.Conn)
		want int
		cs   string
	}{
		{"stalled", func(c net.Conn) { _, _ = io.WriteString(c, "0123456789") }, http.StatusRequestTimeout, "detail=request-body-timeout"},
		{"trickling", func(c net.Conn) {
			for range 100 {
				if _, err := io.WriteString(c, "a"); err != nil {
					return
				}
				time.Sleep(30 * time.Millisecond)
			}
		}, http.StatusRequestTimeout, "detail=request-body-timeout"},
		{"cut off", func(c net.Conn) {
			_, _ = io.WriteString(c, "0123456789")
			time.Sleep(50 * time.Millisecond)
			_ = c.(*net.TCPConn).CloseWrite()
		}, http.StatusBadRequest, "detail=request-body-error"},
	}
	for _, row := range rows {
		// Each several times over: which of the Transport's error and the
		// context's cancellation comes first varies.
		for i := range 4 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
			go row.send(c)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s #%d: no response: %v", row.name, i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cs := resp.Header.Get("Cache-Status")
			if resp.StatusCode != row.want || resp.Header.Get("X-Cache") != "BYPASS" || !strings.Contains(cs, row.cs) {
				t.Errorf("%s #%d: %s, X-Cache %q, Cache-Status %q, body %q; want %d, BYPASS, %s",
					row.name, i, resp.Status, resp.Header.Get("X-Cache"), cs, body, row.want, row.cs)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("%s #%d: after the %d the connection is open (%v); want it closed", row.name, i, resp.StatusCode, err)
			}
			c.Close()
		}
	}
	if st := p.Stats(); st.UpstreamErrors != 0 || st.Entries != 0 {
		t.Errorf("upstream_errors %d, entries %d; want 0, 0", st.UpstreamErrors, st.Entries)
	}
	if got.Load() != 0 {
		t.Errorf("the origin got %d whole bodies the clients never finished", got.Load())
	}
}
