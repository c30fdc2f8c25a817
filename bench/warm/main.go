// Command warm requests every URL /obj/0 .. /obj/N-1 of a target exactly
// once, over C keep-alive connections, and prints one summary line:
//
//	WARM ok=1000 non200=0 errors=0 body_bytes=1024000 seconds=0.21 header=X-Cache HIT:1000
//
// bench/run.sh runs it twice per cache: the first pass fills the cache, the
// second (with -expect HIT) checks that every answer is a 200 carrying the
// hit header value, i.e. that the cache stores what the bench asks of it.
// The exit status is 1 when any request failed, answered other than 200, or
// (with -expect) carried another value of the header.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is what one pass saw.
type result struct {
	ok, non200, errs, bytes int64
	values                  map[string]int64 // hit header value -> count ("-" when absent)
	firstErr                error
	elapsed                 time.Duration
}

// pass requests base+"/obj/i" for i in [0, n) over c connections and counts
// the answers and the values of header hdr.
func pass(client *http.Client, base string, n, c int, hdr string) *result {
	res := &result{values: map[string]int64{}}
	var next, ok, non200, errs, bytes atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			seen := map[string]int64{}
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					break
				}
				resp, err := client.Get(base + "/obj/" + strconv.FormatInt(i, 10))
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					continue
				}
				nb, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				bytes.Add(nb)
				switch {
				case err != nil:
					errs.Add(1)
				case resp.StatusCode == http.StatusOK:
					ok.Add(1)
				default:
					non200.Add(1)
				}
				if hdr != "" {
					v := resp.Header.Get(hdr)
					if v == "" {
						v = "-"
					}
					seen[v]++
				}
			}
			mu.Lock()
			for v, k := range seen {
				res.values[v] += k
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ok, res.non200, res.errs, res.bytes = ok.Load(), non200.Load(), errs.Load(), bytes.Load()
	return res
}

// line renders the summary line; header values are sorted by name.
func (r *result) line(hdr string) string {
	vals := make([]string, 0, len(r.values))
	for _, v := range slices.Sorted(maps.Keys(r.values)) {
		vals = append(vals, fmt.Sprintf("%s:%d", v, r.values[v]))
	}
	if len(vals) == 0 {
		vals = []string{"-"}
	}
	if hdr == "" {
		hdr = "-"
	}
	return fmt.Sprintf("WARM ok=%d non200=%d errors=%d body_bytes=%d seconds=%.2f header=%s %s",
		r.ok, r.non200, r.errs, r.bytes, r.elapsed.Seconds(), hdr, strings.Join(vals, ","))
}

// check returns why a pass of n requests failed, or nil.
func (r *result) check(n int, expect string) error {
	var errs []error
	if r.errs > 0 {
		errs = append(errs, fmt.Errorf("%d requests failed (first: %v)", r.errs, r.firstErr))
	}
	if r.non200 > 0 {
		errs = append(errs, fmt.Errorf("%d answers were not 200", r.non200))
	}
	if expect != "" && r.values[expect] != int64(n) {
		errs = append(errs, fmt.Errorf("%d of %d answers carried %s", r.values[expect], n, expect))
	}
	return errors.Join(errs...)
}

func main() {
	target := flag.String("url", "http://127.0.0.1:28081", "target base URL (loopback only)")
	n := flag.Int("n", 1000, "objects /obj/0 .. /obj/N-1")
	c := flag.Int("c", 8, "parallel keep-alive connections")
	hdr := flag.String("header", "X-Cache-Status", "response header that tells a hit (empty: none)")
	expect := flag.String("expect", "", "value every answer's header must carry, e.g. HIT (empty: no check)")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request timeout")
	flag.Parse()

	u, err := url.Parse(*target)
	if err != nil {
		log.Fatal(err)
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		log.Fatalf("warm: %q is not a loopback target", *target)
	}
	if *c < 1 {
		*c = 1
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		MaxIdleConnsPerHost: *c, MaxConnsPerHost: *c, DisableCompression: true,
	}}
	res := pass(client, strings.TrimRight(*target, "/"), *n, *c, *hdr)
	fmt.Println(res.line(*hdr))
	if err := res.check(*n, *expect); err != nil {
		fmt.Fprintln(os.Stderr, "warm:", err)
		os.Exit(1)
	}
}
