package cachestore

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"dedupcache/dedupbody"
)

// fixture is a Store over a body store and a header store that records every
// OnRelease call.
type fixture struct {
	t               *testing.T
	s               *Store
	bodies, headers *dedupbody.Store
	stall           chan struct{} // see stallPolicy
	staller         *Entry

	mu       sync.Mutex
	released map[*Entry][]ReleaseCause
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	return newFixtureWith(t, cfg, dedupbody.New(dedupbody.Config{}))
}

// newFixtureWith is newFixture with the given body store.
func newFixtureWith(t *testing.T, cfg Config, bodies *dedupbody.Store) *fixture {
	t.Helper()
	f := &fixture{
		t:        t,
		bodies:   bodies,
		headers:  dedupbody.New(dedupbody.Config{}),
		released: map[*Entry][]ReleaseCause{},
	}
	cfg.Stores = []*dedupbody.Store{f.bodies, f.headers}
	cfg.OnRelease = f.onRelease
	cfg.Hash = func(e *Entry) uint64 { return hash(e.Key) }
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.s = s
	return f
}

func (f *fixture) onRelease(e *Entry, c ReleaseCause) {
	f.mu.Lock()
	f.released[e] = append(f.released[e], c)
	stall := f.stall
	staller := f.staller
	f.mu.Unlock()
	if e == staller {
		<-stall // holds ristretto's goroutine until unstall
	}
}

// stallPolicy blocks ristretto's goroutine: it sets an entry too big for the
// budget, whose rejection calls OnRelease there, and OnRelease waits. New
// Sets then stay in ristretto's buffer until unstall. Must run in a bubble.
func (f *fixture) stallPolicy() {
	f.t.Helper()
	e := f.entry("staller", bytes.Repeat([]byte("s"), int(f.s.MaxMemory())+1), "h")
	f.mu.Lock()
	f.stall = make(chan struct{})
	f.staller = e
	f.mu.Unlock()
	if !f.s.Set(hash("staller"), e, 0) {
		f.t.Fatalf("Set(staller): got false; want true")
	}
	synctest.Wait() // ristretto's goroutine is now blocked in onRelease
	if got := f.causes(e); len(got) != 1 || got[0] != Rejected {
		f.t.Fatalf("staller: got releases %v; want [rejected]", got)
	}
}

func (f *fixture) unstall() {
	f.mu.Lock()
	close(f.stall)
	f.mu.Unlock()
}

// entry builds a fresh Entry with refs to body and header.
func (f *fixture) entry(key string, body []byte, header string) *Entry {
	return &Entry{
		Key:    key,
		Body:   f.bodies.Put(bytes.Clone(body), dedupbody.Sum(body), nil),
		Header: f.headers.Put([]byte(header), dedupbody.Sum([]byte(header)), nil),
	}
}

func (f *fixture) causes(e *Entry) []ReleaseCause {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ReleaseCause(nil), f.released[e]...)
}

// checkReleased verifies that e was released exactly once, with cause want,
// and that Entry.Cause agrees.
func (f *fixture) checkReleased(e *Entry, want ReleaseCause) {
	f.t.Helper()
	got := f.causes(e)
	if len(got) != 1 || got[0] != want {
		f.t.Errorf("%s: got OnRelease causes %v; want [%v]", e.Key, got, want)
	}
	if e.Cause() != want {
		f.t.Errorf("%s: got Cause %v; want %v", e.Key, e.Cause(), want)
	}
}

// checkLive verifies that e was not released.
func (f *fixture) checkLive(e *Entry) {
	f.t.Helper()
	if got := f.causes(e); len(got) != 0 || e.Cause() != 0 {
		f.t.Errorf("%s: got released %v (Cause %v); want still stored", e.Key, got, e.Cause())
	}
}

// checkRefs verifies the live references in both body stores.
func (f *fixture) checkRefs(want int64) {
	f.t.Helper()
	b, h := f.bodies.Stats(), f.headers.Stats()
	if b.Refs != want || h.Refs != want {
		f.t.Errorf("refs: got body %d, header %d; want %d each", b.Refs, h.Refs, want)
	}
}

