package redistier

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"dedupcache/internal/redistest"
)

// slack is what a call may take beyond Config.Timeout on this machine
// under the race detector.
const slack = 150 * time.Millisecond

// hammer calls every method of tr for d and fails if one takes longer than
// Timeout+slack (Purge: its ctx+slack); it returns the Get hits.
func hammer(t *testing.T, tr *Tier, d time.Duration) (hits int) {
	t.Helper()
	limit := tr.cfg.Timeout + slack
	timed := func(what string, f func()) {
		start := time.Now()
		f()
		if el := time.Since(start); el > limit {
			t.Errorf("%s took %v; want at most %v", what, el, limit)
		}
	}
	for i, end := 0, time.Now().Add(d); time.Now().Before(end); i++ {
		key := "h /fault" + strconv.Itoa(i%20)
		timed("Get", func() {
			_, _, gen, ok := tr.Get(context.Background(), key, nil)
			if ok {
				hits++
			}
			tr.Put(key, gen, "", nil, testRecord("f"), body(2000, key), time.Minute)
		})
		timed("VaryNames", func() { tr.VaryNames(context.Background(), key) })
		if i%10 == 0 {
			timed("Purge", func() {
				ctx, cancel := context.WithTimeout(context.Background(), tr.cfg.Timeout)
				defer cancel()
				err := tr.Purge(ctx, Purge{Keys: []string{"h /other"}})
				if err != nil && !errors.Is(err, ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
					t.Logf("Purge: %v", err) // reported to the caller, as documented
				}
			})
		}
		time.Sleep(2 * time.Millisecond)
	}
	return hits
}

// TestFaults: Redis absent at start, killed, restarted, paused and full.
// Every call returns within its deadline, nothing but the booleans and
// Purge's error reaches the caller, the Tier recovers, and Close leaves no
// goroutine behind.
func TestFaults(t *testing.T) {
	base := goroutines()
	port := redistest.FreePort(t)
	s := &server{tb: t, bin: redistest.Binary(t), dir: t.TempDir(), port: port}
	t.Cleanup(s.stop)
	tr, err := New(context.Background(), Config{URL: s.url(), ProbeInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(context.Background())
	followDone := make(chan struct{})
	go func() { defer close(followDone); tr.Follow(fctx, func(Purge) {}) }()
	ctx := context.Background()
	recovered := func(t *testing.T) {
		t.Helper()
		waitFor(t, 5*time.Second, "healthy", tr.Healthy)
		deadline := time.Now().Add(5 * time.Second)
		for {
			put(t, tr, "h /ok", testRecord(), body(3000, "ok"))
			if _, _, _, ok := tr.Get(ctx, "h /ok", nil); ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no hit after recovery; stats %+v", tr.Stats())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Run("down at start", func(t *testing.T) {
		if tr.Healthy() {
			t.Fatal("healthy without a server")
		}
		if hits := hammer(t, tr, 300*time.Millisecond); hits != 0 {
			t.Errorf("%d hits without a server", hits)
		}
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		recovered(t)
	})
	t.Run("killed", func(t *testing.T) {
		s.kill()
		if hits := hammer(t, tr, 500*time.Millisecond); hits != 0 {
			t.Errorf("%d hits with the server dead", hits)
		}
		if tr.Healthy() || tr.Stats().BreakerTrips == 0 {
			t.Errorf("breaker closed with the server dead: %+v", tr.Stats())
		}
	})
	t.Run("restarted", func(t *testing.T) {
		s.restart()
		recovered(t)
	})
	t.Run("paused", func(t *testing.T) {
		s.mustDo("CLIENT", "PAUSE", "800", "ALL")
		hammer(t, tr, time.Second)
		st := tr.Stats()
		if st.Timeouts == 0 {
			t.Errorf("no timeouts counted during CLIENT PAUSE: %+v", st)
		}
		recovered(t)
	})
	t.Run("full", func(t *testing.T) {
		// Above 1 MB used, noeviction: every write is refused with OOM.
		for i := range 8 {
			s.mustDo("SET", "filler"+strconv.Itoa(i), string(body(200_000, "f")))
		}
		s.mustDo("CONFIG", "SET", "maxmemory-policy", "noeviction")
		s.mustDo("CONFIG", "SET", "maxmemory", "1mb")
		failed := tr.Stats().PutsFailed
		hits := hammer(t, tr, 500*time.Millisecond)
		st := tr.Stats()
		if st.PutsFailed == failed {
			t.Errorf("no put failed with Redis full: %+v", st)
		}
		if !tr.Healthy() {
			t.Error("breaker opened on OOM replies: reads still work")
		}
		if _, _, _, ok := tr.Get(ctx, "h /ok", nil); !ok {
			t.Error("an entry stored before Redis filled up is not served")
		}
		t.Logf("full: %d hits; puts failed %d", hits, st.PutsFailed-failed)
		s.mustDo("CONFIG", "SET", "maxmemory", "0")
		recovered(t)
	})

	fcancel()
	<-followDone
	start := time.Now()
	tr.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	t.Logf("stats: %+v", tr.Stats())
	s.stop() // its Wait goroutine is the test's
	checkNoLeak(t, base)
}
