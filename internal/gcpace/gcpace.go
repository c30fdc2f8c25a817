// Package gcpace sets the garbage collector's GOGC from how busy the
// process is.
//
// GOGC trades memory for CPU: the heap may grow to (1 + GOGC/100) times the
// live data before the collector runs again, and the collector's CPU per
// allocated byte is about inversely proportional to GOGC. A cache allocates
// on misses and hardly at all on hits, so one setting is wrong half the
// time: a high GOGC keeps twice the live metadata resident while the cache
// sits full, a low one costs CPU on every miss while it fills. The pacer
// runs a high GOGC while the process is busy (it allocates fast, or it uses
// much of its CPU) and a low one once it has been quiet for a while; going
// quiet, it returns the headroom the busy spell grew to the OS, and the
// buffers idle in sync.Pools with it (see [release]), at most once per
// MinGap. Both cost CPU, which is
// why a process busy serving (hits allocate nothing) keeps the high GOGC.
package gcpace

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"syscall"
	"time"
)

// Config configures a [Pacer]. Zero fields take the defaults.
type Config struct {
	// Low is GOGC once the process has been quiet for Quiet (default
	// 25), High while it is busy (default 100).
	Low, High int
	// BusyRate is the allocation rate, in bytes per second, above which
	// the process counts as busy (default 8 MiB/s).
	BusyRate float64
	// BusyCPU is the share of GOMAXPROCS above which the process's CPU
	// time (user and system, getrusage) makes it count as busy (default
	// 0.5).
	BusyCPU float64
	// Quiet is how long the process must stay under both before Low
	// applies (default 1 s).
	Quiet time.Duration
	// Tick is how often the allocation rate and CPU time are sampled
	// (default 100 ms).
	Tick time.Duration
	// MinRelease is the headroom, beyond what Low allows, worth a forced
	// collection and scavenge when a busy spell ends (default 4 MiB).
	MinRelease int64
	// MinGap is the shortest time between two forced collections
	// (default 10 s).
	MinGap time.Duration
	// Logger, if set, gets a debug record for every change of GOGC and
	// every forced collection.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Low <= 0 {
		c.Low = 25
	}
	if c.High <= 0 {
		c.High = 100
	}
	if c.BusyRate <= 0 {
		c.BusyRate = 8 << 20
	}
	if c.BusyCPU <= 0 {
		c.BusyCPU = 0.5
	}
	if c.Quiet <= 0 {
		c.Quiet = time.Second
	}
	if c.Tick <= 0 {
		c.Tick = 100 * time.Millisecond
	}
	if c.MinRelease <= 0 {
		c.MinRelease = 4 << 20
	}
	if c.MinGap <= 0 {
		c.MinGap = 10 * time.Second
	}
}

// Stats counts what a pacer did.
type Stats struct {
	// Percent is the GOGC the pacer set last (0 before it ran).
	Percent int64
	// Switches counts changes of GOGC.
	Switches int64
	// Releases counts forced collections at the end of a busy spell.
	Releases int64
}

// Pacer is a running pacer's state, readable while it runs.
type Pacer struct {
	cfg      Config
	percent  atomic.Int64
	switches atomic.Int64
	releases atomic.Int64

	// The runtime's knobs and figures (replaced in tests).
	setPercent func(int) int
	release    func()
	read       func() sample
	procs      func() int
}

// sample is what the pacer reads of the process: bytes allocated since
// it started, the collector's heap goal, the live heap the last collection
// marked, and its CPU time so far.
type sample struct {
	allocs, goal, live uint64
	cpu                time.Duration
}

// readSample reads a sample from runtime/metrics and getrusage.
func readSample() sample {
	s := [3]metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(s[:])
	var h sample
	for i, v := range []*uint64{&h.allocs, &h.goal, &h.live} {
		if s[i].Value.Kind() == metrics.KindUint64 {
			*v = s[i].Value.Uint64()
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		h.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return h
}

// New returns a pacer for cfg; [Pacer.Run] starts it.
func New(cfg Config) *Pacer {
	cfg.defaults()
	return &Pacer{cfg: cfg, setPercent: debug.SetGCPercent, release: release, read: readSample,
		procs: func() int { return runtime.GOMAXPROCS(0) }}
}

// release is what a quiet spell's forced collection does: two collections
// and a scavenge. A sync.Pool keeps what was put in it across one
// collection (the first moves it to the pool's victim cache, the second
// frees it), so one collection would leave the buffers the busy spell
// pooled (request contexts, stream and bufio buffers) resident until the
// collector next ran, which a quiet process may not do for minutes:
// ~12 B per key after a fill of 100 000 keys over 100 bodies.
// debug.FreeOSMemory collects and returns the free pages to the OS.
func release() {
	runtime.GC()
	debug.FreeOSMemory()
}

// Stats returns the pacer's counters.
func (p *Pacer) Stats() Stats {
	return Stats{Percent: p.percent.Load(), Switches: p.switches.Load(), Releases: p.releases.Load()}
}

// Run paces the collector until ctx is done, then restores the GOGC in
// force when it started.
func (p *Pacer) Run(ctx context.Context) {
	prev := p.setPercent(p.cfg.Low)
	defer p.setPercent(prev)
	p.percent.Store(int64(p.cfg.Low))
	t := time.NewTicker(p.cfg.Tick)
	defer t.Stop()
	last, lastAt := p.read(), time.Now()
	busy, quietSince, lastRelease := false, lastAt, time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h := p.read()
			dt := now.Sub(lastAt).Seconds()
			rate := float64(h.allocs-last.allocs) / dt
			cores := (h.cpu - last.cpu).Seconds() / dt
			last, lastAt = h, now
			switch {
			case rate > p.cfg.BusyRate || cores > p.cfg.BusyCPU*float64(p.procs()):
				quietSince = now
				if !busy {
					busy = true
					p.set(p.cfg.High)
				}
			case busy && now.Sub(quietSince) >= p.cfg.Quiet:
				busy = false
				p.set(p.cfg.Low)
				spare := int64(h.goal) - int64(h.live)*int64(100+p.cfg.Low)/100
				if spare >= p.cfg.MinRelease && (lastRelease.IsZero() || now.Sub(lastRelease) >= p.cfg.MinGap) {
					lastRelease = now
					p.releases.Add(1)
					p.release()
					p.log("gc pacer returned a busy spell's headroom", "heap_goal_bytes", h.goal,
						"heap_live_bytes", h.live, "took", time.Since(now))
				}
			}
		}
	}
}

func (p *Pacer) set(percent int) {
	p.setPercent(percent)
	p.percent.Store(int64(percent))
	p.switches.Add(1)
	p.log("gc pacer set GOGC", "gogc", percent)
}

func (p *Pacer) log(msg string, args ...any) {
	if p.cfg.Logger != nil {
		p.cfg.Logger.Debug(msg, args...)
	}
}