// closeAndCheck closes the store and verifies that everything was released
// exactly once and nothing is left anywhere.
func (f *fixture) closeAndCheck() {
	f.t.Helper()
	f.s.Close()
	for _, st := range []*dedupbody.Store{f.bodies, f.headers} {
		s := st.Stats()
		if s.Bodies != 0 || s.Bytes != 0 || s.Refs != 0 || s.UnchargedBytes != 0 || s.BadReleases != 0 {
			f.t.Errorf("body store after Close: got %+v; want empty, no bad releases", s)
		}
	}
	s := f.s.Stats()
	if s.Entries != 0 || s.WithBody != 0 || s.EntryBytes != 0 || s.DoubleReleases != 0 {
		f.t.Errorf("after Close: got Entries %d, WithBody %d, EntryBytes %d, DoubleReleases %d; want 0, 0, 0, 0",
			s.Entries, s.WithBody, s.EntryBytes, s.DoubleReleases)
	}
	var total int64
	for _, n := range s.Released {
		total += n
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	calls := 0
	for e, cs := range f.released {
		calls += len(cs)
		if len(cs) != 1 {
			f.t.Errorf("%s: got %d OnRelease calls %v; want 1", e.Key, len(cs), cs)
		}
	}
	if int64(calls) != s.Sets || total != s.Sets {
		f.t.Errorf("releases: got %d OnRelease calls, %d counted; want %d (one per Set)", calls, total, s.Sets)
	}
}

func hash(key string) uint64 { return dedupbody.Sum([]byte(key)) }

func body(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

func TestConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Errorf("New(MaxMemory 0): got nil error; want ErrConfig")
	}
}

func TestSetGetReadYourWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		e := f.entry("GET a", body(100, 'a'), "h")
		if !f.s.Set(hash(e.Key), e, 0) {
			t.Fatalf("Set: got false; want true")
		}
		f.s.Wait()
		got, ok := f.s.Get(hash(e.Key))
		if !ok || got != e {
			t.Fatalf("Get after Wait: got %p, %v; want %p, true", got, ok, e)
		}
		if want := DefaultEntryOverhead + int64(len(e.Key)) + e.Body.Body().Size() + e.Header.Body().Size(); e.Cost() != want {
			t.Errorf("Cost: got %d; want %d", e.Cost(), want)
		}
		f.checkLive(e)
		f.checkRefs(1)
		f.closeAndCheck()
		f.checkReleased(e, Cleared)
	})
}

func TestWithBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		withBody := f.entry("GET a", body(10, 'a'), "h")
		index := &Entry{Key: "GET b", Extra: testExtra(40)} // a variant index: no refs
		f.s.Set(hash(withBody.Key), withBody, 0)
		f.s.Set(hash(index.Key), index, 0)
		f.s.Wait()
		if st := f.s.Stats(); st.Entries != 2 || st.WithBody != 1 {
			t.Errorf("got Entries %d, WithBody %d; want 2, 1", st.Entries, st.WithBody)
		}
		if want := DefaultEntryOverhead + int64(len(index.Key)) + 40; index.Cost() != want {
			t.Errorf("index entry Cost: got %d; want %d", index.Cost(), want)
		}
		f.s.Del(hash(withBody.Key))
		if st := f.s.Stats(); st.Entries != 1 || st.WithBody != 0 {
			t.Errorf("after Del: got Entries %d, WithBody %d; want 1, 0", st.Entries, st.WithBody)
		}
		f.closeAndCheck()
		f.checkReleased(index, Cleared)
	})
}

func TestReleaseDel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		e := f.entry("GET a", body(100, 'a'), "h")
		f.s.Set(hash(e.Key), e, 0)
		f.s.Wait()
		f.s.Del(hash(e.Key))
		if _, ok := f.s.Get(hash(e.Key)); ok {
			t.Errorf("Get right after Del: got found; want miss")
		}
		f.checkReleased(e, Deleted) // synchronously
		f.checkRefs(0)
		f.s.Del(hash("GET missing"))
		f.s.Wait()
		f.checkReleased(e, Deleted)
		f.closeAndCheck()
	})
}

