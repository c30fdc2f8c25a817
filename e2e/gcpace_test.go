package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gcPercent reads the GOGC in force from the cache's /metrics.
func gcPercent(t *testing.T, c *cache) float64 {
	t.Helper()
	r := do("GET", c.adminURL+"/metrics")
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %v %d", r.err, r.status)
	}
	v, ok := metricValue(string(r.body), "go_gc_gogc_percent")
	if !ok {
		t.Fatal("/metrics has no go_gc_gogc_percent")
	}
	return v
}

// fillDistinct stores n distinct 4 KiB objects through c with 4 clients
// (flood), and stops the test if any request failed.
func fillDistinct(t *testing.T, c *cache, n int, tag string) {
	t.Helper()
	flood(t, n, 4, floodLimit(n), func(i int) string {
		r := do(http.MethodGet, fmt.Sprintf("%s/obj/%d?distinct=%d&size=4096&tag=%s", c.url, i, n, tag))
		if r.err != nil || r.status != http.StatusOK {
			return fmt.Sprintf("%v, status %d", r.err, r.status)
		}
		return ""
	})
	if t.Failed() {
		t.FailNow()
	}
}

// TestGCPacer runs the real binary's collector pacer (internal/gcpace):
// GOGC 25 at rest, 100 while a fill allocates fast, 25 again a second after
// it, with the fill's heap headroom handed back to the OS (RSS falls
// although nothing was removed); and with GOGC in the environment, that
// GOGC throughout.
func TestGCPacer(t *testing.T) {
	o := startOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-log-level", "debug"}})
	if g := gcPercent(t, c); g != 25 {
		t.Fatalf("GOGC at rest %v, want 25", g)
	}
	var busy atomic.Bool
	stop := make(chan struct{})
	var polling sync.WaitGroup
	polling.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if gcPercent(t, c) == 100 {
				busy.Store(true)
			}
		}
	})
	fillDistinct(t, c, 20000, "pacer")
	close(stop)
	polling.Wait()
	if !busy.Load() {
		t.Error("GOGC never read 100 during a fill of 20 000 distinct 4 KiB objects")
	}
	filled, err := vmRSS(c.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.stderr.String(), "gc pacer returned a busy spell's headroom") {
		if time.Now().After(deadline) {
			t.Fatalf("no forced collection within 10 s of the fill (GOGC %v)", gcPercent(t, c))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if g := gcPercent(t, c); g != 25 {
		t.Errorf("GOGC after the fill %v, want 25", g)
	}
	rested, err := vmRSS(c.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RSS right after the fill %s, after the pacer's collection %s", mib(filled), mib(rested))
	if rested > filled-1<<20 {
		t.Errorf("RSS %s after the pacer's collection, %s after the fill: want at least 1 MiB less", mib(rested), mib(filled))
	}
	r := do("GET", c.adminURL+"/metrics")
	if v, ok := metricValue(string(r.body), "dedupcache_gc_pacer_releases_total"); !ok || v < 1 {
		t.Errorf("dedupcache_gc_pacer_releases_total %v (present %v), want >= 1", v, ok)
	}
	if v, ok := metricValue(string(r.body), "dedupcache_gc_pacer_switches_total"); !ok || v < 2 {
		t.Errorf("dedupcache_gc_pacer_switches_total %v (present %v), want >= 2", v, ok)
	}
	if st := c.stats(t); st.Entries != 20000 {
		t.Errorf("entries after the collection %d, want 20000", st.Entries)
	}

	fixed := startCache(t, cacheOptions{upstream: o.url, args: []string{"-log-level", "debug"}, env: []string{"GOGC=80"}})
	fillDistinct(t, fixed, 5000, "fixed")
	time.Sleep(1500 * time.Millisecond)
	if g := gcPercent(t, fixed); g != 80 {
		t.Errorf("with GOGC=80 in the environment GOGC is %v after a fill", g)
	}
	if r := do("GET", fixed.adminURL+"/metrics"); strings.Contains(string(r.body), "dedupcache_gc_pacer_") {
		t.Error("with GOGC=80 /metrics has the pacer's counters")
	}
	if log := fixed.stderr.String(); strings.Contains(log, "gc pacer") || !strings.Contains(log, "GOGC left as set") {
		t.Errorf("with GOGC=80 the pacer ran or did not say it stood aside:\n%s", log)
	}
}
