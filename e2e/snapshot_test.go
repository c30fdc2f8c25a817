package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestWarmRestart: with -snapshot, a cache stopped with SIGTERM and started
// again serves what it held as hits at once: byte-identical bodies, each
// stored once (the same dedup as before), Age counting the time it was
// down, and no request reaches the origin. A damaged snapshot is reported
// and skipped: the cache starts anyway.
func TestWarmRestart(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	snap := filepath.Join(t.TempDir(), "cache.snap")
	const n, k = 60, 6
	path := func(i int) string { return fmt.Sprintf("/obj/%d?distinct=%d&size=2000", i, k) }

	c1 := startCache(t, cacheOptions{upstream: o.url, args: []string{"-snapshot", snap}})
	bodies := make([]string, n)
	for i := range n {
		r := get(t, c1.url+path(i))
		if r.status != http.StatusOK || r.header.Get("X-Cache") != "MISS" {
			t.Fatalf("GET %s: %d, X-Cache %q; want 200 MISS", path(i), r.status, r.header.Get("X-Cache"))
		}
		bodies[i] = string(r.body)
	}
	before := c1.stats(t)
	// Under load: clients keep asking for stored objects while the cache
	// stops (they get hits, then refused connections).
	stop := make(chan struct{})
	var load sync.WaitGroup
	for g := range 4 {
		load.Go(func() {
			for i := g; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				do(http.MethodGet, c1.url+path(i%n))
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if err := c1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, ok := c1.exitCode(stopTimeout)
	close(stop)
	load.Wait()
	if !ok || code != 0 {
		t.Fatalf("first cache: exit %d (exited %v); want 0", code, ok)
	}
	fi, err := os.Stat(snap)
	if err != nil {
		t.Fatalf("no snapshot after SIGTERM: %v", err)
	}
	// Bodies are written once: the file is far below n bodies' bytes.
	if fi.Size() >= int64(n*2000)/2 {
		t.Errorf("snapshot is %d bytes for %d keys over %d bodies of 2000 B; want well under %d", fi.Size(), n, k, n*2000/2)
	}
	originBefore := o.stats(t).Prefix["/obj"]
	time.Sleep(1100 * time.Millisecond) // downtime that Age must count

	c2 := startCache(t, cacheOptions{upstream: o.url, args: []string{"-snapshot", snap}})
	// Keys hold the Host: a restarted cache answers for the same one (here
	// on another port, so the requests name the first cache's).
	host := strings.TrimPrefix(c1.url, "http://")
	for i := range n {
		r := send(http.MethodGet, c2.url+path(i), "", "Host", host)
		if r.header.Get("X-Cache") != "HIT" || string(r.body) != bodies[i] {
			t.Errorf("after restart, GET %s: X-Cache %q, body equal %v; want HIT, the same bytes", path(i), r.header.Get("X-Cache"), string(r.body) == bodies[i])
		}
		if age, _ := strconv.Atoi(r.header.Get("Age")); age < 1 {
			t.Errorf("after restart, GET %s: Age %q; want >= 1 (the time the cache was down)", path(i), r.header.Get("Age"))
		}
	}
	if got := o.stats(t).Prefix["/obj"] - originBefore; got != 0 {
		t.Errorf("origin requests after restart: %d; want 0", got)
	}
	var full struct {
		Snapshot struct {
			LoadedEntries int64 `json:"loaded_entries"`
		} `json:"snapshot"`
	}
	getJSON(t, c2.adminURL+"/api/stats", &full)
	if full.Snapshot.LoadedEntries != before.Entries {
		t.Errorf("/api/stats snapshot.loaded_entries: %d; want %d", full.Snapshot.LoadedEntries, before.Entries)
	}
	if m := get(t, c2.adminURL+"/metrics"); !strings.Contains(string(m.body), fmt.Sprintf(`dedupcache_snapshot_entries{kind="loaded"} %d`, before.Entries)) {
		t.Errorf("/metrics lacks dedupcache_snapshot_entries{kind=\"loaded\"} %d", before.Entries)
	}
	after := c2.stats(t)
	if after.BodiesUnique != before.BodiesUnique || after.Entries != before.Entries {
		t.Errorf("after restart: %d entries over %d bodies; before: %d over %d", after.Entries, after.BodiesUnique, before.Entries, before.BodiesUnique)
	}

	// A damaged file: a byte flipped in the middle. The cache starts, says
	// so, and loads what it can; nothing damaged is served.
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.snap")
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(bad, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c3 := startCache(t, cacheOptions{upstream: o.url, args: []string{"-snapshot", bad}})
	for i := range n {
		r := send(http.MethodGet, c3.url+path(i), "", "Host", host)
		if r.status != http.StatusOK || string(r.body) != bodies[i] {
			t.Errorf("damaged snapshot, GET %s: %d, body equal %v", path(i), r.status, string(r.body) == bodies[i])
		}
	}
}

// TestSnapshotInterval: with snapshot.interval the snapshot is written while
// the cache runs, so a process killed without SIGTERM (kill -9: no
// snapshot at exit) still comes back warm from the last one.
func TestSnapshotInterval(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	snap := filepath.Join(t.TempDir(), "cache.snap")
	const every = 300 * time.Millisecond
	cfg := writeFile(t, "snap.yaml", fmt.Sprintf("snapshot:\n  path: %q\n  interval: %q\n", snap, every.String()))
	listen, admin := freeAddrs(t)
	p := startProc(t, "dedupcache", cacheBin, []string{"-listen", listen, "-admin", admin, "-upstream", o.url, "-config", cfg}, nil)
	t.Cleanup(p.kill)
	c1 := &cache{proc: p, url: "http://" + listen, adminURL: "http://" + admin}
	if err := c1.waitHealthy(); err != nil {
		p.logOutput(t)
		t.Fatal(err)
	}
	const n = 10
	path := func(i int) string { return fmt.Sprintf("/obj/%d?size=500", i) }
	for i := range n {
		get(t, c1.url+path(i))
	}
	stored := time.Now()
	// A write that ended an interval after the last store began after it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(pollEvery) {
		if fi, err := os.Stat(snap); err == nil && fi.ModTime().After(stored.Add(every)) {
			break
		}
		if time.Now().After(deadline) {
			p.logOutput(t)
			t.Fatal("no snapshot written within 10 s with snapshot.interval 300ms")
		}
	}
	p.kill()
	originBefore := o.stats(t).Prefix["/obj"]
	c2 := startCache(t, cacheOptions{upstream: o.url, args: []string{"-snapshot", snap}})
	host := strings.TrimPrefix(c1.url, "http://")
	for i := range n {
		r := send(http.MethodGet, c2.url+path(i), "", "Host", host)
		if r.header.Get("X-Cache") != "HIT" {
			t.Errorf("after kill -9 and restart, GET %s: X-Cache %q, err %v; want HIT", path(i), r.header.Get("X-Cache"), r.err)
		}
	}
	if got := o.stats(t).Prefix["/obj"] - originBefore; got != 0 {
		t.Errorf("origin requests after restart: %d; want 0", got)
	}
}
