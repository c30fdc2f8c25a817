package proxy

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"dedupcache/rules"
)

// Live holds the settings that can change while the proxy runs (main
// applies them on SIGHUP). Everything else in [Config] is fixed at [New].
type Live struct {
	// Grace: see [Config.Grace].
	Grace time.Duration
	// Keep: see [Config.Keep].
	Keep time.Duration
	// AccessLogEvery logs one request in this many; 0 turns the access log
	// off, 1 logs every request.
	AccessLogEvery int
	// DefaultTTL: see [Config.DefaultTTL].
	DefaultTTL time.Duration
	// DebugHeaders: see [Config.DebugHeaders].
	DebugHeaders bool
	// Rules: see [Config.Rules].
	Rules *rules.Set
	// PurgeToken: see [Config.PurgeToken].
	PurgeToken string
	// AccessLogFormat: see [Config.AccessLogFormat].
	AccessLogFormat AccessFormat
	// AllowedHosts: see [Config.AllowedHosts].
	AllowedHosts *rules.Hosts
}

// AccessFormat is how the access log writes one request.
type AccessFormat uint8

const (
	// AccessRecord is an "access" record at Info on [Config.Logger], in
	// whatever format and at whatever level that logger writes: the
	// default.
	AccessRecord AccessFormat = iota
	// AccessText is the same record as AccessRecord, written as text
	// (logfmt) to [Config.AccessLogOut] whatever the Logger's level.
	AccessText
	// AccessJSON is the same record written as JSON to
	// [Config.AccessLogOut] whatever the Logger's level.
	AccessJSON
	// AccessCombined is one line in the Apache/nginx combined log format
	// with the cache status (X-Cache, or "-") and the seconds taken
	// appended, written to [Config.AccessLogOut]:
	//
	//	127.0.0.1 - - [07/Dec/2026:02:10:17 +0000] "GET /x HTTP/1.1" 200 1234 "-" "curl/8" HIT 0.000123
	//
	// Bytes are body bytes sent (0, not "-", when none, as nginx writes
	// them); the time is the request's start in local time; quoted fields
	// escape '"', '\\' and bytes outside printable ASCII as \xHH.
	AccessCombined
)

// String returns the config name of f: "" for AccessRecord, then "text",
// "json" and "combined".
func (f AccessFormat) String() string {
	switch f {
	case AccessText:
		return "text"
	case AccessJSON:
		return "json"
	case AccessCombined:
		return "combined"
	}
	return ""
}

// Reload replaces the live settings. Requests in flight may still see the
// old ones.
func (p *Proxy) Reload(l Live) {
	p.liveCfg.Store(&l)
	p.log.Info("settings reloaded", "grace", l.Grace.String(), "keep", l.Keep.String(),
		"access_log_every", l.AccessLogEvery, "access_log_format", l.AccessLogFormat.String())
}

// live returns the current live settings.
func (p *Proxy) live() *Live { return p.liveCfg.Load() }

// newAccessWriter returns the function that writes one access log line in
// the configured format.
func (p *Proxy) newAccessWriter() func(r *http.Request, cache string, start time.Time, status int, bytes int64, upstream, d time.Duration) {
	out := p.cfg.AccessLogOut
	if out == nil {
		out = os.Stderr
	}
	text := slog.New(slog.NewTextHandler(out, nil))
	json := slog.New(slog.NewJSONHandler(out, nil))
	combined := &combinedWriter{out: out}
	return func(r *http.Request, cache string, start time.Time, status int, bytes int64, upstream, d time.Duration) {
		logger := p.log
		switch p.live().AccessLogFormat {
		case AccessCombined:
			combined.write(r, start, status, bytes, cache, d)
			return
		case AccessText:
			logger = text
		case AccessJSON:
			logger = json
		}
		logger.LogAttrs(r.Context(), slog.LevelInfo, "access",
			slog.String("method", r.Method),
			slog.String("key", keyString(p.requestKey(r))),
			slog.Int("status", status),
			slog.String("cache", cache),
			slog.Int64("bytes", bytes),
			slog.Float64("duration_ms", float64(d.Microseconds())/1000),
			slog.Float64("upstream_ms", float64(upstream.Microseconds())/1000),
			slog.String("remote", r.RemoteAddr),
		)
	}
}

