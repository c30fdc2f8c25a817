package proxy

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

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
}
