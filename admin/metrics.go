package admin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"dedupcache/cachestore"
	"dedupcache/proxy"
)

// newRegistry returns a registry of the admin's own, for /metrics: Go
// runtime and process metrics, a [statsCollector], the upstream latency
// histogram and dedupcache_build_info when there are. Each call makes a new registry;
// none touches prometheus.DefaultRegisterer, so instances and tests stay
// apart.
func (a *Admin) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		statsCollector{a.src},
	)
	if a.cfg.Latency != nil {
		reg.MustRegister(a.cfg.Latency.h)
	}
	if a.cfg.Build.Version != "" {
		reg.MustRegister(buildInfo(a.cfg.Build))
	}
	reg.MustRegister(a.cfg.Collectors...)
	return reg
}

// buildInfo is the gauge dedupcache_build_info{version,commit,goversion},
// always 1, the Prometheus convention for joining a build's labels onto
// other series.
func buildInfo(b Build) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   "dedupcache",
		Name:        "build_info",
		Help:        "Always 1; the labels describe the running binary.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}

// Latency is the histogram dedupcache_upstream_latency_seconds of upstream
// exchange durations (from sending the request to the response header, or
// to the failure). Make one with [NewLatency], give [Latency.Observe] to
// proxy.Config.ObserveUpstream and the Latency to [Config.Latency]. Safe
// for concurrent use; hold it by pointer.
type Latency struct{ h prometheus.Histogram }

// NewLatency returns an empty upstream latency histogram.
func NewLatency() *Latency {
	return &Latency{h: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "dedupcache",
		Name:      "upstream_latency_seconds",
		Help:      "Time from sending a request upstream to its response header (or failure).",
		Buckets:   []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})}
}

// Observe records one upstream exchange that took d. It has the signature
// of proxy.Config.ObserveUpstream.
func (l *Latency) Observe(d time.Duration) { l.h.Observe(d.Seconds()) }

// statsCollector exports [Source.Stats] at scrape time, so /metrics and
// /api/stats read the same counters and cannot disagree on their meaning.
// It holds no state of its own and may be registered on any number of
// registries.
type statsCollector struct{ src Source }

// Describe sends the descriptor of every row of statsMetrics.
func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range statsMetrics {
		ch <- m.desc
	}
}

// Collect takes one snapshot of the stats and sends every row's samples.
func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	for _, m := range statsMetrics {
		m.collect(&st, func(v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v, labels...)
		})
	}
}

// statsMetric is one metric family read from a [proxy.Stats] snapshot. collect
// calls emit once per sample, with label values in the order of the
// descriptor's variable labels.
type statsMetric struct {
	desc    *prometheus.Desc
	typ     prometheus.ValueType
	collect func(st *proxy.Stats, emit func(v float64, labels ...string))
}

// newStatsMetric builds a statsMetric named dedupcache_<name>.
func newStatsMetric(name, help string, typ prometheus.ValueType, labels []string, collect func(*proxy.Stats, func(float64, ...string))) statsMetric {
	return statsMetric{
		desc:    prometheus.NewDesc(prometheus.BuildFQName("dedupcache", "", name), help, labels, nil),
		typ:     typ,
		collect: collect,
	}
}

// sharedValue is the collect function of an unlabelled shared-tier metric:
// no sample without a shared tier.
func sharedValue(f func(*proxy.SharedStats) float64) func(*proxy.Stats, func(float64, ...string)) {
	return func(st *proxy.Stats, emit func(float64, ...string)) {
		if st.Shared != nil {
			emit(f(st.Shared))
		}
	}
}

// snapshotValue is the collect function of an unlabelled snapshot metric:
// no sample before the first snapshot write or load.
func snapshotValue(f func(*proxy.SnapshotState) float64) func(*proxy.Stats, func(float64, ...string)) {
	return func(st *proxy.Stats, emit func(float64, ...string)) {
		if st.Snapshot != nil {
			emit(f(st.Snapshot))
		}
	}
}

// statsValue is the collect function of an unlabelled metric.
func statsValue(f func(*proxy.Stats) int64) func(*proxy.Stats, func(float64, ...string)) {
	return func(st *proxy.Stats, emit func(float64, ...string)) { emit(float64(f(st))) }
}

