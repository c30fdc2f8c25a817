// Command soakload is the load generator and judge of bench/soak.sh. It
// holds -c keep-alive connections to a cache in front of bench/origin for
// -d, each sending one request after another, drawn from a mix of classes:
//
//	hit    GET /obj/I, I among the -hot objects (warmed first): hits
//	miss   GET /obj/R?u=NONCE.SEQ, a key never asked before: misses
//	reval  GET /obj/I?max-age=S&tag=rG, I among the -reval objects: stale
//	       every S seconds, so the cache revalidates them (origin 304)
//	cond   GET /obj/I with If-None-Match: its ETag: 304 from the cache
//
// and, with -admin and -purges, purges sent to the admin listener's
// /api/purge at a steady rate (by URL, soft by URL, by tag, by prefix).
// Every response is checked: the status the class expects, the object's
// own ETag and body (its xxhash, computed as bench/origin makes the
// bodies), a MISS for a miss-class key. Latency percentiles come from
// log-linear histograms (1.6 % resolution), by class and overall.
//
// Against dedupcache (-admin, -origin, -pid) it also
//
//   - with -fill, sends misses first until the cache evicts (or holds
//     -fill-fraction of max_memory), so that the load starts on a full
//     cache and RSS has reached its plateau;
//   - samples every -sample the proxy's VmRSS (/proc/PID/status), its
//     goroutines (go_goroutines on the admin /metrics), its memory_bytes
//     and entries (/api/stats), and the load's requests, errors and
//     interval p99, into -samples (TSV);
//   - checks after the load that /api/stats adds up with what was sent
//     and what the origin counted (-check; see checkIdentities);
//   - fails when any request failed, when VmRSS at the end exceeds the
//     post-warm-up plateau (the highest sample of the first -warmup) by
//     more than -rss-margin-pct percent plus -rss-margin-mib, when the
//     goroutine count at the end exceeds the plateau by more than
//     -goroutine-margin, or when the goroutines do not come back to their
//     count before the load (plus -idle-margin) within -idle-wait of the
//     clients closing their connections.
//
// It prints progress lines, a "RESULT key=value ..." line that soak.sh
// reads, writes a Markdown report (-report), and exits 1 when a check
// failed, 2 on bad flags. The admin token is read from $SOAKLOAD_TOKEN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dedupcache/bench/internal/benchutil"
)

