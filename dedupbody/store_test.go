package dedupbody

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// buf returns s in a buffer allocated by Alloc, as the proxy stores them.
func buf(s string) []byte { return append(Alloc(len(s)), s...) }

// put stores s under its real hash, or under h when h != 0.
func put(st *Store, s string, h uint64) Ref {
	b := buf(s)
	if h == 0 {
		h = Sum(b)
	}
	return st.Put(b, h, nil)
}

// checkInvariant verifies the package doc's charging invariant and the
// reference counters against the refs the test holds.
func checkInvariant(t *testing.T, st *Store, live []Ref) {
	t.Helper()
	var charged, logical int64
	distinct := map[*Body]bool{}
	for _, r := range live {
		charged += r.ChargedSize()
		logical += r.Body().Len()
		distinct[r.Body()] = true
	}
	var size, data int64
	for b := range distinct {
		size += b.Size()
		data += b.Len()
	}
	s := st.Stats()
	if s.Bytes != charged+s.UnchargedBytes {
		t.Errorf("Bytes = %d; want charged %d + UnchargedBytes %d", s.Bytes, charged, s.UnchargedBytes)
	}
	if s.Bytes != size {
		t.Errorf("Bytes: got %d; want %d (distinct bodies)", s.Bytes, size)
	}
	if s.DataBytes != data {
		t.Errorf("DataBytes: got %d; want %d", s.DataBytes, data)
	}
	if s.Refs != int64(len(live)) {
		t.Errorf("Refs: got %d; want %d", s.Refs, len(live))
	}
	if s.LogicalBytes != logical {
		t.Errorf("LogicalBytes: got %d; want %d", s.LogicalBytes, logical)
	}
	if s.Bodies != int64(len(distinct)) {
		t.Errorf("Bodies: got %d; want %d", s.Bodies, len(distinct))
	}
}

// checkEmpty verifies that st holds nothing at all.
func checkEmpty(t *testing.T, st *Store) {
	t.Helper()
	s := st.Stats()
	if s.Bodies != 0 || s.Bytes != 0 || s.DataBytes != 0 || s.Refs != 0 || s.LogicalBytes != 0 || s.UnchargedBytes != 0 {
		t.Errorf("store not empty: got %+v; want all live counters 0", s)
	}
	st.mu.Lock()
	n := len(st.index)
	st.mu.Unlock()
	if n != 0 {
		t.Errorf("index: got %d hashes; want 0", n)
	}
}

