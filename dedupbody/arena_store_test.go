package dedupbody

import (
	"bytes"
	"fmt"
	"testing"

	"dedupcache/dedupbody/arena"
)

func newArenaStore(t *testing.T) (*Store, *arena.Arena) {
	t.Helper()
	a := arena.New(arena.Config{RetainBytes: -1})
	t.Cleanup(func() { _ = a.Close() })
	return New(Config{Arena: a}), a
}

// TestArenaBodies checks that with an arena every new body is a copy in
// it (the caller's buffer is neither kept nor needed), that equal bodies
// share one slot, and that the slot goes back at the last release.
func TestArenaBodies(t *testing.T) {
	for _, put := range []struct {
		name string
		fn   func(*Store, []byte) Ref
	}{
		{"Put", func(s *Store, b []byte) Ref { return s.Put(b, Sum(b), nil) }},
		{"PutCopy", func(s *Store, b []byte) Ref { return s.PutCopy(b, Sum(b), nil) }},
	} {
		t.Run(put.name, func(t *testing.T) {
			st, a := newArenaStore(t)
			src := bytes.Repeat([]byte("a"), 4096)
			r1 := put.fn(st, src)
			src[0] = 'X' // the caller's buffer is not the stored one
			if got := r1.Bytes(); got[0] != 'a' || len(got) != 4096 {
				t.Fatalf("stored bytes changed with the caller's buffer")
			}
			r2 := put.fn(st, bytes.Repeat([]byte("a"), 4096))
			if &r1.Bytes()[0] != &r2.Bytes()[0] {
				t.Errorf("equal bodies: two copies; want one shared slot")
			}
			as := a.Stats()
			if as.Live != 1 || as.InUse != 4096 || st.Stats().Bytes != 4096 {
				t.Errorf("after 2 puts of one body: arena live %d in use %d, store bytes %d; want 1, 4096, 4096",
					as.Live, as.InUse, st.Stats().Bytes)
			}
			r1.Release()
			if a.Stats().Live != 1 {
				t.Errorf("freed while a reference remains")
			}
			r2.Release()
			// A poison build holds freed slots back (poisoned) for a while.
			if as := a.Stats(); as.Live != 0 || (as.Mapped != 0 && !arena.Poisoned()) {
				t.Errorf("after the last release: arena live %d mapped %d; want 0 0", as.Live, as.Mapped)
			}
		})
	}
}

// TestArenaChargesClassSize checks that a body's Size is what its slot
// takes from the arena (its class), so the cache's budget counts it.
func TestArenaChargesClassSize(t *testing.T) {
	st, a := newArenaStore(t)
	for _, n := range []int{1, 100, 4096, 5000, 200 << 10} {
		b := bytes.Repeat([]byte{byte(n)}, n)
		r := st.Put(b, Sum(b), nil)
		if got, want := r.Body().Size(), int64(a.RoundSize(n)); got != want {
			t.Errorf("%d bytes: Size %d; want the arena's %d", n, got, want)
		}
		if !bytes.Equal(r.Bytes(), b) {
			t.Errorf("%d bytes: stored bytes differ", n)
		}
		r.Release()
	}
	if as := a.Stats(); as.Live != 0 {
		t.Errorf("arena live %d after releasing everything; want 0", as.Live)
	}
}

// TestArenaReleasedSlotIsReused shows why a reader must hold a reference:
// the slot of a released body is handed to the next body of its class
// (with the arenapoison tag, freed slots are poisoned and held back first).
func TestArenaReleasedSlotIsReused(t *testing.T) {
	st, _ := newArenaStore(t)
	keep := st.Put([]byte("a neighbour keeps the slab mapped"[:32]), 2, nil)
	defer keep.Release()
	r := st.Put([]byte("first body, 32 bytes long......."), 1, nil)
	stale := r.Bytes()
	r.Release()
	want := "first body, 32 bytes long......."
	if arena.Poisoned() {
		want = string(bytes.Repeat([]byte{arena.PoisonByte}, len(want)))
	}
	if got := string(stale); got != want {
		t.Fatalf("released slot reads %q; want %q", got, want)
	}
	var rs []Ref
	for i := range 300 { // more than a poison build's quarantine
		b := []byte(fmt.Sprintf("other body %-21d", i))
		rs = append(rs, st.Put(b, Sum(b), nil))
	}
	if string(stale) == "first body, 32 bytes long......." {
		t.Errorf("the freed slot was never reused")
	}
	for _, r := range rs {
		r.Release()
	}
}
