package redistier

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dedupcache/internal/redistest"
)

// The topologies of issue 14 besides standalone: a 3-primary Cluster and a
// primary + replica watched by one Sentinel, all real redis-server
// processes on loopback started by the tests.

// redisCLI returns redis-cli next to redis-server or on PATH; like
// redistest.Binary, it skips without one unless CI is set.
func redisCLI(tb testing.TB) string {
	tb.Helper()
	bin := redistest.Binary(tb)
	if p := filepath.Join(filepath.Dir(bin), "redis-cli"); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal("redis-cli not found and CI is set")
		}
		tb.Skip("redis-cli not found (Debian's redis-tools)")
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// newTierURL is newTier for any URL form.
func newTierURL(tb testing.TB, url string, cfg Config) *Tier {
	tb.Helper()
	cfg.URL = url
	tr, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tr.Close() })
	waitFor(tb, 10*time.Second, "tier healthy", tr.Healthy)
	return tr
}

// startCluster starts three cluster-enabled primaries (no replicas), joins
// them with redis-cli --cluster create and waits for cluster_state:ok on
// each.
func startCluster(t *testing.T) []*server {
	t.Helper()
	cli := redisCLI(t)
	nodes := make([]*server, 3)
	args := []string{"create"}
	for i := range nodes {
		// The bus port is given: port+10000 may be taken or out of range
		// for an ephemeral port.
		nodes[i] = startServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(redistest.FreePort(t)), "--cluster-node-timeout", "2000")
		args = append(args, nodes[i].addr())
	}
	out, err := exec.Command(cli, append([]string{"--cluster"}, append(args, "--cluster-yes")...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitFor(t, 15*time.Second, "cluster_state:ok on every node", func() bool {
		for _, n := range nodes {
			if r, err := n.do("CLUSTER", "INFO"); err != nil || !strings.Contains(r, "cluster_state:ok") {
				return false
			}
		}
		return true
	})
	return nodes
}

// clusterURL is the rueidis.ParseURL form with every node as a seed.
func clusterURL(nodes []*server) string {
	u := "redis://" + nodes[0].addr()
	for i, n := range nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + n.addr()
	}
	return u
}

