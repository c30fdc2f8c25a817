package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"golang.org/x/sync/singleflight"
)

// Request coalescing. Concurrent misses for one cache key make one upstream
// request: the first request (the leader) goes upstream and streams the
// response to its own client while it is stored; the others (waiters)
// wait for the leader to finish, then look the key up again and are
// answered from the cache. Flights are keyed by the primary key, so a
// response with Vary may not suit a waiter: that waiter then goes upstream
// itself.
//
// What waiters do when the leader did not store a response:
//   - not storable (no-store, private, ...): the leader marked the key
//     hit-for-miss (see markHitForMiss), and the waiters and every request
//     for the next hitForMissTTL go straight upstream without queueing.
//   - the leader failed (upstream error, body cut off): each waiter
//     forwards its own request; they get their own answer or error, never
//     a silent failure.
//
// The leader's upstream fetch is detached from its client: if that client
// hangs up, the fetch goes on and the capture reads the rest of the body
// (bounded by max_object_size and the upstream read timeout), so the
// waiters are still answered from the cache.
//
// Each waiter honours its own client's cancellation. The leader's work
// runs on singleflight's goroutine and writes to the leader's
// ResponseWriter; the leader's handler waits for it whatever happens, so it
// never returns while that goroutine may still write. If the leader's
// client gives up before that goroutine has started, the gate below makes
// the goroutine do nothing (errLeaderGone) and the waiters forward their
// own requests.

// errLeaderGone is the flight result when the leader's client left before
// its fetch started.
var errLeaderGone = errors.New("proxy: coalesced leader went away")

// flightResult is what a flight's leader reports to its waiters.
type flightResult struct {
	stored bool // a response is now stored under the key
	panicV any  // the leader's panic (http.ErrAbortHandler), re-raised by the leader only
}

// gate hands the leader's ResponseWriter to the flight goroutine, or
// withholds it if the leader's client left first.
type gate struct {
	mu    sync.Mutex
	state uint8 // 0 pending, 1 running, 2 abandoned
}

func (g *gate) start() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == 2 {
		return false
	}
	g.state = 1
	return true
}

// abandon reports whether the flight had not started (and now never will
// touch the writer).
func (g *gate) abandon() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == 1 {
		return false
	}
	g.state = 2
	return true
}

// coalesce runs the miss for f through a flight. It returns when the
// response has been written.
func (p *Proxy) coalesce(w http.ResponseWriter, r *http.Request, f *fill) {
	key := keyString(f.host, f.uri)
	g := &gate{}
	ch := p.flights.DoChan(key, func() (v any, err error) {
		if !g.start() {
			return flightResult{}, errLeaderGone
		}
		res := flightResult{}
		defer func() {
			// A panic here would crash the process (singleflight re-panics
			// on a fresh goroutine when DoChan waiters exist), so hand it to
			// the leader's handler instead.
			if pv := recover(); pv != nil {
				res.panicV = pv
			}
			v = res
		}()
		f.leader = true
		// The leader's fetch does not die with its client (its waiters
		// need the response): detach it from the client's cancellation.
		// The new context has a Done channel, so ReverseProxy does not
		// fall back to CloseNotify; it ends on proxy Close, and the
		// upstream timeouts bound it.
		ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
		defer cancel()
		defer context.AfterFunc(p.ctx, cancel)()
		p.leaderServe(w, r.WithContext(ctx), f)
		res.stored = f.committed.Load()
		return res, nil
	})
	select {
	case out := <-ch:
		p.afterFlight(w, r, f, out)
	case <-r.Context().Done():
		if g.abandon() {
			return // a waiter, or a leader that never started: nothing written
		}
		// This request leads and its fetch is running: wait for it to
		// notice the cancellation itself.
		p.afterFlight(w, r, f, <-ch)
	}
}

// afterFlight finishes a request once its flight is over.
func (p *Proxy) afterFlight(w http.ResponseWriter, r *http.Request, f *fill, out singleflight.Result) {
	res, _ := out.Val.(flightResult)
	if f.leader {
		if res.panicV != nil {
			panic(res.panicV)
		}
		return
	}
	// A waiter: the leader's response, if stored, is in the cache now.
	if res.stored && p.serveFromCache(w, r, f.fwd) {
		p.coalesced.Add(1)
		return
	}
	f.fwd = "miss"
	p.forward(w, r, f)
}

// leaderServe is the leader's miss: look again (another flight may have
// just stored the response: see groupcache's Group.load), then forward.
func (p *Proxy) leaderServe(w http.ResponseWriter, r *http.Request, f *fill) {
	if f.stale == nil && p.serveFromCache(w, r, "") {
		return
	}
	p.forward(w, r, f)
}
