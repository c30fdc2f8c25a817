package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardShowsKeysAsText (issue 16 item 6): cache keys are chosen by
// clients, and the dashboard shows them (the top-bodies panel). Three keys
// that share one body carry HTML that would run script if the page put
// them in as markup; the page must show each as text, exactly as
// /api/top-bodies gives it, create no element from it, run none of it, and
// log no error (a CSP violation would be one).
func TestDashboardShowsKeysAsText(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dedupcache and a browser")
	}
	chromium := dashChromium(t)
	o := startOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url})
	payloads := []string{
		`x=<img/src='x'/onerror='window.__xss=1'>`,
		`y="><svg/onload='window.__xss=2'>`,
		`z=</div><script>window.__xss=3</script>`,
	}
	addr := strings.TrimPrefix(c.url, "http://")
	for _, q := range payloads {
		// Sent raw: a client library would percent-encode what an
		// attacker sends as it is.
		rc := dialRaw(t, addr)
		rc.write(t, "GET /obj/7?size=64&"+q+" HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
		if r, err := rc.read("GET"); err != nil || r.status != 200 {
			t.Fatalf("GET with %s: %v %v", q, r, err)
		}
	}
	c.waitStats(t, func(s stats) bool { return s.Entries == 3 })
	var top []struct {
		ExampleKeys []string `json:"example_keys"`
	}
	getJSON(t, c.adminURL+"/api/top-bodies", &top)
	if len(top) == 0 || len(top[0].ExampleKeys) != 3 {
		t.Fatalf("/api/top-bodies: %+v; want one body with the three keys", top)
	}
	want := slices.Sorted(slices.Values(top[0].ExampleKeys))
	for _, k := range want {
		if !strings.ContainsAny(k, "<>") {
			t.Fatalf("example key %q lost its markup: the test would prove nothing", k)
		}
	}

	ctx := dashBrowser(t, chromium)
	exceptions := dashConsoleErrors(t, ctx)
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(c.adminURL+"/")); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Keys     []string `json:"keys"`
		Injected int      `json:"injected"`
		XSS      any      `json:"xss"`
	}
	const read = `({
		keys: [...document.querySelectorAll('#top-rows .key')].map((e) => e.textContent),
		injected: document.querySelectorAll('#top-rows img, #top-rows svg, #top-rows script, body script:not([src])').length,
		xss: window.__xss === undefined ? null : window.__xss,
	})`
	var got page
	for deadline := time.Now().Add(15 * time.Second); ; {
		raw, err := chromedp.Run(tctx, chromedp.Evaluate[json.RawMessage](read))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Keys) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	dashWaitPolls(t, tctx, 2) // and a poll more: whatever a refresh would inject is in
	raw, err := chromedp.Run(tctx, chromedp.Evaluate[json.RawMessage](read))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(slices.Sorted(slices.Values(got.Keys)), want) {
		t.Errorf("keys shown as text:\n%q\nwant exactly /api/top-bodies':\n%q", got.Keys, want)
	}
	if got.Injected != 0 {
		t.Errorf("%d elements made from key text in the page; want none", got.Injected)
	}
	if got.XSS != nil {
		t.Errorf("window.__xss = %v: a key's script ran", got.XSS)
	}
	if errs := exceptions(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}
