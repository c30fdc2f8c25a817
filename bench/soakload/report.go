package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// result is everything one run saw, and its verdict.
type result struct {
	opts *options
	mix  mix

	before, after           sample // before the warm pass; the last sample of the load
	warm, fill, load        *phaseStats
	purges                  *purgeStats
	proxyBefore, proxyAfter proxyStats
	originBefore            originStats
	originAfter             originStats
	idleGoroutines          int64
	idleAfter               time.Duration
	samples                 []sample
	probeErr                error

	identities []identity
	failures   []string
	loadStats  struct{ rss, gor series }
}

// identity is one equation (or, with atMost, inequality left <= right)
// between counters that must hold after the load.
type identity struct {
	what        string
	left, right int64
	atMost      bool
}

func (i identity) holds() bool {
	if i.atMost {
		return i.left <= i.right
	}
	return i.left == i.right
}

func (i identity) op() string {
	if i.atMost {
		return "<="
	}
	return "="
}

// series summarises one sampled quantity over the load.
type series struct {
	n                     int
	first, min, max, last int64
	plateau               int64 // highest sample of the warm-up
	samplesInWarmup, any  bool
}

func summarise(rows []sample, get func(sample) int64) series {
	var s series
	for _, r := range rows {
		if r.phase != "warmup" && r.phase != "load" {
			continue
		}
		v := get(r)
		if v < 0 {
			continue
		}
		if s.n == 0 {
			s.first, s.min, s.max = v, v, v
		}
		s.n++
		s.min, s.max, s.last = min(s.min, v), max(s.max, v), v
		if r.phase == "warmup" {
			s.plateau = max(s.plateau, v)
			s.samplesInWarmup = true
		}
	}
	if s.n > 0 && !s.samplesInWarmup {
		s.plateau = s.first // warm-up shorter than a sampling interval
	}
	s.any = s.n > 0
	return s
}

// checkIdentities lists the equations /api/stats must satisfy over the
// load phase (counter deltas), against what the load tool counted and
// what the origin counted.
func (res *result) checkIdentities() []identity {
	l := res.load
	sum := func(f func(*classStats) int64) int64 { return l.total(f) }
	cache := func(v int) int64 { return sum(func(c *classStats) int64 { return c.cache[v].Load() }) }
	p0, p1, o0, o1 := res.proxyBefore, res.proxyAfter, res.originBefore, res.originAfter
	d := func(a, b int64) int64 { return b - a }
	var up0, up1 int64
	for _, k := range []string{"error", "5xx"} {
		up0 += p0.Upstream[k]
		up1 += p1.Upstream[k]
	}
	h := res.opts.cacheHeader
	// The origin's 304s that reached a client as such: labelled
	// fwd-status=304, or relayed on a bypass (a conditional forwarded as
	// sent, e.g. past the fill limit) with fwd-status left at its default,
	// the response's own status (RFC 9211 §2.3). The cache's own 304 to a
	// conditional that missed names the upstream's 200 (fwd-status=200), so
	// it is not taken for a relayed one.
	relayed304 := sum(func(c *classStats) int64 { return c.relayed304.Load() })
	fwd304 := sum(func(c *classStats) int64 { return c.reval304.Load() }) + relayed304
	hit304 := sum(func(c *classStats) int64 { return c.hit304.Load() })
	return []identity{
		{"hits + misses + stale + bypasses = responses the load tool received",
			d(p0.Hits+p0.Misses+p0.Stale+p0.Bypasses, p1.Hits+p1.Misses+p1.Stale+p1.Bypasses), sum((*classStats).responses), false},
		{"hits = responses with " + h + ": HIT", d(p0.Hits, p1.Hits), cache(cacheHit), false},
		{"misses = responses with " + h + ": MISS", d(p0.Misses, p1.Misses), cache(cacheMiss), false},
		{"stale = responses with " + h + ": STALE", d(p0.Stale, p1.Stale), cache(cacheStale), false},
		{"bypasses = responses with " + h + ": BYPASS", d(p0.Bypasses, p1.Bypasses), cache(cacheBypass), false},
		{"responses with no or another " + h + " = 0", cache(cacheOther), 0, false},
		{"coalesced = responses whose Cache-Status says collapsed", d(p0.Coalesced, p1.Coalesced), sum(func(c *classStats) int64 { return c.collapsed.Load() }), false},
		// A revalidated entry purged before its leader serves it is
		// fetched again for that leader (BYPASS), so a revalidation need
		// not reach a client as such.
		{"responses with " + h + ": HIT whose Cache-Status says fwd-status=304 <= revalidated (an entry purged between its revalidation and its leader's answer is fetched again: BYPASS)", hit304,
			d(p0.Revalidated, p1.Revalidated), true},
		{"the origin's 304s = revalidated + responses not HIT whose Cache-Status says fwd-status=304 (a 304 that may not freshen the entry: a purge came first) or relays the origin's 304 (fwd= without fwd-status on a 304)",
			d(o0.NotModified, o1.NotModified), d(p0.Revalidated, p1.Revalidated) + fwd304 - hit304, false},
		{"the origin's requests = misses + revalidated + bypasses", d(o0.ObjRequests, o1.ObjRequests),
			d(p0.Misses+p0.Revalidated+p0.Bypasses, p1.Misses+p1.Revalidated+p1.Bypasses), false},
		{"the origin's 200s = misses + bypasses - responses not HIT whose Cache-Status says fwd-status=304 or relays the origin's 304", d(o0.OK, o1.OK),
			d(p0.Misses+p0.Bypasses, p1.Misses+p1.Bypasses) - (fwd304 - hit304), false},
		{"upstream responses (every status class and error) = the origin's requests", d(p0.upstreamTotal(), p1.upstreamTotal()), d(o0.ObjRequests, o1.ObjRequests), false},
		{"not_modified = 304s the load tool received (cond) - the origin's 304s relayed on a bypass", d(p0.NotModified, p1.NotModified), sum(func(c *classStats) int64 { return c.status304.Load() }) - relayed304, false},
		{"purged = purged_entries summed over the /api/purge answers", d(p0.Purged, p1.Purged), res.purges.entries.Load(), false},
		{"upstream 5xx and transport errors = 0", d(up0, up1), 0, false},
		{"upstream_errors (502/504 answered) = 0", d(p0.UpstreamErrors, p1.UpstreamErrors), 0, false},
		{"responses cut off or aborted = 0", d(p0.CutOff+p0.Aborted, p1.CutOff+p1.Aborted), 0, false},
		{"background refreshes = 0 (no stale-while-revalidate in the mix)", d(p0.Refreshes, p1.Refreshes), 0, false},
		{"the origin's 404s and 400s = 0", d(o0.NotFound+o0.BadRequest, o1.NotFound+o1.BadRequest), 0, false},
	}
}