// scanCount returns how many keys matching pattern node holds.
func scanCount(tb testing.TB, node *server, pattern string) int {
	tb.Helper()
	n, cursor := 0, "0"
	for {
		r := node.mustDo("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
		lines := strings.Split(r, "\n")
		cursor = lines[0]
		for _, k := range lines[1:] {
			if k != "" {
				n++
			}
		}
		if cursor == "0" {
			return n
		}
	}
}

// TestCluster runs two Tiers on a 3-primary Cluster: records and bodies
// cross instances, bodies are stored once across the nodes, every kind of
// purge reaches the other instance's Get and Follow, and a purge racing a
// put refuses it.
func TestCluster(t *testing.T) {
	nodes := startCluster(t)
	url := clusterURL(nodes)
	ctx := context.Background()

	// Every subtest has its own namespace, so they share the cluster.
	pair := func(t *testing.T, ns string) (a, b *Tier) {
		return newTierURL(t, url, Config{Namespace: ns, InstanceID: "a", Timeout: 200 * time.Millisecond}),
			newTierURL(t, url, Config{Namespace: ns, InstanceID: "b", Timeout: 200 * time.Millisecond})
	}

	t.Run("round trip", func(t *testing.T) {
		a, b := pair(t, "rt:")
		for _, size := range []int{0, 100, 10000} {
			key := fmt.Sprintf("example.com /rt/%d", size)
			bd := body(size, "rt")
			want := testRecord("t1", "t2")
			if _, _, _, ok := b.Get(ctx, key, nil); ok {
				t.Fatalf("%s: hit before put", key)
			}
			put(t, a, key, want, bd)
			rec, got, _, ok := b.Get(ctx, key, nil)
			if !ok {
				t.Fatalf("%s: other instance misses; stats a %+v b %+v", key, a.Stats(), b.Stats())
			}
			if rec.Status != want.Status || !bytes.Equal(rec.Header, want.Header) || !bytes.Equal(got, bd) {
				t.Errorf("%s: got %d %q %d bytes", key, rec.Status, rec.Header, len(got))
			}
		}
		// Vary names, written by a put of a variant.
		primary := "example.com /rt/vary"
		key := primary + "\x00gzip"
		_, _, gen, _ := a.Get(ctx, key, nil)
		a.Put(key, gen, primary, []string{"accept-encoding"}, testRecord(), []byte("v"), time.Minute)
		flush(t, a)
		if names, ok := b.VaryNames(ctx, primary); !ok || strings.Join(names, ",") != "accept-encoding" {
			t.Errorf("VaryNames on the other instance: %q, %v", names, ok)
		}
		if s := b.Stats(); s.Errors != 0 || s.BreakerTrips != 0 {
			t.Errorf("errors on the cluster: %+v", s)
		}
	})

	t.Run("bodies once", func(t *testing.T) {
		a, b := pair(t, "once:")
		const keys, bodies = 100, 10
		bds := make([][]byte, bodies)
		for i := range bds {
			bds[i] = body(2000, fmt.Sprintf("body-%d-", i))
		}
		// The first put of a namespace creates its epoch; two racing to
		// do so would refuse one of them (harmless, but not counted here).
		put(t, a, "seed /epoch", testRecord(), []byte("e"))
		for i := range keys {
			tr := a
			if i%2 == 1 {
				tr = b
			}
			key := fmt.Sprintf("h%d.example /k/%d", i%7, i)
			_, _, gen, _ := tr.Get(ctx, key, nil)
			tr.Put(key, gen, "", nil, testRecord(), bds[i%bodies], time.Minute)
		}
		flush(t, a)
		flush(t, b)
		if w := a.Stats().PutsWritten + b.Stats().PutsWritten; w != keys+1 {
			t.Fatalf("puts written: %d; want %d (a %+v, b %+v)", w, keys, a.Stats(), b.Stats())
		}
		total, holding := 0, 0
		for _, n := range nodes {
			c := scanCount(t, n, "once:b:*")
			total += c
			if c > 0 {
				holding++
			}
		}
		if total != bodies {
			t.Errorf("body keys across the cluster: %d; want %d", total, bodies)
		}
		if holding < 2 {
			t.Errorf("body keys on %d node(s); want them spread over the cluster", holding)
		}
		up := a.Stats().BytesUploaded + b.Stats().BytesUploaded
		if up != bodies*2000 {
			t.Errorf("bytes uploaded: %d; want %d", up, bodies*2000)
		}
		for i := range keys {
			key := fmt.Sprintf("h%d.example /k/%d", i%7, i)
			if _, got, _, ok := a.Get(ctx, key, nil); !ok || !bytes.Equal(got, bds[i%bodies]) {
				t.Fatalf("%s: miss or wrong body on a", key)
			}
		}
	})

	t.Run("purges", func(t *testing.T) {
		a, b := pair(t, "purge:")
		fb := follow(t, b)
		bd := body(1000, "p")
		keys := []string{"a.com /api/1", "b.com /api/2", "a.com /web/1", "a.com /tagged"}
		hits := func(tr *Tier) string {
			var out []string
			for _, k := range keys {
				if _, _, _, ok := tr.Get(ctx, k, nil); ok {
					out = append(out, k)
				}
			}
			return strings.Join(out, ",")
		}
		for _, tc := range []struct {
			name string
			p    Purge
			want string
		}{
			{"key", Purge{Keys: []string{"a.com /web/1"}}, "a.com /api/1,b.com /api/2,a.com /tagged"},
			{"prefix", Purge{Prefixes: []string{"/api"}}, "a.com /web/1,a.com /tagged"},
			{"tag", Purge{Tags: []string{"tag-1"}}, "b.com /api/2,a.com /tagged"},
			{"all", Purge{All: true}, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				time.Sleep(2 * time.Millisecond) // prefix and tag marks are ms
				for _, k := range keys {
					put(t, b, k, testRecord("tag-"+k[len(k)-1:]), bd)
				}
				if got := hits(b); got != strings.Join(keys, ",") {
					t.Fatalf("before: hits %q", got)
				}
				if err := a.Purge(ctx, tc.p); err != nil {
					t.Fatal(err)
				}
				if got := hits(b); got != tc.want {
					t.Errorf("other instance after the purge: hits %q; want %q", got, tc.want)
				}
				if got := next(t, fb); fmt.Sprint(got) != fmt.Sprint(tc.p) {
					t.Errorf("followed %+v; want %+v", got, tc.p)
				}
			})
		}
	})

	t.Run("purge races put", func(t *testing.T) {
		a, b := pair(t, "race:")
		for _, tc := range []struct {
			name string
			p    Purge
		}{
			{"key", Purge{Keys: []string{"h /race"}}},
			{"prefix", Purge{Prefixes: []string{"/ra"}}},
			{"tag", Purge{Tags: []string{"race"}}},
			{"all", Purge{All: true}},
		} {
			for _, stored := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/stored=%v", tc.name, stored), func(t *testing.T) {
					if stored {
						put(t, b, "h /race", testRecord("race"), []byte("old"))
					}
					_, _, gen, _ := b.Get(ctx, "h /race", nil) // the miss; the fetch begins
					time.Sleep(2 * time.Millisecond)
					if err := a.Purge(ctx, tc.p); err != nil {
						t.Fatal(err)
					}
					refused := b.Stats().PutsRefused
					b.Put("h /race", gen, "", nil, testRecord("race"), []byte("pre-purge response"), time.Minute)
					flush(t, b)
					if _, got, _, ok := a.Get(ctx, "h /race", nil); ok {
						t.Errorf("served %q after the purge", got)
					}
					if b.Stats().PutsRefused != refused+1 {
						t.Errorf("PutsRefused: got %d; want %d", b.Stats().PutsRefused, refused+1)
					}
					put(t, b, "h /race", testRecord("race"), []byte("new"))
					if _, got, _, ok := a.Get(ctx, "h /race", nil); !ok || string(got) != "new" {
						t.Errorf("after the purge: got %q, %v; want \"new\"", got, ok)
					}
					time.Sleep(2 * time.Millisecond)
				})
			}
		}
	})
}

