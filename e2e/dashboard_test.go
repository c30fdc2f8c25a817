package e2e

// The dashboard's browser test: a real dedupcache -demo, real traffic, and
// Debian's Chromium driven headless through the DevTools protocol
// (chromedp). Every figure on the page carries data-stat="<field of
// /api/stats>" or data-derived="<name>" and, once rendered, data-value with
// the raw number; the test compares them with /api/stats.
//
// Helpers here are prefixed with dash so they stay clear of the other e2e
// files; this file relies on none of them.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func TestDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dedupcache and a browser")
	}
	chromium := dashChromium(t)
	c := startCache(t, cacheOptions{args: []string{"-demo"}}) // the binary TestMain built
	admin := c.adminURL

	// Traffic: 5 users and 21 unknown ids (one shared 404 body) twice, then
	// /time. The X-Cache tally is what /api/stats must count.
	var paths []string
	for range 2 {
		for id := 1; id <= 5; id++ {
			paths = append(paths, fmt.Sprintf("/users/%d", id))
		}
		for id := 900; id <= 920; id++ {
			paths = append(paths, fmt.Sprintf("/users/%d", id))
		}
	}
	paths = append(paths, "/time")
	tally := map[string]int64{}
	for _, p := range paths {
		resp, err := http.Get(c.url + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		resp.Body.Close()
		tally[resp.Header.Get("X-Cache")]++
	}
	st := dashStats(t, admin)
	for field, xcache := range map[string]string{"hits": "HIT", "misses": "MISS", "stale": "STALE", "bypasses": "BYPASS"} {
		if got := dashInt(t, st, field); got != tally[xcache] {
			t.Errorf("/api/stats %s: got %d; want %d (X-Cache %s seen)", field, got, tally[xcache], xcache)
		}
	}
	if e, b := dashInt(t, st, "entries"), dashInt(t, st, "bodies_unique"); tally["HIT"] < 26 || b >= e {
		t.Fatalf("traffic did not show caching and sharing: %d hits, %d entries, %d unique bodies; X-Cache %v", tally["HIT"], e, b, tally)
	}

	ctx := dashBrowser(t, chromium)
	exceptions := dashConsoleErrors(t, ctx)
	for _, vp := range []struct {
		name          string
		width, height int64
		opts          []chromedp.EmulateViewportOption
	}{
		{"desktop", 1280, 800, nil},
		{"phone", 390, 844, []chromedp.EmulateViewportOption{chromedp.EmulateMobile, chromedp.EmulateTouch}},
	} {
		t.Run(vp.name, func(t *testing.T) {
			tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if err := chromedp.Do(tctx,
				chromedp.EmulateViewport(vp.width, vp.height, vp.opts...),
				chromedp.Navigate(admin+"/"),
			); err != nil {
				t.Fatal(err)
			}
			// Two polls rendered: the figures are up and the rates have a
			// previous poll to compare with.
			dashWaitPolls(t, tctx, 2)
			dashCompareFigures(t, tctx, admin)
			dashCheckPage(t, tctx, admin, vp.width)
			png, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join("testdata", "dashboard-"+vp.name+".png")
			if err := os.WriteFile(out, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot %dx%d: %s", vp.width, vp.height, out)
		})
	}
	if errs := exceptions(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}

// dashFigure is one figure element as the page rendered it.
type dashFigure struct {
	Stat    string  `json:"stat"`
	Derived string  `json:"derived"`
	Value   *string `json:"value"` // data-value; nil when nothing is shown
	Hidden  bool    `json:"hidden"`
}

const dashFiguresJS = `[...document.querySelectorAll('[data-stat],[data-derived]')].map((e) => ({
	stat: e.dataset.stat || '',
	derived: e.dataset.derived || '',
	value: e.hasAttribute('data-value') ? e.dataset.value : null,
	hidden: e.closest('[hidden]') !== null,
}))`

// dashCompareFigures checks every figure on the page against /api/stats.
// The demo's stats can still move without traffic (an entry expiring), so
// a mismatch is retried after the next poll before it fails the test.
func dashCompareFigures(t *testing.T, ctx context.Context, admin string) {
	t.Helper()
	var problems []string
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(1100 * time.Millisecond)
		}
		figs, err := chromedp.Run(ctx, chromedp.Evaluate[[]dashFigure](dashFiguresJS))
		if err != nil {
			t.Fatal(err)
		}
		st := dashStats(t, admin)
		problems = dashCheckFigures(figs, st)
		if len(problems) == 0 {
			t.Logf("%d figures match /api/stats", len(figs))
			return
		}
	}
	t.Errorf("dashboard disagrees with /api/stats:\n%s", strings.Join(problems, "\n"))
}