// judge fills res.failures and the identities.
func (res *result) judge() {
	o := res.opts
	fail := func(format string, a ...any) { res.failures = append(res.failures, fmt.Sprintf(format, a...)) }
	for _, ps := range []*phaseStats{res.warm, res.fill, res.load} {
		if ps == nil {
			continue
		}
		if n := ps.total((*classStats).errors); n > 0 {
			first := ""
			if p := ps.firstErr.Load(); p != nil {
				first = *p
			}
			fail("%d failed requests in the %s phase (first: %s)", n, ps.name, first)
		}
	}
	for c := range nClasses {
		if res.mix.weight(c) > 0 && res.load.classes[c].ok.Load() == 0 {
			fail("no %s request answered as expected", c)
		}
	}
	if n := res.purges.errs.Load(); n > 0 {
		fail("%d failed purges (first: %s)", n, *res.purges.firstErr.Load())
	}
	if res.probeErr != nil {
		fail("sampling failed: %v", res.probeErr)
	}
	res.loadStats.rss = summarise(res.samples, func(s sample) int64 { return s.rssKiB })
	res.loadStats.gor = summarise(res.samples, func(s sample) int64 { return s.goroutines })
	if r := res.loadStats.rss; r.any {
		if b := res.rssBound(); float64(r.last) > b {
			fail("VmRSS at the end %.1f MiB > plateau %.1f MiB + %.0f %% + %.0f MiB = %.1f MiB", float64(r.last)/1024,
				float64(r.plateau)/1024, o.rssMarginPct, o.rssMarginMiB, b/1024)
		}
	}
	if g := res.loadStats.gor; g.any {
		if g.last > g.plateau+o.goroutineMargin {
			fail("goroutines at the end %d > plateau %d + %d", g.last, g.plateau, o.goroutineMargin)
		}
		if o.idleWait > 0 && res.idleGoroutines > res.before.goroutines+o.idleMargin {
			fail("goroutines %s after the load %d > %d before it + %d", res.idleAfter.Round(time.Second), res.idleGoroutines,
				res.before.goroutines, o.idleMargin)
		}
	}
	if o.check {
		res.identities = res.checkIdentities()
		for _, id := range res.identities {
			if !id.holds() {
				fail("stats do not add up: %s: %d, %d", id.what, id.left, id.right)
			}
		}
	}
}