// options are the command's flags.
type options struct {
	target, admin, origin   string
	pid                     int
	conns                   int
	duration, warmup        time.Duration
	mix                     string
	purgeRate               float64
	hot, reval, revalMaxAge int
	revalTags               int
	n, k                    int
	size                    string
	seed                    uint64
	cacheHeader             string
	fill                    bool
	fillFraction            float64
	fillTimeout             time.Duration
	sample                  time.Duration
	samples, report, name   string
	check                   bool
	rssMarginPct            float64
	rssMarginMiB            float64
	goroutineMargin         int64
	idleMargin              int64
	idleWait                time.Duration
	timeout                 time.Duration
	seedLoad                uint64
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("soakload", flag.ContinueOnError)
	fs.StringVar(&o.target, "target", "", "cache under test, http://127.0.0.1:PORT (loopback only)")
	fs.StringVar(&o.admin, "admin", "", "dedupcache's admin listener, http://127.0.0.1:PORT: purges, samples, checks")
	fs.StringVar(&o.origin, "origin", "", "bench/origin, http://127.0.0.1:PORT: its /stats for the checks")
	fs.IntVar(&o.pid, "pid", 0, "PID of the cache process whose VmRSS is sampled (0: none)")
	fs.IntVar(&o.conns, "c", 256, "connections held open")
	fs.DurationVar(&o.duration, "d", 600*time.Second, "duration of the load")
	fs.DurationVar(&o.warmup, "warmup", 60*time.Second, "first part of the load whose highest VmRSS and goroutine count are the plateau")
	fs.StringVar(&o.mix, "mix", "hit=80,miss=10,reval=8,cond=2", "request mix, class=weight")
	fs.Float64Var(&o.purgeRate, "purges", 0, "purges per second sent to -admin (0: none)")
	fs.IntVar(&o.hot, "hot", 1000, "hot objects /obj/0 .. /obj/HOT-1 (hit and cond classes)")
	fs.IntVar(&o.reval, "reval", 100, "revalidated objects /obj/0 .. /obj/REVAL-1?max-age=S")
	fs.IntVar(&o.revalMaxAge, "reval-max-age", 1, "max-age of the revalidated objects, seconds")
	fs.IntVar(&o.revalTags, "reval-tags", 8, "tags of the revalidated objects: object I has tag r(I mod TAGS)")
	fs.IntVar(&o.n, "n", 50000, "the origin's -n (objects)")
	fs.IntVar(&o.k, "k", 0, "the origin's -k (distinct bodies; 0: n)")
	fs.StringVar(&o.size, "size", "1k", "the origin's -size")
	fs.Uint64Var(&o.seed, "seed", 1, "the origin's -seed")
	fs.StringVar(&o.cacheHeader, "cache-header", "X-Cache", "response header with HIT / MISS")
	fs.BoolVar(&o.fill, "fill", false, "before the load, send misses until the cache evicts or memory_bytes reaches -fill-fraction of max_memory (needs -admin)")
	fs.Float64Var(&o.fillFraction, "fill-fraction", 0.95, "see -fill")
	fs.DurationVar(&o.fillTimeout, "fill-timeout", 120*time.Second, "longest fill")
	fs.DurationVar(&o.sample, "sample", 5*time.Second, "sampling interval")
	fs.StringVar(&o.samples, "samples", "", "write the samples here (TSV)")
	fs.StringVar(&o.report, "report", "", "write the Markdown report here")
	fs.StringVar(&o.name, "name", "ours", "name of this run in the report and RESULT line")
	fs.BoolVar(&o.check, "check", false, "check that /api/stats adds up with the requests sent and the origin's counts (needs -admin and -origin)")
	fs.Float64Var(&o.rssMarginPct, "rss-margin-pct", 10, "VmRSS at the end may exceed the plateau by this percentage ...")
	fs.Float64Var(&o.rssMarginMiB, "rss-margin-mib", 16, "... plus this many MiB")
	fs.Int64Var(&o.goroutineMargin, "goroutine-margin", 128, "goroutines allowed above the plateau at the end of the load (bounded pools may still grow: the fetchers, up to cache.max_inflight, and upstream connections)")
	fs.Int64Var(&o.idleMargin, "idle-margin", 16, "goroutines allowed above the count before the load once the load is over")
	fs.DurationVar(&o.idleWait, "idle-wait", 90*time.Second, "how long the goroutines have to come back after the load (0: not checked)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per request: connect, send and whole response")
	fs.Uint64Var(&o.seedLoad, "load-seed", 1, "seed of the request draw")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.target == "" {
		return nil, fmt.Errorf("-target is required")
	}
	for _, u := range []string{o.target, o.admin, o.origin} {
		if u == "" {
			continue
		}
		if err := benchutil.LoopbackURL(u); err != nil {
			return nil, err
		}
	}
	if o.conns <= 0 || o.duration <= 0 || o.hot <= 0 || o.reval <= 0 || o.n <= 0 || o.revalTags <= 0 {
		return nil, fmt.Errorf("-c, -d, -hot, -reval, -reval-tags and -n must be positive")
	}
	if o.hot > o.n || o.reval > o.n {
		return nil, fmt.Errorf("-hot and -reval must be at most -n")
	}
	if o.warmup >= o.duration {
		return nil, fmt.Errorf("-warmup must be shorter than -d")
	}
	if (o.check || o.fill || o.purgeRate > 0) && o.admin == "" {
		return nil, fmt.Errorf("-check, -fill and -purges need -admin")
	}
	if o.check && o.origin == "" {
		return nil, fmt.Errorf("-check needs -origin")
	}
	return o, nil
}

// sample is one row of the samples TSV.
type sample struct {
	t                        float64 // seconds since the tool started
	phase                    string
	requests, errors         int64 // responses and errors so far in the phase
	rps                      float64
	p99us                    uint64 // over the interval
	rssKiB, goroutines       int64  // -1: not sampled
	memoryBytes, entries     int64
	hits, misses, reval, pur int64
}

const sampleHeader = "t_s\tphase\trequests\terrors\trps\tp99_us\tvmrss_kb\tgoroutines\tmemory_bytes\tentries\thits\tmisses\trevalidated\tpurged\n"