// startSentinel starts one Sentinel monitoring master as "m" with quorum
// 1, quick to declare it down and to fail over.
func startSentinel(t *testing.T, master *server) *server {
	t.Helper()
	s := &server{tb: t, bin: redistest.Binary(t), dir: t.TempDir()}
	conf := filepath.Join(s.dir, "sentinel.conf")
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		s.port = redistest.FreePort(t)
		// Sentinel rewrites its config file: it must be its own, writable.
		os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nloglevel notice\n"+
			"sentinel monitor m 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds m 500\n"+
			"sentinel failover-timeout m 3000\n",
			s.port, s.dir, filepath.Join(s.dir, "redis.log"), master.port)), 0o600)
		s.cmd = exec.Command(s.bin, conf, "--sentinel")
		if err = s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		s.done = make(chan struct{})
		go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(s.cmd, s.done)
		err = fmt.Errorf("no PING answer within 5s")
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, e := s.do("PING"); e == nil {
				err = nil
				break
			}
		}
		if err == nil {
			break
		}
		s.stop()
	}
	if err != nil {
		t.Fatalf("redis-sentinel: %v\n%s", err, s.log())
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("sentinel log:\n%s", s.log())
		}
	})
	return s
}

// masterPort returns the port Sentinel gives for master "m".
func masterPort(tb testing.TB, sentinel *server) int {
	r, err := sentinel.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "m")
	if err != nil {
		return 0
	}
	lines := strings.Split(r, "\n")
	if len(lines) != 2 {
		return 0
	}
	p, _ := strconv.Atoi(lines[1])
	return p
}

