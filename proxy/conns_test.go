package proxy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestClientConnsCounted: open client connections on either listener are
// counted, with their buffers' estimated memory (which tuneMemoryLimit
// adds to the Go memory limit), and uncounted when they close.
func TestClientConnsCounted(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer origin.Close()
	engines := []struct {
		name    string
		start   func(t *testing.T) (*Proxy, string)
		perConn int64
	}{
		{"fasthttp", func(t *testing.T) (*Proxy, string) {
			p, base := newFastProxy(t, origin.URL, nil)
			return p, base[len("http://"):]
		}, 64<<10 + fastConnOverhead},
		{"net/http", func(t *testing.T) (*Proxy, string) {
			p, _ := newTestProxy(t, origin.URL, nil)
			srv := httptest.NewUnstartedServer(p.Handler())
			srv.Config.ConnState = p.ConnState
			srv.Start()
			t.Cleanup(srv.Close)
			return p, srv.Listener.Addr().String()
		}, netHTTPConnBytes},
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			p, addr := e.start(t)
			wait := func(n int64) {
				t.Helper()
				deadline := time.Now().Add(5 * time.Second)
				for {
					st := p.Stats()
					if st.ClientConns == n && st.ConnBytes == n*e.perConn {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("client_connections %d, connection_bytes %d; want %d and %d", st.ClientConns, st.ConnBytes, n, n*e.perConn)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			wait(0)
			var conns []net.Conn
			for range 3 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				// A request, so that each server has taken the connection.
				if _, err := c.Write([]byte("GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			wait(3)
			for _, c := range conns {
				c.Close()
			}
			wait(0)
		})
	}
}
