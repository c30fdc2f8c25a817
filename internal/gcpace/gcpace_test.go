package gcpace

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

// fakeRuntime stands in for the runtime's knobs and metrics.
type fakeRuntime struct {
	mu       sync.Mutex
	allocs   uint64 // /gc/heap/allocs:bytes
	goal     uint64
	live     uint64
	cpu      time.Duration // the process's CPU time
	percent  int
	releases int
}

func (f *fakeRuntime) read() sample {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sample{allocs: f.allocs, goal: f.goal, live: f.live, cpu: f.cpu}
}

func (f *fakeRuntime) setPercent(p int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.percent
	f.percent = p
	return old
}

func (f *fakeRuntime) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases++
	f.goal = f.live * 125 / 100 // what a forced collection leaves
}

func (f *fakeRuntime) alloc(n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.allocs += n
	f.goal = 2 * f.live // GOGC=100 headroom
}

func (f *fakeRuntime) spend(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cpu += d
}

func (f *fakeRuntime) state() (percent, releases int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.percent, f.releases
}

// TestPacer drives a pacer through bursts of allocation and quiet spells
// on a fake clock, and checks the GOGC it sets and the forced collections.
func TestPacer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRuntime{percent: 100, live: 64 << 20, goal: 80 << 20}
		p := New(Config{})
		p.setPercent, p.release, p.read = f.setPercent, f.release, f.read
		p.procs = func() int { return 2 }
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); p.Run(ctx) }()

		// step runs d of ticks, each allocating perTick bytes and using
		// cpuTick of CPU time (of the 200 ms two processors offer).
		stepCPU := func(d time.Duration, perTick uint64, cpuTick time.Duration) {
			for end := time.Now().Add(d); time.Now().Before(end); {
				f.alloc(perTick)
				f.spend(cpuTick)
				time.Sleep(100 * time.Millisecond)
				synctest.Wait()
			}
		}
		step := func(d time.Duration, perTick uint64) { stepCPU(d, perTick, 10*time.Millisecond) }
		synctest.Wait()
		if pc, _ := f.state(); pc != 25 {
			t.Fatalf("at start GOGC = %d, want the low 25", pc)
		}
		step(2*time.Second, 4<<20) // 40 MiB/s: busy
		if pc, rel := f.state(); pc != 100 || rel != 0 {
			t.Fatalf("busy: GOGC = %d, releases %d; want 100, 0", pc, rel)
		}
		step(500*time.Millisecond, 0) // not yet quiet for long enough
		if pc, _ := f.state(); pc != 100 {
			t.Fatalf("0.5 s after a burst GOGC = %d, want 100 still", pc)
		}
		step(time.Second, 100<<10) // 1 MiB/s: quiet
		if pc, rel := f.state(); pc != 25 || rel != 1 {
			t.Fatalf("quiet: GOGC = %d, releases %d; want 25, 1", pc, rel)
		}
		// A second burst within MinGap: the GOGC follows, the forced
		// collection waits for a later quiet spell.
		step(time.Second, 4<<20)
		step(2*time.Second, 0)
		if pc, rel := f.state(); pc != 25 || rel != 1 {
			t.Fatalf("second quiet spell within MinGap: GOGC = %d, releases %d; want 25, 1", pc, rel)
		}
		step(10*time.Second, 0)
		step(time.Second, 4<<20)
		step(2*time.Second, 0)
		if pc, rel := f.state(); pc != 25 || rel != 2 {
			t.Fatalf("quiet spell after MinGap: GOGC = %d, releases %d; want 25, 2", pc, rel)
		}
		if st := p.Stats(); st.Percent != 25 || st.Releases != 2 || st.Switches != 6 {
			t.Fatalf("Stats = %+v, want Percent 25, Releases 2, Switches 6", st)
		}
		// Serving hits: no allocation, but more than half the CPU. The
		// pacer stays busy (a forced collection would take CPU from the
		// requests) until the load drops.
		step(10*time.Second, 0)
		stepCPU(time.Second, 4<<20, 150*time.Millisecond) // a fill: busy
		stepCPU(3*time.Second, 0, 150*time.Millisecond)   // hits at 1.5 cores of 2
		if pc, rel := f.state(); pc != 100 || rel != 2 {
			t.Fatalf("CPU-busy without allocating: GOGC = %d, releases %d; want 100, 2", pc, rel)
		}
		stepCPU(2*time.Second, 0, 50*time.Millisecond) // 0.5 cores: quiet
		if pc, rel := f.state(); pc != 25 || rel != 3 {
			t.Fatalf("after the load: GOGC = %d, releases %d; want 25, 3", pc, rel)
		}
		cancel()
		<-done
		if pc, _ := f.state(); pc != 100 {
			t.Fatalf("after Run GOGC = %d, want the 100 it found", pc)
		}
	})
}

// TestReadSample reads the real runtime's figures.
func TestReadSample(t *testing.T) {
	runtime.GC()
	a := readSample()
	sink = make([]byte, 1<<20)
	b := readSample()
	if a.live == 0 || a.goal < a.live {
		t.Errorf("after a collection: live %d, goal %d; want live > 0 and goal >= live", a.live, a.goal)
	}
	if b.allocs < a.allocs+1<<20 {
		t.Errorf("allocs went from %d to %d over a 1 MiB allocation", a.allocs, b.allocs)
	}
	for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
	}
	if c := readSample(); c.cpu < a.cpu+10*time.Millisecond {
		t.Errorf("process CPU went from %v to %v over 20 ms of spinning", a.cpu, c.cpu)
	}
}

var sink []byte

// TestRunRestoresGOGC runs a pacer on the real runtime: it sets its low
// GOGC at once and gives back the one it found when stopped.
func TestRunRestoresGOGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	p := New(Config{Low: 30, Tick: time.Hour}) // no tick: the start and the stop alone
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	for p.Stats().Percent == 0 {
		time.Sleep(time.Millisecond)
	}
	if got := debug.SetGCPercent(30); got != 30 {
		t.Errorf("while running GOGC = %d, want 30", got)
	}
	cancel()
	<-done
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after Run GOGC = %d, want the 100 it found", got)
	}
}

// TestReleaseDropsPooled checks that a quiet spell's release frees what
// sync.Pools hold: an object put in a pool before it is collected by it
// (one collection alone would keep it, in the pool's victim cache).
func TestReleaseDropsPooled(t *testing.T) {
	var pool sync.Pool
	freed := make(chan struct{})
	buf := new([4096]byte)
	runtime.AddCleanup(buf, func(ch chan struct{}) { close(ch) }, freed)
	pool.Put(buf)
	buf = nil
	release()
	select {
	case <-freed:
	case <-time.After(5 * time.Second):
		t.Fatal("a pooled buffer survived the release")
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
