package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"regexp"
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

// combinedLine is a combined log line with the cache status and seconds
// appended, as goaccess and awk read it.
var combinedLine = regexp.MustCompile(`^(\S+) - - \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)" (\S+) (\d+\.\d{6})$`)

func TestAccessLogFormats(t *testing.T) {
	o := newOrigin(t, cacheable("hello"))
	var records, lines syncBuf
	p, srv := newTestProxy(t, o.URL, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&records, &slog.HandlerOptions{Level: slog.LevelWarn}))
		c.AccessLogOut = &lines
		c.AccessLogEvery = 1
		c.AccessLogFormat = AccessCombined
	})
	do(t, "GET", srv.URL+"/a?q=1")
	do(t, "GET", srv.URL+"/a?q=1", "User-Agent", `evil" 200 1 "x`, "Referer", `http://r.example/\é`)
	waitFor(t, &lines, 2)
	got := strings.Split(strings.TrimSuffix(lines.String(), "\n"), "\n")
	want := []struct{ request, status, bytes, referer, agent, cache string }{
		{"GET /a?q=1 HTTP/1.1", "200", "5", "-", "Go-http-client/1.1", "MISS"},
		{"GET /a?q=1 HTTP/1.1", "200", "5", `http://r.example/\x5C\xC3\xA9`, `evil\x22 200 1 \x22x`, "HIT"},
	}
	for i, line := range got {
		m := combinedLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %d %q is not a combined line", i, line)
		}
		w := want[i]
		if m[1] != "127.0.0.1" || m[3] != w.request || m[4] != w.status || m[5] != w.bytes || m[6] != w.referer || m[7] != w.agent || m[8] != w.cache {
			t.Errorf("line %d: got %q; want host 127.0.0.1 and %+v", i, line, w)
		}
	}
	if strings.Contains(records.String(), "msg=access") {
		t.Errorf("combined format also wrote a record to the logger:\n%s", records.String())
	}

	// Reload to JSON: a record on AccessLogOut, whatever the logger's level.
	p.Reload(Live{AccessLogEvery: 1, AccessLogFormat: AccessJSON})
	do(t, "GET", srv.URL+"/a?q=1")
	waitFor(t, &lines, 3)
	if last := lastLine(lines.String()); !strings.HasPrefix(last, "{") || !strings.Contains(last, `"msg":"access"`) || !strings.Contains(last, `"cache":"HIT"`) {
		t.Errorf("json access line: got %q", last)
	}
	p.Reload(Live{AccessLogEvery: 1, AccessLogFormat: AccessText})
	do(t, "GET", srv.URL+"/a?q=1")
	waitFor(t, &lines, 4)
	if last := lastLine(lines.String()); !strings.Contains(last, "msg=access method=GET") {
		t.Errorf("text access line: got %q", last)
	}
}

// waitFor waits up to 2 s for buf to hold n lines: a streamed miss reaches
// the client before its access line is written.
func waitFor(t *testing.T, buf *syncBuf, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for strings.Count(buf.String(), "\n") < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := strings.Count(buf.String(), "\n"); got != n {
		t.Fatalf("got %d access lines; want %d:\n%s", got, n, buf.String())
	}
}

func lastLine(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func TestAppendEscaped(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "curl/8.5.0", "curl/8.5.0"},
		{"quote", `a"b`, `a\x22b`},
		{"backslash", `a\b`, `a\x5Cb`},
		{"newline", "a\nb", `a\x0Ab`},
		{"utf-8", "é", `\xC3\xA9`},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendEscaped(nil, tt.in)); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

// An interim response (103 Early Hints) is not the status the access log
// records: the final one is.
func TestAccessLogSkipsInterimStatus(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "made")
	})
	var logs syncBuf
	_, srv := newTestProxy(t, o.URL, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.AccessLogEvery = 1
	})
	do(t, "POST", srv.URL+"/hints")
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(logs.String(), "msg=access") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := logs.String(); !strings.Contains(s, "status=201") || strings.Contains(s, "status=103") {
		t.Errorf("access log: %s; want status=201", s)
	}
}