// rssBound is the highest VmRSS (KiB) allowed at the end.
func (res *result) rssBound() float64 {
	o := res.opts
	return float64(res.loadStats.rss.plateau)*(1+o.rssMarginPct/100) + o.rssMarginMiB*1024
}

func ms(us uint64) string { return fmt.Sprintf("%.2f", float64(us)/1000) }

// markdown is the report of the run.
func (res *result) markdown() string {
	o := res.opts
	var b strings.Builder
	l := res.load
	secs := l.end.Sub(l.start).Seconds()
	fmt.Fprintf(&b, "\n### %s: %d connections for %.0f s, mix %s, %.1f purges/s\n\n", o.name, o.conns, secs, res.mix, o.purgeRate)
	fmt.Fprintf(&b, "| class | weight | responses | as expected | errors | %s HIT | MISS | other | collapsed | revalidated (fwd-status=304) | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n", o.cacheHeader)
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	row := func(name string, weight string, cs []*classStats, h *hist) {
		var resp, ok, errs, hit, miss, other, coll, rv int64
		for _, c := range cs {
			resp += c.responses()
			ok += c.ok.Load()
			errs += c.errors()
			hit += c.cache[cacheHit].Load()
			miss += c.cache[cacheMiss].Load()
			other += c.cache[cacheStale].Load() + c.cache[cacheBypass].Load() + c.cache[cacheOther].Load()
			coll += c.collapsed.Load()
			rv += c.reval304.Load()
		}
		p := h.pcts(50, 90, 99, 99.9)
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s | %s | %s |\n", name, weight, resp, ok, errs,
			hit, miss, other, coll, rv, ms(p[0]), ms(p[1]), ms(p[2]), ms(p[3]), ms(h.max.Load()))
	}
	var all []*classStats
	for c := range nClasses {
		cs := &l.classes[c]
		all = append(all, cs)
		if res.mix.weight(c) == 0 {
			continue
		}
		row(c.String(), fmt.Sprint(res.mix.weight(c)), []*classStats{cs}, cs.lat)
	}
	row("**all**", fmt.Sprint(res.mix.total), all, l.all)
	if len(l.other) > 0 {
		b.WriteString("\nAnswers neither HIT nor MISS, by " + o.cacheHeader + " | Cache-Status: ")
		var parts []string
		for k, n := range l.other {
			parts = append(parts, fmt.Sprintf("`%s` %d", k, n))
		}
		sort.Strings(parts)
		b.WriteString(strings.Join(parts, ", ") + ".\n")
	}
	fmt.Fprintf(&b, "\n%d responses in %.1f s: **%.0f req/s**, %d errors, %d connections closed by the target.\n",
		l.total((*classStats).responses), secs, float64(l.total((*classStats).responses))/secs, l.total((*classStats).errors), l.reconnects.Load())
	if o.purgeRate > 0 {
		p := res.purges.lat.pcts(50, 99)
		fmt.Fprintf(&b, "Purges (admin `/api/purge`: by URL, soft by URL, by tag, by prefix in turn): %d sent, %d answered 200, %d failed, %d entries purged; p50 %s ms, p99 %s ms",
			res.purges.sent.Load(), res.purges.ok.Load(), res.purges.errs.Load(), res.purges.entries.Load(), ms(p[0]), ms(p[1]))
		var kinds []string
		for i := range res.purges.byKind {
			k := &res.purges.byKind[i]
			if k.sent.Load() == 0 {
				continue
			}
			q := k.lat.pcts(50, 99)
			kinds = append(kinds, fmt.Sprintf("%s %d sent, %d entries, p50 %s / p99 %s / max %s ms", purgeNames[i], k.sent.Load(), k.entries.Load(), ms(q[0]), ms(q[1]), ms(k.lat.max.Load())))
		}
		fmt.Fprintf(&b, " (%s).\n", strings.Join(kinds, "; "))
	}
	errLines := func(ps *phaseStats) {
		if ps == nil || ps.total((*classStats).errors) == 0 {
			return
		}
		var kinds []string
		for k := range nErrs {
			var n int64
			for c := range nClasses {
				n += ps.classes[c].errs[k].Load()
			}
			if n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %d", errNames[k], n))
			}
		}
		fmt.Fprintf(&b, "Errors in the %s phase: %s; first: %s.\n", ps.name, strings.Join(kinds, ", "), *ps.firstErr.Load())
	}
	errLines(res.warm)
	errLines(res.fill)
	errLines(l)
	if res.warm != nil {
		fmt.Fprintf(&b, "Warm pass (every hot and revalidated object once): %d responses, %d errors.\n",
			res.warm.total((*classStats).responses), res.warm.total((*classStats).errors))
	}
	if res.fill != nil {
		fmt.Fprintf(&b, "Fill (misses until the cache evicted): %d responses in %.1f s, %d errors.\n",
			res.fill.total((*classStats).responses), res.fill.end.Sub(res.fill.start).Seconds(), res.fill.total((*classStats).errors))
	}
	if r, g := res.loadStats.rss, res.loadStats.gor; r.any || g.any {
		fmt.Fprintf(&b, "\n| sampled every %s during the load (%d samples; warm-up %s) | first | min | max | last | warm-up plateau | allowed at the end |\n", o.sample, max(r.n, g.n), o.warmup)
		b.WriteString("|---|---|---|---|---|---|---|\n")
		if r.any {
			f := func(v int64) string { return fmt.Sprintf("%.1f", float64(v)/1024) }
			fmt.Fprintf(&b, "| VmRSS (MiB) | %s | %s | %s | %s | %s | %.1f |\n", f(r.first), f(r.min), f(r.max), f(r.last), f(r.plateau), res.rssBound()/1024)
		}
		if g.any {
			fmt.Fprintf(&b, "| goroutines | %d | %d | %d | %d | %d | %d |\n", g.first, g.min, g.max, g.last, g.plateau, g.plateau+o.goroutineMargin)
			if o.idleWait > 0 {
				fmt.Fprintf(&b, "\nGoroutines before the warm pass: %d; %s after the load ended (clients closed): %d (allowed %d).\n",
					res.before.goroutines, res.idleAfter.Round(100*time.Millisecond), res.idleGoroutines, res.before.goroutines+o.idleMargin)
			}
		}
	}
	if len(res.identities) > 0 {
		b.WriteString("\n| identity over the load (counter deltas) | left | | right | holds |\n|---|---|---|---|---|\n")
		for _, id := range res.identities {
			yes := "yes"
			if !id.holds() {
				yes = "**NO**"
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %d | %s |\n", id.what, id.left, id.op(), id.right, yes)
		}
	}
	fmt.Fprintf(&b, "\n%s\n", res.verdict())
	return b.String()
}