func (s sample) tsv() string {
	return fmt.Sprintf("%.1f\t%s\t%d\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", s.t, s.phase, s.requests, s.errors,
		s.rps, s.p99us, s.rssKiB, s.goroutines, s.memoryBytes, s.entries, s.hits, s.misses, s.reval, s.pur)
}

// sampler takes a sample every interval of the current phase.
type sampler struct {
	pr      *prober
	started time.Time
	phase   atomic.Pointer[string]
	ps      atomic.Pointer[phaseStats]

	mu       sync.Mutex
	rows     []sample
	lastHist []uint64
	lastReq  int64
	lastT    time.Time
	probeErr error
}

// setPhase names the phase the next samples belong to, with the stats
// they read (nil: none).
func (s *sampler) setPhase(name string, ps *phaseStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ps != s.ps.Load() {
		s.lastHist, s.lastReq, s.lastT = nil, 0, time.Now()
	}
	s.phase.Store(&name)
	s.ps.Store(ps)
}

func (s *sampler) take() sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	row := sample{t: now.Sub(s.started).Seconds(), phase: *s.phase.Load(), rssKiB: -1, goroutines: -1, memoryBytes: -1, entries: -1}
	if ps := s.ps.Load(); ps != nil {
		row.requests = ps.total((*classStats).responses)
		row.errors = ps.total((*classStats).errors)
		h := ps.all.snapshot()
		iv := h
		if s.lastHist != nil {
			iv = diff(h, s.lastHist)
		}
		row.p99us = percentiles(iv, 99)[0]
		if dt := now.Sub(s.lastT).Seconds(); dt > 0 {
			row.rps = float64(row.requests-s.lastReq) / dt
		}
		s.lastHist, s.lastReq, s.lastT = h, row.requests, now
	}
	var err error
	note := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	var e error
	row.rssKiB, e = s.pr.rssKiB()
	note(e)
	row.goroutines, e = s.pr.goroutines()
	note(e)
	if s.pr.admin != "" {
		st, e := s.pr.proxyStats()
		note(e)
		if e == nil {
			row.memoryBytes, row.entries = st.MemoryBytes, st.Entries
			row.hits, row.misses, row.reval, row.pur = st.Hits, st.Misses, st.Revalidated, st.Purged
		}
	}
	if err != nil && s.probeErr == nil {
		s.probeErr = err
	}
	s.rows = append(s.rows, row)
	return row
}

// loop samples every interval until ctx is done, printing each sample.
func (s *sampler) loop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r := s.take()
			fmt.Printf("%6.0fs %-7s requests %d errors %d %.0f req/s p99 %d us rss %s goroutines %d memory %s entries %d\n",
				r.t, r.phase, r.requests, r.errors, r.rps, r.p99us, kib(r.rssKiB), r.goroutines, mib(r.memoryBytes), r.entries)
		}
	}
}

func kib(v int64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(v)/1024)
}

func mib(v int64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20))
}

// Kinds of purge the purger sends.
const (
	purgeURL = iota
	purgeSoft
	purgeTag
	purgePrefix
	nPurgeKinds
)

var purgeNames = [nPurgeKinds]string{"url", "url, soft", "tag", "prefix"}

// purgeStats counts the purges sent.
type purgeStats struct {
	sent, ok, errs, entries atomic.Int64
	lat                     *hist
	byKind                  [nPurgeKinds]struct {
		sent, entries atomic.Int64
		lat           *hist
	}
	firstErr atomic.Pointer[string]
}

func newPurgeStats() *purgeStats {
	st := &purgeStats{lat: newHist()}
	for i := range st.byKind {
		st.byKind[i].lat = newHist()
	}
	return st
}