func TestReleaseDelExpiredNotCleaned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		e := f.entry("GET a", body(100, 'a'), "h")
		f.s.Set(hash(e.Key), e, time.Second)
		f.s.Wait()
		time.Sleep(1100 * time.Millisecond) // expired, but TTL cleanup has not run
		if _, ok := f.s.Get(hash(e.Key)); ok {
			t.Errorf("Get after TTL: got found; want miss")
		}
		f.checkLive(e)
		f.s.Del(hash(e.Key))
		f.checkReleased(e, Deleted)
		f.checkRefs(0)
		f.closeAndCheck()
	})
}

func TestReleaseDelPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		f.stallPolicy()
		e := f.entry("GET a", body(100, 'a'), "h")
		f.s.Set(hash(e.Key), e, 0) // stays in ristretto's buffer
		f.s.Del(hash(e.Key))       // queued behind it
		f.checkLive(e)
		f.unstall()
		f.s.Wait()
		f.checkReleased(e, Deleted) // admitted, then deleted
		f.checkRefs(0)
		f.closeAndCheck()
	})
}

func TestReleaseReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		old := f.entry("GET a", body(100, 'a'), "h1")
		f.s.Set(hash(old.Key), old, 0)
		f.s.Wait()
		repl := f.entry("GET a", body(200, 'b'), "h2")
		f.s.Set(hash(repl.Key), repl, time.Hour)
		f.checkReleased(old, Replaced) // synchronously, before any Wait
		if got, ok := f.s.Get(hash(repl.Key)); !ok || got != repl {
			t.Errorf("Get after overwrite: got %p, %v; want the new entry %p", got, ok, repl)
		}
		f.checkRefs(1)
		if s := f.bodies.Stats(); s.Bodies != 1 || s.Bytes != repl.Body.Body().Size() {
			t.Errorf("bodies after overwrite: got %d (%d B); want 1 (%d B)", s.Bodies, s.Bytes, repl.Body.Body().Size())
		}
		f.s.Wait()
		f.checkLive(repl)
		f.closeAndCheck()
		f.checkReleased(old, Replaced)
		f.checkReleased(repl, Cleared)
	})
}

// fill sets n entries with keys prefix-NN and returns them after Wait. All
// share one body and one header, charged to the first.
func (f *fixture) fill(prefix string, n int) []*Entry {
	var es []*Entry
	for i := range n {
		e := f.entry(fmt.Sprintf("%s-%02d", prefix, i), body(64, 'x'), "h")
		if !f.s.Set(hash(e.Key), e, 0) {
			f.t.Fatalf("Set(%s): got false; want true", e.Key)
		}
		es = append(es, e)
	}
	f.s.Wait()
	return es
}

// tinyConfig holds exactly 10 entries made by fill (3-letter prefixes: keys
// of 6 bytes, an
// overhead of 1000 bytes, one 64-byte body and a 1-byte header charged once).
func tinyConfig() Config {
	return Config{MaxMemory: 10*(1000+6) + 64 + 8, EntryOverhead: 1000}
}

// heat makes keys frequent in the admission policy. Gets go to ristretto's
// policy in lossy batches; waiting between batches lets every batch in.
func (f *fixture) heat(keys ...string) {
	for i := range 64 * 40 {
		f.s.Get(hash(keys[i%len(keys)]))
		if i%16 == 0 {
			synctest.Wait()
		}
	}
	synctest.Wait()
}