// statsMetrics is what /metrics exports from [proxy.Stats]. Names follow the
// Prometheus conventions: base units, _total on counters, and labels whose
// values come from closed sets only (never a URL or a key).
//
// To export a new figure, add its field to [proxy.Stats] (so /api/stats shows
// it too) and a row here. Figures that are not a plain number of the snapshot
// (the upstream latency histogram, for one) belong in their own collector
// registered in [Admin.newRegistry].
var statsMetrics = []statsMetric{
	newStatsMetric("shared_up", "1 when the shared tier is reachable (its circuit breaker closed), 0 when not; absent without one.",
		prometheus.GaugeValue, nil, sharedValue(func(s *proxy.SharedStats) float64 {
			if s.Healthy {
				return 1
			}
			return 0
		})),
	newStatsMetric("shared_reads_total", "Shared tier reads, by result (hit, miss, error, timeout).",
		prometheus.CounterValue, []string{"result"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			if s := st.Shared; s != nil {
				emit(float64(s.Hits), "hit")
				emit(float64(s.Misses), "miss")
				emit(float64(s.Errors), "error")
				emit(float64(s.Timeouts), "timeout")
			}
		}),
	newStatsMetric("shared_puts_total", "Responses handed to the shared tier, by outcome (written, dropped).",
		prometheus.CounterValue, []string{"outcome"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			if s := st.Shared; s != nil {
				emit(float64(s.PutsWritten), "written")
				emit(float64(s.PutsDropped), "dropped")
			}
		}),
	newStatsMetric("shared_body_bytes_total", "Body bytes uploaded to the shared tier, and not uploaded because another instance had stored the body (fleet dedup).",
		prometheus.CounterValue, []string{"kind"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			if s := st.Shared; s != nil {
				emit(float64(s.BytesUploaded), "uploaded")
				emit(float64(s.BytesNotUploaded), "not_uploaded")
			}
		}),
	newStatsMetric("shared_bodies_fetched_total", "Bodies downloaded from the shared tier.",
		prometheus.CounterValue, nil, sharedValue(func(s *proxy.SharedStats) float64 { return float64(s.BodiesFetched) })),
	newStatsMetric("shared_purges_total", "Purges sent to the other instances, applied from them, and times everything was marked stale because purges may have been missed.",
		prometheus.CounterValue, []string{"kind"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			if s := st.Shared; s != nil {
				emit(float64(s.PurgesSent), "sent")
				emit(float64(s.PurgesApplied), "applied")
				emit(float64(s.PurgesMissed), "missed")
			}
		}),
	newStatsMetric("shared_purge_log_lag_seconds", "How far this instance's purge follower is behind the purge log.",
		prometheus.GaugeValue, nil, sharedValue(func(s *proxy.SharedStats) float64 { return s.StreamLagSeconds })),
	newStatsMetric("snapshot_writes_total", "Snapshot writes (snapshot.path), by result (ok, error); absent before the first write or load.",
		prometheus.CounterValue, []string{"result"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			if s := st.Snapshot; s != nil {
				emit(float64(s.Writes), "ok")
				emit(float64(s.WriteErrors), "error")
			}
		}),
	newStatsMetric("snapshot_last_write_timestamp_seconds", "When the last good snapshot write ended (unix time; 0: none yet).",
		prometheus.GaugeValue, nil, snapshotValue(func(s *proxy.SnapshotState) float64 { return s.LastWriteUnix })),
	newStatsMetric("snapshot_last_write_duration_seconds", "How long the last good snapshot write took.",
		prometheus.GaugeValue, nil, snapshotValue(func(s *proxy.SnapshotState) float64 { return s.LastWriteSeconds })),
	newStatsMetric("snapshot_last_write_bytes", "Size of the snapshot file last written.",
		prometheus.GaugeValue, nil, snapshotValue(func(s *proxy.SnapshotState) float64 { return float64(s.LastWriteBytes) })),
	newStatsMetric("snapshot_entries", "Entries in the last snapshot written, and loaded at start.",
		prometheus.GaugeValue, []string{"kind"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			if s := st.Snapshot; s != nil {
				emit(float64(s.LastWriteEntries), "written")
				emit(float64(s.LoadedEntries), "loaded")
			}
		}),
	newStatsMetric("requests_total", "Requests answered, by cache result (hit, miss, stale, bypass).",
		prometheus.CounterValue, []string{"result"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			emit(float64(st.Hits), "hit")
			emit(float64(st.Misses), "miss")
			emit(float64(st.Stale), "stale")
			emit(float64(st.Bypasses), "bypass")
		}),
	newStatsMetric("entries", "Stored entries (the entries figure of /api/stats).",
		prometheus.GaugeValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.Entries })),
	newStatsMetric("bodies", "Distinct response bodies stored.",
		prometheus.GaugeValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.BodiesUnique })),
	newStatsMetric("header_blocks", "Distinct header blocks stored.",
		prometheus.GaugeValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.HeaderBlocks })),
	newStatsMetric("body_bytes", "Body payload bytes: logical (summed over entries, as if not shared), stored (each distinct body once) and saved (logical - stored).",
		prometheus.GaugeValue, []string{"kind"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			emit(float64(st.BytesLogical), "logical")
			emit(float64(st.BytesStored), "stored")
			emit(float64(st.BytesSaved), "saved")
		}),
	newStatsMetric("memory_bytes", "Memory charged against the limit: entries, header blocks and unique bodies.",
		prometheus.GaugeValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.MemoryBytes })),
	newStatsMetric("memory_limit_bytes", "The configured memory limit (max_memory).",
		prometheus.GaugeValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.MemoryLimitBytes })),
	newStatsMetric("entry_bytes", "Memory of the entries themselves: per-entry overhead plus keys.",
		prometheus.GaugeValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.EntryBytes })),
	newStatsMetric("entries_released_total", "Entries that left the store, by cause.",
		prometheus.CounterValue, []string{"cause"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			for _, c := range cachestore.Causes() {
				emit(float64(st.Released[c.String()]), c.String())
			}
		}),
	newStatsMetric("responses_total", "Upstream responses the proxy tried to store, by outcome.",
		prometheus.CounterValue, []string{"outcome"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			emit(float64(st.Stored), "stored")
			emit(float64(st.CutOff), "cut_off")
			emit(float64(st.Aborted), "aborted")
			emit(float64(st.TooBig), "too_big")
		}),
	newStatsMetric("upstream_errors_total", "Requests answered 502 or 504 because the upstream failed or timed out.",
		prometheus.CounterValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.UpstreamErrors })),
	newStatsMetric("cache_events_total", "Other cache events: revalidated (stale entry refreshed by a 304), not_modified (304 answered from the cache), range (206 from the cache), coalesced (answered from another request's upstream fetch), refresh (background stale-while-revalidate), invalidated (by an unsafe request), purged.",
		prometheus.CounterValue, []string{"event"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			emit(float64(st.Revalidated), "revalidated")
			emit(float64(st.NotModified), "not_modified")
			emit(float64(st.Ranges), "range")
			emit(float64(st.Coalesced), "coalesced")
			emit(float64(st.Refreshes), "refresh")
			emit(float64(st.Invalidated), "invalidated")
			emit(float64(st.Purged), "purged")
		}),
	newStatsMetric("misdirected_requests_total", "Requests refused with 421 Misdirected Request: their host is not in server.allowed_hosts.",
		prometheus.CounterValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.Misdirected })),
	newStatsMetric("client_connections", "Open client connections on the proxy listeners.",
		prometheus.GaugeValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.ClientConns })),
	newStatsMetric("client_connection_bytes", "Estimated memory of the open client connections' buffers, added to the Go memory limit.",
		prometheus.GaugeValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.ConnBytes })),
	newStatsMetric("served_body_bytes_total", "Body bytes written from the cache.",
		prometheus.CounterValue, nil, statsValue(func(st *proxy.Stats) int64 { return st.ServedBytes })),
	newStatsMetric("upstream_responses_total", "Upstream exchanges by status class (error: no response).",
		prometheus.CounterValue, []string{"code_class"}, func(st *proxy.Stats, emit func(float64, ...string)) {
			for _, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "error"} {
				emit(float64(st.UpstreamByCl[c]), c)
			}
		}),
	newStatsMetric("dedup_ratio", "Logical body bytes over stored body bytes (1 = no sharing).",
		prometheus.GaugeValue, nil, func(st *proxy.Stats, emit func(float64, ...string)) { emit(st.DedupRatio) }),
}