// sentinelSetup is a master, one replica (replicating through a cutProxy,
// so that a test can stop replication) and one Sentinel that knows both.
type sentinelSetup struct {
	master, replica, sentinel *server
	link                      *cutProxy
}

func startSentinelSetup(t *testing.T) *sentinelSetup {
	t.Helper()
	var st sentinelSetup
	st.master = startServer(t)
	st.link = newCutProxy(t, st.master.addr())
	_, linkPort, _ := strings.Cut(strings.TrimPrefix(st.link.url(), "redis://"), ":")
	st.replica = startServer(t, "--replicaof", "127.0.0.1", linkPort)
	waitFor(t, 10*time.Second, "replica in sync", func() bool {
		r, err := st.replica.do("INFO", "replication")
		return err == nil && strings.Contains(r, "master_link_status:up")
	})
	st.sentinel = startSentinel(t, st.master)
	waitFor(t, 15*time.Second, "sentinel knows the replica", func() bool {
		r, err := st.sentinel.do("SENTINEL", "REPLICAS", "m")
		if err != nil {
			return false
		}
		lines := strings.Split(r, "\n")
		for i := 0; i+1 < len(lines); i++ {
			if lines[i] == "name" && lines[i+1] != "127.0.0.1:"+strconv.Itoa(st.replica.port) {
				return false
			}
			if lines[i] == "flags" && lines[i+1] != "slave" {
				return false
			}
		}
		return strings.Contains(r, "127.0.0.1:"+strconv.Itoa(st.replica.port))
	})
	return &st
}

func (st *sentinelSetup) url() string {
	return "redis://" + st.sentinel.addr() + "?master_set=m"
}

// failover kills the master (SIGKILL) and waits until Sentinel names the
// replica; it returns how long that took.
func (st *sentinelSetup) failover(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	st.master.kill()
	waitFor(t, 30*time.Second, "sentinel failover to the replica", func() bool {
		return masterPort(t, st.sentinel) == st.replica.port
	})
	return time.Since(start)
}