func TestReleaseRejectedByAdmission(t *testing.T) {
	if raceEnabled {
		t.Skip("under -race, Gets never reach ristretto's admission policy (see raceEnabled)")
	}
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, tinyConfig())
		hot := f.fill("hot", 10)
		if got := f.s.Stats().Entries; got != 10 {
			t.Fatalf("Entries after fill: got %d; want 10", got)
		}
		var keys []string
		for _, e := range hot {
			keys = append(keys, e.Key)
		}
		f.heat(keys...)
		cold := f.entry("cold-0", body(64, 'x'), "h")
		if !f.s.Set(hash(cold.Key), cold, 0) {
			t.Fatalf("Set(cold): got false; want true (rejection comes later)")
		}
		f.s.Wait()
		f.checkReleased(cold, Rejected)
		for _, e := range hot {
			f.checkLive(e)
		}
		if _, ok := f.s.Get(hash(cold.Key)); ok {
			t.Errorf("Get(cold): got found; want miss")
		}
		f.checkRefs(10)
		f.closeAndCheck()
		for _, e := range hot {
			f.checkReleased(e, Cleared)
		}
	})
}

func TestReleaseRejectedTooBig(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 4096})
		e := f.entry("GET big", body(8192, 'b'), "h")
		if e.Body.ChargedSize() <= f.s.MaxMemory() {
			t.Fatalf("test entry too small")
		}
		if !f.s.Set(hash(e.Key), e, 0) {
			t.Fatalf("Set: got false; want true (rejection comes later)")
		}
		f.s.Wait()
		f.checkReleased(e, Rejected)
		f.checkRefs(0)
		f.closeAndCheck()
	})
}

func TestReleaseEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, tinyConfig())
		cold := f.fill("cld", 10)
		f.heat("hot-00")
		hot := f.entry("hot-00", body(64, 'x'), "h")
		f.s.Set(hash(hot.Key), hot, 0)
		f.s.Wait()
		f.checkLive(hot)
		if got, ok := f.s.Get(hash(hot.Key)); !ok || got != hot {
			t.Errorf("Get(hot): got %p, %v; want %p, true", got, ok, hot)
		}
		var evicted []*Entry
		for _, e := range cold {
			if len(f.causes(e)) > 0 {
				evicted = append(evicted, e)
				f.checkReleased(e, Evicted)
			}
		}
		if len(evicted) != 1 {
			t.Errorf("evicted: got %d cold entries; want 1 (same cost as the hot one)", len(evicted))
		}
		f.checkRefs(10)
		f.closeAndCheck()
	})
}

func TestReleaseExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		e := f.entry("GET a", body(100, 'a'), "h")
		keep := f.entry("GET b", body(100, 'a'), "h")
		f.s.Set(hash(e.Key), e, time.Second)
		f.s.Set(hash(keep.Key), keep, 0)
		f.s.Wait()
		if _, ok := f.s.Get(hash(e.Key)); !ok {
			t.Fatalf("Get before TTL: got miss; want found")
		}
		time.Sleep(1100 * time.Millisecond)
		if _, ok := f.s.Get(hash(e.Key)); ok {
			t.Errorf("Get after TTL: got found; want miss")
		}
		f.checkLive(e) // refs are held until TTL cleanup
		f.checkRefs(2)
		// Cleanup runs every 2.5 s over 5 s buckets: within 10 s for sure.
		time.Sleep(10 * time.Second)
		f.checkReleased(e, Expired)
		f.checkLive(keep)
		f.checkRefs(1)
		if got := f.s.Stats().Released[Expired]; got != 1 {
			t.Errorf("Released[expired]: got %d; want 1", got)
		}
		f.closeAndCheck()
		f.checkReleased(keep, Cleared)
	})
}

func TestReleaseClear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		es := f.fill("k", 5)
		f.checkRefs(5)
		f.s.Clear()
		for _, e := range es {
			f.checkReleased(e, Cleared)
		}
		f.checkRefs(0)
		if got := f.s.Stats().Entries; got != 0 {
			t.Errorf("Entries after Clear: got %d; want 0", got)
		}
		// The store is usable after Clear.
		e := f.entry("after", body(10, 'z'), "h")
		f.s.Set(hash(e.Key), e, 0)
		f.s.Wait()
		if got, ok := f.s.Get(hash(e.Key)); !ok || got != e {
			t.Errorf("Get after Clear and Set: got %p, %v; want %p, true", got, ok, e)
		}
		f.closeAndCheck()
		f.checkReleased(e, Cleared)
	})
}

func TestReleaseClearPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		f.stallPolicy()
		var pending []*Entry
		for i := range 100 {
			e := f.entry(fmt.Sprintf("p%03d", i), body(10, 'p'), "h")
			f.s.Set(hash(e.Key), e, time.Hour)
			pending = append(pending, e)
		}
		done := make(chan struct{})
		go func() {
			f.s.Clear() // waits for ristretto's goroutine to stop
			close(done)
		}()
		synctest.Wait()
		f.unstall()
		<-done
		// Whether ristretto applied some Sets before stopping or Clear
		// drained them from its buffer, each is released as cleared.
		for _, e := range pending {
			f.checkReleased(e, Cleared)
		}
		f.checkRefs(0)
		f.closeAndCheck()
	})
}

func TestReleaseClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		es := f.fill("k", 5)
		f.s.Close()
		for _, e := range es {
			f.checkReleased(e, Cleared)
		}
		f.checkRefs(0)
		if _, ok := f.s.Get(hash(es[0].Key)); ok {
			t.Errorf("Get after Close: got found; want miss")
		}
		// Set after Close takes the dropped path: false, released at once.
		late := f.entry("late", body(10, 'z'), "h")
		if f.s.Set(hash(late.Key), late, 0) {
			t.Errorf("Set after Close: got true; want false")
		}
		f.checkReleased(late, Dropped)
		f.checkRefs(0)
		f.s.Wait() // returns at once on a closed store
		f.closeAndCheck()
	})
}

func TestReleaseDroppedFullBuffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		f.stallPolicy()
		const bufSize = 32768 // ristretto's setBufSize
		var queued []*Entry
		for i := range bufSize {
			e := f.entry(fmt.Sprintf("q%05d", i), body(64, 'q'), "h")
			if !f.s.Set(hash(e.Key), e, 0) {
				t.Fatalf("Set %d into a non-full buffer: got false; want true", i)
			}
			queued = append(queued, e)
		}
		e := f.entry("dropped", body(100, 'd'), "h")
		if f.s.Set(hash(e.Key), e, 0) {
			t.Fatalf("Set into a full buffer: got true; want false")
		}
		f.checkReleased(e, Dropped) // synchronously
		if got := f.s.Stats().Released[Dropped]; got != 1 {
			t.Errorf("Released[dropped]: got %d; want 1", got)
		}
		f.checkRefs(int64(len(queued)))
		f.unstall()
		f.s.Wait()
		f.closeAndCheck()
		for _, q := range queued {
			if c := q.Cause(); c != Cleared && c != Evicted && c != Rejected {
				t.Fatalf("%s: got cause %v; want cleared, evicted or rejected", q.Key, c)
			}
		}
	})
}

func TestReleaseSameKeyTwicePending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, Config{MaxMemory: 1 << 20})
		f.stallPolicy()
		first := f.entry("GET a", body(10, '1'), "h")
		second := f.entry("GET a", body(10, '2'), "h")
		f.s.Set(hash(first.Key), first, 0)
		f.s.Set(hash(second.Key), second, 0) // neither is in the map yet
		f.unstall()
		f.s.Wait()
		f.checkLive(first)
		f.checkReleased(second, Rejected)
		f.closeAndCheck()
		f.checkReleased(first, Cleared)
	})
}

func TestCauseString(t *testing.T) {
	for _, tt := range []struct {
		c    ReleaseCause
		want string
	}{
		{Evicted, "evicted"}, {Rejected, "rejected"}, {Expired, "expired"}, {Deleted, "deleted"},
		{Replaced, "replaced"}, {Cleared, "cleared"}, {Dropped, "dropped"}, {ReleaseCause(200), "unknown"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.c.String(); got != tt.want {
				t.Errorf("String: got %q; want %q", got, tt.want)
			}
		})
	}
	if got := len(Causes()); got != int(numCauses)-1 {
		t.Errorf("Causes: got %d; want %d", got, numCauses-1)
	}
}

// testExtra is an Entry.Extra of a given size.
type testExtra int64

func (x testExtra) Size() int64 { return int64(x) }
