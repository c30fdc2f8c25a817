package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dedupcache/internal/redistest"
)

// End-to-end tests of the Redis shared tier (issue 14) against Debian's
// redis-server, started by the tests on a free loopback port, and two or
// three real dedupcache processes in front of one origin. Every request
// carries the same Host (sharedHost), as a load balancer would send it, so
// that the instances compute the same cache keys.
//
// Redis is checked directly over RESP (redisProc.do), so what the tests
// count in it goes through no client library. The key schema is the one
// redistier/doc.go and redistier/keys.go describe.

const (
	sharedHost    = "api.example"
	sharedNS      = "dc:1:"
	sharedToken   = "e2e-shared-admin-token-0123456789"
	sharedTimeout = 50 * time.Millisecond // shared.timeout in every instance
)

// ---------------------------------------------------------------------
// redis-server, as redistier/server_test.go runs it (copied: test files
// cannot be imported across packages).

// redisProc is a redis-server on a fixed loopback port with persistence
// off and a private directory. It is stopped at cleanup, and its log is
// printed when the test failed.
type redisProc struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// newRedis reserves a free port for a redis-server without starting it
// (for Redis down at start); start runs it.
func newRedis(t *testing.T) *redisProc {
	t.Helper()
	r := &redisProc{t: t, bin: redistest.Binary(t), dir: t.TempDir()}
	r.port = redistest.FreePort(t)
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("redis-server log:\n%s", r.log())
		}
	})
	return r
}

// startRedis starts a redis-server on a free port, trying other ports if
// one was taken in between.
func startRedis(t *testing.T) *redisProc {
	t.Helper()
	r := newRedis(t)
	for attempt := 0; ; attempt++ {
		err := r.start()
		if err == nil {
			return r
		}
		if attempt == 4 {
			t.Fatalf("redis-server: %v\n%s", err, r.log())
		}
		r.port = redistest.FreePort(t)
	}
}

// start runs the server on r.port and waits (at most 5 s) for PING.
func (r *redisProc) start() error {
	r.cmd = exec.Command(r.bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(r.port), "--protected-mode", "yes",
		"--save", "", "--appendonly", "no", "--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log"), "--loglevel", "warning",
		"--daemonize", "no")
	if err := r.cmd.Start(); err != nil {
		r.cmd = nil
		return err
	}
	r.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(r.cmd, r.done)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			r.cmd = nil
			return fmt.Errorf("redis-server exited at start")
		default:
		}
		if _, err := r.do("PING"); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.stop()
	return fmt.Errorf("no PING answer within 5s")
}

// mustStart is start that fails the test (the port is kept: instances
// already point at it).
func (r *redisProc) mustStart() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("redis-server on port %d: %v\n%s", r.port, err, r.log())
	}
}

// stop ends the server: SIGTERM, then SIGKILL after 5 s.
func (r *redisProc) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd = nil
}

// kill ends the server at once with SIGKILL, as a crash would.
func (r *redisProc) kill() {
	r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

func (r *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }
func (r *redisProc) url() string  { return "redis://" + r.addr() }

func (r *redisProc) log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	return string(b)
}

// do sends one command on a fresh connection and returns the reply
// flattened to strings (arrays in order; a nil bulk string is "(nil)").
func (r *redisProc) do(args ...string) ([]string, error) {
	return redistest.Do(r.addr(), args...)
}

// mustDo is do that fails the test on an error, and returns the first
// reply string ("" for an empty array).
func (r *redisProc) mustDo(args ...string) string {
	r.t.Helper()
	out, err := r.do(args...)
	if err != nil {
		r.t.Fatalf("redis %v: %v", args, err)
	}
	if len(out) == 0 {
		return ""
	}
	return out[0]
}

// keys returns the keys matching a glob pattern.
func (r *redisProc) keys(pattern string) []string {
	r.t.Helper()
	out, err := r.do("KEYS", pattern)
	if err != nil {
		r.t.Fatalf("redis KEYS %s: %v", pattern, err)
	}
	return out
}

// exists reports whether key is in Redis.
func (r *redisProc) exists(key string) bool {
	r.t.Helper()
	return r.mustDo("EXISTS", key) == "1"
}