func TestPutSharing(t *testing.T) {
	type p struct {
		data string
		hash uint64 // 0: Sum(data)
	}
	tests := []struct {
		name       string
		minShare   int
		puts       []p
		same       [][2]int // pairs of puts that must share one body
		distinct   [][2]int // pairs that must not
		bodies     int64
		shared     int64
		collisions int64
	}{
		{
			name:   "identical bytes share one body",
			puts:   []p{{data: "hello world"}, {data: "hello world"}, {data: "hello world"}},
			same:   [][2]int{{0, 1}, {1, 2}},
			bodies: 1, shared: 2,
		},
		{
			name:     "different bytes, different hash",
			puts:     []p{{data: "alpha"}, {data: "beta"}},
			distinct: [][2]int{{0, 1}},
			bodies:   2,
		},
		{
			name:     "different bytes, same hash: compared, not shared",
			puts:     []p{{data: "alpha", hash: 42}, {data: "beta", hash: 42}},
			distinct: [][2]int{{0, 1}},
			bodies:   2, collisions: 1,
		},
		{
			name: "equal bytes found behind a collision",
			// chain after the first two puts: beta -> alpha; the third walks past beta.
			puts:     []p{{data: "alpha", hash: 42}, {data: "beta", hash: 42}, {data: "alpha", hash: 42}},
			same:     [][2]int{{0, 2}},
			distinct: [][2]int{{0, 1}},
			bodies:   2, shared: 1, collisions: 2,
		},
		{
			name:     "same bytes under another hash are not found",
			puts:     []p{{data: "alpha", hash: 1}, {data: "alpha", hash: 2}},
			distinct: [][2]int{{0, 1}},
			bodies:   2,
		},
		{
			name:   "empty body is shared",
			puts:   []p{{data: ""}, {data: ""}},
			same:   [][2]int{{0, 1}},
			bodies: 1, shared: 1,
		},
		{
			name:     "below MinShareSize never shared",
			minShare: 8,
			puts:     []p{{data: "short"}, {data: "short"}},
			distinct: [][2]int{{0, 1}},
			bodies:   2,
		},
		{
			name:     "at MinShareSize shared",
			minShare: 8,
			puts:     []p{{data: "12345678"}, {data: "12345678"}},
			same:     [][2]int{{0, 1}},
			bodies:   1, shared: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := New(Config{MinShareSize: tt.minShare})
			var refs []Ref
			for _, p := range tt.puts {
				refs = append(refs, put(st, p.data, p.hash))
			}
			for i, r := range refs {
				if got := string(r.Bytes()); got != tt.puts[i].data {
					t.Errorf("put %d: got bytes %q; want %q", i, got, tt.puts[i].data)
				}
			}
			for _, pair := range tt.same {
				if refs[pair[0]].Body() != refs[pair[1]].Body() {
					t.Errorf("puts %d and %d: got different bodies; want one shared body", pair[0], pair[1])
				}
			}
			for _, pair := range tt.distinct {
				if refs[pair[0]].Body() == refs[pair[1]].Body() {
					t.Errorf("puts %d and %d: got one shared body; want different bodies", pair[0], pair[1])
				}
			}
			s := st.Stats()
			if s.Bodies != tt.bodies {
				t.Errorf("Bodies: got %d; want %d", s.Bodies, tt.bodies)
			}
			if s.Puts != int64(len(tt.puts)) {
				t.Errorf("Puts: got %d; want %d", s.Puts, len(tt.puts))
			}
			if s.Shared != tt.shared {
				t.Errorf("Shared: got %d; want %d", s.Shared, tt.shared)
			}
			if s.Collisions != tt.collisions {
				t.Errorf("Collisions: got %d; want %d", s.Collisions, tt.collisions)
			}
			checkInvariant(t, st, refs)
			for _, r := range refs {
				r.Release()
			}
			checkEmpty(t, st)
		})
	}
}

func TestCollisionChainRelease(t *testing.T) {
	const h = 7 // every body below claims this hash
	data := []string{"first", "second", "third"}
	// Put order makes the chain third -> second -> first (new bodies go in front).
	tests := []struct {
		name  string
		order []int // indexes into data, in release order
	}{
		{"head, middle, tail", []int{2, 1, 0}},
		{"tail, middle, head", []int{0, 1, 2}},
		{"middle, head, tail", []int{1, 2, 0}},
		{"middle, tail, head", []int{1, 0, 2}},
		{"head, tail, middle", []int{2, 0, 1}},
		{"tail, head, middle", []int{0, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := New(Config{})
			refs := make([]Ref, len(data))
			for i, d := range data {
				refs[i] = put(st, d, h)
			}
			if got := st.Stats().Collisions; got != 3 {
				t.Errorf("Collisions: got %d; want 3", got)
			}
			gone := map[int]bool{}
			for _, i := range tt.order {
				refs[i].Release()
				gone[i] = true
				for j, d := range data {
					b, ok := st.Lookup([]byte(d), h)
					switch {
					case gone[j] && ok:
						t.Errorf("after releasing %v: Lookup(%q) found a body; want none", tt.order, d)
					case !gone[j] && (!ok || b != refs[j].Body()):
						t.Errorf("after releasing %q: Lookup(%q) = %p, %v; want %p, true", data[i], d, b, ok, refs[j].Body())
					}
				}
				n := 0
				st.Each(func(*Body, int) bool { n++; return true })
				if want := len(data) - len(gone); n != want {
					t.Errorf("Each visited %d bodies; want %d", n, want)
				}
			}
			checkEmpty(t, st)
		})
	}
}

