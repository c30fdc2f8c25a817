package proxy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"dedupcache/dedupbody"
	"dedupcache/dedupbody/arena"
)

// TestArenaHoldsBodiesAndGivesThemBack checks where stored bodies live and
// that their memory goes back: distinct bodies are slots in the proxy's
// arena (its mapped bytes, free slots included, are what the budget
// counts), and a purge of everything returns all but the few spare slabs
// the arena keeps for reuse.
func TestArenaHoldsBodiesAndGivesThemBack(t *testing.T) {
	const n, size = 2000, 4096
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(bytes.Repeat([]byte(r.URL.Path[3:]+"|"), size)[:size])
	})
	p, srv := newTestProxy(t, o.URL, func(c *Config) { c.MaxMemory = 256 << 20 })
	for i := range n {
		resp, body := do(t, "GET", fmt.Sprintf("%s/b/%d", srv.URL, i))
		if resp.StatusCode != 200 || len(body) != size {
			t.Fatalf("GET /b/%d: %d, %d bytes", i, resp.StatusCode, len(body))
		}
	}
	eventually(t, func() bool { return p.bodies.Stats().Bodies == n }, func() string {
		return fmt.Sprintf("bodies %d; want %d", p.bodies.Stats().Bodies, n)
	})
	as := p.arena.Stats()
	if as.Live != n || as.InUse != n*size || as.Mapped < n*size || as.Mapped > n*size*5/4+(2<<20) {
		t.Errorf("arena after %d distinct %d-byte bodies: live %d, in use %d, mapped %d; want %d live, %d in use, mapped just above",
			n, size, as.Live, as.InUse, as.Mapped, n, n*size)
	}
	if st := p.Stats(); st.BodiesUnique != n {
		t.Errorf("stats: %d unique bodies; want %d", st.BodiesUnique, n)
	}
	purge(t, p, "all=1")
	eventually(t, func() bool { return p.arena.Stats().Live == 0 }, func() string {
		return fmt.Sprintf("arena live %d after purging everything; want 0", p.arena.Stats().Live)
	})
	// A poison build keeps freed slots, and so their slabs, mapped for a
	// while (quarantine).
	if m, spare := p.arena.Mapped(), arenaConfig(256<<20).RetainBytes; m > spare && !arena.Poisoned() {
		t.Errorf("arena maps %d bytes after purging everything; want at most the %d of spare slabs", m, spare)
	}
}

// TestCopyBody checks the shared tier's way to a body this instance holds:
// a copy, only for the right SHA-256, and none once the body is gone.
func TestCopyBody(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		_, _ = w.Write([]byte(strings.Repeat("held body ", 100)))
	})
	p, srv := newTestProxy(t, o.URL, nil)
	do(t, "GET", srv.URL+"/held")
	want := []byte(strings.Repeat("held body ", 100))
	h, n, sum := dedupbody.Sum(want), int64(len(want)), sha256.Sum256(want)
	got := p.CopyBody(h, n, sum)
	if !bytes.Equal(got, want) {
		t.Fatalf("CopyBody: %q; want the stored body", got)
	}
	got[0] = 'X' // a copy: the stored body is not touched
	if again := p.CopyBody(h, n, sum); !bytes.Equal(again, want) {
		t.Errorf("the stored body changed through a copy")
	}
	if p.CopyBody(h, n, sha256.Sum256([]byte("other"))) != nil {
		t.Errorf("CopyBody with another body's SHA-256: got bytes; want nil")
	}
	purge(t, p, "all=1")
	eventually(t, func() bool { return p.CopyBody(h, n, sum) == nil }, func() string {
		return "CopyBody after the purge: got bytes; want nil"
	})
}