// TestSentinel runs a Tier through Sentinel: a round trip, then the master
// is killed; calls during the failover return within the Timeout (plus
// slack) as misses or dropped puts, and the Tier works again on the new
// master within a bounded time.
func TestSentinel(t *testing.T) {
	st := startSentinelSetup(t)
	cfg := Config{Timeout: 50 * time.Millisecond, ProbeInterval: 100 * time.Millisecond}
	a := newTierURL(t, st.url(), cfg)
	cfg.InstanceID = "b"
	b := newTierURL(t, st.url(), cfg)
	ctx := context.Background()

	bd := body(3000, "sentinel")
	put(t, a, "s.example /1", testRecord("s"), bd)
	if _, got, _, ok := b.Get(ctx, "s.example /1", nil); !ok || !bytes.Equal(got, bd) {
		t.Fatalf("round trip through Sentinel: miss; stats %+v", b.Stats())
	}
	if err := a.Purge(ctx, Purge{Keys: []string{"s.example /1"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := b.Get(ctx, "s.example /1", nil); ok {
		t.Fatal("hit after a purge")
	}

	// Load during the failover: Gets and Puts from 4 goroutines.
	const slack = 250 * time.Millisecond
	var (
		mu      sync.Mutex
		slowest time.Duration
		calls   int
		panics  []any
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					mu.Lock()
					panics = append(panics, p)
					mu.Unlock()
				}
			}()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("s.example /load/%d/%d", g, i%50)
				begin := time.Now()
				_, _, gen, _ := a.Get(ctx, key, nil)
				a.Put(key, gen, "", nil, testRecord(), bd, time.Minute)
				d := time.Since(begin)
				mu.Lock()
				slowest, calls = max(slowest, d), calls+1
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	took := st.failover(t)

	// Recovery: a fresh put is stored and read back, from both instances.
	begin := time.Now()
	recovered := func(tr *Tier, key string) bool {
		_, _, gen, _ := tr.Get(ctx, key, nil)
		tr.Put(key, gen, "", nil, testRecord(), bd, time.Minute)
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if _, got, _, ok := tr.Get(ctx, key, nil); ok && bytes.Equal(got, bd) {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}
	waitFor(t, 15*time.Second, "a works on the new master", func() bool { return recovered(a, "s.example /after/a") })
	waitFor(t, 15*time.Second, "b reads a's put", func() bool {
		_, _, _, ok := b.Get(ctx, "s.example /after/a", nil)
		return ok
	})
	recoveredIn := time.Since(begin)
	close(stop)
	wg.Wait()
	t.Logf("failover (kill to Sentinel naming the replica) %v; Tier working again %v later; "+
		"%d Get+Put during it, slowest %v; a %+v", took, recoveredIn, calls, slowest, a.Stats())
	if len(panics) > 0 {
		t.Fatalf("calls panicked during the failover: %v", panics)
	}
	if slowest > cfg.Timeout+slack {
		t.Errorf("slowest Get+Put during the failover: %v; want at most Timeout %v + %v", slowest, cfg.Timeout, slack)
	}
	if err := a.Purge(ctx, Purge{Keys: []string{"s.example /after/a"}}); err != nil {
		t.Errorf("purge on the new master: %v", err)
	}
	if _, _, _, ok := b.Get(ctx, "s.example /after/a", nil); ok {
		t.Error("hit after a purge on the new master")
	}
}

// TestSentinelFailoverLosesPurge reproduces a limit of the design: Purge
// does not WAIT for a replica, so a purge acknowledged by a master that
// dies before replicating it is lost with it. Replication is cut (as a
// slow link would be), a purge is acknowledged, the master is killed and
// the replica promoted: the purged entry is served again from Redis. The
// followers are told (a Missed purge: the log went back), so they mark
// their local copies stale, but the shared tier serves the old entry
// until its TTL ends or it is purged again.
func TestSentinelFailoverLosesPurge(t *testing.T) {
	st := startSentinelSetup(t)
	cfg := Config{Timeout: testTimeout, ProbeInterval: 100 * time.Millisecond, InstanceID: "a"}
	a := newTierURL(t, st.url(), cfg)
	cfg.InstanceID = "b"
	b := newTierURL(t, st.url(), cfg)
	fb := follow(t, b)
	ctx := context.Background()

	key := "s.example /lost"
	put(t, a, key, testRecord(), []byte("before the purge"))
	if r := st.master.mustDo("WAIT", "1", "2000"); r != "1" {
		t.Fatalf("WAIT 1: %s replicas", r)
	}
	st.link.setCut(true) // replication stops; the master still acknowledges writes
	if err := a.Purge(ctx, Purge{Keys: []string{key}}); err != nil {
		t.Fatal(err)
	}
	if p := next(t, fb); len(p.Keys) != 1 || p.Keys[0] != key {
		t.Fatalf("followed %+v", p)
	}
	if _, _, _, ok := b.Get(ctx, key, nil); ok {
		t.Fatal("hit after the purge, before the failover")
	}
	st.failover(t)

	waitFor(t, 15*time.Second, "the follower told of the lost purges", func() bool {
		select {
		case p := <-fb:
			return p.Missed && p.All && p.Soft
		default:
			return false
		}
	})
	var got []byte
	var ok bool
	waitFor(t, 15*time.Second, "b reads the new master", func() bool {
		_, got, _, ok = b.Get(ctx, key, nil)
		return b.Healthy() && ok
	})
	t.Logf("after the failover the purged entry is served again: %q (stats b %+v)", got, b.Stats())
}