// logRequest runs h for a request and writes its access log line.
func (p *Proxy) logRequest(w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	rec := recorders.Get().(*recorder)
	rec.ResponseWriter, rec.status, rec.bytes, rec.upstream = w, 0, 0, 0
	start := time.Now()
	h(rec, r)
	d := time.Since(start)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	p.writeAccess(r, cacheResult(w.Header()), start, status, rec.bytes, rec.upstream, d)
	rec.ResponseWriter = nil
	recorders.Put(rec)
}

// accessLog wraps h with the access log when it is on: it costs one
// atomic load per request when off.
func (p *Proxy) accessLog(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.sampled(p.live()) {
			p.logRequest(w, r, h)
			return
		}
		h(w, r)
	}
}

// sampled reports whether the access log records the next request.
func (p *Proxy) sampled(l *Live) bool {
	every := l.AccessLogEvery
	return every == 1 || every > 1 && p.logSeq.Add(1)%uint64(every) == 0
}

// logged returns h with every request recorded in the access log.
func (p *Proxy) logged(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { p.logRequest(w, r, h) }
}

// combinedWriter writes [AccessCombined] lines to out, each with one Write
// under mu, so that lines from concurrent requests never interleave.
type combinedWriter struct {
	mu  sync.Mutex
	out io.Writer
	buf []byte // reused under mu
}

// combinedTime is the %t layout of the combined log format, without brackets.
const combinedTime = "02/Jan/2006:15:04:05 -0700"

// write writes the line of one request that started at start.
func (c *combinedWriter) write(r *http.Request, start time.Time, status int, bytes int64, cache string, d time.Duration) {
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf[:0]
	b = appendEscaped(b, host)
	b = append(b, " - - ["...)
	b = start.AppendFormat(b, combinedTime)
	b = append(b, "] \""...)
	b = appendEscaped(b, r.Method)
	b = append(b, ' ')
	b = appendEscaped(b, uri)
	b = append(b, ' ')
	b = appendEscaped(b, r.Proto)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, bytes, 10)
	b = appendQuoted(b, r.Header.Get("Referer"))
	b = appendQuoted(b, r.Header.Get("User-Agent"))
	b = append(b, ' ')
	b = appendEscaped(b, cache)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, d.Seconds(), 'f', 6, 64)
	b = append(b, '\n')
	_, _ = c.out.Write(b)
	if cap(b) <= 4<<10 {
		c.buf = b // keep a line buffer, not a huge one
	}
}

// appendQuoted appends ` "s"`, or ` "-"` for an empty s, escaped.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, ' ', '"')
	if s == "" {
		b = append(b, '-')
	} else {
		b = appendEscaped(b, s)
	}
	return append(b, '"')
}

// appendEscaped appends s with '"', '\\' and every byte outside printable
// ASCII written as \xHH, as nginx escapes log variables, so that a
// client-supplied value cannot end a quoted field or forge a line.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f || c == '"' || c == '\\':
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

// cacheResult is the X-Cache value of a response header, or "-".
func cacheResult(h http.Header) string {
	if v := h["X-Cache"]; len(v) > 0 {
		return v[0]
	}
	return "-"
}

// recorder notes what a handler wrote, for the access log. It forwards
// Flush so streaming still works, and Unwrap for http.ResponseController.
type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	upstream time.Duration
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func (r *recorder) WriteHeader(code int) {
	// An interim response (103 Early Hints, 100 Continue) is not the
	// request's status; 101 Switching Protocols is the last one it gets.
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() { http.NewResponseController(r.ResponseWriter).Flush() }

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// noteUpstream records the upstream time of a request that is being
// access-logged.
func noteUpstream(w http.ResponseWriter, d time.Duration) {
	if rec, ok := w.(*recorder); ok {
		rec.upstream = d
	}
}

// liveOf returns the live part of a Config.
func liveOf(cfg Config) Live {
	return Live{
		Grace: cfg.Grace, Keep: cfg.Keep, AccessLogEvery: cfg.AccessLogEvery, AccessLogFormat: cfg.AccessLogFormat,
		DefaultTTL: cfg.DefaultTTL, PurgeToken: cfg.PurgeToken, DebugHeaders: cfg.DebugHeaders, Rules: cfg.Rules,
		AllowedHosts: cfg.AllowedHosts,
	}
}
