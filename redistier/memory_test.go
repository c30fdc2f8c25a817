package redistier

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// usedMemory returns INFO memory's used_memory.
func usedMemory(tb testing.TB, s *server) int64 {
	for _, line := range strings.Split(s.mustDo("INFO", "memory"), "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	tb.Fatal("no used_memory in INFO memory")
	return 0
}

// storeBytes stores n entries over k distinct bodies of size bytes into a
// flushed server and returns Redis's used_memory growth per entry.
func storeBytes(tb testing.TB, s *server, cfg Config, n, k, size int) float64 {
	tb.Helper()
	s.mustDo("FLUSHALL")
	tr := newTier(tb, s, cfg)
	defer tr.Close()
	bodies := make([][]byte, k)
	for i := range bodies {
		bodies[i] = body(size, "body "+strconv.Itoa(i)+" ")
	}
	// Warm the control hash and the scripts before the baseline.
	put(tb, tr, "warm /", testRecord(), body(size+1, "w"))
	before := usedMemory(tb, s)
	ctx := context.Background()
	for i := range n {
		key := "api.example.com /v1/items/" + strconv.Itoa(i) + "?lang=en"
		_, _, gen, _ := tr.Get(ctx, key, nil)
		tr.Put(key, gen, "", nil, testRecord(), bodies[i%k], time.Hour)
		if i%100 == 99 {
			flush(tb, tr)
		}
	}
	flush(tb, tr)
	if st := tr.Stats(); st.PutsWritten != uint64(n)+1 {
		tb.Fatalf("written %d of %d puts: %+v", st.PutsWritten, n+1, st)
	}
	return float64(usedMemory(tb, s)-before) / float64(n)
}

// TestRedisBytesPerKey measures Redis memory per stored entry (used_memory
// growth / entries) with 4 KiB bodies, N=1000 entries over K=100 and K=N
// distinct bodies, with sharing (content-addressed body keys) and without
// (every body inlined in its entry). The lead quotes the logged table.
func TestRedisBytesPerKey(t *testing.T) {
	s := startServer(t)
	const n, size = 1000, 4096
	t.Logf("Redis used_memory per entry, N=%d entries, %d B bodies, header %d B:", n, size, len(testRecord().Header))
	for _, k := range []int{100, n} {
		shared := storeBytes(t, s, Config{}, n, k, size)
		inline := storeBytes(t, s, Config{InlineMax: 1 << 20}, n, k, size)
		t.Logf("  K=%4d bodies: shared %7.0f B/entry, not shared %7.0f B/entry (%.1fx)", k, shared, inline, inline/shared)
		if k < n && shared*2 > inline {
			t.Errorf("K=%d: sharing saves less than half: %.0f vs %.0f", k, shared, inline)
		}
	}
}

// TestInlineThreshold measures what an entry costs in Redis with its body
// inlined or under its own key, by body size, with every body used by one
// entry and by ten; DefaultInlineMax is set from it.
func TestInlineThreshold(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	s := startServer(t)
	const n = 500
	t.Logf("Redis used_memory per entry (B), %d entries:", n)
	t.Logf("  %6s  %14s %14s  %14s %14s", "body", "1 ref inline", "1 ref keyed", "10 refs inline", "10 refs keyed")
	for _, size := range []int{64, 128, 256, 512, 1024, 2048} {
		var row []float64
		for _, refs := range []int{1, 10} {
			row = append(row,
				storeBytes(t, s, Config{InlineMax: 1 << 20}, n, n/refs, size),
				storeBytes(t, s, Config{InlineMax: -1}, n, n/refs, size))
		}
		t.Logf("  %6d  %14.0f %14.0f  %14.0f %14.0f", size, row[0], row[1], row[2], row[3])
	}
}
