package policy

import (
	"math"
	"net/http"
	"testing"
	"time"
)

// t0 is the origin's Date in these tests.
var t0 = time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)

func date(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

func TestResponseFreshness(t *testing.T) {
	noHeuristic := DefaultOptions()
	noHeuristic.HeuristicMax = 0
	received := t0.Add(5 * time.Second)
	tests := []struct {
		name   string
		status int
		h      http.Header
		opt    *Options
		want   Freshness
	}{
		{"§4.2.1 max-age", 200, hdr("Cache-Control", "max-age=60"), nil, Freshness{Lifetime: 60 * time.Second}},
		{"§4.2.1 s-maxage beats max-age, and implies proxy-revalidate (§5.2.2.10)", 200,
			hdr("Cache-Control", "max-age=60, s-maxage=120"), nil, Freshness{Lifetime: 120 * time.Second, MustRevalidate: true}},
		{"RFC 5861 §3 explicit stale-while-revalidate lifts the proxy-revalidate implied by s-maxage (deliberate, as CDNs do)", 200,
			hdr("Cache-Control", "s-maxage=60, stale-while-revalidate=30"), nil, Freshness{Lifetime: 60 * time.Second, StaleWhileRevalidate: 30 * time.Second}},
		{"§5.2.2.8 explicit proxy-revalidate still wins over stale-while-revalidate", 200,
			hdr("Cache-Control", "s-maxage=60, proxy-revalidate, stale-while-revalidate=30"), nil, Freshness{Lifetime: 60 * time.Second, StaleWhileRevalidate: 30 * time.Second, MustRevalidate: true}},
		{"§4.2.1 max-age beats Expires (§5.3)", 200,
			hdr("Cache-Control", "max-age=60", "Date", date(t0), "Expires", date(t0.Add(time.Hour))), nil, Freshness{Lifetime: 60 * time.Second}},
		{"§4.2.1 invalid max-age is stale and still beats Expires", 200,
			hdr("Cache-Control", "max-age=soon", "Date", date(t0), "Expires", date(t0.Add(time.Hour))), nil, Freshness{}},
		{"§4.2.1 Expires minus Date, not minus the receipt time", 200,
			hdr("Date", date(t0), "Expires", date(t0.Add(time.Hour))), nil, Freshness{Lifetime: time.Hour}},
		{"§4.2.1 Expires without Date: minus the receipt time", 200,
			hdr("Expires", date(received.Add(30*time.Minute))), nil, Freshness{Lifetime: 30 * time.Minute}},
		{"RFC 9110 §6.6.1 invalid Date: the receipt time stands in", 200,
			hdr("Date", "yesterday", "Expires", date(received.Add(30*time.Minute))), nil, Freshness{Lifetime: 30 * time.Minute}},
		{"§5.3 invalid Expires (\"0\") is already expired, no heuristic", 200,
			hdr("Date", date(t0), "Expires", "0", "Last-Modified", date(t0.Add(-10*time.Hour))), nil, Freshness{}},
		{"§5.3 Expires with a one-digit hour is not an HTTP-date: expired", 200,
			hdr("Date", date(t0), "Expires", "Tue, 02 Jan 2024 9:00:00 GMT", "Last-Modified", date(t0.Add(-10*time.Hour))), nil, Freshness{}},
		{"RFC 9110 §5.6.7 robust: Expires with lowercase gmt is read", 200,
			hdr("Date", date(t0), "Expires", "Mon, 01 Jan 2024 13:00:00 gmt"), nil, Freshness{Lifetime: time.Hour}},
		{"RFC 9110 §5.6.7 robust: Expires with a wrong day name is read (the date counts)", 200,
			hdr("Date", date(t0), "Expires", "Tue, 01 Jan 2024 13:00:00 GMT"), nil, Freshness{Lifetime: time.Hour}},
		{"§5.3 Expires with another zone than GMT: expired", 200,
			hdr("Date", date(t0), "Expires", "Mon, 01 Jan 2024 13:00:00 UTC"), nil, Freshness{}},
		{"§5.3 Expires with trailing garbage: expired", 200,
			hdr("Date", date(t0), "Expires", date(t0.Add(time.Hour))+" x"), nil, Freshness{}},
		{"§5.3 invalid Expires: max-age takes precedence", 200,
			hdr("Cache-Control", "max-age=60", "Date", date(t0), "Expires", "0"), nil, Freshness{Lifetime: 60 * time.Second}},
		{"§5.3 invalid Expires: s-maxage takes precedence", 200,
			hdr("Cache-Control", "s-maxage=60", "Date", date(t0), "Expires", "-1"), nil, Freshness{Lifetime: 60 * time.Second, MustRevalidate: true}},
		{"RFC 9110 §5.6.7 Expires in the RFC 850 format", 200,
			hdr("Date", date(t0), "Expires", "Monday, 01-Jan-24 13:00:00 GMT"), nil, Freshness{Lifetime: time.Hour}},
		{"RFC 9110 §5.6.7 Expires in the asctime format", 200,
			hdr("Date", date(t0), "Expires", "Mon Jan  1 13:00:00 2024"), nil, Freshness{Lifetime: time.Hour}},
		{"RFC 9110 §6.6.1 Date with a one-digit hour is invalid: the receipt time stands in", 200,
			hdr("Date", "Mon, 01 Jan 2024 1:00:00 GMT", "Expires", date(received.Add(30*time.Minute))), nil, Freshness{Lifetime: 30 * time.Minute}},
		{"§4.2.2 Last-Modified that is not an HTTP-date: no heuristic", 200,
			hdr("Date", date(t0), "Last-Modified", "Mon, 01 Jan 2024 2:00:00 GMT"), nil, Freshness{}},
		{"§5.3 Expires before Date", 200,
			hdr("Date", date(t0), "Expires", date(t0.Add(-time.Hour))), nil, Freshness{}},
		{"§4.2.1 Expires lines that disagree: stale", 200,
			hdr("Date", date(t0), "Expires", date(t0.Add(time.Hour)), "Expires", date(t0.Add(2*time.Hour))), nil, Freshness{}},
		{"§4.2.1 Expires lines that agree", 200,
			hdr("Date", date(t0), "Expires", date(t0.Add(time.Hour)), "Expires", date(t0.Add(time.Hour))), nil, Freshness{Lifetime: time.Hour}},
		{"§4.2.2 heuristic: 10% of Date - Last-Modified", 200,
			hdr("Date", date(t0), "Last-Modified", date(t0.Add(-10*time.Hour))), nil, Freshness{Lifetime: time.Hour, Heuristic: true}},
		{"§4.2.2 heuristic capped at HeuristicMax", 200,
			hdr("Date", date(t0), "Last-Modified", date(t0.Add(-1000*24*time.Hour))), nil, Freshness{Lifetime: 24 * time.Hour, Heuristic: true}},
		{"§4.2.2 heuristic disabled by HeuristicMax 0", 200,
			hdr("Date", date(t0), "Last-Modified", date(t0.Add(-10*time.Hour))), &noHeuristic, Freshness{}},
		{"§4.2.2 no heuristic for a status not heuristically cacheable", 302,
			hdr("Date", date(t0), "Last-Modified", date(t0.Add(-10*time.Hour))), nil, Freshness{}},
		{"§4.2.2 no heuristic for an unknown status", 299,
			hdr("Date", date(t0), "Last-Modified", date(t0.Add(-10*time.Hour))), nil, Freshness{}},
		{"§5.2.2.9 public on an unknown status allows a heuristic", 599,
			hdr("Cache-Control", "public", "Date", date(t0), "Last-Modified", date(t0.Add(-10*time.Hour))), nil, Freshness{Lifetime: time.Hour, Heuristic: true}},
		{"§4.2.2 public makes any status heuristically cacheable", 302,
			hdr("Cache-Control", "public", "Date", date(t0), "Last-Modified", date(t0.Add(-10*time.Hour))), nil, Freshness{Lifetime: time.Hour, Heuristic: true}},
		{"§4.2.2 no heuristic with explicit freshness", 200,
			hdr("Cache-Control", "max-age=0", "Date", date(t0), "Last-Modified", date(t0.Add(-10*time.Hour))), nil, Freshness{}},
		{"§4.2.2 Last-Modified after Date: no heuristic", 200,
			hdr("Date", date(t0), "Last-Modified", date(t0.Add(time.Hour))), nil, Freshness{}},
		{"§4.2.2 Last-Modified without Date: measured from receipt", 200,
			hdr("Last-Modified", date(received.Add(-10*time.Hour))), nil, Freshness{Lifetime: time.Hour, Heuristic: true}},
		{"§4.2.2 no Last-Modified: no lifetime", 200, hdr("Date", date(t0)), nil, Freshness{}},
		{"RFC 5861 stale-while-revalidate and stale-if-error", 200,
			hdr("Cache-Control", "max-age=60, stale-while-revalidate=30, stale-if-error=600"), nil,
			Freshness{Lifetime: 60 * time.Second, StaleWhileRevalidate: 30 * time.Second, StaleIfError: 600 * time.Second}},
		{"§5.2.2.2 must-revalidate", 200, hdr("Cache-Control", "max-age=60, must-revalidate"), nil,
			Freshness{Lifetime: 60 * time.Second, MustRevalidate: true}},
		{"§5.2.2.8 proxy-revalidate", 200, hdr("Cache-Control", "max-age=60, proxy-revalidate"), nil,
			Freshness{Lifetime: 60 * time.Second, MustRevalidate: true}},
		{"§5.2.2.4 no-cache", 200, hdr("Cache-Control", "no-cache, max-age=60"), nil,
			Freshness{Lifetime: 60 * time.Second, NoCache: true}},
		{"§5.2.2.4 qualified no-cache does not force revalidation", 200, hdr("Cache-Control", `no-cache="X-A", max-age=60`), nil,
			Freshness{Lifetime: 60 * time.Second}},
		{"§1.2.2 capped max-age", 200, hdr("Cache-Control", "max-age=9999999999999"), nil,
			Freshness{Lifetime: (1 << 31) * time.Second}},
		{"RFC 9213 §2.2 targeted max-age beats Cache-Control", 200,
			hdr("Cache-Control", "max-age=60, must-revalidate", "CDN-Cache-Control", "max-age=600"), nil, Freshness{Lifetime: 600 * time.Second}},
		{"RFC 9213 §2.2 Expires ignored with a targeted field: heuristic instead", 200,
			hdr("CDN-Cache-Control", "public", "Date", date(t0), "Expires", date(t0.Add(48*time.Hour)), "Last-Modified", date(t0.Add(-10*time.Hour))), nil,
			Freshness{Lifetime: time.Hour, Heuristic: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := DefaultOptions()
			if tt.opt != nil {
				opt = *tt.opt
			}
			got := ResponseFreshness(tt.status, tt.h, received, opt)
			got.Explicit = false // TestExplicitFreshness
			if got != tt.want {
				t.Errorf("ResponseFreshness = %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestInitialAge(t *testing.T) {
	resp := t0.Add(2 * time.Second) // response received
	req := t0                       // request sent
	tests := []struct {
		name string
		h    http.Header
		req  time.Time
		want time.Duration
	}{
		{"§4.2.3 no Age, no Date: the response delay", hdr(), req, 2 * time.Second},
		{"§4.2.3 Age from upstream is counted, plus the delay", hdr("Age", "100", "Date", date(t0)), req, 102 * time.Second},
		{"§4.2.3 apparent_age wins when larger", hdr("Age", "10", "Date", date(resp.Add(-50*time.Second))), req, 50 * time.Second},
		{"§4.2.3 Date in the future: apparent_age is 0", hdr("Date", date(resp.Add(time.Hour))), resp, 0},
		{"§5.1 list-based Age: first member", hdr("Age", "30, 40"), resp, 30 * time.Second},
		{"§5.1 Age on several lines: first", hdr("Age", "30", "Age", "40"), resp, 30 * time.Second},
		{"§5.1 invalid Age is ignored", hdr("Age", "abc"), req, 2 * time.Second},
		{"§5.1 negative Age is ignored", hdr("Age", "-5"), resp, 0},
		{"§1.2.2 Age overflow capped at 2^31", hdr("Age", "99999999999999999999"), resp, (1 << 31) * time.Second},
		{"§4.2.3 response before request (clock step): delay 0", hdr(), resp.Add(time.Minute), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := InitialAge(tt.h, tt.req, resp); got != tt.want {
				t.Errorf("InitialAge = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestCurrentAge(t *testing.T) {
	tests := []struct {
		name    string
		initial time.Duration
		now     time.Time
		want    time.Duration
	}{
		{"§4.2.3 initial age plus resident time", 10 * time.Second, t0.Add(5 * time.Second), 15 * time.Second},
		{"§4.2.3 clock went backwards: resident time 0", 10 * time.Second, t0.Add(-time.Hour), 10 * time.Second},
		{"§4.2.3 negative initial age counts as 0", -time.Hour, t0.Add(5 * time.Second), 5 * time.Second},
		{"§1.2.2 overflow saturates", math.MaxInt64 - 1, t0.Add(time.Hour), math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CurrentAge(tt.initial, t0, tt.now); got != tt.want {
				t.Errorf("CurrentAge = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestCurrentAgeFromStoredFields(t *testing.T) {
	// The way the proxy calls it: seconds and Unix nanoseconds from an entry,
	// a monotonic now.
	initialSeconds, stored := int64(7), t0.UnixNano()
	now := time.Unix(0, stored).Add(3 * time.Second)
	if got := CurrentAge(time.Duration(initialSeconds)*time.Second, time.Unix(0, stored), now); got != 10*time.Second {
		t.Errorf("CurrentAge = %v; want 10s", got)
	}
	wall := time.Now()
	if n := testing.AllocsPerRun(100, func() {
		CurrentAge(time.Duration(initialSeconds)*time.Second, time.Unix(0, stored), wall)
	}); n != 0 {
		t.Errorf("CurrentAge allocates %v times; want 0", n)
	}
}

func TestEvaluate(t *testing.T) {
	const s = time.Second
	fresh60 := Freshness{Lifetime: 60 * s}
	swr := Freshness{Lifetime: 60 * s, StaleWhileRevalidate: 30 * s}
	tests := []struct {
		name   string
		req    http.Header
		f      Freshness
		age    time.Duration
		want   Action
		reason Reason
	}{
		{"§4.2 fresh", nil, fresh60, 10 * s, Serve, ReasonFresh},
		{"§4.2 age equal to lifetime is stale", nil, fresh60, 60 * s, Revalidate, ReasonStale},
		{"§4.2 zero lifetime is stale at once", nil, Freshness{}, 0, Revalidate, ReasonStale},
		{"§4.2 negative age counts as 0", nil, fresh60, -time.Hour, Serve, ReasonFresh},
		{"§5.2.2.4 response no-cache even when fresh", nil, Freshness{Lifetime: 60 * s, NoCache: true}, s, Revalidate, ReasonNoCache},
		{"§5.2.1.4 request no-cache: revalidate, not miss", hdr("Cache-Control", "no-cache"), fresh60, s, Revalidate, ReasonRequestNoCache},
		{"§5.4 Pragma: no-cache", hdr("Pragma", "no-cache"), fresh60, s, Revalidate, ReasonRequestNoCache},
		{"§5.2.1.1 request max-age=0", hdr("Cache-Control", "max-age=0"), fresh60, 500 * time.Millisecond, Revalidate, ReasonRequestMaxAge},
		{"§5.2.1.1 request max-age above the age", hdr("Cache-Control", "max-age=30"), fresh60, 10 * s, Serve, ReasonFresh},
		{"§5.2.1.1 request max-age: stale not wanted without max-stale", hdr("Cache-Control", "max-age=300"), fresh60, 100 * s, Revalidate, ReasonStale},
		{"§5.2.1.3 min-fresh not met", hdr("Cache-Control", "min-fresh=20"), fresh60, 50 * s, Revalidate, ReasonRequestMinFresh},
		{"§5.2.1.3 min-fresh met", hdr("Cache-Control", "min-fresh=5"), fresh60, 50 * s, Serve, ReasonFresh},
		{"RFC 5861 §3 inside the stale-while-revalidate window", nil, swr, 80 * s, ServeStale, ReasonStaleWhileRevalidate},
		{"RFC 5861 §3 end of the window is inside", nil, swr, 90 * s, ServeStale, ReasonStaleWhileRevalidate},
		{"RFC 5861 §3 past the window", nil, swr, 91 * s, Revalidate, ReasonStale},
		{"§4.2.4 must-revalidate forbids stale-while-revalidate", nil,
			Freshness{Lifetime: 60 * s, StaleWhileRevalidate: 30 * s, MustRevalidate: true}, 80 * s, Revalidate, ReasonMustRevalidate},
		{"§4.2.4 request max-age beats stale-while-revalidate", hdr("Cache-Control", "max-age=10"), swr, 80 * s, Revalidate, ReasonRequestMaxAge},
		{"§4.2.4 request no-cache beats stale-while-revalidate", hdr("Cache-Control", "no-cache"), swr, 80 * s, Revalidate, ReasonRequestNoCache},
		{"§5.2.1.2 max-stale without value: any staleness", hdr("Cache-Control", "max-stale"), fresh60, 1000 * time.Hour, Serve, ReasonMaxStale},
		{"§5.2.1.2 max-stale=10, stale by 5s", hdr("Cache-Control", "max-stale=10"), fresh60, 65 * s, Serve, ReasonMaxStale},
		{"§5.2.1.2 max-stale=10, stale by 15s", hdr("Cache-Control", "max-stale=10"), fresh60, 75 * s, Revalidate, ReasonStale},
		{"§5.2.1.1 max-age with max-stale accepts stale within both", hdr("Cache-Control", "max-age=100, max-stale=60"), fresh60, 90 * s, Serve, ReasonMaxStale},
		{"§4.2.4 must-revalidate forbids max-stale", hdr("Cache-Control", "max-stale"),
			Freshness{Lifetime: 60 * s, MustRevalidate: true}, 65 * s, Revalidate, ReasonMustRevalidate},
		{"§5.2.1.7 only-if-cached leaves the decision alone", hdr("Cache-Control", "only-if-cached"), fresh60, 10 * s, Serve, ReasonFresh},
		{"§5.2.1.5 request no-store may be served from cache", hdr("Cache-Control", "no-store"), fresh60, 10 * s, Serve, ReasonFresh},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := ParseRequest(tt.req)
			got, reason := Evaluate(req, tt.f, tt.age)
			if got != tt.want || reason != tt.reason {
				t.Errorf("Evaluate = %v, %v; want %v, %v", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestStaleIfError(t *testing.T) {
	const m = time.Minute
	tests := []struct {
		name  string
		req   http.Header
		f     Freshness
		age   time.Duration
		grace time.Duration
		want  bool
	}{
		{"§4.3.3 fresh response stands in", nil, Freshness{Lifetime: 10 * m}, 5 * m, 0, true},
		{"RFC 5861 §4 within the response's stale-if-error", nil, Freshness{Lifetime: m, StaleIfError: 10 * m}, 6 * m, 0, true},
		{"RFC 5861 §4 past the response's stale-if-error", nil, Freshness{Lifetime: m, StaleIfError: 10 * m}, 12 * m, 0, false},
		{"§4.2.4 grace applies when the response is silent", nil, Freshness{Lifetime: m}, 6 * m, 10 * m, true},
		{"§4.2.4 past the grace", nil, Freshness{Lifetime: m}, 20 * m, 10 * m, false},
		{"§4.2.4 no grace, no directive: no", nil, Freshness{Lifetime: m}, 2 * m, 0, false},
		{"RFC 5861 §4 response's window beats grace", nil, Freshness{Lifetime: m, StaleIfError: m}, 6 * m, time.Hour, false},
		{"RFC 5861 §4 request's stale-if-error applies to its request", hdr("Cache-Control", "stale-if-error=600"),
			Freshness{Lifetime: m, StaleIfError: m}, 6 * m, 0, true},
		{"RFC 5861 §4 request stale-if-error=0 refuses stale", hdr("Cache-Control", "stale-if-error=0"),
			Freshness{Lifetime: m}, 2 * m, time.Hour, false},
		{"§5.2.2.2 must-revalidate: never, even with stale-if-error", nil,
			Freshness{Lifetime: m, StaleIfError: time.Hour, MustRevalidate: true}, 2 * m, time.Hour, false},
		{"§5.2.2.10 s-maxage (MustRevalidate): never", hdr("Cache-Control", "stale-if-error=600"),
			Freshness{Lifetime: m, MustRevalidate: true}, 2 * m, time.Hour, false},
		{"§5.2.2.4 no-cache: never, even fresh", nil, Freshness{Lifetime: time.Hour, NoCache: true}, m, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StaleIfError(ParseRequest(tt.req), tt.f, tt.age, tt.grace); got != tt.want {
				t.Errorf("StaleIfError = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestActionString(t *testing.T) {
	for _, tt := range []struct {
		a    Action
		want string
	}{{Serve, "serve"}, {ServeStale, "serve-stale"}, {Revalidate, "revalidate"}, {Miss, "miss"}, {Miss + 1, "unknown"}} {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("Action(%d).String() = %q; want %q", tt.a, got, tt.want)
		}
	}
}

// TestExplicitFreshness: whether the response gave its freshness itself,
// which an operator's default TTL must not override.
func TestExplicitFreshness(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		h    http.Header
		want bool
	}{
		{"none", http.Header{}, false},
		{"max-age=0", http.Header{"Cache-Control": {"max-age=0"}}, true},
		{"s-maxage", http.Header{"Cache-Control": {"s-maxage=10"}}, true},
		{"Expires", http.Header{"Expires": {t0.Add(time.Hour).Format(http.TimeFormat)}}, true},
		{"invalid Expires", http.Header{"Expires": {"0"}}, true},
		{"heuristic only", http.Header{"Last-Modified": {t0.Add(-time.Hour).Format(http.TimeFormat)}}, false},
		{"public only", http.Header{"Cache-Control": {"public"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ResponseFreshness(200, tt.h, t0, DefaultOptions()).Explicit; got != tt.want {
				t.Errorf("Explicit: got %v; want %v", got, tt.want)
			}
		})
	}
}