func TestReleaseOrder(t *testing.T) {
	tests := []struct {
		name  string
		n     int   // refs to the same body; ref 0 is the charged one
		order []int // release order
	}{
		{"single ref", 1, []int{0}},
		{"charged first", 3, []int{0, 1, 2}},
		{"charged last", 3, []int{2, 1, 0}},
		{"charged in the middle", 3, []int{1, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := New(Config{})
			var refs []Ref
			for range tt.n {
				refs = append(refs, put(st, "same body", 0))
			}
			for k, i := range tt.order {
				refs[i].Release()
				left := len(tt.order) - k - 1
				s := st.Stats()
				wantBodies := int64(1)
				if left == 0 {
					wantBodies = 0
				}
				if s.Bodies != wantBodies || s.Refs != int64(left) {
					t.Errorf("after %d releases: got Bodies %d, Refs %d; want %d, %d", k+1, s.Bodies, s.Refs, wantBodies, left)
				}
				if b := refs[0].Body(); left > 0 && b.Refs() != left {
					t.Errorf("after %d releases: got Body.Refs %d; want %d", k+1, b.Refs(), left)
				}
				if _, ok := st.Lookup([]byte("same body"), Sum([]byte("same body"))); ok != (left > 0) {
					t.Errorf("after %d releases: Lookup found = %v; want %v", k+1, ok, left > 0)
				}
			}
			checkEmpty(t, st)
		})
	}
}

func TestCharging(t *testing.T) {
	// Steps: "p" puts the body (and wants the given charge), "r<i>" releases
	// the i-th ref put so far.
	type step struct {
		op        string
		charged   bool // for "p": want Ref.Charged
		uncharged bool // want UnchargedBytes == Size (else 0)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"new body charged, second ref uncharged", []step{
			{op: "p", charged: true}, {op: "p"}, {op: "p"},
		}},
		{"charged release with others left moves bytes to uncharged", []step{
			{op: "p", charged: true}, {op: "p"}, {op: "r0", uncharged: true},
		}},
		{"next put takes the charge back", []step{
			{op: "p", charged: true}, {op: "p"}, {op: "r0", uncharged: true},
			{op: "p", charged: true}, {op: "p"}, {op: "r2", uncharged: true}, {op: "r3", uncharged: true},
			{op: "p", charged: true},
		}},
		{"last release of an uncharged ref clears uncharged", []step{
			{op: "p", charged: true}, {op: "p"}, {op: "r0", uncharged: true}, {op: "r1"},
		}},
		{"uncharged released first leaves nothing uncharged", []step{
			{op: "p", charged: true}, {op: "p"}, {op: "r1"}, {op: "r0"},
		}},
		{"body put again after it left is charged again", []step{
			{op: "p", charged: true}, {op: "r0"}, {op: "p", charged: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := New(Config{})
			var refs []Ref
			live := map[int]bool{}
			var size int64
			for k, s := range tt.steps {
				if s.op == "p" {
					r := put(st, "a body of some length", 0)
					size = r.Body().Size()
					if r.Charged() != s.charged {
						t.Errorf("step %d: got Charged %v; want %v", k, r.Charged(), s.charged)
					}
					if want := map[bool]int64{true: size}[s.charged]; r.ChargedSize() != want {
						t.Errorf("step %d: got ChargedSize %d; want %d", k, r.ChargedSize(), want)
					}
					live[len(refs)] = true
					refs = append(refs, r)
				} else {
					var i int
					fmt.Sscanf(s.op, "r%d", &i)
					refs[i].Release()
					delete(live, i)
				}
				want := map[bool]int64{true: size}[s.uncharged]
				if got := st.Stats().UnchargedBytes; got != want {
					t.Errorf("step %d (%s): got UnchargedBytes %d; want %d", k, s.op, got, want)
				}
				if got := st.UnchargedBytes(); got != want {
					t.Errorf("step %d (%s): got UnchargedBytes() %d; want %d", k, s.op, got, want)
				}
				var held []Ref
				for i := range live {
					held = append(held, refs[i])
				}
				checkInvariant(t, st, held)
			}
			for i := range live {
				refs[i].Release()
			}
			checkEmpty(t, st)
		})
	}
}

