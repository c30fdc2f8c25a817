package proxy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReadyz(t *testing.T) {
	o := newOrigin(t, cacheable("x"))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name, upstream string
		want           int
	}{
		{"upstream up", o.URL, 200},
		{"upstream down", down, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newTestProxy(t, tt.upstream, nil)
			rec := httptest.NewRecorder()
			p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if rec.Code != tt.want {
				t.Errorf("got %d %q; want %d", rec.Code, rec.Body.String(), tt.want)
			}
		})
	}
}

func TestTopBodies(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if strings.HasPrefix(r.URL.Path, "/shared") {
			_, _ = w.Write([]byte("the shared body"))
			return
		}
		_, _ = w.Write([]byte("own " + r.URL.Path))
	})
	p, srv := newTestProxy(t, o.URL, nil)
	for _, path := range []string{"/shared/1", "/shared/2", "/shared/3", "/own/1"} {
		do(t, "GET", srv.URL+path)
	}
	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/top-bodies", nil))
	var top []TopBody
	if err := json.Unmarshal(rec.Body.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	if len(top) != 1 || top[0].Refs != 3 || top[0].Size != int64(len("the shared body")) || len(top[0].ExampleKeys) != 3 {
		t.Errorf("got %+v; want one body with 3 refs and 3 example keys (unshared bodies are left out)", top)
	}
}

// syncBuf is a bytes.Buffer safe for concurrent writes and reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAccessLogAndReload(t *testing.T) {
	o := newOrigin(t, cacheable("x"))
	var logs syncBuf
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	p, srv := newTestProxy(t, o.URL, func(c *Config) { c.Logger = logger })
	do(t, "GET", srv.URL+"/quiet")
	if strings.Contains(logs.String(), "msg=access") {
		t.Fatalf("access log written while off:\n%s", logs.String())
	}
	p.Reload(Live{AccessLogEvery: 1})
	do(t, "GET", srv.URL+"/quiet")
	do(t, "GET", srv.URL+"/loud")
	// A streamed miss reaches the client before its access line is
	// written: wait for the lines.
	for _, want := range []string{`msg=access method=GET key="127.0.0.1`, "status=200 cache=HIT bytes=1", "cache=MISS", "upstream_ms="} {
		deadline := time.Now().Add(2 * time.Second)
		for !strings.Contains(logs.String(), want) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), want) {
			t.Errorf("access log lacks %q:\n%s", want, logs.String())
		}
	}
	// Reloading the token protects purges from then on.
	p.Reload(Live{AdminToken: "t0ken"})
	if code, _ := purge(t, p, "all=1", ""); code != http.StatusUnauthorized {
		t.Errorf("purge without token after reload: got %d; want 401", code)
	}
}
