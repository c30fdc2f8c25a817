// Command missproto is a measuring stick, not a cache: the least a miss can
// cost on fasthttp (its server, its HostClient to the origin, the body
// copied into a map, no RFC 9111 logic, no streaming, no coalescing, no
// memory bound). BENCHMARKS.md compares it with nginx on scenario m to show
// how far a fasthttp-native miss path could go:
//
//	go build -o /tmp/missproto ./bench/missproto
//	OURS_CMD="/tmp/missproto -listen 127.0.0.1:{port} -upstream {upstream}" OURS_HIT_HEADER=X-Cache \
//	  bench/run.sh --mode miss -n 50000 -k 50000 --size 4k --warm-c 8 -r 3 --targets "nginx ours"
package main

import (
	"flag"
	"log"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:38086", "")
	up := flag.String("upstream", "127.0.0.1:38080", "")
	flag.Parse()
	c := &fasthttp.HostClient{Addr: *up, MaxConns: 512, NoDefaultUserAgentHeader: true, DisablePathNormalizing: true}
	var mu sync.RWMutex
	store := map[uint64][]byte{}
	h := func(ctx *fasthttp.RequestCtx) {
		k := xxhash.Sum64(ctx.RequestURI())
		mu.RLock()
		b, ok := store[k]
		mu.RUnlock()
		if ok {
			ctx.Response.Header.Set("X-Cache", "HIT")
			ctx.Response.SetBodyRaw(b)
			return
		}
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		ctx.Request.Header.CopyTo(&req.Header)
		req.SetHost(*up)
		if err := c.Do(req, resp); err != nil {
			fasthttp.ReleaseRequest(req)
			fasthttp.ReleaseResponse(resp)
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
			return
		}
		body := append([]byte(nil), resp.Body()...)
		mu.Lock()
		store[k] = body
		mu.Unlock()
		resp.Header.CopyTo(&ctx.Response.Header)
		ctx.Response.Header.Set("X-Cache", "MISS")
		ctx.Response.SetBodyRaw(body)
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	log.Fatal((&fasthttp.Server{Handler: h}).ListenAndServe(*listen))
}
