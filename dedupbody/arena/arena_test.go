package arena

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

const slabSize = 1 << 20 // the default SlabSize

// pattern is the source of every test's fill: a slot of n bytes filled from
// offset off holds pattern[off:off+n], so overlapping or clobbered slots
// show up as a mismatch.
var pattern = func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, 2<<20)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}()

// held is a live slot and where its contents came from in pattern.
type held struct {
	slot Slot
	off  int
}

func (h held) fill()    { copy(h.slot.Bytes(), pattern[h.off:]) }
func (h held) ok() bool { return bytes.Equal(h.slot.Bytes(), pattern[h.off:h.off+len(h.slot.Bytes())]) }

// alloc allocates n bytes and fills them from a random offset of pattern.
func alloc(t testing.TB, a *Arena, r *rand.Rand, n int) held {
	t.Helper()
	s, err := a.Alloc(n)
	if err != nil {
		t.Fatalf("Alloc(%d): %v", n, err)
	}
	h := held{slot: s, off: r.IntN(len(pattern) - n + 1)}
	h.fill()
	return h
}

// randSize returns a size spread over every class, log-uniform, with one
// in 100 above the largest class.
func randSize(r *rand.Rand) int {
	if r.IntN(100) == 0 {
		return slabSize/8 + 1 + r.IntN(400<<10)
	}
	return 1 + r.IntN(1<<r.IntN(18)) // 1 .. 128 KiB
}

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// checkStats verifies the Stats invariants of the package doc against the
// slots the test holds. The arena must be at rest.
func checkStats(t testing.TB, a *Arena, live []held) Stats {
	t.Helper()
	var n, inUse, req int64
	for _, h := range live {
		b := h.slot.Bytes()
		if b == nil {
			continue
		}
		n++
		inUse += int64(cap(b))
		req += int64(len(b))
	}
	st := a.Stats()
	if st.Live != n || st.InUse != inUse || st.Requested != req {
		t.Errorf("Live, InUse, Requested: got %d, %d, %d; want %d, %d, %d", st.Live, st.InUse, st.Requested, n, inUse, req)
	}
	if want := st.SlabBytes + st.SpareBytes + st.DedicatedBytes; st.Mapped != want {
		t.Errorf("Mapped: got %d; want SlabBytes %d + SpareBytes %d + DedicatedBytes %d = %d",
			st.Mapped, st.SlabBytes, st.SpareBytes, st.DedicatedBytes, want)
	}
	if st.Mapped < st.InUse+st.QuarantinedBytes || st.InUse < st.Requested {
		t.Errorf("got Mapped %d, InUse %d, QuarantinedBytes %d, Requested %d; want Mapped >= InUse+QuarantinedBytes, InUse >= Requested",
			st.Mapped, st.InUse, st.QuarantinedBytes, st.Requested)
	}
	if !poison && (st.Quarantined != 0 || st.QuarantinedBytes != 0) {
		t.Errorf("Quarantined: got %d (%d bytes); want 0 without the poison tag", st.Quarantined, st.QuarantinedBytes)
	}
	var classLive, classQ int64
	var slabs int64
	for _, c := range st.Classes {
		classLive += c.Live
		classQ += c.Quarantined
		slabs += int64(c.Slabs)
		if int64(c.Slabs)*int64(c.SlabSize/c.Size) < c.Live+c.Quarantined {
			t.Errorf("class %d: %d slabs hold %d live + %d quarantined slots", c.Size, c.Slabs, c.Live, c.Quarantined)
		}
	}
	if slabs != st.Slabs {
		t.Errorf("sum of class Slabs: got %d; want Slabs %d", slabs, st.Slabs)
	}
	if st.SpareBytes > a.retain {
		t.Errorf("SpareBytes: got %d; want <= %d", st.SpareBytes, a.retain)
	}
	if got := a.Mapped(); got != st.Mapped {
		t.Errorf("Mapped(): got %d; want Stats().Mapped %d", got, st.Mapped)
	}
	return st
}