// memoryUsage returns MEMORY USAGE key SAMPLES 0 (exact), 0 if it is gone.
func (r *redisProc) memoryUsage(key string) int64 {
	r.t.Helper()
	v := r.mustDo("MEMORY", "USAGE", key, "SAMPLES", "0")
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// ---------------------------------------------------------------------
// The key schema, from redistier/keys.go: an entry of a primary key
// "host uri" is N{hex(sha256(primary)[:16])}e:hex(sha256(key)[:16]).

func sharedHash16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// sharedEntryKey is the Redis key of the entry for path (no variants).
func sharedEntryKey(path string) string {
	k := sharedHost + " " + path
	return sharedNS + "{" + sharedHash16(k) + "}e:" + sharedHash16(k)
}

// waitRedisKeys polls Redis until every key exists, for at most d, and
// returns those still missing.
func waitRedisKeys(r *redisProc, d time.Duration, keys ...string) []string {
	r.t.Helper()
	deadline := time.Now().Add(d)
	missing := keys
	for {
		var still []string
		for _, k := range missing {
			if !r.exists(k) {
				still = append(still, k)
			}
		}
		missing = still
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(pollEvery)
	}
}

// waitFollowers polls Redis until n clients are blocked in XREAD on the
// purge log: every instance's follower has taken its position in the log.
// A purge made before that is not replayed to an instance (see
// TestSharedPurgeReachesEveryInstance), so tests of purges wait for it.
func waitFollowers(r *redisProc, n int) {
	r.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := 0
		list := r.mustDo("CLIENT", "LIST")
		for _, l := range strings.Split(list, "\n") {
			if strings.Contains(l, " cmd=xread ") && strings.Contains(l, " name=dedupcache-") {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d of %d instances follow the purge log 3s after they started:\n%s", got, n, list)
		}
		time.Sleep(pollEvery)
	}
}

// ---------------------------------------------------------------------
// Instances and requests.

// startSharedCache starts a dedupcache in front of o with the shared tier
// on redisURL, the admin token sharedToken and shared.timeout 50ms.
func startSharedCache(t *testing.T, o *origin, redisURL string) *cache {
	t.Helper()
	return startSharedCacheTimeout(t, o, redisURL, sharedTimeout)
}

// startSharedCacheTimeout is startSharedCache with another shared.timeout:
// tests that count what reached Redis use a generous one, so that a Redis
// call slowed down by a loaded test machine (a miss by design) does not
// make a put go missing.
func startSharedCacheTimeout(t *testing.T, o *origin, redisURL string, timeout time.Duration) *cache {
	t.Helper()
	yaml := fmt.Sprintf("admin:\n  token: %s\nshared:\n  redis_url: %q\n  namespace: %q\n  timeout: %q\n",
		sharedToken, redisURL, sharedNS, timeout.String())
	return startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", writeFile(t, "dedupcache.yaml", yaml)}})
}

// sget sends GET path to c with the fleet's Host.
func sget(c *cache, path string) result {
	return send("GET", c.url+path, "", "Host", sharedHost)
}

// objPath is the origin's /obj/i with body i mod k of size bytes.
func objPath(i, k, size int) string {
	return fmt.Sprintf("/obj/%d?distinct=%d&size=%d", i, k, size)
}

// objBody returns the bytes the origin serves for body index idx of size
// bytes (the origin's body function: ChaCha8 seeded by idx and size).
func objBody(idx, size int) []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(idx))
	binary.LittleEndian.PutUint64(seed[8:], uint64(size))
	b := make([]byte, size)
	rand.NewChaCha8(seed).Read(b)
	return b
}

// isSharedHit reports whether r was answered from the shared tier.
func isSharedHit(r result) bool {
	return r.header.Get("X-Cache") == "HIT" && strings.Contains(r.header.Get("Cache-Status"), "detail=shared")
}

// objCount is how many /obj requests the origin has served.
func objCount(t *testing.T, o *origin) int64 {
	t.Helper()
	return o.stats(t).Prefix["/obj"]
}

// adminPurge sends POST /api/purge?query to c's admin listener with the
// token and returns the decoded answer.
func adminPurge(t *testing.T, c *cache, query string) map[string]int64 {
	t.Helper()
	req, _ := http.NewRequest("POST", c.adminURL+"/api/purge?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+sharedToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("purge %s: %v", query, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("purge %s: %s %q", query, resp.Status, body)
	}
	var out map[string]int64
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("purge %s: %v in %q", query, err, body)
	}
	return out
}

// ---------------------------------------------------------------------
// 1. An object fetched through A is a hit from Redis on B and C.

func TestSharedHitAcrossInstances(t *testing.T) {
	t.Parallel()
	rd := startRedis(t)
	o := startOrigin(t)
	a := startSharedCache(t, o, rd.url())
	b := startSharedCache(t, o, rd.url())
	c := startSharedCache(t, o, rd.url())

	const size = 4000
	path := objPath(7, 1000, size)
	want := objBody(7, size)

	ra := must(t, "A: first GET", sget(a, path), 200)
	if ra.header.Get("X-Cache") != "MISS" || !bytes.Equal(ra.body, want) {
		t.Fatalf("A: %s, %d bytes (right body: %v); want a MISS with the origin's body", xc(ra), len(ra.body), bytes.Equal(ra.body, want))
	}
	// The write to Redis is asynchronous: wait for the entry record (the
	// body is written before it) rather than poll B, so that B's first
	// request is the one that counts.
	start := time.Now()
	if missing := waitRedisKeys(rd, 3*time.Second, sharedEntryKey(path)); len(missing) > 0 {
		t.Fatalf("A's response not in Redis within 3s: no %q (keys: %q)", missing[0], rd.keys(sharedNS+"*"))
	}
	t.Logf("A's asynchronous write visible in Redis after %v", time.Since(start).Round(time.Millisecond))

	for _, x := range []struct {
		name string
		c    *cache
	}{{"B", b}, {"C", c}} {
		r := must(t, x.name+": first GET", sget(x.c, path), 200)
		if !isSharedHit(r) {
			t.Errorf("%s: first GET: %s; want X-Cache HIT and Cache-Status detail=shared", x.name, xc(r))
		}
		if !bytes.Equal(r.body, want) {
			t.Errorf("%s: body of %d bytes differs from the origin's", x.name, len(r.body))
		}
		r2 := must(t, x.name+": second GET", sget(x.c, path), 200)
		if r2.header.Get("X-Cache") != "HIT" || strings.Contains(r2.header.Get("Cache-Status"), "detail=shared") {
			t.Errorf("%s: second GET: %s; want an in-process HIT (no detail=shared)", x.name, xc(r2))
		}
		t.Logf("%s: shared hit in %v, then in-process hit in %v (A's origin miss took %v)",
			x.name, r.took.Round(10*time.Microsecond), r2.took.Round(10*time.Microsecond), ra.took.Round(10*time.Microsecond))
	}
	if n := objCount(t, o); n != 1 {
		t.Errorf("origin served %d requests for the object through 3 instances; want 1", n)
	}
}

