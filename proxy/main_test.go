package proxy

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"dedupcache/cachestore"
)

// TestMain fails the package if goroutines are left behind once every
// test has cleaned up: every Proxy must stop what it started (ristretto's
// goroutines, background refreshes, upstream connections) on Close. The
// check is modelled on net/http's own (main_test.go interestingGoroutines).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "proxy: %d goroutines leaked by the tests:\n\n%s\n", len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to d for the test goroutines to finish and
// returns the stacks of those still running.
func leakedGoroutines(d time.Duration) []string {
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	deadline := time.Now().Add(d)
	for {
		leaked := interestingGoroutines()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// interestingGoroutines returns the stacks of goroutines that are not part
// of the test binary's own machinery.
func interestingGoroutines() []string {
	buf := make([]byte, 2<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		stack := strings.TrimSpace(g)
		if stack == "" ||
			strings.Contains(stack, "testing.(*M).") ||
			strings.Contains(stack, "testing.tRunner") ||
			strings.Contains(stack, "proxy.interestingGoroutines") ||
			strings.Contains(stack, "runtime.goexit0") ||
			strings.Contains(stack, "os/signal.signal_recv") ||
			strings.Contains(stack, "created by runtime.gc") ||
			strings.Contains(stack, "runtime.MHeap_Scavenger") ||
			// fasthttp's Date ticker: one per process, started once.
			strings.Contains(stack, "fasthttp.updateServerDate") ||
			// fasthttp's idle-connection cleaner sleeps up to
			// idle_conn_timeout before it sees the pool is empty (Close
			// closed every connection); it holds nothing.
			strings.Contains(stack, "fasthttp.(*HostClient).connsCleaner") ||
			strings.Contains(stack, "net/http.(*persistConn)") && strings.Contains(stack, "DefaultTransport") {
			continue
		}
		out = append(out, stack)
	}
	sort.Strings(out)
	return out
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