// verdict is the one-line verdict.
func (res *result) verdict() string {
	if len(res.failures) == 0 {
		return fmt.Sprintf("**PASS** (%s): %d requests, 0 errors", res.opts.name, res.load.total((*classStats).responses))
	}
	return fmt.Sprintf("**FAIL** (%s): %s", res.opts.name, strings.Join(res.failures, "; "))
}

// resultLine is the machine-readable summary soak.sh reads.
func (res *result) resultLine() string {
	l := res.load
	secs := l.end.Sub(l.start).Seconds()
	p := l.all.pcts(50, 90, 99, 99.9)
	hp := l.classes[hitClass].lat.pcts(50, 99)
	mp := l.classes[missClass].lat.pcts(50, 99)
	r, g := res.loadStats.rss, res.loadStats.gor
	ok := 0
	for _, id := range res.identities {
		if id.holds() {
			ok++
		}
	}
	verdict := "PASS"
	if len(res.failures) > 0 {
		verdict = "FAIL"
	}
	return fmt.Sprintf("RESULT name=%s seconds=%.1f conns=%d requests=%d errors=%d rps=%.0f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d "+
		"hit_p50_us=%d hit_p99_us=%d miss_p50_us=%d miss_p99_us=%d rss_first_kb=%d rss_min_kb=%d rss_max_kb=%d rss_last_kb=%d rss_plateau_kb=%d "+
		"goroutines_first=%d goroutines_min=%d goroutines_max=%d goroutines_last=%d goroutines_idle=%d purges=%d purge_errors=%d identities=%d/%d verdict=%s",
		res.opts.name, secs, res.opts.conns, l.total((*classStats).responses), l.total((*classStats).errors), float64(l.total((*classStats).responses))/secs,
		p[0], p[1], p[2], p[3], l.all.max.Load(), hp[0], hp[1], mp[0], mp[1],
		r.first, r.min, r.max, r.last, r.plateau, g.first, g.min, g.max, g.last, res.idleGoroutines,
		res.purges.sent.Load(), res.purges.errs.Load(), ok, len(res.identities), verdict)
}