// TestChargingRandom runs random puts and releases over a few bodies (with
// collisions and unshared small ones) and checks the invariant after each.
func TestChargingRandom(t *testing.T) {
	const seed = 1
	rng := rand.New(rand.NewPCG(seed, seed))
	st := New(Config{MinShareSize: 4})
	datas := []string{"", "ab", "abc", "abcd", "body one", "body two", "body three", "x"}
	var live []Ref
	for range 3000 {
		if len(live) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(live))
			live[i].Release()
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
		} else {
			d := datas[rng.IntN(len(datas))]
			h := uint64(0)
			if rng.IntN(3) == 0 {
				h = 99 // force collisions
			}
			live = append(live, put(st, d, h))
		}
		checkInvariant(t, st, live)
		if t.Failed() {
			t.Fatalf("seed %d: invariant broken", seed)
		}
	}
	for _, r := range live {
		r.Release()
	}
	checkEmpty(t, st)
}

func TestMinShareSize(t *testing.T) {
	st := New(Config{MinShareSize: 16})
	small := []Ref{put(st, "tiny", 0), put(st, "tiny", 0)}
	for i, r := range small {
		if !r.Charged() {
			t.Errorf("small ref %d: got uncharged; want charged (never shared)", i)
		}
	}
	if _, ok := st.Lookup([]byte("tiny"), Sum([]byte("tiny"))); ok {
		t.Errorf("Lookup(small body): got found; want not indexed")
	}
	n := 0
	st.Each(func(*Body, int) bool { n++; return true })
	if n != 0 {
		t.Errorf("Each: got %d indexed bodies; want 0", n)
	}
	if s := st.Stats(); s.Bodies != 2 || s.Shared != 0 {
		t.Errorf("got Bodies %d, Shared %d; want 2, 0", s.Bodies, s.Shared)
	}
	checkInvariant(t, st, small)
	for _, r := range small {
		r.Release()
	}
	checkEmpty(t, st)
}

func TestAux(t *testing.T) {
	st := New(Config{MinShareSize: 4})
	calls := 0
	aux := func(b []byte) (any, int64) {
		calls++
		return "aux:" + string(b), 100
	}
	p := func(s string) Ref { b := buf(s); return st.Put(b, Sum(b), aux) }
	tests := []struct {
		name      string
		data      string
		wantCalls int
	}{
		{"new body", "body one", 1},
		{"same body again", "body one", 1},
		{"and again", "body one", 1},
		{"another body", "body two", 2},
		{"small unshared body is new each time", "abc", 3},
		{"small again", "abc", 4},
	}
	var refs []Ref
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p(tt.data)
			refs = append(refs, r)
			if calls != tt.wantCalls {
				t.Errorf("aux calls: got %d; want %d", calls, tt.wantCalls)
			}
			if got, want := r.Body().Aux(), "aux:"+tt.data; got != want {
				t.Errorf("Aux: got %v; want %v", got, want)
			}
			if got, want := r.Body().Size(), int64(cap(Alloc(len(tt.data))))+100; got != want {
				t.Errorf("Size: got %d; want %d (capacity + aux bytes)", got, want)
			}
		})
	}
	checkInvariant(t, st, refs)
	for _, r := range refs {
		r.Release()
	}
	checkEmpty(t, st)
}

func TestZeroRef(t *testing.T) {
	st := New(Config{})
	r := put(st, "keep", 0)
	before := st.Stats()
	var z Ref
	z.Release()
	z.Release()
	if z.Body() != nil || z.Bytes() != nil || z.Charged() || z.ChargedSize() != 0 {
		t.Errorf("zero Ref: got Body %v, Bytes %v, Charged %v, ChargedSize %d; want nil, nil, false, 0",
			z.Body(), z.Bytes(), z.Charged(), z.ChargedSize())
	}
	if after := st.Stats(); after != before {
		t.Errorf("releasing the zero Ref changed stats: got %+v; want %+v", after, before)
	}
	r.Release()
	checkEmpty(t, st)
}

