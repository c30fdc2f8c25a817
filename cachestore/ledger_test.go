package cachestore

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"dedupcache/dedupbody"
)

var ledgerSeed = flag.Uint64("ledger.seed", 20261123, "seed of TestRandomLedger")

// TestRandomLedger drives the store from several goroutines with random Get,
// Set, Set with a short TTL and Del over many keys and few bodies, under a
// budget small enough to force evictions and rejections (TinyLFU ones only
// without -race: see raceEnabled), and checks the reference ledger: while
// running, after everything settled, and after Close. It runs in a synctest bubble, so TTLs expire and TTL
// cleanup runs in fake time, and a leaked goroutine fails the test.
func TestRandomLedger(t *testing.T) {
	const (
		workers   = 8
		numKeys   = 5000
		numBodies = 50
		numHdrs   = 20
		maxMemory = 512 << 10
		maxTTL    = 3 * time.Second
		pause     = 5 * time.Millisecond // fake time slept every 32 ops
	)
	seed := *ledgerSeed
	ops := 50000 // per worker
	if testing.Short() {
		ops = 2500
	}
	t.Logf("seed %d, %d workers x %d ops, %d keys, %d bodies, MaxMemory %d", seed, workers, ops, numKeys, numBodies, maxMemory)

	rng := rand.New(rand.NewPCG(seed, 0))
	mkBuf := func(n int) []byte {
		b := dedupbody.Alloc(n)[:n]
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	// The same slices are passed to Put again and again: the stores may keep
	// them, which is fine since nobody modifies them.
	type blob struct {
		data []byte
		sum  uint64
	}
	var bodyData, hdrData []blob
	var maxBody, maxHdr int64
	for range numBodies {
		b := mkBuf(1024 + rng.IntN(7*1024+1))
		bodyData = append(bodyData, blob{b, dedupbody.Sum(b)})
		maxBody = max(maxBody, int64(cap(b)))
	}
	for range numHdrs {
		b := mkBuf(100 + rng.IntN(300))
		hdrData = append(hdrData, blob{b, dedupbody.Sum(b)})
		maxHdr = max(maxHdr, int64(cap(b)))
	}
	keys := make([]string, numKeys)
	hashes := make([]uint64, numKeys)
	seen := map[uint64]bool{}
	var maxKey int64
	for i := range keys {
		keys[i] = fmt.Sprintf("GET example.com/items/%04d", i)
		hashes[i] = hash(keys[i])
		if seen[hashes[i]] {
			t.Fatalf("hash collision among test keys")
		}
		seen[hashes[i]] = true
		maxKey = max(maxKey, int64(len(keys[i])))
	}
	maxEntry := DefaultEntryOverhead + maxKey + maxBody + maxHdr
	// Memory may pass MaxMemory by what is in flight: each worker holds the
	// refs of at most one entry before its Set, and Sets waiting in
	// ristretto's buffer are counted before ristretto evicts for them.
	slack := workers * maxEntry

	synctest.Test(t, func(t *testing.T) {
		bodies := dedupbody.New(dedupbody.Config{})
		headers := dedupbody.New(dedupbody.Config{})
		var onRelease atomic.Int64
		s, err := New(Config{
			MaxMemory:       maxMemory,
			ExpectedEntries: numKeys,
			Stores:          []*dedupbody.Store{bodies, headers},
			OnRelease:       func(*Entry, ReleaseCause) { onRelease.Add(1) },
			Hash:            func(e *Entry) uint64 { return hash(e.Key) },
		})
		if err != nil {
			t.Fatal(err)
		}
		memory := func() int64 {
			return s.Stats().EntryBytes + bodies.Stats().Bytes + headers.Stats().Bytes
		}
		var worst atomic.Int64 // largest memory() - MaxMemory seen
		worst.Store(-maxMemory)
		sample := func() {
			over := memory() - maxMemory
			for cur := worst.Load(); over > cur && !worst.CompareAndSwap(cur, over); cur = worst.Load() {
			}
		}
		// The monitor samples whenever a worker has just set an entry. It
		// blocks on a channel in between, so fake time can advance when the
		// workers sleep.
		tick := make(chan struct{}, 1)
		stop := make(chan struct{})
		var monitor sync.WaitGroup
		monitor.Go(func() {
			for {
				select {
				case <-tick:
					sample()
				case <-stop:
					return
				}
			}
		})

		created := make([][]*Entry, workers)
		var sets, setFalse, gets, hits atomic.Int64
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(seed, uint64(w)+1))
				zipf := rand.NewZipf(rng, 1.1, 1, numKeys-1)
				for i := range ops {
					k := int(zipf.Uint64())
					h := hashes[k]
					switch r := rng.IntN(100); {
					case r < 50:
						gets.Add(1)
						e, ok := s.Get(h)
						if !ok {
							break
						}
						hits.Add(1)
						if e.Key != keys[k] {
							t.Errorf("Get(%s): got entry for %s", keys[k], e.Key)
						}
						if i%16 == 0 && dedupbody.Sum(e.Body.Bytes()) != e.Body.Body().Hash() {
							t.Errorf("Get(%s): body bytes changed", keys[k])
						}
					case r < 90:
						b, hd := bodyData[rng.IntN(numBodies)], hdrData[rng.IntN(numHdrs)]
						e := &Entry{
							Key:    keys[k],
							Body:   bodies.Put(b.data, b.sum, nil),
							Header: headers.Put(hd.data, hd.sum, nil),
						}
						var ttl time.Duration
						if r >= 75 {
							ttl = time.Duration(1 + rng.Int64N(int64(maxTTL)))
						}
						sets.Add(1)
						if !s.Set(h, e, ttl) {
							setFalse.Add(1)
						}
						created[w] = append(created[w], e)
						sample()
						select {
						case tick <- struct{}{}:
						default:
						}
					default:
						s.Del(h)
					}
					if i%32 == 31 {
						time.Sleep(pause) // lets fake time (and TTLs) move
					}
				}
			})
		}
		wg.Wait()
		close(stop)
		monitor.Wait()
		runFor := time.Duration(ops/32) * pause
		s.Wait()
		atRest := memory()
		// Let every TTL pass and TTL cleanup release the expired entries, so
		// that what Each visits is exactly what holds refs.
		time.Sleep(maxTTL + 8*time.Second)
		s.Wait()

		// (a) The ledger of live entries.
		var live []*Entry
		s.Each(func(e *Entry) bool { live = append(live, e); return true })
		st := s.Stats()
		if int64(len(live)) != st.Entries || st.WithBody != st.Entries {
			t.Errorf("live entries: Each visited %d; Stats() Entries %d, WithBody %d", len(live), st.Entries, st.WithBody)
		}
		bs, hs := bodies.Stats(), headers.Stats()
		if got, want := bs.Refs+hs.Refs, 2*int64(len(live)); got != want {
			t.Errorf("refs: got body %d + header %d = %d; want 2 x %d live entries = %d", bs.Refs, hs.Refs, got, len(live), want)
		}
		bodyRefs, hdrRefs := map[*dedupbody.Body]int{}, map[*dedupbody.Body]int{}
		var own, charged, unique int64
		for _, e := range live {
			if e.Cause() != 0 || e.isReleased() {
				t.Errorf("%s: live entry already released (cause %v)", e.Key, e.Cause())
			}
			bodyRefs[e.Body.Body()]++
			hdrRefs[e.Header.Body()]++
			own += e.ownBytes(s.overhead)
			charged += e.Body.ChargedSize() + e.Header.ChargedSize()
			if e.Cost() != e.ownBytes(s.overhead)+e.Body.ChargedSize()+e.Header.ChargedSize() {
				t.Errorf("%s: Cost %d does not match its parts", e.Key, e.Cost())
			}
		}
		for _, c := range []struct {
			name string
			st   *dedupbody.Store
			refs map[*dedupbody.Body]int
		}{{"body", bodies, bodyRefs}, {"header", headers, hdrRefs}} {
			n := 0
			c.st.Each(func(b *dedupbody.Body, refs int) bool {
				n++
				if refs <= 0 {
					t.Errorf("%s store: a body with %d refs is still stored", c.name, refs)
				}
				if refs != c.refs[b] {
					t.Errorf("%s store: a body has %d refs; live entries hold %d", c.name, refs, c.refs[b])
				}
				return true
			})
			if n != len(c.refs) {
				t.Errorf("%s store: got %d stored bodies; live entries refer to %d", c.name, n, len(c.refs))
			}
			for b := range c.refs {
				unique += b.Size()
			}
		}
		if st.EntryBytes != own {
			t.Errorf("EntryBytes: got %d; want %d (sum over live entries)", st.EntryBytes, own)
		}
		if got := bs.Bytes + hs.Bytes; got != unique {
			t.Errorf("body + header Bytes: got %d; want %d (distinct bodies of live entries)", got, unique)
		}
		if got := bs.UnchargedBytes + hs.UnchargedBytes; got != unique-charged {
			t.Errorf("UnchargedBytes: got %d; want %d (unique %d - charged %d)", got, unique-charged, unique, charged)
		}
		settled := own + unique
		if settled > maxMemory+slack {
			t.Errorf("settled MemoryBytes: got %d; want <= MaxMemory %d + slack %d", settled, maxMemory, slack)
		}
		if w := worst.Load(); w > slack {
			t.Errorf("worst MemoryBytes overshoot during the run: got %d B; want <= %d B (%d workers x max entry %d B)", w, slack, workers, maxEntry)
		}
		t.Logf("ran %v of fake time: %d gets (%d hits), %d sets (%d returned false); live %d entries, %d bodies, %d headers",
			runFor, gets.Load(), hits.Load(), sets.Load(), setFalse.Load(), len(live), len(bodyRefs), len(hdrRefs))
		t.Logf("MemoryBytes: worst overshoot over MaxMemory %d B (%.1f%%; slack asserted %d B = %d x %d); at rest after the run %d; settled %d",
			worst.Load(), 100*float64(worst.Load())/maxMemory, slack, workers, maxEntry, atRest, settled)
		var causes []string
		for _, c := range Causes() {
			causes = append(causes, fmt.Sprintf("%v=%d", c, st.Released[c]))
		}
		t.Logf("released before Close: %v", causes)

		// (b) After Close every ref was released exactly once.
		s.Close()
		for _, c := range []struct {
			name string
			st   *dedupbody.Store
		}{{"body", bodies}, {"header", headers}} {
			x := c.st.Stats()
			if x.Bodies != 0 || x.Bytes != 0 || x.DataBytes != 0 || x.Refs != 0 || x.LogicalBytes != 0 || x.UnchargedBytes != 0 || x.BadReleases != 0 {
				t.Errorf("%s store after Close: got %+v; want empty, no bad releases", c.name, x)
			}
			c.st.Each(func(*dedupbody.Body, int) bool {
				t.Errorf("%s store after Close: a body is still indexed", c.name)
				return false
			})
		}
		st = s.Stats()
		if st.Entries != 0 || st.WithBody != 0 || st.EntryBytes != 0 || st.DoubleReleases != 0 {
			t.Errorf("after Close: got Entries %d, WithBody %d, EntryBytes %d, DoubleReleases %d; want 0, 0, 0, 0",
				st.Entries, st.WithBody, st.EntryBytes, st.DoubleReleases)
		}
		var total int64
		for _, n := range st.Released {
			total += n
		}
		if onRelease.Load() != sets.Load() || total != sets.Load() || st.Sets != sets.Load() {
			t.Errorf("releases: got %d OnRelease calls, %d counted, %d Sets counted; want %d (one per Set)",
				onRelease.Load(), total, st.Sets, sets.Load())
		}
		for _, es := range created {
			for _, e := range es {
				if !e.isReleased() || e.Cause() == 0 {
					t.Fatalf("%s: not released after Close (cause %v)", e.Key, e.Cause())
				}
			}
		}
	})
}