// dashCheckFigures returns a line per figure that does not match st:
// counts exactly, ratios within 0.001, uptime within a few seconds.
func dashCheckFigures(figs []dashFigure, st map[string]any) []string {
	var problems []string
	num := func(path string) (float64, bool) {
		v, ok := dashField(st, path)
		if !ok {
			return 0, false
		}
		f, err := v.Float64()
		return f, err == nil
	}
	seen := map[string]bool{}
	for _, f := range figs {
		name := f.Stat
		if name == "" {
			name = "derived " + f.Derived
		}
		seen[name] = true
		if f.Value == nil {
			if _, ok := num(f.Stat); f.Stat != "" && !ok && f.Hidden {
				continue // an optional field the server does not send: hidden
			}
			problems = append(problems, fmt.Sprintf("%s: not rendered (no data-value)", name))
			continue
		}
		if f.Hidden {
			problems = append(problems, fmt.Sprintf("%s: rendered but hidden", name))
		}
		got, err := strconv.ParseFloat(*f.Value, 64)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: data-value %q is not a number", name, *f.Value))
			continue
		}
		var want, tol float64
		if f.Stat != "" {
			v, ok := dashField(st, f.Stat)
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: no such field in /api/stats", name))
				continue
			}
			want, _ = v.Float64()
			switch {
			case f.Stat == "uptime_seconds":
				tol = 5
			case strings.ContainsAny(v.String(), ".eE"):
				tol = 0.001 // a ratio
			}
		} else {
			var ok bool
			want, tol, ok = dashDerived(f.Derived, num)
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: unknown derived figure; teach dashDerived about it", name))
				continue
			}
		}
		if math.Abs(got-want) > tol {
			problems = append(problems, fmt.Sprintf("%s: page shows %v; /api/stats gives %v", name, got, want))
		}
	}
	for _, must := range []string{"hit_ratio", "dedup_ratio", "entries", "bodies_unique", "bytes_logical",
		"bytes_stored", "bytes_saved", "memory_bytes", "memory_limit_bytes", "entry_overhead_bytes",
		"entries_released.evicted", "hits", "misses", "stale", "bypasses",
		"derived bytes_per_key", "derived keys_more", "derived rate_hits", "derived rate_misses"} {
		if !seen[must] {
			problems = append(problems, must+": no element on the page")
		}
	}
	return problems
}

// dashDerived returns what the page's derived figure name must show, and the
// tolerance, from the stats; ok is false for a name it does not know. Rates
// are 0: the traffic stopped before the page loaded.
func dashDerived(name string, num func(string) (float64, bool)) (want, tol float64, ok bool) {
	v := func(path string) float64 { f, _ := num(path); return f }
	switch name {
	case "bytes_per_key":
		return v("memory_bytes") / v("entries"), 0.001, true
	case "keys_more":
		return math.Floor(math.Max(0, v("memory_limit_bytes")-v("memory_bytes")) / (v("memory_bytes") / v("entries"))), 1, true
	case "memory_used_ratio":
		return v("memory_bytes") / v("memory_limit_bytes"), 0.001, true
	case "body_memory_bytes":
		return v("memory_bytes") - v("entry_bytes") - v("header_bytes"), 0, true
	case "rate_total", "rate_hits", "rate_stale", "rate_misses", "rate_bypasses":
		return 0, 0, true
	}
	return 0, 0, false
}