func TestBadRelease(t *testing.T) {
	tests := []struct {
		name string
		refs int // refs to one body, all released once, then ref 0 again
		h    uint64
	}{
		{"single ref released twice", 1, 0},
		{"all of three released, then one again", 3, 0},
		{"collision chain member released twice", 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := New(Config{})
			other := put(st, "other", tt.h) // must survive the bad release
			var refs []Ref
			for range tt.refs {
				refs = append(refs, put(st, "victim", tt.h))
			}
			for _, r := range refs {
				r.Release()
			}
			refs[0].Release()
			if got := st.Stats().BadReleases; got != 1 {
				t.Errorf("BadReleases: got %d; want 1", got)
			}
			checkInvariant(t, st, []Ref{other})
			if b, ok := st.Lookup([]byte("other"), other.Body().Hash()); !ok || b != other.Body() {
				t.Errorf("Lookup(other) after a bad release: got %p, %v; want %p, true", b, ok, other.Body())
			}
			other.Release()
			checkEmpty(t, st)
		})
	}
}

func TestLookupNoAlloc(t *testing.T) {
	st := New(Config{})
	data := bytes.Repeat([]byte("x"), 1024)
	r := st.Put(bytes.Clone(data), Sum(data), nil)
	defer r.Release()
	h := Sum(data)
	if n := testing.AllocsPerRun(1000, func() {
		if _, ok := st.Lookup(data, h); !ok {
			panic("miss")
		}
	}); n != 0 {
		t.Errorf("Lookup allocs: got %v; want 0", n)
	}
}

func TestConcurrent(t *testing.T) {
	const (
		workers = 8
		hold    = 16 // refs a worker holds at most
	)
	ops := 20000
	if testing.Short() {
		ops = 2000
	}
	st := New(Config{MinShareSize: 8})
	datas := make([][]byte, 12)
	for i := range datas {
		datas[i] = bytes.Repeat([]byte{byte('a' + i)}, 1+i*100) // 1..1101 bytes, 0 is below MinShareSize
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var mine []Ref
			for range ops {
				if len(mine) == hold || (len(mine) > 0 && rng.IntN(2) == 0) {
					i := rng.IntN(len(mine))
					mine[i].Release()
					mine[i] = mine[len(mine)-1]
					mine = mine[:len(mine)-1]
					continue
				}
				d := datas[rng.IntN(len(datas))]
				h := Sum(d)
				if rng.IntN(4) == 0 {
					h = 3 // a shared collision chain
				}
				r := st.Put(bytes.Clone(d), h, nil)
				if !bytes.Equal(r.Bytes(), d) {
					t.Errorf("Put returned other bytes")
				}
				mine = append(mine, r)
			}
			for _, r := range mine {
				r.Release()
			}
		})
	}
	wg.Wait()
	if got := st.Stats().BadReleases; got != 0 {
		t.Errorf("BadReleases: got %d; want 0", got)
	}
	checkEmpty(t, st)
}

// TestRefIsOnePointer: a Ref is one pointer into its Body (see Body.tag),
// charged or not, and still says which it is and which body it refers to.
func TestRefIsOnePointer(t *testing.T) {
	st := New(Config{})
	a := put(st, "same bytes", 0)
	b := put(st, "same bytes", 0)
	if !a.Charged() || b.Charged() {
		t.Fatalf("Charged: first %v, second %v; want true, false", a.Charged(), b.Charged())
	}
	if a.Body() == nil || a.Body() != b.Body() {
		t.Fatalf("Body: %p and %p; want the same body", a.Body(), b.Body())
	}
	if string(a.Bytes()) != "same bytes" || string(b.Bytes()) != "same bytes" {
		t.Fatalf("Bytes: %q, %q", a.Bytes(), b.Bytes())
	}
	if a.ChargedSize() != a.Body().Size() || b.ChargedSize() != 0 {
		t.Errorf("ChargedSize: %d, %d; want %d, 0", a.ChargedSize(), b.ChargedSize(), a.Body().Size())
	}
	var zero Ref
	if zero.Body() != nil || zero.Bytes() != nil || zero.Charged() || zero.ChargedSize() != 0 {
		t.Errorf("the zero Ref refers to something")
	}
	zero.Release()
	// Released in either order, the accounting ends at zero.
	a.Release()
	if got := st.Stats().UnchargedBytes; got == 0 {
		t.Errorf("after the charged ref left: UnchargedBytes 0; want the body's size")
	}
	b.Release()
	if s := st.Stats(); s.Bodies != 0 || s.UnchargedBytes != 0 {
		t.Errorf("after both: %+v; want empty", s)
	}
}