// ---------------------------------------------------------------------
// 2. 100 URLs over 10 bodies across 3 instances: 10 bodies in Redis.

// redisFootprint sums MEMORY USAGE over the namespace's keys by kind.
type redisFootprint struct {
	entries, gens, bodies, other          int // key counts
	entryB, genB, bodyB, otherB, totalKey int64
	otherKeys                             []string
}

func footprint(r *redisProc, skip map[string]bool) redisFootprint {
	r.t.Helper()
	var f redisFootprint
	for _, k := range r.keys(sharedNS + "*") {
		if skip[k] {
			continue
		}
		m := r.memoryUsage(k)
		switch rest := strings.TrimPrefix(k, sharedNS); {
		case strings.HasPrefix(rest, "b:"):
			f.bodies++
			f.bodyB += m
		case strings.HasPrefix(rest, "{") && strings.Contains(rest, "}e:"):
			f.entries++
			f.entryB += m
		case strings.HasPrefix(rest, "{") && strings.HasSuffix(rest, "}g"):
			f.gens++
			f.genB += m
		default:
			f.other++
			f.otherB += m
			f.otherKeys = append(f.otherKeys, k)
		}
	}
	f.totalKey = f.entryB + f.genB + f.bodyB + f.otherB
	return f
}

// fleetUploads sums bytes_uploaded and bytes_not_uploaded over cs.
func fleetUploads(t *testing.T, cs []*cache) (up, not int64) {
	t.Helper()
	for _, c := range cs {
		s := sharedStatsOf(t, c)
		up += s.BytesUploaded
		not += s.BytesNotUploaded
	}
	return up, not
}

