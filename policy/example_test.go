package policy_test

import (
	"fmt"
	"net/http"
	"time"

	"dedupcache/policy"
)

// A response is judged once when it arrives, then each request is judged
// against what was stored.
func Example() {
	opt := policy.DefaultOptions()
	sent := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	received := sent.Add(100 * time.Millisecond)

	resp := http.Header{}
	resp.Set("Cache-Control", "max-age=60, stale-while-revalidate=30")
	resp.Set("Date", sent.Format(http.TimeFormat))
	resp.Set("Age", "10")

	ok, reason := policy.Storable(http.MethodGet, http.Header{}, http.StatusOK, resp, opt)
	fmt.Println("storable:", ok, reason)

	f := policy.ResponseFreshness(http.StatusOK, resp, received, opt)
	initial := policy.InitialAge(resp, sent, received)

	req := policy.ParseRequest(http.Header{})
	for _, later := range []time.Duration{30 * time.Second, 70 * time.Second, 2 * time.Minute} {
		age := policy.CurrentAge(initial, received, received.Add(later))
		action, why := policy.Evaluate(req, f, age)
		fmt.Printf("after %v: age %v -> %v (%v)\n", later, age.Truncate(time.Second), action, why)
	}
	// Output:
	// storable: true ok
	// after 30s: age 40s -> serve (fresh)
	// after 1m10s: age 1m20s -> serve-stale (stale-while-revalidate)
	// after 2m0s: age 2m10s -> revalidate (stale)
}
