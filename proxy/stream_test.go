package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"dedupcache/dedupbody/arena"
)

// TestStreamBuffersReturnAfterLastUser: a stored body's buffer comes from
// a pool and goes back to it only once the fetch has ended and every
// reader has detached; the bytes a reader got stay intact until it
// detaches, and a reader that comes after that is refused (it would read
// a buffer someone else may be filling).
func TestStreamBuffersReturnAfterLastUser(t *testing.T) {
	p, _ := newTestProxy(t, "http://127.0.0.1:9", nil)
	want := bytes.Repeat([]byte("0123456789abcdef"), 512) // 8 KiB: one pooled buffer of its own class
	for _, tc := range []struct {
		name       string
		fetchFirst bool // the fetch ends before the reader detaches
	}{
		{"reader-detaches-last", true},
		{"fetch-ends-last", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStream(p, "h /k", &fill{}, func() {})
			rd, ok := s.attach()
			if !ok {
				t.Fatal("attach to a new stream failed")
			}
			if _, err := s.write(want[:4096], false); err != nil {
				t.Fatal(err)
			}
			if _, err := s.write(want[4096:], false); err != nil {
				t.Fatal(err)
			}
			if len(s.pooled) == 0 {
				t.Fatal("the body's buffer is not a pooled one")
			}
			got, _, _, _ := rd.next(context.Background())
			s.end(true)
			if tc.fetchFirst {
				s.release()
				// Another stream takes buffers from the pool meanwhile.
				o := newStream(p, "h /o", &fill{}, func() {})
				_, _ = o.write(bytes.Repeat([]byte{'x'}, len(want)), false)
				if !bytes.Equal(got, want) {
					t.Fatal("a reader's bytes changed while it was attached")
				}
				rd.detach()
				o.release()
			} else {
				rd.detach()
				if !bytes.Equal(got, want) || s.spent {
					t.Fatal("the buffer went back while the fetch still held it")
				}
				s.release()
			}
			if !s.spent || s.buf != nil {
				t.Fatal("the stream is not spent after its last user")
			}
			if arena.Poisoned() && got[0] != arena.PoisonByte {
				t.Fatal("a buffer given back is not poisoned in a poison build")
			}
			if _, ok := s.attach(); ok {
				t.Fatal("a reader attached to a spent stream")
			}
			rd.detach() // a second detach does nothing
			if s.users != 0 {
				t.Fatalf("users %d after a second detach, want 0", s.users)
			}
		})
	}
}

// TestLateWaiterServedFromEntry: a waiter that joined a fetch but could
// attach only once the stream was spent (the fetch over, its readers done,
// its buffer back in the pool) is answered from the stored entry as a
// collapsed hit, not with a request of its own.
func TestLateWaiterServedFromEntry(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "stored body")
	})
	p, srv := newTestProxy(t, o.URL, nil)
	getDiscard(t, srv.URL+"/k")
	host := strings.TrimPrefix(srv.URL, "http://")
	e, ok := p.store.Get(keyHash(host, "/k"))
	if !ok {
		t.Fatal("the response was not stored")
	}
	// The stream the entry came from, as a late waiter finds it: decided,
	// stored, spent, done.
	s := newStream(p, keyString(host, "/k"), &fill{status: StatusMiss, fwd: "uri-miss"}, func() {})
	s.entry = e
	s.decided(kindStore)
	s.end(true)
	s.release()
	close(s.done)
	if _, ok := s.attach(); ok {
		t.Fatal("attached to a spent stream")
	}
	r := httptest.NewRequest("GET", "/k", nil)
	r.Host = host
	w := httptest.NewRecorder()
	p.follow(w, r, &fill{status: StatusMiss, fwd: "uri-miss", host: host, uri: "/k"}, s, nil, false)
	if w.Code != 200 || w.Body.String() != "stored body" {
		t.Fatalf("late waiter got %d %q", w.Code, w.Body.String())
	}
	if xc, cs := w.Header().Get("X-Cache"), w.Header().Get("Cache-Status"); xc != "HIT" || !strings.Contains(cs, "collapsed") {
		t.Fatalf("late waiter: X-Cache %q, Cache-Status %q; want a collapsed hit", xc, cs)
	}
	if got := o.hits.Load(); got != 1 {
		t.Fatalf("upstream requests: %d, want 1 (the late waiter made its own)", got)
	}
}

// TestFetchContext: a fetch's context outlives the client's request (its
// cancellation does not reach the fetch), keeps the request's values,
// carries the fill, and ends when the proxy closes.
func TestFetchContext(t *testing.T) {
	p, _ := newTestProxy(t, "http://127.0.0.1:1", nil)
	type testKey struct{}
	reqCtx, hangUp := context.WithCancelCause(context.WithValue(context.Background(), testKey{}, "the request's"))
	r := httptest.NewRequestWithContext(reqCtx, http.MethodGet, "http://example.com/x", nil)
	s := p.newFetch(r, &fill{status: StatusMiss, fwd: "uri-miss", host: "example.com", uri: "/x"})
	if s == nil {
		t.Fatal("no fetch")
	}
	defer p.budget.endFill()
	ctx := s.fill.in.Context()
	hangUp(errors.New("the client hung up"))
	if ctx.Err() != nil || context.Cause(ctx) != nil {
		t.Fatalf("the client's hang-up reached the fetch: %v, cause %v", ctx.Err(), context.Cause(ctx))
	}
	derived, stop := context.WithCancel(ctx) // as a transport would
	defer stop()
	if got := ctx.Value(testKey{}); got != "the request's" {
		t.Errorf("request value %v, want kept", got)
	}
	if got, _ := ctx.Value(fillKey{}).(*fill); got != s.fill {
		t.Errorf("fill %p, want the fetch's %p", got, s.fill)
	}
	p.Close()
	select {
	case <-derived.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the fetch's context outlived the proxy")
	}
	if ctx.Err() == nil || context.Cause(ctx) != context.Canceled {
		t.Errorf("after Close: %v, cause %v; want canceled by the proxy", ctx.Err(), context.Cause(ctx))
	}
}
