package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"dedupcache/cachestore"
	"dedupcache/proxy"
)

// scrape reads url in the Prometheus text format and returns every sample
// keyed as name{label="value",...} (labels sorted), and each family's type.
func scrape(t *testing.T, url string) (samples map[string]float64, types map[string]string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	samples, types = make(map[string]float64), make(map[string]string)
	for name, mf := range mfs {
		types[name] = mf.GetType().String()
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+`"`+l.GetValue()+`"`)
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch types[name] {
			case "COUNTER":
				samples[key] = m.GetCounter().GetValue()
			case "GAUGE":
				samples[key] = m.GetGauge().GetValue()
			case "UNTYPED":
				samples[key] = m.GetUntyped().GetValue()
			case "HISTOGRAM":
				samples[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return samples, types
}

func TestMetricsMatchTrafficAndStats(t *testing.T) {
	const alpha, shared = "alpha body", "a body two URLs share"
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		if r.URL.Path == "/a" {
			_, _ = io.WriteString(w, alpha)
			return
		}
		_, _ = io.WriteString(w, shared)
	})
	lat := NewLatency()
	p, srv := newProxy(t, o.URL, lat.Observe)
	for _, path := range []string{"/a", "/b", "/c"} {
		if resp := get(t, srv.URL+path); resp.Header.Get("X-Cache") != "MISS" {
			t.Fatalf("GET %s: X-Cache %q; want MISS", path, resp.Header.Get("X-Cache"))
		}
	}
	for _, path := range []string{"/a", "/a", "/b", "/b", "/c"} {
		if resp := get(t, srv.URL+path); resp.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("GET %s: X-Cache %q; want HIT", path, resp.Header.Get("X-Cache"))
		}
	}
	resp, err := http.Post(srv.URL+"/form", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Cache") != "BYPASS" {
		t.Fatalf("POST /form: X-Cache %q; want BYPASS", resp.Header.Get("X-Cache"))
	}

	a := New(p, Config{Listen: "127.0.0.1:0", Latency: lat})
	_ = a.newRegistry() // a second registry must not clash with the first
	admin := httptest.NewServer(a.Handler())
	defer admin.Close()
	samples, types := scrape(t, admin.URL+"/metrics")

	resp, err = http.Get(admin.URL + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st proxy.Stats
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}

	// What the traffic above must show.
	logical := int64(len(alpha) + 2*len(shared))
	stored := int64(len(alpha) + len(shared))
	known := []struct {
		key  string
		want float64
	}{
		{`dedupcache_requests_total{result="hit"}`, 5},
		{`dedupcache_requests_total{result="miss"}`, 3},
		{`dedupcache_requests_total{result="stale"}`, 0},
		{`dedupcache_requests_total{result="bypass"}`, 1},
		{`dedupcache_entries`, 3},
		{`dedupcache_bodies`, 2},
		{`dedupcache_body_bytes{kind="logical"}`, float64(logical)},
		{`dedupcache_body_bytes{kind="stored"}`, float64(stored)},
		{`dedupcache_body_bytes{kind="saved"}`, float64(logical - stored)},
		{`dedupcache_dedup_ratio`, float64(logical) / float64(stored)},
		{`dedupcache_responses_total{outcome="stored"}`, 3},
		{`dedupcache_upstream_errors_total`, 0},
		{`dedupcache_memory_limit_bytes`, 64 << 20},
		{`dedupcache_upstream_responses_total{code_class="2xx"}`, 4}, // 3 misses and the bypass
		{`dedupcache_served_body_bytes_total`, float64(len(alpha)*2 + len(shared)*3)},
		{`dedupcache_upstream_latency_seconds_count`, 4},
	}
	for _, k := range known {
		if got, ok := samples[k.key]; !ok || got != k.want {
			t.Errorf("%s: got %v (present %v); want %v", k.key, got, ok, k.want)
		}
	}

	// Every dedupcache_ sample must equal its /api/stats field, and no
	// other dedupcache_ sample may exist.
	same := map[string]float64{
		`dedupcache_requests_total{result="hit"}`:       float64(st.Hits),
		`dedupcache_requests_total{result="miss"}`:      float64(st.Misses),
		`dedupcache_requests_total{result="stale"}`:     float64(st.Stale),
		`dedupcache_requests_total{result="bypass"}`:    float64(st.Bypasses),
		`dedupcache_entries`:                            float64(st.Entries),
		`dedupcache_bodies`:                             float64(st.BodiesUnique),
		`dedupcache_header_blocks`:                      float64(st.HeaderBlocks),
		`dedupcache_body_bytes{kind="logical"}`:         float64(st.BytesLogical),
		`dedupcache_body_bytes{kind="stored"}`:          float64(st.BytesStored),
		`dedupcache_body_bytes{kind="saved"}`:           float64(st.BytesSaved),
		`dedupcache_memory_bytes`:                       float64(st.MemoryBytes),
		`dedupcache_memory_limit_bytes`:                 float64(st.MemoryLimitBytes),
		`dedupcache_entry_bytes`:                        float64(st.EntryBytes),
		`dedupcache_responses_total{outcome="stored"}`:  float64(st.Stored),
		`dedupcache_responses_total{outcome="cut_off"}`: float64(st.CutOff),
		`dedupcache_responses_total{outcome="aborted"}`: float64(st.Aborted),
		`dedupcache_responses_total{outcome="too_big"}`: float64(st.TooBig),
		`dedupcache_upstream_errors_total`:              float64(st.UpstreamErrors),
		`dedupcache_dedup_ratio`:                        st.DedupRatio,
	}
	for _, c := range cachestore.Causes() {
		same[`dedupcache_entries_released_total{cause="`+c.String()+`"}`] = float64(st.Released[c.String()])
	}
	for ev, v := range map[string]int64{"revalidated": st.Revalidated, "not_modified": st.NotModified, "range": st.Ranges,
		"coalesced": st.Coalesced, "refresh": st.Refreshes, "invalidated": st.Invalidated, "purged": st.Purged} {
		same[`dedupcache_cache_events_total{event="`+ev+`"}`] = float64(v)
	}
	same[`dedupcache_served_body_bytes_total`] = float64(st.ServedBytes)
	same[`dedupcache_misdirected_requests_total`] = float64(st.Misdirected)
	same[`dedupcache_client_connections`] = float64(st.ClientConns)
	same[`dedupcache_client_connection_bytes`] = float64(st.ConnBytes)
	for class, v := range st.UpstreamByCl {
		same[`dedupcache_upstream_responses_total{code_class="`+class+`"}`] = float64(v)
	}
	for key, want := range same {
		if got, ok := samples[key]; !ok || got != want {
			t.Errorf("%s: got %v (present %v); /api/stats says %v", key, got, ok, want)
		}
	}
	for key := range samples {
		if _, ok := same[key]; strings.HasPrefix(key, "dedupcache_") && !strings.HasPrefix(key, "dedupcache_upstream_latency_seconds") && !ok {
			t.Errorf("unexpected sample %s", key)
		}
	}
	if st.MemoryBytes <= 0 || st.HeaderBlocks <= 0 || st.EntryBytes <= 0 {
		t.Errorf("memory_bytes %d, header_blocks %d, entry_bytes %d; want all > 0", st.MemoryBytes, st.HeaderBlocks, st.EntryBytes)
	}

	wantTypes := map[string]string{
		"dedupcache_requests_total":             "COUNTER",
		"dedupcache_entries_released_total":     "COUNTER",
		"dedupcache_responses_total":            "COUNTER",
		"dedupcache_upstream_errors_total":      "COUNTER",
		"dedupcache_misdirected_requests_total": "COUNTER",
		"dedupcache_client_connections":         "GAUGE",
		"dedupcache_client_connection_bytes":    "GAUGE",
		"dedupcache_entries":                    "GAUGE",
		"dedupcache_bodies":                     "GAUGE",
		"dedupcache_header_blocks":              "GAUGE",
		"dedupcache_body_bytes":                 "GAUGE",
		"dedupcache_memory_bytes":               "GAUGE",
		"dedupcache_memory_limit_bytes":         "GAUGE",
		"dedupcache_entry_bytes":                "GAUGE",
		"dedupcache_dedup_ratio":                "GAUGE",
		"go_goroutines":                         "GAUGE",
		"process_resident_memory_bytes":         "GAUGE",
	}
	for name, want := range wantTypes {
		if got := types[name]; got != want {
			t.Errorf("type of %s: got %q; want %q", name, got, want)
		}
	}
}

