package redistier

import (
	"context"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// cutProxy forwards loopback TCP to a server and can cut every connection
// and refuse new ones, as a network partition between one instance and
// Redis would.
type cutProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newCutProxy(tb testing.TB, target string) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &cutProxy{l: l, target: target}
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(func() { l.Close(); p.setCut(true); p.wg.Wait() })
	return p
}

func (p *cutProxy) url() string { return "redis://" + p.l.Addr().String() }

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(u, c); u.Close() }()
		go func() { defer p.wg.Done(); io.Copy(c, u); c.Close() }()
	}
}

// setCut cuts (true) or restores (false) the path.
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// follower runs tr.Follow into a channel until the test ends.
func follow(tb testing.TB, tr *Tier) <-chan Purge {
	ch := make(chan Purge, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Follow(ctx, func(p Purge) { ch <- p }) }()
	tb.Cleanup(func() { cancel(); <-done })
	waitFor(tb, 5*time.Second, "follower started", func() bool { return tr.Stats().Following })
	// Taking its place in the log, it has the entries stored before
	// revalidated: a purge made before that place would never be read.
	select {
	case p := <-ch:
		if !p.All || !p.Soft || p.Missed {
			tb.Fatalf("first purge from a new follower: %+v; want a soft purge of everything", p)
		}
	case <-time.After(5 * time.Second):
		tb.Fatal("a new follower did not mark the entries stored before it stale")
	}
	return ch
}

func next(tb testing.TB, ch <-chan Purge) Purge {
	tb.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(5 * time.Second):
		tb.Fatal("no purge within 5s")
		return Purge{}
	}
}

func none(tb testing.TB, ch <-chan Purge, d time.Duration) {
	tb.Helper()
	select {
	case p := <-ch:
		tb.Fatalf("unexpected purge %+v", p)
	case <-time.After(d):
	}
}

func TestFollow(t *testing.T) {
	s := startServer(t)
	a := newTier(t, s, Config{InstanceID: "a"})
	b := newTier(t, s, Config{InstanceID: "b"})
	ctx := context.Background()
	fb := follow(t, b)
	fa := follow(t, a)
	want := Purge{Keys: []string{"h /x"}, Prefixes: []string{"/p"}, Tags: []string{"t"}, Soft: true}
	if err := a.Purge(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := a.Purge(ctx, Purge{All: true}); err != nil {
		t.Fatal(err)
	}
	if got := next(t, fb); !slices.Equal(got.Keys, want.Keys) || !slices.Equal(got.Prefixes, want.Prefixes) ||
		!slices.Equal(got.Tags, want.Tags) || !got.Soft || got.All || got.Missed {
		t.Errorf("B applied %+v; want %+v", got, want)
	}
	if got := next(t, fb); !got.All || got.Soft || got.Missed {
		t.Errorf("B applied %+v; want a hard purge of everything", got)
	}
	none(t, fa, 300*time.Millisecond) // A's own purges are not handed back
	if st := b.Stats(); st.PurgesApplied != 2 || st.PurgesMissed != 0 {
		t.Errorf("B stats: applied %d, missed %d; want 2, 0", st.PurgesApplied, st.PurgesMissed)
	}
}

// TestFollowDisconnected: a follower cut off while purges go on replays
// them when it is back; cut off while the log is trimmed past it, it gets
// a Missed purge; after Redis restarted empty, too.
func TestFollowDisconnected(t *testing.T) {
	s := startServer(t)
	px := newCutProxy(t, s.addr())
	a := newTier(t, s, Config{InstanceID: "a", Retention: 300 * time.Millisecond})
	b, err := New(context.Background(), Config{URL: px.url(), InstanceID: "b", Retention: 300 * time.Millisecond, ProbeInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	waitFor(t, 5*time.Second, "B healthy", b.Healthy)
	ctx := context.Background()
	fb := follow(t, b)
	purge := func(key string) {
		t.Helper()
		// Right after a restart the first call may fail on the dead
		// connection; a caller retries a failed purge.
		var err error
		for range 20 {
			if err = a.Purge(ctx, Purge{Keys: []string{key}}); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal(err)
	}
	purge("h /1")
	if got := next(t, fb); !slices.Equal(got.Keys, []string{"h /1"}) {
		t.Fatalf("got %+v", got)
	}

	t.Run("replay", func(t *testing.T) {
		px.setCut(true)
		waitFor(t, 5*time.Second, "B breaker open", func() bool { return !b.Healthy() })
		purge("h /2")
		purge("h /3")
		px.setCut(false)
		for _, k := range []string{"h /2", "h /3"} {
			if got := next(t, fb); got.Missed || !slices.Equal(got.Keys, []string{k}) {
				t.Fatalf("got %+v; want a purge of %s", got, k)
			}
		}
		none(t, fb, 200*time.Millisecond)
	})

	t.Run("trimmed", func(t *testing.T) {
		px.setCut(true)
		waitFor(t, 5*time.Second, "B breaker open", func() bool { return !b.Healthy() })
		purge("h /4")
		time.Sleep(400 * time.Millisecond) // past the retention
		purge("h /5")                      // trims h /4 (and older)
		if xl := s.mustDo("XLEN", a.streamKey()); xl != "1" {
			t.Fatalf("XLEN %s; want 1 (trimmed)", xl)
		}
		px.setCut(false)
		if got := next(t, fb); !got.Missed || !got.All || !got.Soft {
			t.Fatalf("got %+v; want Missed", got)
		}
		if got := next(t, fb); !slices.Equal(got.Keys, []string{"h /5"}) {
			t.Fatalf("got %+v; want the purge still in the log", got)
		}
	})

	t.Run("restarted empty", func(t *testing.T) {
		s.kill()
		s.restart()
		waitFor(t, 5*time.Second, "A healthy", a.Healthy)
		waitFor(t, 5*time.Second, "B healthy", b.Healthy)
		purge("h /6")
		p := next(t, fb)
		if !p.Missed {
			t.Fatalf("got %+v; want Missed", p)
		}
		if got := next(t, fb); !slices.Equal(got.Keys, []string{"h /6"}) {
			t.Fatalf("got %+v; want the purge made after the restart", got)
		}
	})
	if st := b.Stats(); st.PurgesMissed != 2 {
		t.Errorf("PurgesMissed: got %d; want 2", st.PurgesMissed)
	}
	if !strings.Contains(s.mustDo("TYPE", a.streamKey()), "stream") {
		t.Error("no purge log")
	}
}
