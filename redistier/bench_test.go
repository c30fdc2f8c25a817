package redistier

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkTier measures the Tier's own calls against a real server: Get
// of an entry with a 4 KiB body stored under its own key (two round trips
// and a SHA-256 check), Get with the body found locally (have), and Put
// until written (four round trips: control hash, body lease, entry
// script). 16 goroutines share the Tier.
func BenchmarkTier(b *testing.B) {
	s := startServer(b)
	tr := newTier(b, s, Config{Timeout: time.Second, QueueSize: 1 << 16})
	ctx := context.Background()
	const keys = 1000
	bd := body(4096, "bench body ")
	for i := range keys {
		put(b, tr, "h /"+strconv.Itoa(i), testRecord(), bd)
	}
	b.Run("get", func(b *testing.B) {
		var n atomic.Int64
		b.SetBytes(int64(len(bd)))
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, _, ok := tr.Get(ctx, "h /"+strconv.Itoa(int(n.Add(1)%keys)), nil); !ok {
					b.Error("miss")
				}
			}
		})
	})
	b.Run("get-have", func(b *testing.B) {
		var n atomic.Int64
		have := func([32]byte) []byte { return bd }
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, _, ok := tr.Get(ctx, "h /"+strconv.Itoa(int(n.Add(1)%keys)), have); !ok {
					b.Error("miss")
				}
			}
		})
	})
	var run atomic.Int64
	b.Run("put", func(b *testing.B) {
		// Fresh keys: one Gen (no generation yet) serves them all.
		var n atomic.Int64
		prefix := "h /new" + strconv.Itoa(int(run.Add(1))) + "/"
		_, _, gen, _ := tr.Get(ctx, prefix, nil)
		b.SetBytes(int64(len(bd)))
		b.ReportAllocs()
		start := tr.Stats().PutsWritten
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				tr.Put(prefix+strconv.Itoa(int(i)), gen, "", nil, testRecord(), body(4096, strconv.Itoa(int(i))), time.Hour)
				for tr.Stats().PutsQueued-tr.Stats().PutsWritten-tr.Stats().PutsRefused-tr.Stats().PutsFailed > 256 {
					time.Sleep(10 * time.Microsecond)
				}
			}
		})
		flush(b, tr)
		if st := tr.Stats(); st.PutsWritten-start != uint64(n.Load()) {
			b.Errorf("written %d of %d: %+v", st.PutsWritten-start, n.Load(), st)
		}
	})
}
