package proxy

import (
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"dedupcache/cachestore"
	"dedupcache/internal/testutil"
)

// TestMain fails the package if goroutines are left behind once every
// test has cleaned up: every Proxy must stop what it started (ristretto's
// goroutines, the store's sweep, background refreshes, upstream
// connections, the memory-limit tuner) on Close.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		// Tests' own requests through net/http's default client leave
		// idle connections (and their goroutines) in it.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		opts := testutil.LeakOptions()
		// goleak retries for about half a second; give goroutines that are
		// finishing (a fetch's last write, a closing connection) 5 s.
		err := goleak.Find(opts...)
		for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); {
			err = goleak.Find(opts...)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "proxy: goroutines leaked by the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// settle waits until no stored entry is pinned: requests whose responses
// the test has read may still be unpinning (on the fast listener, after the
// write), and a purge frees what they pin only then.
func settle(t *testing.T, p *Proxy) {
	t.Helper()
	eventually(t, func() bool {
		pinned := false
		p.store.Each(func(e *cachestore.Entry) bool {
			pinned = e.Pins() > 0
			return !pinned
		})
		return !pinned
	}, func() string { return "entries still pinned after 2 s" })
}

// eventually waits up to 2 s for cond, then fails with msg(): for effects
// that follow a response by a moment (a handler's deferred unpin).
func eventually(t *testing.T, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Error(msg())
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
