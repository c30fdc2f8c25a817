package redistier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTier returns a Tier on s, waits (at most 5 s) until it is healthy and
// closes it at the end of the test.
func newTier(tb testing.TB, s *server, cfg Config) *Tier {
	tb.Helper()
	cfg.URL = s.url()
	if cfg.Timeout == 0 {
		// Generous: these tests are not about deadlines (TestFaults and the
		// failover tests set their own), and go test runs packages in
		// parallel on two cores, where a 50ms call can miss its deadline.
		cfg.Timeout = testTimeout
	}
	tr, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tr.Close() })
	waitFor(tb, 5*time.Second, "tier healthy", tr.Healthy)
	return tr
}

// testTimeout is Config.Timeout in tests that do not set one.
const testTimeout = time.Second

func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flush waits until every queued put of tr was handled.
func flush(tb testing.TB, tr *Tier) {
	tb.Helper()
	waitFor(tb, 5*time.Second, "puts written", func() bool {
		s := tr.Stats()
		return s.PutsWritten+s.PutsRefused+s.PutsFailed >= s.PutsQueued && len(tr.queue) == 0
	})
	// The last dequeued put may still be in flight.
	waitFor(tb, 5*time.Second, "puts written", func() bool {
		s := tr.Stats()
		return s.PutsWritten+s.PutsRefused+s.PutsFailed+s.PutsSkipped >= s.PutsQueued
	})
}

func testRecord(tags ...string) Record {
	return Record{
		Status: 200, Header: []byte("Content-Type: text/plain\r\nETag: \"x\"\r\n"),
		Stored: time.Now().UnixNano(), Date: time.Now().Unix(), Flags: 5,
		Lifetime: 60, InitialAge: 2, StaleRevalidate: 30, StaleError: -1, Tags: tags,
	}
}

// put is Get (for the Gen) then Put, then waits for the write.
func put(tb testing.TB, tr *Tier, key string, rec Record, body []byte) {
	tb.Helper()
	_, _, gen, _ := tr.Get(context.Background(), key, nil)
	tr.Put(key, gen, "", nil, rec, body, time.Minute)
	flush(tb, tr)
}

func body(n int, seed string) []byte {
	return bytes.Repeat([]byte(seed), n/len(seed)+1)[:n]
}

func TestRoundTrip(t *testing.T) {
	s := startServer(t)
	tr := newTier(t, s, Config{})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		size int
	}{{"empty", 0}, {"inline", 100}, {"body key", 10000}} {
		t.Run(tc.name, func(t *testing.T) {
			key := "example.com /" + tc.name
			b := body(tc.size, tc.name)
			want := testRecord("t1", "t2")
			if _, _, _, ok := tr.Get(ctx, key, nil); ok {
				t.Fatal("hit before put")
			}
			put(t, tr, key, want, b)
			rec, got, _, ok := tr.Get(ctx, key, nil)
			if !ok {
				t.Fatalf("miss after put; stats %+v", tr.Stats())
			}
			want.BodyHash, want.BodyLen = sha256.Sum256(b), int64(len(b))
			if fmt.Sprint(rec) != fmt.Sprint(want) {
				t.Errorf("record\n got %+v\nwant %+v", rec, want)
			}
			if !bytes.Equal(got, b) {
				t.Errorf("body: got %d bytes; want %d", len(got), len(b))
			}
		})
	}
	if n := s.mustDo("KEYS", "dc:1:b:*"); strings.Count(n, "\n")+1 != 1 || n == "" {
		t.Errorf("body keys: got %q; want exactly one (the large body)", n)
	}
}

