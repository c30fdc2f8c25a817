package redistier

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// BenchmarkClient compares the two Redis clients on the tier's own access
// pattern against a real server: a read is GET entry then GET body (two
// dependent round trips), a write is SET body NX PX + SET entry PX sent as
// one pipeline. 16 goroutines share one client, as concurrent proxy
// requests would. The package doc quotes the figures.
func BenchmarkClient(b *testing.B) {
	s := startServer(b)
	entry := make([]byte, 300)
	body := make([]byte, 4096)
	const keys = 1000
	seed := func(set func(k string, v []byte)) {
		for i := range keys {
			set("e:"+strconv.Itoa(i), entry)
			set("b:"+strconv.Itoa(i), body)
		}
	}

	b.Run("rueidis", func(b *testing.B) {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.addr()}, DisableCache: true, DisableRetry: true})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		seed(func(k string, v []byte) {
			c.Do(ctx, c.B().Set().Key(k).Value(rueidis.BinaryString(v)).Build())
		})
		b.Run("read", func(b *testing.B) {
			var n atomic.Int64
			b.SetBytes(int64(len(entry) + len(body)))
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := strconv.Itoa(int(n.Add(1) % keys))
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					e, err := c.Do(cctx, c.B().Get().Key("e:"+i).Build()).AsBytes()
					if err != nil || len(e) != len(entry) {
						b.Error(err)
					}
					v, err := c.Do(cctx, c.B().Get().Key("b:"+i).Build()).AsBytes()
					if err != nil || len(v) != len(body) {
						b.Error(err)
					}
					cancel()
				}
			})
		})
		b.Run("write", func(b *testing.B) {
			var n atomic.Int64
			b.SetBytes(int64(len(entry) + len(body)))
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := strconv.Itoa(int(n.Add(1)))
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					for _, r := range c.DoMulti(cctx,
						c.B().Set().Key("wb:"+i).Value(rueidis.BinaryString(body)).Nx().Px(time.Minute).Build(),
						c.B().Set().Key("we:"+i).Value(rueidis.BinaryString(entry)).Px(time.Minute).Build()) {
						if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
							b.Error(err)
						}
					}
					cancel()
				}
			})
		})
	})

	b.Run("go-redis", func(b *testing.B) {
		c := goredis.NewClient(&goredis.Options{Addr: s.addr(), MaxRetries: -1})
		defer c.Close()
		ctx := context.Background()
		seed(func(k string, v []byte) { c.Set(ctx, k, v, 0) })
		b.Run("read", func(b *testing.B) {
			var n atomic.Int64
			b.SetBytes(int64(len(entry) + len(body)))
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := strconv.Itoa(int(n.Add(1) % keys))
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					e, err := c.Get(cctx, "e:"+i).Bytes()
					if err != nil || len(e) != len(entry) {
						b.Error(err)
					}
					v, err := c.Get(cctx, "b:"+i).Bytes()
					if err != nil || len(v) != len(body) {
						b.Error(err)
					}
					cancel()
				}
			})
		})
		b.Run("write", func(b *testing.B) {
			var n atomic.Int64
			b.SetBytes(int64(len(entry) + len(body)))
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := strconv.Itoa(int(n.Add(1)))
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					_, err := c.Pipelined(cctx, func(p goredis.Pipeliner) error {
						p.SetNX(cctx, "wb:"+i, body, time.Minute)
						p.Set(cctx, "we:"+i, entry, time.Minute)
						return nil
					})
					if err != nil && err != goredis.Nil {
						b.Error(err)
					}
					cancel()
				}
			})
		})
	})
}