// purger sends purges at rate per second until ctx is done, cycling
// through: a hot object by URL, a revalidated object by URL (soft), a hot
// object by URL (soft), a tag of the revalidated objects, and a prefix
// /obj/NNN (a walk of the whole store: every fifth purge).
func purger(ctx context.Context, pr *prober, lc *loadConfig, m mix, rate float64, st *purgeStats, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0xbeef))
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		q := url.Values{}
		reval := m.weight(revalClass) > 0
		kind := purgeURL
		switch i % 5 {
		case 0:
			q.Set("url", fmt.Sprintf("/obj/%d", r.IntN(lc.hot)))
		case 1:
			if reval {
				q.Set("url", lc.revalPath(r.IntN(lc.reval)))
			} else {
				q.Set("url", fmt.Sprintf("/obj/%d", r.IntN(lc.hot)))
			}
			q.Set("soft", "1")
			kind = purgeSoft
		case 2:
			q.Set("url", fmt.Sprintf("/obj/%d", r.IntN(lc.hot)))
			q.Set("soft", "1")
			kind = purgeSoft
		case 3:
			if reval {
				q.Set("tag", fmt.Sprintf("r%d", r.IntN(lc.revalTags)))
				kind = purgeTag
			} else {
				q.Set("url", fmt.Sprintf("/obj/%d", r.IntN(lc.hot)))
			}
		case 4:
			q.Set("prefix", fmt.Sprintf("/obj/%d", 100+r.IntN(900)))
			kind = purgePrefix
		}
		k := &st.byKind[kind]
		st.sent.Add(1)
		k.sent.Add(1)
		start := time.Now()
		n, err := pr.purge(q)
		st.lat.record(time.Since(start))
		k.lat.record(time.Since(start))
		if err != nil {
			st.errs.Add(1)
			msg := err.Error()
			st.firstErr.CompareAndSwap(nil, &msg)
			continue
		}
		st.ok.Add(1)
		st.entries.Add(n)
		k.entries.Add(n)
	}
}

// warm requests every hot object and every revalidated object once (as
// the mix uses them), over up to 16 connections.
func warm(lc *loadConfig, m mix, ps *phaseStats) {
	type item struct {
		c   class
		obj int
	}
	var items []item
	if m.weight(hitClass)+m.weight(condClass) > 0 {
		for i := range lc.hot {
			items = append(items, item{hitClass, i})
		}
	}
	if m.weight(revalClass) > 0 {
		for i := range lc.reval {
			items = append(items, item{revalClass, i})
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	ps.start = time.Now()
	for range min(lc.conns, 16) {
		wg.Go(func() {
			w := &conn{lc: lc}
			defer w.close()
			var buf []byte
			for {
				j := int(next.Add(1) - 1)
				if j >= len(items) {
					return
				}
				it := items[j]
				buf = buf[:0]
				if it.c == hitClass {
					buf = fmt.Appendf(buf, "GET /obj/%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: soakload\r\n\r\n", it.obj, lc.host)
				} else {
					buf = fmt.Appendf(buf, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: soakload\r\n\r\n", lc.revalPath(it.obj), lc.host)
				}
				w.do(ps, it.c, buf, it.obj)
			}
		})
	}
	wg.Wait()
	ps.end = time.Now()
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("soakload: ")
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			log.Print(err)
		}
		os.Exit(2)
	}
	os.Exit(run(o))
}

func run(o *options) int {
	m, err := parseMix(o.mix)
	if err != nil {
		log.Print(err)
		return 2
	}
	size, err := benchutil.ParseSize(o.size)
	if err != nil {
		log.Print(err)
		return 2
	}
	u, _ := url.Parse(o.target)
	lc := &loadConfig{
		addr: u.Host, host: u.Host, conns: o.conns, timeout: o.timeout, mix: m,
		hot: o.hot, reval: o.reval, revalMaxAge: o.revalMaxAge, revalTags: o.revalTags,
		nonce: strconv.FormatInt(time.Now().UnixNano(), 36), cacheHeader: o.cacheHeader,
		objs: newObjects(o.n, o.k, size, o.seed), missSeq: new(atomic.Int64),
	}
	pr := newProber(o.admin, o.origin, o.pid, os.Getenv("SOAKLOAD_TOKEN"))
	res := &result{opts: o, mix: m}
	smp := &sampler{pr: pr, started: time.Now()}
	smp.setPhase("start", nil)
	res.before = smp.take()
	fmt.Printf("soakload %s: %s, %d connections, %s, mix %s, purges %.1f/s; before: rss %s, goroutines %d\n",
		o.name, o.target, o.conns, o.duration, m, o.purgeRate, kib(res.before.rssKiB), res.before.goroutines)

	sctx, stopSampling := context.WithCancel(context.Background())
	defer stopSampling()
	go smp.loop(sctx, o.sample)

	res.warm = newPhaseStats("warm")
	smp.setPhase("warm", res.warm)
	warm(lc, m, res.warm)
	fmt.Printf("warm: %d requests, %d errors, %.1fs\n", res.warm.total((*classStats).responses), res.warm.total((*classStats).errors), res.warm.end.Sub(res.warm.start).Seconds())

	if o.fill {
		res.fill = newPhaseStats("fill")
		smp.setPhase("fill", res.fill)
		fill(lc, pr, o, res.fill)
	}

	if o.check {
		if res.proxyBefore, err = pr.proxyStats(); err == nil {
			res.originBefore, err = pr.originStats()
		}
		if err != nil {
			log.Printf("stats before the load: %v", err)
			return 1
		}
	}
	res.load = newPhaseStats("load")
	smp.setPhase("warmup", res.load)
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-time.After(o.warmup):
			smp.setPhase("load", res.load)
		}
	}()
	res.purges = newPurgeStats()
	var pwg sync.WaitGroup
	if o.purgeRate > 0 {
		pwg.Go(func() { purger(ctx, pr, lc, m, o.purgeRate, res.purges, o.seedLoad) })
	}
	runPhase(ctx, lc, m, res.load, o.seedLoad)
	pwg.Wait()
	res.after = smp.take() // the last sample of the load
	if o.check {
		if res.proxyAfter, err = pr.proxyStats(); err == nil {
			res.originAfter, err = pr.originStats()
		}
		if err != nil {
			log.Printf("stats after the load: %v", err)
			return 1
		}
	}
	fmt.Printf("load: %d responses, %d errors in %.1fs\n", res.load.total((*classStats).responses), res.load.total((*classStats).errors), res.load.end.Sub(res.load.start).Seconds())

	if o.idleWait > 0 && o.admin != "" {
		smp.setPhase("idle", nil)
		res.idleGoroutines, res.idleAfter = idle(pr, res.before.goroutines+o.idleMargin, o.idleWait)
		fmt.Printf("idle: %d goroutines %.1fs after the load (before it: %d)\n", res.idleGoroutines, res.idleAfter.Seconds(), res.before.goroutines)
	}
	stopSampling()
	smp.mu.Lock()
	res.samples = smp.rows
	res.probeErr = smp.probeErr
	smp.mu.Unlock()

	res.judge()
	if o.samples != "" {
		if err := writeSamples(o.samples, res.samples); err != nil {
			log.Print(err)
			return 1
		}
	}
	rep := res.markdown()
	if o.report != "" {
		if err := os.WriteFile(o.report, []byte(rep), 0o644); err != nil {
			log.Print(err)
			return 1
		}
	}
	fmt.Print(rep)
	fmt.Println(res.resultLine())
	if len(res.failures) > 0 {
		return 1
	}
	return 0
}

