//go:build arenapoison

package arena

import (
	"bytes"
	"fmt"
	"testing"
)

func TestPoison(t *testing.T) {
	if !Poisoned() {
		t.Fatal("Poisoned() = false with the arenapoison tag")
	}
	tests := []struct {
		name string
		n    int
	}{
		{"small", 100},
		{"page", 4096},
		{"largest class", slabSize / 8},
		{"dedicated", slabSize/8 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(Config{})
			defer a.Close()
			s, _ := a.Alloc(tt.n)
			copy(s.Bytes(), bytes.Repeat([]byte("x"), tt.n))
			stale := s.Bytes()[:cap(s.Bytes())]
			a.Free(s)
			want := bytes.Repeat([]byte{PoisonByte}, len(stale))
			if !bytes.Equal(stale, want) {
				t.Fatalf("after Free: stale slice does not read as %#x", PoisonByte)
			}
			// Further allocations of the class must not be handed the
			// quarantined slot.
			var more []Slot
			for range 7 {
				m, _ := a.Alloc(tt.n)
				if addr(m.Bytes()) == addr(stale) {
					t.Fatalf("a quarantined slot was handed out again")
				}
				copy(m.Bytes(), bytes.Repeat([]byte("y"), tt.n))
				more = append(more, m)
			}
			if !bytes.Equal(stale, want) {
				t.Errorf("after more allocations: stale slice does not read as %#x", PoisonByte)
			}
			for _, m := range more {
				a.Free(m)
			}
			checkStats(t, a, nil)
		})
	}
}

// TestQuarantineBound checks that the quarantine holds Config.Quarantine
// slots per class and then lets the oldest go back into use.
func TestQuarantineBound(t *testing.T) {
	const q = 4
	a := New(Config{Quarantine: q})
	defer a.Close()
	var slots []Slot
	for range 10 {
		s, _ := a.Alloc(1000)
		slots = append(slots, s)
	}
	for i, s := range slots {
		a.Free(s)
		if got, want := a.Stats().Quarantined, int64(min(i+1, q)); got != want {
			t.Fatalf("after %d frees: Quarantined %d; want %d", i+1, got, want)
		}
	}
	st := checkStats(t, a, nil)
	if st.QuarantinedBytes != q*1024 {
		t.Errorf("QuarantinedBytes: got %d; want %d", st.QuarantinedBytes, q*1024)
	}
	// The first six freed slots left quarantine: the lowest is reused.
	s, _ := a.Alloc(1000)
	if addr(s.Bytes()) != addr(slots[0].Bytes()) {
		t.Errorf("Alloc after the quarantine let slot 0 go: got %#x; want %#x", addr(s.Bytes()), addr(slots[0].Bytes()))
	}
	a.Free(s)
	mustPanic(t, "double Free", func() { a.Free(slots[9]) }) // still in quarantine
}

func ExamplePoisoned() {
	fmt.Println(Poisoned())
	// Output: true
}
