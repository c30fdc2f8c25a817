package policy

import (
	"reflect"
	"testing"
	"time"
)

// TestSurrogateControlDecisions: what the directives make of storing and
// freshness, and the field is not stored (the cache consumed it).
func TestSurrogateControlDecisions(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opt := DefaultOptions()
	h := hdr("Date", date(now), "Cache-Control", "no-store", "Surrogate-Control", "max-age=600")
	if ok, why := Storable("GET", nil, 200, h, opt); !ok {
		t.Errorf("Surrogate-Control: max-age over Cache-Control: no-store: not storable (%v)", why)
	}
	if f := ResponseFreshness(200, h, now, opt); f.Lifetime != 600*time.Second {
		t.Errorf("lifetime %v; want 10m", f.Lifetime)
	}
	if got := StripFields(h, opt); !reflect.DeepEqual(got, []string{"Surrogate-Control"}) {
		t.Errorf("StripFields = %q; want the consumed Surrogate-Control", got)
	}
	h = hdr("Date", date(now), "Cache-Control", "max-age=600", "Surrogate-Control", "no-store", "Expires", date(now.Add(time.Hour)))
	if ok, _ := Storable("GET", nil, 200, h, opt); ok {
		t.Errorf("Surrogate-Control: no-store: storable")
	}
	h = hdr("Cache-Control", "max-age=600", "Surrogate-Control", "max-age=60;cdn")
	if got := StripFields(h, opt); got != nil {
		t.Errorf("StripFields = %q; want nothing (the field is for another surrogate)", got)
	}
}