// fill sends misses over every connection until the proxy has evicted an
// entry or its memory_bytes reaches o.fillFraction of its limit, or for
// o.fillTimeout.
func fill(lc *loadConfig, pr *prober, o *options, ps *phaseStats) {
	ctx, cancel := context.WithTimeout(context.Background(), o.fillTimeout)
	defer cancel()
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			st, err := pr.proxyStats()
			if err == nil && (st.Released["evicted"] > 0 || float64(st.MemoryBytes) >= o.fillFraction*float64(st.MemoryLimitBytes)) {
				cancel()
				return
			}
		}
	}()
	onlyMisses, _ := parseMix("miss=1")
	runPhase(ctx, lc, onlyMisses, ps, o.seedLoad+1)
	st, _ := pr.proxyStats()
	fmt.Printf("fill: %d misses, %d errors in %.1fs; memory %s of %s, %d entries, %d evicted\n", ps.total((*classStats).responses),
		ps.total((*classStats).errors), ps.end.Sub(ps.start).Seconds(), mib(st.MemoryBytes), mib(st.MemoryLimitBytes), st.Entries, st.Released["evicted"])
}

// idle polls the goroutine count every second until it is at most want,
// or wait has passed; it returns the last count and when it was taken.
func idle(pr *prober, want int64, wait time.Duration) (int64, time.Duration) {
	start := time.Now()
	for {
		g, err := pr.goroutines()
		if err == nil && g <= want || time.Since(start) >= wait {
			return g, time.Since(start)
		}
		time.Sleep(time.Second)
	}
}

func writeSamples(path string, rows []sample) error {
	var b strings.Builder
	b.WriteString(sampleHeader)
	for _, r := range rows {
		b.WriteString(r.tsv())
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
