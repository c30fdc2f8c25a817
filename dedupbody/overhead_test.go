package dedupbody

import (
	"encoding/binary"
	"runtime"
	"testing"

	"dedupcache/internal/testutil"
)

// TestBodyOverhead measures B, the heap a stored body costs beyond its data:
// the Body struct, its index map slot (with the map's growth slack) and the
// chain link. It only sanity-checks the figure; the log is the result.
func TestBodyOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement; skipped under -short")
	}
	const n, size = 100_000, 64
	st := New(Config{})
	refs := make([]Ref, 0, n)
	before := testutil.HeapAlloc()
	var data int64
	for i := range n {
		b := Alloc(size)[:size]
		binary.LittleEndian.PutUint64(b, uint64(i))
		data += int64(cap(b))
		refs = append(refs, st.Put(b, Sum(b), nil))
	}
	after := testutil.HeapAlloc()
	if got := st.Stats().Bodies; got != n {
		t.Fatalf("Bodies: got %d; want %d", got, n)
	}
	perBody := (int64(after) - int64(before) - data) / n
	t.Logf("per-body overhead B = %d bytes (%d bodies of %d bytes; heap +%d B, data %d B)",
		perBody, n, size, after-before, data)
	if perBody <= 32 || perBody >= 400 {
		t.Errorf("B: got %d; want 32 < B < 400", perBody)
	}
	for _, r := range refs {
		r.Release()
	}
	runtime.KeepAlive(st)
}