// dashCheckPage checks what is not a figure: the charts drew, the optional
// top-bodies panel follows its endpoint, the page fits the viewport width,
// and the status line says live.
func dashCheckPage(t *testing.T, ctx context.Context, admin string, width int64) {
	t.Helper()
	type pageState struct {
		ChartPixels []int  `json:"chartPixels"`
		TopHidden   bool   `json:"topHidden"`
		TopRows     int    `json:"topRows"`
		ScrollWidth int64  `json:"scrollWidth"`
		Status      string `json:"status"`
	}
	ps, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](`({
		chartPixels: [...document.querySelectorAll('canvas')].map((c) => {
			const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
			let n = 0;
			for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
			return n;
		}),
		topHidden: document.getElementById('top-bodies').hidden,
		topRows: document.querySelectorAll('#top-rows tr').length,
		scrollWidth: document.documentElement.scrollWidth,
		status: document.getElementById('status').dataset.state,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.ChartPixels) < 2 {
		t.Errorf("found %d charts; want 2 (hit ratio, dedup ratio)", len(ps.ChartPixels))
	}
	for i, n := range ps.ChartPixels {
		if n == 0 {
			t.Errorf("chart %d is blank", i)
		}
	}
	if ps.ScrollWidth > width {
		t.Errorf("page is %d px wide in a %d px viewport: it scrolls sideways", ps.ScrollWidth, width)
	}
	if ps.Status != "live" {
		t.Errorf("status: got %q; want live", ps.Status)
	}
	resp, err := http.Get(admin + "/api/top-bodies")
	if err != nil {
		t.Fatal(err)
	}
	var top []json.RawMessage
	if resp.StatusCode == http.StatusOK {
		err = json.NewDecoder(resp.Body).Decode(&top)
	}
	resp.Body.Close()
	switch {
	case err != nil:
		t.Errorf("/api/top-bodies: %v", err)
	case resp.StatusCode == http.StatusNotFound && !ps.TopHidden:
		t.Errorf("/api/top-bodies answers 404 but the panel is shown")
	case resp.StatusCode == http.StatusOK && (ps.TopHidden || ps.TopRows != len(top)):
		t.Errorf("/api/top-bodies lists %d bodies; panel hidden %v with %d rows", len(top), ps.TopHidden, ps.TopRows)
	}
}

// dashWaitPolls waits until the page has rendered n polls of /api/stats.
func dashWaitPolls(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		polls, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Number(document.body.dataset.polls || 0)`))
		if err != nil {
			t.Fatal(err)
		}
		if polls >= n {
			return
		}
		if time.Now().After(deadline) {
			status, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('status').textContent`))
			t.Fatalf("the page rendered %d polls in 15s; want %d (status %q)", polls, n, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dashConsoleErrors collects the page's uncaught exceptions and console
// errors (CSP violations included) for the life of ctx; the returned func
// reads them. A 404 from the optional api/top-bodies is expected.
func dashConsoleErrors(t *testing.T, ctx context.Context) func() []string {
	t.Helper()
	var (
		mu   sync.Mutex
		errs []string
	)
	ctx, cancel := context.WithCancel(ctx)
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if !m.IsException() && m.Type != "error" {
				continue
			}
			if strings.Contains(m.URL, "api/top-bodies") && strings.Contains(m.Text, "404") {
				continue
			}
			mu.Lock()
			errs = append(errs, m.String()+" ("+m.URL+")")
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// dashBrowser starts headless Chromium and returns a context for one tab;
// the browser stops when the test ends.
func dashBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not carry a timeout, which
	// would stop the browser with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// dashChromium returns the path of Chromium, or skips the test when it is
// missing outside CI. CI must have it (.ci/run installs it).
func dashChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "" {
		t.Skip("chromium is not installed (apt-get install chromium); CI fails here instead")
	}
	t.Fatal("chromium is not installed, and CI is set")
	return ""
}

// dashStats fetches /api/stats with numbers kept as json.Number.
func dashStats(t *testing.T, admin string) map[string]any {
	t.Helper()
	resp, err := http.Get(admin + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/stats: status %d", resp.StatusCode)
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	var st map[string]any
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("/api/stats: %v", err)
	}
	return st
}

// dashField returns the number at a dotted path of st.
func dashField(st map[string]any, path string) (json.Number, bool) {
	var v any = st
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[k]; !ok {
			return "", false
		}
	}
	n, ok := v.(json.Number)
	return n, ok
}

// dashInt returns an integer field of st, failing the test if it has none.
func dashInt(t *testing.T, st map[string]any, path string) int64 {
	t.Helper()
	n, ok := dashField(st, path)
	if !ok {
		t.Fatalf("/api/stats has no number %s", path)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("/api/stats %s = %s: %v", path, n, err)
	}
	return i
}