// sharedSource is a Source whose stats include a shared tier.
type sharedSource struct {
	fakeSource
	sh proxy.SharedStats
}

func (s *sharedSource) Stats() proxy.Stats { return proxy.Stats{Shared: &s.sh} }

// TestSharedMetrics: the shared tier's figures on /metrics and /readyz,
// and none without a tier.
func TestSharedMetrics(t *testing.T) {
	src := &sharedSource{sh: proxy.SharedStats{Healthy: true, Hits: 3, Misses: 2, BytesNotUploaded: 4096, PurgesApplied: 1}}
	a := New(src, Config{Listen: "127.0.0.1:9091"})
	srv := httptest.NewServer(a.MetricsHandler())
	defer srv.Close()
	samples, _ := scrape(t, srv.URL+"/metrics")
	for k, want := range map[string]float64{
		"dedupcache_shared_up":                                    1,
		`dedupcache_shared_reads_total{result="hit"}`:             3,
		`dedupcache_shared_reads_total{result="miss"}`:            2,
		`dedupcache_shared_body_bytes_total{kind="not_uploaded"}`: 4096,
		`dedupcache_shared_purges_total{kind="applied"}`:          1,
	} {
		if got, ok := samples[k]; !ok || got != want {
			t.Errorf("%s: got %v (present %v); want %v", k, got, ok, want)
		}
	}
	src.sh.Healthy = false
	if samples, _ = scrape(t, srv.URL+"/metrics"); samples["dedupcache_shared_up"] != 0 {
		t.Errorf("dedupcache_shared_up with the tier down: %v; want 0", samples["dedupcache_shared_up"])
	}
	plain := httptest.NewServer(New(&fakeSource{}, Config{Listen: "127.0.0.1:9091"}).MetricsHandler())
	defer plain.Close()
	if samples, _ = scrape(t, plain.URL+"/metrics"); len(samples) == 0 {
		t.Fatal("no samples")
	} else if _, ok := samples["dedupcache_shared_up"]; ok {
		t.Errorf("dedupcache_shared_up without a shared tier")
	}
}