func TestVaryNames(t *testing.T) {
	s := startServer(t)
	tr := newTier(t, s, Config{})
	ctx := context.Background()
	primary := "example.com /v"
	if _, ok := tr.VaryNames(ctx, primary); ok {
		t.Fatal("vary names before any put")
	}
	key := primary + "\x00gzip"
	_, _, gen, _ := tr.Get(ctx, key, nil)
	tr.Put(key, gen, primary, []string{"accept-encoding", "accept-language"}, testRecord(), []byte("x"), time.Minute)
	flush(t, tr)
	names, ok := tr.VaryNames(ctx, primary)
	if !ok || strings.Join(names, ",") != "accept-encoding,accept-language" {
		t.Errorf("VaryNames: got %q, %v", names, ok)
	}
	if _, _, _, ok := tr.Get(ctx, key, nil); !ok {
		t.Error("variant: miss after put")
	}
	if err := tr.Purge(ctx, Purge{Keys: []string{primary}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.VaryNames(ctx, primary); ok {
		t.Error("vary names survive a purge of the primary")
	}
	if _, _, _, ok := tr.Get(ctx, key, nil); ok {
		t.Error("variant survives a purge of the primary")
	}
}

// TestSharedBodies: two instances put 100 keys over 10 bodies; Redis holds
// 10 body keys, and the second instance uploads nothing.
func TestSharedBodies(t *testing.T) {
	s := startServer(t)
	a := newTier(t, s, Config{})
	b := newTier(t, s, Config{})
	ctx := context.Background()
	bodies := make([][]byte, 10)
	for i := range bodies {
		bodies[i] = body(8192, "body"+strconv.Itoa(i))
	}
	for i := range 100 {
		tr := a
		if i >= 50 {
			tr = b
		}
		put(t, tr, "example.com /k"+strconv.Itoa(i), testRecord(), bodies[i%10])
	}
	keys := s.mustDo("KEYS", "dc:1:b:*")
	if n := len(strings.Fields(keys)); n != 10 {
		t.Errorf("body keys in Redis: got %d; want 10", n)
	}
	sa, sb := a.Stats(), b.Stats()
	if sa.BytesUploaded != 10*8192 || sa.BytesNotUploaded != 40*8192 {
		t.Errorf("instance A uploaded %d, not %d; want %d, %d", sa.BytesUploaded, sa.BytesNotUploaded, 10*8192, 40*8192)
	}
	if sb.BytesUploaded != 0 || sb.BytesNotUploaded != 50*8192 {
		t.Errorf("instance B uploaded %d, not %d; want 0, %d", sb.BytesUploaded, sb.BytesNotUploaded, 50*8192)
	}
	var total int
	for _, k := range strings.Fields(keys) {
		n, _ := strconv.Atoi(s.mustDo("MEMORY", "USAGE", k))
		total += n
	}
	t.Logf("10 body keys hold %d B (MEMORY USAGE) for 100 entries; DBSIZE %s", total, s.mustDo("DBSIZE"))
	// Every entry reads back from the other instance.
	for i := range 100 {
		_, got, _, ok := b.Get(ctx, "example.com /k"+strconv.Itoa(i), nil)
		if !ok || !bytes.Equal(got, bodies[i%10]) {
			t.Fatalf("key %d: ok=%v, body %d bytes", i, ok, len(got))
		}
	}
	// have: a body the caller holds is not downloaded.
	before := b.Stats()
	held := map[[32]byte][]byte{}
	for _, x := range bodies {
		held[sha256.Sum256(x)] = x
	}
	for i := range 100 {
		_, got, _, ok := b.Get(ctx, "example.com /k"+strconv.Itoa(i), func(sum [32]byte) []byte { return held[sum] })
		if !ok || !bytes.Equal(got, bodies[i%10]) {
			t.Fatalf("key %d with have: ok=%v", i, ok)
		}
	}
	after := b.Stats()
	if after.BodiesFetched != before.BodiesFetched || after.BodiesLocal-before.BodiesLocal != 100 {
		t.Errorf("with have: fetched %d more, local %d more; want 0, 100",
			after.BodiesFetched-before.BodiesFetched, after.BodiesLocal-before.BodiesLocal)
	}
}

func TestCorruptOrMissingBody(t *testing.T) {
	s := startServer(t)
	tr := newTier(t, s, Config{})
	ctx := context.Background()
	b := body(4096, "abc")
	sum := sha256.Sum256(b)
	bk := tr.bodyKey(sum)

	put(t, tr, "h /corrupt", testRecord(), b)
	s.mustDo("SET", bk, string(body(4096, "xyz")), "KEEPTTL")
	if _, _, _, ok := tr.Get(ctx, "h /corrupt", nil); ok {
		t.Error("corrupt body served")
	}
	s.mustDo("SET", bk, "short", "KEEPTTL")
	if _, _, _, ok := tr.Get(ctx, "h /corrupt", nil); ok {
		t.Error("truncated body served")
	}
	if tr.Stats().Corrupt != 2 {
		t.Errorf("Corrupt: got %d; want 2", tr.Stats().Corrupt)
	}

	s.mustDo("DEL", bk)
	put(t, tr, "h /gone", testRecord(), b)
	if _, _, _, ok := tr.Get(ctx, "h /gone", nil); !ok {
		t.Fatal("miss after put")
	}
	s.mustDo("DEL", bk)
	if _, _, _, ok := tr.Get(ctx, "h /gone", nil); ok {
		t.Error("entry served without its body")
	}
	if tr.Stats().Dangling != 1 {
		t.Errorf("Dangling: got %d; want 1", tr.Stats().Dangling)
	}

	// Leases: the body outlives the entry it was written for.
	put(t, tr, "h /lease", testRecord(), b)
	k := tr.keysOf("h /lease")
	et, _ := strconv.Atoi(s.mustDo("PTTL", k.entry))
	bt, _ := strconv.Atoi(s.mustDo("PTTL", bk))
	if et <= 0 || bt < et+int(leaseMargin.Milliseconds())-1000 {
		t.Errorf("PTTL entry %d, body %d; want the body to outlive the entry by %v", et, bt, leaseMargin)
	}
	// A corrupt entry record is a miss too.
	s.mustDo("SET", k.entry, "DCe1garbage", "KEEPTTL")
	if _, _, _, ok := tr.Get(ctx, "h /lease", nil); ok {
		t.Error("garbage entry served")
	}
}

func TestPurge(t *testing.T) {
	s := startServer(t)
	tr := newTier(t, s, Config{})
	ctx := context.Background()
	b := body(1000, "p")
	keys := []string{"a.com /api/1", "b.com /api/2", "a.com /web/1", "a.com /tagged"}
	fill := func() {
		// A prefix purge bans what was written in its millisecond too
		// (banned: at >= since): refill in a later one.
		time.Sleep(2 * time.Millisecond)
		for _, k := range keys {
			put(t, tr, k, testRecord("tag-"+k[len(k)-1:]), b)
		}
	}
	hits := func() string {
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
		{"variant key reaches primary", Purge{Keys: []string{"a.com /web/1\x00gzip"}}, "a.com /api/1,b.com /api/2,a.com /tagged"},
		{"prefix on every host", Purge{Prefixes: []string{"/api"}}, "a.com /web/1,a.com /tagged"},
		{"tag", Purge{Tags: []string{"tag-1"}}, "b.com /api/2,a.com /tagged"},
		{"all", Purge{All: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fill()
			if got := hits(); got != strings.Join(keys, ",") {
				t.Fatalf("before: hits %q", got)
			}
			if err := tr.Purge(ctx, tc.p); err != nil {
				t.Fatal(err)
			}
			if got := hits(); got != tc.want {
				t.Errorf("after: hits %q; want %q", got, tc.want)
			}
		})
	}
}

// TestPurgeRacesPut: a purge between the Get that missed and the Put of the
// response fetched meanwhile makes the put a no-op, for each kind of purge.
func TestPurgeRacesPut(t *testing.T) {
	s := startServer(t)
	tr := newTier(t, s, Config{})
	ctx := context.Background()
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
					put(t, tr, "h /race", testRecord("race"), []byte("old"))
				}
				_, _, gen, _ := tr.Get(ctx, "h /race", nil) // the miss; the fetch begins
				time.Sleep(2 * time.Millisecond)
				if err := tr.Purge(ctx, tc.p); err != nil {
					t.Fatal(err)
				}
				refused := tr.Stats().PutsRefused
				tr.Put("h /race", gen, "", nil, testRecord("race"), []byte("pre-purge response"), time.Minute)
				flush(t, tr)
				if _, got, _, ok := tr.Get(ctx, "h /race", nil); ok {
					t.Errorf("served %q after the purge", got)
				}
				if tr.Stats().PutsRefused != refused+1 {
					t.Errorf("PutsRefused: got %d; want %d", tr.Stats().PutsRefused, refused+1)
				}
				// A fill that begins after the purge is stored.
				put(t, tr, "h /race", testRecord("race"), []byte("new"))
				if _, got, _, ok := tr.Get(ctx, "h /race", nil); !ok || string(got) != "new" {
					t.Errorf("after the purge: got %q, %v; want \"new\"", got, ok)
				}
				time.Sleep(2 * time.Millisecond) // prefix and tag marks are ms
			})
		}
	}
}

// goroutines returns how many goroutines run now, after letting exiting
// ones finish.
func goroutines() int {
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	return runtime.NumGoroutine()
}

// checkNoLeak fails if, within 3 s, goroutines do not return to base.
func checkNoLeak(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := goroutines()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d after Close; %d before New\n%s", n, base, buf)
		}
	}
}

func TestCloseStopsGoroutines(t *testing.T) {
	s := startServer(t)
	base := goroutines()
	tr, err := New(context.Background(), Config{URL: s.url()})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "healthy", tr.Healthy)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); tr.Follow(context.Background(), func(Purge) {}) }()
	put(t, tr, "h /x", testRecord(), body(5000, "x"))
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	tr.Close()
	wg.Wait()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	checkNoLeak(t, base)
}