func TestSharedBodiesOncePerFleet(t *testing.T) {
	rd := startRedis(t)
	o := startOrigin(t)
	cs := []*cache{
		startSharedCacheTimeout(t, o, rd.url(), time.Second),
		startSharedCacheTimeout(t, o, rd.url(), time.Second),
		startSharedCacheTimeout(t, o, rd.url(), time.Second),
	}
	// A follower taking its place in the purge log has the entries stored
	// before revalidated, and keeps the fills then on their way out of the
	// store: wait for all three before counting what reaches Redis.
	waitFollowers(rd, 3)
	const (
		urls = 100
		size = 1000 // > 256 B: each body under its own key, not inlined
	)

	// run fetches urls URLs /obj/{first+i}?distinct=k through instance
	// i%3, waits for their entries in Redis, then fetches every URL through
	// every instance: the ones it did not fetch must come from Redis. It
	// returns the footprint of the keys that were not in Redis before.
	run := func(t *testing.T, first, k int) redisFootprint {
		before := map[string]bool{}
		for _, key := range rd.keys(sharedNS + "*") {
			before[key] = true
		}
		o0 := objCount(t, o)
		up0, not0 := fleetUploads(t, cs)
		var entryKeys []string
		for i := range urls {
			p := objPath(first+i, k, size)
			r := must(t, "fill "+p, sget(cs[i%3], p), 200)
			if !bytes.Equal(r.body, objBody((first+i)%k, size)) {
				t.Fatalf("fill %s: wrong body", p)
			}
			entryKeys = append(entryKeys, sharedEntryKey(p))
		}
		if missing := waitRedisKeys(rd, 3*time.Second, entryKeys...); len(missing) > 0 {
			for _, c := range cs {
				st := getJSONMap(t, c.adminURL+"/api/stats")
				t.Logf("instance %s: shared %v", c.adminURL, st["shared"])
			}
			t.Logf("entry keys in Redis: %d; gen key of the first missing: %v", len(rd.keys(sharedNS+"*}e:*")),
				rd.exists(strings.Replace(missing[0], "}e:", "}g", 1)[:strings.Index(missing[0], "}e:")+2]))
			t.Fatalf("K=%d: %d of %d entries not in Redis 3s after the fills (first missing %q)", k, len(missing), urls, missing[0])
		}
		fills := objCount(t, o) - o0
		shared, local := 0, 0
		for i := range urls {
			p := objPath(first+i, k, size)
			for j, c := range cs {
				r := must(t, "read "+p, sget(c, p), 200)
				if !bytes.Equal(r.body, objBody((first+i)%k, size)) {
					t.Errorf("instance %d, %s: wrong body (%s)", j, p, xc(r))
				}
				switch {
				case j == i%3:
					local++
				case isSharedHit(r):
					shared++
				default:
					t.Errorf("instance %d, %s: %s; want a hit from Redis (detail=shared)", j, p, xc(r))
				}
			}
		}
		total := objCount(t, o) - o0
		up, not := fleetUploads(t, cs)
		up, not = up-up0, not-not0
		bodies := min(k, urls)
		if up != int64(bodies*size) || not != int64((urls-bodies)*size) {
			t.Errorf("K=%d: body bytes uploaded %d, not uploaded (another instance had stored them) %d; want %d and %d",
				k, up, not, bodies*size, (urls-bodies)*size)
		}
		t.Logf("K=%d: body bytes uploaded to Redis by the 3 instances: %d; not uploaded thanks to fleet dedup: %d", k, up, not)
		if fills != urls || total != urls {
			t.Errorf("K=%d: origin requests: %d for the fills, %d in all; want %d and %d", k, fills, total, urls, urls)
		}
		t.Logf("K=%d: %d client requests (%d URLs x (1 fill + 3 reads)) over 3 instances: %d origin requests; %d reads from Redis; "+
			"without the shared tier each instance would have fetched every URL: %d origin requests, so %d saved (%.0f%%)",
			k, urls*4, urls, total, shared, 3*urls, 3*urls-int(total), 100*float64(3*urls-int(total))/float64(3*urls))
		f := footprint(rd, before)
		return f
	}

	// Warm-up: on an empty Redis the first put creates the namespace's
	// epoch, and a put whose fill began before that (its Get saw no epoch)
	// is refused as if a purge of everything had happened in between. So
	// the fills below wait for one entry to be stored first; without this
	// the second URL's entry was missing in about one run out of three.
	warm := objPath(0, 1, 100)
	must(t, "warm-up", sget(cs[0], warm), 200)
	if missing := waitRedisKeys(rd, 3*time.Second, sharedEntryKey(warm)); len(missing) > 0 {
		t.Fatalf("warm-up entry not in Redis within 3s")
	}

	var f10, fN redisFootprint
	t.Run("K=10", func(t *testing.T) {
		f10 = run(t, 0, 10)
		if f10.bodies != 10 || f10.entries != urls {
			t.Errorf("Redis holds %d body keys %sb:* and %d entries; want 10 and %d (keys: %q)",
				f10.bodies, sharedNS, f10.entries, urls, rd.keys(sharedNS+"b:*"))
		}
	})
	t.Run("K=N", func(t *testing.T) {
		// Indexes 100..199 of 1000 bodies: none is one of K=10's.
		fN = run(t, urls, 1000)
		if fN.bodies != urls || fN.entries != urls {
			t.Errorf("Redis holds %d new body keys and %d new entries; want %d and %d", fN.bodies, fN.entries, urls, urls)
		}
	})
	for _, x := range []struct {
		name string
		f    redisFootprint
	}{{"K=10", f10}, {"K=N=100", fN}} {
		f := x.f
		if f.entries == 0 {
			continue
		}
		t.Logf("%s, %d URLs of %d B bodies: MEMORY USAGE %d B in all = %.0f B per stored URL "+
			"(entries %d x %.0f B, generations %d x %.0f B, bodies %d x %.0f B, other keys %q %d B)",
			x.name, urls, size, f.totalKey, float64(f.totalKey)/float64(f.entries),
			f.entries, float64(f.entryB)/float64(max(f.entries, 1)), f.gens, float64(f.genB)/float64(max(f.gens, 1)),
			f.bodies, float64(f.bodyB)/float64(max(f.bodies, 1)), f.otherKeys, f.otherB)
	}
	if f10.entries > 0 && fN.entries > 0 {
		t.Logf("body sharing: K=10 costs %.0f%% of K=N per stored URL (%.0f vs %.0f B)",
			100*float64(f10.totalKey)/float64(fN.totalKey), float64(f10.totalKey)/urls, float64(fN.totalKey)/urls)
	}
	var info []string
	for _, l := range strings.Split(rd.mustDo("INFO", "memory"), "\r\n") {
		if strings.HasPrefix(l, "used_memory:") || strings.HasPrefix(l, "used_memory_dataset:") {
			info = append(info, l)
		}
	}
	t.Logf("redis INFO memory after both runs: %s", strings.Join(info, ", "))
}

// ---------------------------------------------------------------------
// 3. A purge on A reaches B, and C after it was cut off from Redis.

// tcpGate forwards loopback connections to a target; cut closes the ones
// open and refuses new ones until reopen.
type tcpGate struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	open  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startGate(t *testing.T, target string) *tcpGate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &tcpGate{ln: ln, target: target, open: true, conns: map[net.Conn]struct{}{}}
	g.wg.Add(1)
	go g.accept()
	t.Cleanup(func() {
		ln.Close()
		g.cut()
		g.wg.Wait()
	})
	return g
}

func (g *tcpGate) url() string { return "redis://" + g.ln.Addr().String() }

func (g *tcpGate) accept() {
	defer g.wg.Done()
	for {
		in, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		open := g.open
		g.mu.Unlock()
		if !open {
			in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", g.target, time.Second)
		if err != nil {
			in.Close()
			continue
		}
		g.mu.Lock()
		if !g.open {
			g.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		g.conns[in], g.conns[out] = struct{}{}, struct{}{}
		g.mu.Unlock()
		g.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer g.wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			g.mu.Lock()
			delete(g.conns, dst)
			delete(g.conns, src)
			g.mu.Unlock()
		}
		go pipe(out, in)
		go pipe(in, out)
	}
}

// cut closes every forwarded connection and refuses new ones.
func (g *tcpGate) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = false
	for c := range g.conns {
		c.Close()
	}
}

func (g *tcpGate) reopen() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