func TestClasses(t *testing.T) {
	sizes := classSizes(slabSize / 8)
	if len(sizes) != 89 || sizes[0] != 64 || sizes[len(sizes)-1] != slabSize/8 {
		t.Fatalf("classes: got %d from %d to %d; want 89 from 64 to %d", len(sizes), sizes[0], sizes[len(sizes)-1], slabSize/8)
	}
	worstTail := 0.0
	for j, size := range sizes {
		if classSize(j) != size || size%8 != 0 {
			t.Errorf("class %d: size %d, classSize %d; want equal, multiple of 8", j, size, classSize(j))
		}
		if j > 0 && float64(size-sizes[j-1]) > 0.125*float64(sizes[j-1])+0.5 {
			t.Errorf("class %d: %d follows %d, more than 12.5%% apart", j, size, sizes[j-1])
		}
		slab := slabFor(size, minSlab, slabSize)
		if slab/size < minSlots && slab < slabSize || slab < minSlab {
			t.Errorf("class %d: slab of %d holds %d slots; want >= %d, or the largest slab", size, slab, slab/size, minSlots)
		}
		worstTail = max(worstTail, float64(slab%size)/float64(slab))
	}
	if worstTail > 0.086 {
		t.Errorf("worst unused slab tail: got %.1f%%; want <= 8.6%% (the package doc says so)", 100*worstTail)
	}
	for n := 1; n <= slabSize/8; n++ {
		j := classOf(n)
		if sizes[j] < n || (j > 0 && sizes[j-1] >= n) {
			t.Fatalf("classOf(%d) = %d (size %d); want the smallest class >= %d", n, j, sizes[j], n)
		}
	}
}

func TestSlotSize(t *testing.T) {
	if got := unsafe.Sizeof(Slot{}); got != 40 {
		t.Errorf("Slot is %d bytes; want 40, as its doc says", got)
	}
}

func TestAllocSizes(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		wantCap int
	}{
		{"zero", 0, 0},
		{"one", 1, 64},
		{"below smallest", 63, 64},
		{"smallest", 64, 64},
		{"above smallest", 65, 72},
		{"class 72", 72, 72},
		{"above 72", 73, 80},
		{"class 128", 128, 128},
		{"above 128", 129, 144},
		{"below page", 4095, 4096},
		{"page", 4096, 4096},
		{"above page", 4097, 4608},
		{"below largest", slabSize/8 - 1, slabSize / 8},
		{"largest", slabSize / 8, slabSize / 8},
		{"dedicated", slabSize/8 + 1, slabSize/8 + 4096},
		{"dedicated slab", slabSize, slabSize},
		{"dedicated odd", 3<<19 + 5, 3<<19 + 4096},
	}
	a := New(Config{})
	defer a.Close()
	r := rand.New(rand.NewPCG(3, 4))
	var live []held
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.RoundSize(tt.n); got != tt.wantCap {
				t.Errorf("RoundSize(%d): got %d; want %d", tt.n, got, tt.wantCap)
			}
			h := alloc(t, a, r, tt.n)
			live = append(live, h)
			b := h.slot.Bytes()
			if len(b) != tt.n || cap(b) != tt.wantCap {
				t.Errorf("Alloc(%d): got len %d cap %d; want len %d cap %d", tt.n, len(b), cap(b), tt.n, tt.wantCap)
			}
			if tt.n == 0 && (b != nil || h.slot.s != nil) {
				t.Errorf("Alloc(0): got %+v; want the zero Slot", h.slot)
			}
			if tt.n > 0 && addr(b)%8 != 0 {
				t.Errorf("Alloc(%d): address %#x not 8-byte aligned", tt.n, addr(b))
			}
		})
	}
	for _, h := range live {
		if !h.ok() {
			t.Errorf("slot of %d bytes: contents changed", len(h.slot.Bytes()))
		}
	}
	checkStats(t, a, live)
	for _, h := range live {
		a.Free(h.slot)
	}
	checkStats(t, a, nil)
}

// TestNoOverlap holds thousands of slots of every class at once and checks
// their address ranges (whole capacity) are disjoint and their contents
// intact, then frees half and allocates again.
func TestNoOverlap(t *testing.T) {
	a := New(Config{})
	defer a.Close()
	r := rand.New(rand.NewPCG(5, 6))
	var live []held
	check := func() {
		t.Helper()
		sorted := slices.Clone(live)
		slices.SortFunc(sorted, func(x, y held) int { return int(addr(x.slot.Bytes())) - int(addr(y.slot.Bytes())) })
		for i := 1; i < len(sorted); i++ {
			p, q := sorted[i-1].slot.Bytes(), sorted[i].slot.Bytes()
			if addr(p)+uintptr(cap(p)) > addr(q) {
				t.Fatalf("slots overlap: [%#x, +%d) and [%#x, +%d)", addr(p), cap(p), addr(q), cap(q))
			}
		}
		for _, h := range live {
			if !h.ok() {
				t.Fatalf("slot of %d bytes at %#x: contents changed", len(h.slot.Bytes()), addr(h.slot.Bytes()))
			}
		}
		checkStats(t, a, live)
	}
	for range 4000 {
		live = append(live, alloc(t, a, r, randSize(r)))
	}
	check()
	r.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	for _, h := range live[2000:] {
		a.Free(h.slot)
	}
	live = live[:2000]
	for range 2000 {
		live = append(live, alloc(t, a, r, randSize(r)))
	}
	check()
	for _, h := range live {
		a.Free(h.slot)
	}
	checkStats(t, a, nil)
}

