package proxy

import (
	"log/slog"
	"net/http"
	"sync"
	"time"
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
	// PurgeToken: see [Config.PurgeToken].
	PurgeToken string
}

// Reload replaces the live settings. Requests in flight may still see the
// old ones.
func (p *Proxy) Reload(l Live) {
	p.liveCfg.Store(&l)
	p.log.Info("settings reloaded", "grace", l.Grace.String(), "keep", l.Keep.String(),
		"access_log_every", l.AccessLogEvery)
}

// live returns the current live settings.
func (p *Proxy) live() *Live { return p.liveCfg.Load() }

// accessLog wraps h with the access log when it is on: it costs one
// atomic load per request when off.
func (p *Proxy) accessLog(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		every := p.live().AccessLogEvery
		if every <= 0 || (every > 1 && p.logSeq.Add(1)%uint64(every) != 0) {
			h(w, r)
			return
		}
		rec := recorders.Get().(*recorder)
		rec.ResponseWriter, rec.status, rec.bytes, rec.upstream = w, 0, 0, 0
		start := time.Now()
		h(rec, r)
		d := time.Since(start)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		p.log.LogAttrs(r.Context(), slog.LevelInfo, "access",
			slog.String("method", r.Method),
			slog.String("key", keyString(keyParts(r))),
			slog.Int("status", status),
			slog.String("cache", cacheResult(w.Header())),
			slog.Int64("bytes", rec.bytes),
			slog.Float64("duration_ms", float64(d.Microseconds())/1000),
			slog.Float64("upstream_ms", float64(rec.upstream.Microseconds())/1000),
			slog.String("remote", r.RemoteAddr),
		)
		rec.ResponseWriter = nil
		recorders.Put(rec)
	}
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
	if r.status == 0 {
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
	return Live{Grace: cfg.Grace, Keep: cfg.Keep, AccessLogEvery: cfg.AccessLogEvery, DefaultTTL: cfg.DefaultTTL, PurgeToken: cfg.PurgeToken}
}
