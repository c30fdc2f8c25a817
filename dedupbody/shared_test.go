package dedupbody

import (
	"fmt"
	"testing"
)

// sharedStore returns a store holding refs[i] references to a body "b<i>",
// and the refs to release.
func sharedStore(refs []int) (*Store, []Ref) {
	st := New(Config{})
	var live []Ref
	for i, n := range refs {
		for range n {
			live = append(live, put(st, fmt.Sprintf("b%d", i), 0))
		}
	}
	return st, live
}

func TestMostShared(t *testing.T) {
	tests := []struct {
		name       string
		refs       []int // references per body
		n, minRefs int
		want       []int // Refs of the rows, in order
	}{
		{"empty store", nil, 10, 2, nil},
		{"n zero", []int{3, 2}, 0, 1, nil},
		{"below minRefs left out", []int{1, 1, 4, 2}, 10, 2, []int{4, 2}},
		{"most shared first", []int{2, 5, 3, 9, 4}, 10, 1, []int{9, 5, 4, 3, 2}},
		{"only n rows kept", []int{2, 5, 3, 9, 4, 7, 1}, 3, 1, []int{9, 7, 5}},
		{"ties", []int{3, 3, 3, 2}, 2, 1, []int{3, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, live := sharedStore(tt.refs)
			got := st.MostShared(tt.n, tt.minRefs)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d rows; want %d", len(got), len(tt.want))
			}
			for i, row := range got {
				if row.Refs != tt.want[i] || row.Body.Refs() != row.Refs {
					t.Errorf("row %d: got %d refs (body has %d); want %d", i, row.Refs, row.Body.Refs(), tt.want[i])
				}
			}
			for _, r := range live {
				r.Release()
			}
			checkEmpty(t, st)
		})
	}
}

// TestMostSharedLockHeldBriefly pins what MostShared does under the store's
// lock: a walk that fills the n-row result and nothing else. Whatever the
// number of bodies (20,000 here, most of them shared), it allocates only
// the result (so no per-body formatting, sorting or map building happens
// while Put and Release wait), and the lock is free when it returns.
func TestMostSharedLockHeldBriefly(t *testing.T) {
	refs := make([]int, 20000)
	for i := range refs {
		refs[i] = 2 + i%7
	}
	st, live := sharedStore(refs)
	defer func() {
		for _, r := range live {
			r.Release()
		}
	}()
	var rows []Shared
	if n := testing.AllocsPerRun(20, func() { rows = st.MostShared(10, 2) }); n != 1 {
		t.Errorf("MostShared over %d bodies: %v allocations; want 1 (the result)", len(refs), n)
	}
	if len(rows) != 10 || rows[0].Refs != 8 || rows[9].Refs != 8 {
		t.Errorf("got %d rows, first %d refs, last %d; want 10 rows of 8", len(rows), rows[0].Refs, rows[len(rows)-1].Refs)
	}
	if !st.mu.TryLock() {
		t.Fatal("store lock still held after MostShared returned")
	}
	st.mu.Unlock()
}

func BenchmarkMostShared(b *testing.B) {
	refs := make([]int, 100000)
	for i := range refs {
		refs[i] = 1 + i%5
	}
	st, _ := sharedStore(refs)
	b.ReportAllocs()
	for b.Loop() {
		st.MostShared(10, 2)
	}
}