// TestConcurrent has goroutines allocate random sizes, fill, verify and
// free, each keeping a window of live slots, then checks the arena is empty.
func TestConcurrent(t *testing.T) {
	const workers, ops, window = 8, 8000, 64
	a := New(Config{})
	defer a.Close()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			var live []held
			for i := range ops {
				if len(live) == window || (len(live) > 0 && r.IntN(2) == 0) {
					k := r.IntN(len(live))
					h := live[k]
					if !h.ok() {
						errs <- fmt.Errorf("worker %d op %d: slot of %d bytes: contents changed before Free", w, i, len(h.slot.Bytes()))
						return
					}
					a.Free(h.slot)
					live[k] = live[len(live)-1]
					live = live[:len(live)-1]
					continue
				}
				n := randSize(r)
				s, err := a.Alloc(n)
				if err != nil {
					errs <- err
					return
				}
				h := held{slot: s, off: r.IntN(len(pattern) - n + 1)}
				h.fill()
				live = append(live, h)
			}
			for _, h := range live {
				if !h.ok() {
					errs <- fmt.Errorf("worker %d: slot of %d bytes: contents changed before Free", w, len(h.slot.Bytes()))
					return
				}
				a.Free(h.slot)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := checkStats(t, a, nil)
	t.Logf("after: Mapped %d, Slabs %d, SpareSlabs %d, Quarantined %d", st.Mapped, st.Slabs, st.SpareSlabs, st.Quarantined)
}

func TestStatsFreeAll(t *testing.T) {
	for _, retain := range []int64{-1, 0, 5 << 20} {
		t.Run(fmt.Sprintf("RetainBytes=%d", retain), func(t *testing.T) {
			a := New(Config{RetainBytes: retain})
			defer a.Close()
			r := rand.New(rand.NewPCG(8, uint64(retain+10)))
			var live []held
			for i := range 20000 {
				if len(live) > 0 && r.IntN(3) == 0 {
					k := r.IntN(len(live))
					a.Free(live[k].slot)
					live[k] = live[len(live)-1]
					live = live[:len(live)-1]
				} else {
					live = append(live, alloc(t, a, r, randSize(r)))
				}
				if i%5000 == 0 {
					checkStats(t, a, live)
				}
			}
			st := checkStats(t, a, live)
			t.Logf("%d live: Mapped %d, InUse %d (%.1f%% of Mapped), Requested %d (%.1f%% of InUse)",
				st.Live, st.Mapped, st.InUse, 100*float64(st.InUse)/float64(st.Mapped), st.Requested, 100*float64(st.Requested)/float64(st.InUse))
			for _, h := range live {
				a.Free(h.slot)
			}
			st = checkStats(t, a, nil)
			if !poison && (st.Slabs != 0 || st.Dedicated != 0 || st.Mapped != st.SpareBytes) {
				t.Errorf("after freeing all: got Slabs %d, Dedicated %d, Mapped %d; want 0, 0, SpareBytes %d",
					st.Slabs, st.Dedicated, st.Mapped, st.SpareBytes)
			}
			if err := a.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := a.Stats(); got.Mapped != 0 || got.Live != 0 || got.Slabs != 0 || got.SpareSlabs != 0 {
				t.Errorf("after Close: got %+v; want nothing mapped", got)
			}
		})
	}
}

// TestSpareReuse checks that an emptied slab is kept (RetainBytes) and then
// reused by another class with the same slab size rather than mapped anew.
func TestSpareReuse(t *testing.T) {
	if poison {
		t.Skip("the quarantine keeps the last freed slots' slabs mapped")
	}
	const slab = 64 << 10 // the slab size of the 4096 and 104 byte classes
	a := New(Config{RetainBytes: slab})
	defer a.Close()
	var slots []Slot
	for range 3 * slab / 4096 { // three slabs of the 4 KiB class
		s, _ := a.Alloc(4096)
		slots = append(slots, s)
	}
	for _, s := range slots {
		a.Free(s)
	}
	if st := a.Stats(); st.SpareSlabs != 1 || st.Mapped != slab {
		t.Fatalf("after freeing 3 slabs: got SpareSlabs %d, Mapped %d; want 1, %d", st.SpareSlabs, st.Mapped, slab)
	}
	s, _ := a.Alloc(100)
	if st := a.Stats(); st.SpareSlabs != 0 || st.Slabs != 1 || st.Mapped != slab {
		t.Errorf("Alloc(100) with a spare: got SpareSlabs %d, Slabs %d, Mapped %d; want 0, 1, %d", st.SpareSlabs, st.Slabs, st.Mapped, slab)
	}
	a.Free(s)
	s, _ = a.Alloc(60000) // a 512 KiB slab: the 64 KiB spare does not fit
	if st := a.Stats(); st.SpareSlabs != 1 || st.Mapped != slab+512<<10 {
		t.Errorf("Alloc(60000) with a 64 KiB spare: got SpareSlabs %d, Mapped %d; want 1, %d", st.SpareSlabs, st.Mapped, slab+512<<10)
	}
	a.Free(s)
}

func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if msg := fmt.Sprint(r); r == nil || !strings.Contains(msg, want) {
			t.Errorf("got panic %v; want one containing %q", r, want)
		}
	}()
	f()
}

