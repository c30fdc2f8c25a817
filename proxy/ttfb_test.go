package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTTFB measures the time to first byte of a miss through the proxy
// against going to the origin directly, for an origin that answers after
// DELAY (0 and 5 ms: scenario d's origin latency), sends the first 4 KiB
// of a 64 KiB body and the rest 20 ms later: the proxy streams while it
// stores, so a miss must not wait for the whole body. It logs medians over
// 200 distinct URLs each way. Measurement only (about 20 s): runs when
// DEDUP_TTFB is set (bench/compare.sh go), not under -short or -race;
// fails only if the proxy waits for the whole body.
func TestTTFB(t *testing.T) {
	if testing.Short() || raceEnabled || os.Getenv("DEDUP_TTFB") == "" {
		t.Skip("measurement; skipped under -short and -race")
	}
	for _, delay := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run("delay="+delay.String(), func(t *testing.T) { ttfbOnce(t, delay) })
	}
}

func ttfbOnce(t *testing.T, delay time.Duration) {
	body := []byte(strings.Repeat("y", 64<<10))
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body[:4096])
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
		_, _ = w.Write(body[4096:])
	}))
	defer o.Close()
	_, srv := newTestProxy(t, o.URL, nil)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	ttfb := func(base string, i int) (first, total time.Duration) {
		t0 := time.Now()
		resp, err := c.Get(base + "/ttfb/" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b [1]byte
		if _, err := io.ReadFull(resp.Body, b[:]); err != nil {
			t.Fatal(err)
		}
		first = time.Since(t0)
		_, _ = io.Copy(io.Discard, resp.Body)
		return first, time.Since(t0)
	}
	var direct, proxied, whole []time.Duration
	for i := range 200 {
		d, _ := ttfb(o.URL, i)
		p, w := ttfb(srv.URL, i) // a miss: every URL is new to the proxy
		direct, proxied, whole = append(direct, d), append(proxied, p), append(whole, w)
	}
	med := func(v []time.Duration) time.Duration { slices.Sort(v); return v[len(v)/2] }
	d, p, w := med(direct), med(proxied), med(whole)
	t.Logf("ttfb miss: direct %v, through the proxy %v (%.2fx; +%v); whole body through the proxy %v",
		d, p, float64(p)/float64(d), p-d, w)
	if p > delay+15*time.Millisecond {
		t.Errorf("proxy TTFB %v: the miss waited for the whole body", p)
	}
}