func TestSharedPurgeReachesEveryInstance(t *testing.T) {
	t.Parallel()
	rd := startRedis(t)
	o := startOrigin(t)
	gate := startGate(t, rd.addr())
	a := startSharedCache(t, o, rd.url())
	b := startSharedCache(t, o, rd.url())
	c := startSharedCache(t, o, gate.url()) // C reaches Redis through the gate
	x := scripted(o, "shared-purge")
	path := x.path("")
	version := func(v int) *rfcScript {
		return sc(fmt.Sprintf("version %d of the shared object\n", v), "Cache-Control: public, max-age=300", fmt.Sprintf(`ETag: "v%d"`, v)).honor()
	}
	body := func(v int) string { return fmt.Sprintf("version %d of the shared object\n", v) }
	seen := func() int { return x.originLog(t, "").Count }
	purgeURL := "url=" + url.QueryEscape("http://"+sharedHost+path)

	// Purges made before an instance's follower has read the log's
	// position are not replayed to it: wait for the three followers.
	started := time.Now()
	waitFollowers(rd, 3)
	t.Logf("the 3 followers took their position in the purge log %v after the last instance was healthy",
		time.Since(started).Round(time.Millisecond))
	x.setScript(t, "", version(1))
	must(t, "A: GET v1", sget(a, path), 200)
	if missing := waitRedisKeys(rd, 3*time.Second, sharedEntryKey(path)); len(missing) > 0 {
		t.Fatalf("A's response not in Redis within 3s")
	}
	for _, y := range []struct {
		name string
		c    *cache
	}{{"B", b}, {"C", c}} {
		r := must(t, y.name+": GET v1", sget(y.c, path), 200)
		if !isSharedHit(r) || string(r.body) != body(1) {
			t.Fatalf("%s: %s, body %q; want a shared hit of version 1", y.name, xc(r), r.body)
		}
	}
	if n := seen(); n != 1 {
		t.Fatalf("origin saw %d requests before the purge; want 1", n)
	}

	// waitEmptied polls c until its in-process entries drop to zero: the
	// purge followed from the Redis stream has been applied.
	waitEmptied := func(t *testing.T, name string, c *cache, since time.Time) bool {
		t.Helper()
		st := c.waitStats(t, func(s stats) bool { return s.Entries == 0 })
		if st.Entries != 0 {
			t.Errorf("%s: %d entries 3s after the purge on A; want 0 (the purge was not applied)", name, st.Entries)
			return false
		}
		t.Logf("%s applied A's purge within %v", name, time.Since(since).Round(time.Millisecond))
		return true
	}

	t.Run("connected", func(t *testing.T) {
		x.setScript(t, "", version(2))
		at := time.Now()
		res := adminPurge(t, a, purgeURL)
		if res["purged_entries"] != 1 {
			t.Errorf("purge on A: %v; want purged_entries 1", res)
		}
		okB := waitEmptied(t, "B", b, at)
		okC := waitEmptied(t, "C", c, at)
		if !okB || !okC {
			return
		}
		before := seen()
		rb := must(t, "B: GET after the purge", sget(b, path), 200)
		if string(rb.body) != body(2) || rb.header.Get("X-Cache") == "HIT" {
			t.Errorf("B after the purge: %s, body %q; want the origin's version 2 (a miss)", xc(rb), rb.body)
		}
		rc := must(t, "C: GET after the purge", sget(c, path), 200)
		if string(rc.body) != body(2) {
			t.Errorf("C after the purge: %s, body %q; want version 2", xc(rc), rc.body)
		}
		t.Logf("after the purge: B %s; C %s; origin requests %d -> %d", xc(rb), xc(rc), before, seen())
		if seen() <= before {
			t.Errorf("origin saw no request after the purge")
		}
	})

	t.Run("C cut off", func(t *testing.T) {
		// C holds version 2 in-process.
		if r := must(t, "C: GET v2", sget(c, path), 200); string(r.body) != body(2) {
			t.Fatalf("C before the cut: body %q; want version 2", r.body)
		}
		x.setScript(t, "", version(3))
		gate.cut()
		time.Sleep(300 * time.Millisecond) // C's reads fail: its breaker opens
		at := time.Now()
		adminPurge(t, a, purgeURL)
		if !waitEmptied(t, "B", b, at) {
			return
		}
		if st := c.stats(t); st.Entries == 0 {
			t.Errorf("C dropped its entry while cut off from Redis: the gate did not cut it")
		}
		time.Sleep(time.Second) // cut off for a while after the purge
		gate.reopen()
		reopened := time.Now()
		if !waitEmptied(t, "C (reconnected)", c, reopened) {
			// Missing the purge is allowed only if C marked its
			// entries stale instead: the next GET must not be version 2.
			t.Logf("C kept %d entries after reconnecting", c.stats(t).Entries)
		}
		before := seen()
		r := must(t, "C: GET after reconnecting", sget(c, path), 200)
		if string(r.body) != body(3) {
			t.Errorf("C after reconnecting: %s, body %q; want version 3 (the purged version 2 served)", xc(r), r.body)
		}
		t.Logf("C after reconnecting: %s; origin requests %d -> %d", xc(r), before, seen())
	})

	t.Run("C cut off, log trimmed", func(t *testing.T) {
		// While C is cut off, the purge log loses the entry C has not
		// read: C cannot prove it missed nothing, and must mark what it
		// holds stale (revalidate) rather than serve it fresh.
		if r := must(t, "C: GET v3", sget(c, path), 200); string(r.body) != body(3) {
			t.Fatalf("C before the cut: body %q; want version 3", r.body)
		}
		x.setScript(t, "", version(4))
		gate.cut()
		time.Sleep(300 * time.Millisecond)
		adminPurge(t, a, purgeURL)
		rd.mustDo("XTRIM", sharedNS+"{log}s", "MAXLEN", "0")
		time.Sleep(500 * time.Millisecond)
		gate.reopen()
		// Let C reconnect and check its log position: poll C until it
		// stops answering version 3 fresh (bounded).
		deadline := time.Now().Add(3 * time.Second)
		var r result
		for {
			r = must(t, "C: GET after reconnecting", sget(c, path), 200)
			if string(r.body) != body(3) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if string(r.body) != body(4) {
			t.Errorf("C 3s after reconnecting to a trimmed log: %s, body %q; want version 4 (revalidated or refetched)", xc(r), r.body)
		} else {
			t.Logf("C after reconnecting to a trimmed log: %s", xc(r))
		}
	})
}

// ---------------------------------------------------------------------
// 4. Redis failing never fails a client.

// faultRun is what one burst of requests saw.
type faultRun struct {
	errors []string
	took   []time.Duration
}

func (f *faultRun) quantile(q float64) time.Duration {
	s := slices.Clone(f.took)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// burst sends n GETs through c, each new object twice in a row (a miss
// that asks Redis, then an in-process hit), spaced by pace, and calls
// during(i) before request i. Bodies are checked against the origin's.
func burst(c *cache, first, n int, pace time.Duration, during func(i int)) *faultRun {
	f := &faultRun{}
	const size = 1000
	for i := range n {
		if during != nil {
			during(i)
		}
		idx := first + i/2
		r := sget(c, objPath(idx, 1<<26, size))
		switch {
		case r.err != nil:
			f.errors = append(f.errors, fmt.Sprintf("request %d: %v", i, r.err))
		case r.status != 200:
			f.errors = append(f.errors, fmt.Sprintf("request %d: status %d (%s)", i, r.status, xc(r)))
		case !bytes.Equal(r.body, objBody(idx, size)):
			f.errors = append(f.errors, fmt.Sprintf("request %d: wrong body of %d bytes (%s)", i, len(r.body), xc(r)))
		}
		f.took = append(f.took, r.took)
		time.Sleep(pace)
	}
	return f
}

func TestSharedFaults(t *testing.T) {
	rd := newRedis(t) // not started: Redis is down when the instances start
	o := startOrigin(t)
	a := startSharedCache(t, o, rd.url())
	b := startSharedCache(t, o, rd.url())

	// The origin's own latency for the same requests, for the budget.
	var direct faultRun
	for i := range 100 {
		r := do("GET", o.url+objPath(1<<20+i, 1<<26, 1000))
		if r.err != nil || r.status != 200 {
			t.Fatalf("direct origin GET: %v %d", r.err, r.status)
		}
		direct.took = append(direct.took, r.took)
	}
	originMax := direct.quantile(1)
	budget := originMax + sharedTimeout + 100*time.Millisecond
	t.Logf("origin direct: p50 %v, max %v; budget per request through dedupcache: %v (origin max + shared.timeout %v + 100ms)",
		direct.quantile(0.5), originMax, budget, sharedTimeout)

	next := 0 // the next unused object index
	check := func(t *testing.T, name string, f *faultRun) {
		t.Helper()
		if len(f.errors) > 0 {
			t.Errorf("%s: %d client errors of %d requests; want 0: %s", name, len(f.errors), len(f.took), strings.Join(f.errors, "; "))
		}
		if m := f.quantile(1); m > budget {
			t.Errorf("%s: slowest request took %v; want at most %v", name, m, budget)
		}
		t.Logf("%s: %d requests, %d errors, latency p50 %v p99 %v max %v",
			name, len(f.took), len(f.errors), f.quantile(0.5), f.quantile(0.99), f.quantile(1))
	}
	// recovered polls until a response fetched through A is written to
	// Redis and is a shared hit on B: hits from Redis are back.
	recovered := func(t *testing.T, since time.Time) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for tries := 1; ; tries++ {
			p := objPath(next, 1<<26, 1000)
			next++
			must(t, "A: GET "+p, sget(a, p), 200)
			written := len(waitRedisKeys(rd, 300*time.Millisecond, sharedEntryKey(p))) == 0
			var r result
			if written {
				// B may not have probed Redis back yet: then it misses
				// and the next object is tried.
				r = must(t, "B: GET "+p, sget(b, p), 200)
				if isSharedHit(r) {
					t.Logf("shared hits back %v after recovery (%d tries)", time.Since(since).Round(time.Millisecond), tries)
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no shared hit 3s after recovery (%d tries): A's last write in Redis: %v; B's last answer: %s",
					tries, written, xc(r))
			}
		}
	}
	run := func(t *testing.T, name string, pace time.Duration, during func(i int)) {
		t.Helper()
		f := burst(a, next, 100, pace, during)
		next += 50
		check(t, name, f)
	}

	t.Run("down at start", func(t *testing.T) {
		run(t, "redis down", 5*time.Millisecond, nil)
		r := do("GET", a.adminURL+"/readyz")
		if r.err != nil || r.status != 200 || !strings.Contains(string(r.body), "shared tier unreachable") {
			t.Errorf("A /readyz with Redis down: %v %d %q; want 200 naming the unreachable shared tier", r.err, r.status, r.body)
		}
		if sa := sharedStatsOf(t, a); sa.Healthy {
			t.Errorf("A /api/stats with Redis down: shared.healthy true")
		}
		checkMetrics(t, "A (Redis down)", a, map[string]float64{"dedupcache_shared_up": 0})
		rd.mustStart()
		recovered(t, time.Now())
		// The followers take their position in the log only now (see
		// TestSharedPurgeRightAfterStart); wait for it, so that the
		// restart below is one they can detect.
		waitFollowers(rd, 2)
	})
	t.Run("killed", func(t *testing.T) {
		run(t, "redis killed at request 30", 5*time.Millisecond, func(i int) {
			if i == 30 {
				rd.kill()
			}
		})
	})
	t.Run("restarted", func(t *testing.T) {
		var at time.Time
		run(t, "redis restarted (empty) at request 30", 5*time.Millisecond, func(i int) {
			if i == 30 {
				rd.mustStart()
				at = time.Now()
			}
		})
		recovered(t, at)
		// Redis came back empty: the purge log is another one, so each
		// instance must mark what it holds stale (it cannot prove it
		// missed no purge).
		for _, x := range []struct {
			name string
			c    *cache
		}{{"A", a}, {"B", b}} {
			deadline := time.Now().Add(3 * time.Second)
			for sharedStatsOf(t, x.c).PurgesMissed < 1 && time.Now().Before(deadline) {
				time.Sleep(pollEvery)
			}
			if st := sharedStatsOf(t, x.c); st.PurgesMissed < 1 {
				t.Errorf("%s: purges_missed %d 3s after Redis restarted empty; want >= 1 (entries marked stale)", x.name, st.PurgesMissed)
			}
		}
	})
	t.Run("paused", func(t *testing.T) {
		var at time.Time
		// 100 requests 20ms apart span the 2s pause.
		run(t, "CLIENT PAUSE 2000 at request 10", 20*time.Millisecond, func(i int) {
			if i == 10 {
				rd.mustDo("CLIENT", "PAUSE", "2000")
				at = time.Now().Add(2 * time.Second)
			}
		})
		recovered(t, at)
	})
	t.Run("full", func(t *testing.T) {
		rd.mustDo("CONFIG", "SET", "maxmemory-policy", "noeviction")
		rd.mustDo("CONFIG", "SET", "maxmemory", "1mb")
		// Fill it up if 1 MiB is not reached yet.
		junk := strings.Repeat("x", 64<<10)
		full := false
		for i := 0; i < 64 && !full; i++ {
			_, err := rd.do("SET", fmt.Sprintf("junk:%d", i), junk)
			full = err != nil && strings.Contains(err.Error(), "OOM")
		}
		if !full {
			t.Fatalf("Redis still accepts writes with maxmemory 1mb")
		}
		keysBefore := len(rd.keys(sharedNS + "*"))
		first := next
		run(t, "redis full (maxmemory 1mb, noeviction)", 5*time.Millisecond, nil)
		if p := objPath(first, 1<<26, 1000); rd.exists(sharedEntryKey(p)) {
			t.Errorf("an entry was written while Redis refused writes (%s)", p)
		}
		t.Logf("namespace keys: %d before, %d after the burst (writes refused with OOM)", keysBefore, len(rd.keys(sharedNS+"*")))
		rd.mustDo("CONFIG", "SET", "maxmemory", "0")
		for _, k := range rd.keys("junk:*") {
			rd.mustDo("DEL", k)
		}
		recovered(t, time.Now())
	})
	for _, x := range []struct {
		name string
		c    *cache
	}{{"A", a}, {"B", b}} {
		if x.c.exited() {
			t.Errorf("%s exited during the faults: %v", x.name, x.c.err)
			continue
		}
		t.Logf("%s shared figures after the faults: %+v", x.name, sharedStatsOf(t, x.c))
	}
}

// ---------------------------------------------------------------------
// 5. The shared tier in /api/stats, /metrics and /readyz.

// sharedFigures is the "shared" object of /api/stats.
type sharedFigures struct {
	Healthy          bool    `json:"healthy"`
	Hits             int64   `json:"hits"`
	Misses           int64   `json:"misses"`
	Errors           int64   `json:"errors"`
	Timeouts         int64   `json:"timeouts"`
	BodiesFetched    int64   `json:"bodies_fetched"`
	BodiesLocal      int64   `json:"bodies_local"`
	PutsWritten      int64   `json:"puts_written"`
	PutsDropped      int64   `json:"puts_dropped"`
	BytesUploaded    int64   `json:"bytes_uploaded"`
	BytesNotUploaded int64   `json:"bytes_not_uploaded"`
	PurgesSent       int64   `json:"purges_sent"`
	PurgesApplied    int64   `json:"purges_applied"`
	PurgesMissed     int64   `json:"purges_missed"`
	LagSeconds       float64 `json:"purge_log_lag_seconds"`
}

// sharedStatsOf returns c's /api/stats "shared" object; it fails the test
// when there is none.
func sharedStatsOf(t *testing.T, c *cache) sharedFigures {
	t.Helper()
	var doc struct {
		Shared *sharedFigures `json:"shared"`
	}
	getJSON(t, c.adminURL+"/api/stats", &doc)
	if doc.Shared == nil {
		t.Fatalf("%s/api/stats has no \"shared\" object", c.adminURL)
	}
	return *doc.Shared
}

// metricValue returns the value of one series ("name" or
// `name{label="v"}`) in a Prometheus text exposition.
func metricValue(text, series string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// checkMetrics fails the test for each series of want that c's /metrics
// lacks or gives another value.
func checkMetrics(t *testing.T, name string, c *cache, want map[string]float64) {
	t.Helper()
	r := do("GET", c.adminURL+"/metrics")
	if r.err != nil || r.status != 200 {
		t.Fatalf("%s: GET /metrics: %v %d", name, r.err, r.status)
	}
	for series, w := range want {
		if v, ok := metricValue(string(r.body), series); !ok || v != w {
			t.Errorf("%s /metrics: %s = %v (present: %v); want %v", name, series, v, ok, w)
		}
	}
}

func TestSharedStatsAndMetrics(t *testing.T) {
	t.Parallel()
	rd := startRedis(t)
	o := startOrigin(t)
	a := startSharedCache(t, o, rd.url())
	b := startSharedCache(t, o, rd.url())
	waitFollowers(rd, 2)
	const size = 2000
	path := objPath(3, 1000, size)
	must(t, "A: GET", sget(a, path), 200)
	if missing := waitRedisKeys(rd, 3*time.Second, sharedEntryKey(path)); len(missing) > 0 {
		t.Fatalf("A's response not in Redis within 3s")
	}
	if r := must(t, "B: GET", sget(b, path), 200); !isSharedHit(r) {
		t.Fatalf("B: %s; want a shared hit", xc(r))
	}
	adminPurge(t, a, "url="+url.QueryEscape("http://"+sharedHost+path))
	if st := b.waitStats(t, func(s stats) bool { return s.Entries == 0 }); st.Entries != 0 {
		t.Fatalf("B did not apply A's purge within 3s")
	}

	sa, sb := sharedStatsOf(t, a), sharedStatsOf(t, b)
	t.Logf("A shared: %+v", sa)
	t.Logf("B shared: %+v", sb)
	if !sa.Healthy || sa.Misses < 1 || sa.PutsWritten != 1 || sa.BytesUploaded != size || sa.PurgesSent != 1 {
		t.Errorf("A's /api/stats shared: %+v; want healthy, misses >= 1, puts_written 1, bytes_uploaded %d, purges_sent 1", sa, size)
	}
	if !sb.Healthy || sb.Hits != 1 || sb.BodiesFetched+sb.BodiesLocal != 1 || sb.PurgesApplied != 1 || sb.PurgesMissed != 0 {
		t.Errorf("B's /api/stats shared: %+v; want healthy, hits 1, one body fetched, purges_applied 1, purges_missed 0", sb)
	}
	checkMetrics(t, "A", a, map[string]float64{
		"dedupcache_shared_up":                                1,
		`dedupcache_shared_puts_total{outcome="written"}`:     1,
		`dedupcache_shared_body_bytes_total{kind="uploaded"}`: size,
		`dedupcache_shared_purges_total{kind="sent"}`:         1,
	})
	checkMetrics(t, "B", b, map[string]float64{
		"dedupcache_shared_up":                           1,
		`dedupcache_shared_reads_total{result="hit"}`:    1,
		`dedupcache_shared_purges_total{kind="applied"}`: 1,
		`dedupcache_shared_purges_total{kind="missed"}`:  0,
	})
	if r := do("GET", b.adminURL+"/readyz"); r.err != nil || r.status != 200 || string(r.body) != "ready\n" {
		t.Errorf("B /readyz with Redis up: %v %d %q; want 200 \"ready\"", r.err, r.status, r.body)
	}
}

// TestSharedPurgeRightAfterStart: a purge made on A right after B started,
// before B's purge-log follower has taken its place in the log (it does so
// once Redis answers, up to Config.ProbeInterval after start), still
// reaches B: the follower, taking its place, has every entry B stored
// before then revalidated, so B never serves the purged response fresh.
func TestSharedPurgeRightAfterStart(t *testing.T) {
	t.Parallel()
	rd := startRedis(t)
	o := startOrigin(t)
	a := startSharedCache(t, o, rd.url())
	b := startSharedCache(t, o, rd.url())
	start := time.Now()
	x := scripted(o, "shared-purge-early")
	path := x.path("")
	x.setScript(t, "", sc("version 1\n", "Cache-Control: public, max-age=300"))
	must(t, "A: GET", sget(a, path), 200)
	if missing := waitRedisKeys(rd, 3*time.Second, sharedEntryKey(path)); len(missing) > 0 {
		t.Fatalf("A's response not in Redis within 3s")
	}
	must(t, "B: GET", sget(b, path), 200) // B holds version 1
	x.setScript(t, "", sc("version 2\n", "Cache-Control: public, max-age=300"))
	adminPurge(t, a, "url="+url.QueryEscape("http://"+sharedHost+path))
	t.Logf("purged on A %v after B was healthy", time.Since(start).Round(time.Millisecond))
	st := b.waitStats(t, func(s stats) bool { return s.Entries == 0 })
	r := must(t, "B: GET after the purge", sget(b, path), 200)
	if string(r.body) != "version 2\n" {
		t.Errorf("B after A's purge: %s, body %q, %d entries 3s after the purge; want version 2", xc(r), r.body, st.Entries)
	}
}

// getJSONMap reads a JSON object from url.
func getJSONMap(t *testing.T, url string) map[string]any {
	t.Helper()
	var m map[string]any
	getJSON(t, url, &m)
	return m
}