func TestDoubleFree(t *testing.T) {
	tests := []struct {
		name string
		run  func(a *Arena)
	}{
		{"slot in a slab still in use", func(a *Arena) {
			s1, _ := a.Alloc(1000)
			s2, _ := a.Alloc(1000)
			defer a.Free(s2)
			a.Free(s1)
			a.Free(s1)
		}},
		{"last slot of its slab", func(a *Arena) {
			s, _ := a.Alloc(5000)
			a.Free(s)
			a.Free(s)
		}},
		{"slab reused by another class", func(a *Arena) {
			s, _ := a.Alloc(70000)
			a.Free(s)
			other, _ := a.Alloc(64)
			defer a.Free(other)
			a.Free(s)
		}},
		{"dedicated mapping", func(a *Arena) {
			s, _ := a.Alloc(1 << 20)
			a.Free(s)
			a.Free(s)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(Config{})
			defer a.Close()
			mustPanic(t, "arena: double Free", func() { tt.run(a) })
			checkStats(t, a, nil) // the panic left the locks free and the counts right
		})
	}
}

func TestMisuse(t *testing.T) {
	a, b := New(Config{}), New(Config{})
	defer b.Close()
	s, _ := a.Alloc(10)
	mustPanic(t, "from another Arena", func() { b.Free(s) })
	mustPanic(t, "Alloc(-1)", func() { a.Alloc(-1) })
	mustPanic(t, "not a power of two", func() { New(Config{SlabSize: 100 << 10}) })
	mustPanic(t, "not a power of two", func() { New(Config{SlabSize: 8 << 10}) })
	mustPanic(t, "not a power of two", func() { New(Config{SlabSize: 64 << 10, MinSlab: 128 << 10}) })
	mustPanic(t, "not a power of two", func() { New(Config{MinSlab: 512}) })
	a.Free(Slot{}) // does nothing

	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	a.Free(s) // after Close: does nothing
	for _, n := range []int{10, 1 << 20} {
		if _, err := a.Alloc(n); !errors.Is(err, ErrClosed) {
			t.Errorf("Alloc(%d) after Close: got %v; want ErrClosed", n, err)
		}
	}
	if err := a.Close(); err != nil || a.Mapped() != 0 {
		t.Errorf("second Close: got %v, Mapped %d; want nil, 0", err, a.Mapped())
	}
}

func TestAllocFreeNoAlloc(t *testing.T) {
	a := New(Config{})
	defer a.Close()
	keep, _ := a.Alloc(4096) // keeps the slab from being released each round
	defer a.Free(keep)
	for _, n := range []int{1024, 4096} {
		if got := testing.AllocsPerRun(1000, func() {
			s, _ := a.Alloc(n)
			a.Free(s)
		}); got != 0 {
			t.Errorf("Alloc(%d)+Free: got %v allocs; want 0", n, got)
		}
	}
}
