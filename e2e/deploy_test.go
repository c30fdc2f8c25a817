package e2e

// The monitoring examples in deploy/ against the real binary: every metric
// name (and every label and literal label value) that the Grafana dashboard
// and the Prometheus alerting rules query must be one that dedupcache's
// /metrics exposes, so a renamed metric cannot leave them silently empty.
// The files' structure is checked too: the dashboard parses and every panel
// has a data source and a query; both YAML files parse.
//
// Helpers here are prefixed with deploy so they stay clear of the other e2e
// files.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"dedupcache/config"
)

// deployDS is the data source every dashboard panel and query must use:
// the import input and data source variable DS_PROMETHEUS.
const deployDS = "${DS_PROMETHEUS}"

func TestDeployExamplesUseRealMetrics(t *testing.T) {
	t.Parallel()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "deploy")

	// Parse every file first: a syntax error is reported without starting
	// anything.
	scrape := deployPrometheusConfig(t, dir)
	alertExprs := deployAlertExprs(t, filepath.Join(dir, "alerts.yml"))
	dashExprs := deployDashboardExprs(t, filepath.Join(dir, "grafana-dashboard.json"))
	if len(alertExprs) == 0 || len(dashExprs) == 0 {
		t.Fatalf("found %d alert and %d dashboard expressions; want some of each", len(alertExprs), len(dashExprs))
	}

	// The real binary with a little traffic: a miss, a hit, a second URL
	// sharing the body, an upstream 500; then /metrics at the configured
	// path.
	o := startOrigin(t)
	c := startCache(t, cacheOptions{upstream: o.url})
	get(t, c.url+"/obj/1?distinct=1&size=2000")
	get(t, c.url+"/obj/1?distinct=1&size=2000")
	get(t, c.url+"/obj/2?distinct=1&size=2000")
	if r := do(http.MethodGet, c.url+"/status/500"); r.err != nil || r.status != http.StatusInternalServerError {
		t.Fatalf("GET /status/500: got %d, %v; want 500", r.status, r.err)
	}
	c.waitStats(t, func(s stats) bool { return s.Hits >= 1 && s.Entries >= 2 })
	fams := deployScrape(t, c.adminURL+scrape.metricsPath)
	for _, name := range []string{"dedupcache_requests_total", "dedupcache_upstream_latency_seconds", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Fatalf("/metrics: no %s; the scrape or its parsing is broken (got %d families)", name, len(fams))
		}
	}

	used := map[string]bool{}
	for _, e := range append(dashExprs, alertExprs...) {
		for _, msg := range deployCheckExpr(e.expr, fams, used) {
			t.Errorf("%s: %s\n\texpr: %s", e.where, msg, e.expr)
		}
	}

	var unused []string
	for name := range fams {
		if strings.HasPrefix(name, "dedupcache_") && !used[name] {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	t.Logf("checked %d dashboard and %d alert expressions against %d exposed families; dedupcache families neither charts nor alerts: %v",
		len(dashExprs), len(alertExprs), len(fams), unused)
}

// deployExpr is one PromQL expression and where it was found.
type deployExpr struct {
	where string
	expr  string
}

// deployFamily is one metric family of a scrape: its type and the values
// seen for each label.
type deployFamily struct {
	typ    string // "COUNTER", "GAUGE", "HISTOGRAM", ...
	labels map[string]map[string]bool
}

// deployScrape GETs url and parses it in the Prometheus text format.
func deployScrape(t *testing.T, url string) map[string]deployFamily {
	t.Helper()
	r := do(http.MethodGet, url)
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("GET %s: got %d, %v; want 200", url, r.status, r.err)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET %s: Content-Type %q; want the text format", url, ct)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	fams := make(map[string]deployFamily, len(mfs))
	for name, mf := range mfs {
		f := deployFamily{typ: mf.GetType().String(), labels: map[string]map[string]bool{}}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if f.labels[l.GetName()] == nil {
					f.labels[l.GetName()] = map[string]bool{}
				}
				f.labels[l.GetName()][l.GetValue()] = true
			}
		}
		fams[name] = f
	}
	return fams
}

var (
	// deployNameRe finds the metric names an expression reads: dedupcache's
	// own and the Go and process collectors'.
	deployNameRe = regexp.MustCompile(`\b(?:dedupcache|go|process)_[a-z0-9_]+\b`)
	// deploySelectorRe is a metric name with its label matchers.
	deploySelectorRe = regexp.MustCompile(`\b((?:dedupcache|go|process)_[a-z0-9_]+)\s*\{([^}]*)\}`)
	// deployMatcherRe is one label matcher with a double-quoted value.
	deployMatcherRe = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	// deployGroupingRe is a by or without clause.
	deployGroupingRe = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	// deploySyntheticRe finds the series Prometheus records about each
	// scrape itself (up, scrape_duration_seconds...).
	deploySyntheticRe = regexp.MustCompile(`\b(?:up|scrape_[a-z_]+)\b`)
	// deployAlternationRe is a regex matcher value that is a plain list of
	// literal values, a|b|c.
	deployAlternationRe = regexp.MustCompile(`^[a-zA-Z0-9_]+(?:\|[a-zA-Z0-9_]+)*$`)
)

// deployTargetLabels are added by Prometheus, not exposed by the binary.
var deployTargetLabels = map[string]bool{"job": true, "instance": true}

// deployResolve maps a series name to the family that exposes it: the name
// itself, or a histogram's (or summary's) _bucket, _sum and _count series.
// extra is the label such a series has beyond the family's (le, quantile).
func deployResolve(name string, fams map[string]deployFamily) (family, extra string, ok bool) {
	if f, ok := fams[name]; ok {
		if f.typ == "SUMMARY" {
			return name, "quantile", true
		}
		return name, "", true
	}
	for _, s := range []struct{ suffix, typ, extra string }{
		{"_bucket", "HISTOGRAM", "le"},
		{"_sum", "HISTOGRAM", ""}, {"_count", "HISTOGRAM", ""},
		{"_sum", "SUMMARY", ""}, {"_count", "SUMMARY", ""},
	} {
		base, found := strings.CutSuffix(name, s.suffix)
		if f, ok := fams[base]; found && ok && f.typ == s.typ {
			return base, s.extra, true
		}
	}
	return "", "", false
}

// deployCheckExpr returns what is wrong with expr against the scrape: a
// metric name that is not exposed, a label a metric does not have, a
// literal label value never exposed, a grouping label no metric of the
// expression has. It records the families used in used.
func deployCheckExpr(expr string, fams map[string]deployFamily, used map[string]bool) []string {
	var problems []string
	names := deployNameRe.FindAllString(expr, -1)
	if len(names) == 0 && !deploySyntheticRe.MatchString(expr) {
		return []string{"names no dedupcache_, go_ or process_ metric, nor up"}
	}
	known := map[string]bool{"le": true} // labels some metric of expr has
	for l := range deployTargetLabels {
		known[l] = true
	}
	for _, name := range names {
		fam, extra, ok := deployResolve(name, fams)
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not exposed by /metrics", name))
			continue
		}
		used[fam] = true
		for l := range fams[fam].labels {
			known[l] = true
		}
		if extra != "" {
			known[extra] = true
		}
	}
	for _, sm := range deploySelectorRe.FindAllStringSubmatch(expr, -1) {
		name, matchers := sm[1], sm[2]
		fam, extra, ok := deployResolve(name, fams)
		if !ok {
			continue // reported above
		}
		labels := fams[fam].labels
		for _, mm := range deployMatcherRe.FindAllStringSubmatch(matchers, -1) {
			label, op, value := mm[1], mm[2], mm[3]
			if deployTargetLabels[label] || label == extra {
				continue
			}
			values, ok := labels[label]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s has no label %q (it has %v)", name, label, slices.Sorted(maps.Keys(labels))))
				continue
			}
			if strings.Contains(value, "$") {
				continue // a dashboard variable
			}
			alts := []string{value}
			if op == "=~" || op == "!~" {
				if !deployAlternationRe.MatchString(value) {
					continue // a real regular expression: not checked
				}
				alts = strings.Split(value, "|")
			}
			for _, v := range alts {
				if !values[v] {
					problems = append(problems, fmt.Sprintf("%s{%s} is never exposed (values: %v)", name, label+op+`"`+v+`"`, slices.Sorted(maps.Keys(values))))
				}
			}
		}
	}
	for _, gm := range deployGroupingRe.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(gm[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !known[l] {
				problems = append(problems, fmt.Sprintf("grouping label %q is on no metric of the expression", l))
			}
		}
	}
	return problems
}

// deployYAML reads path, checks it is well-formed YAML (one document), and
// decodes it into v rejecting unknown fields.
func deployYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var node yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&node); err != nil {
		t.Fatalf("%s: YAML syntax: %v", path, err)
	}
	if err := dec.Decode(&node); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: want one YAML document; after the first: %v", path, err)
	}
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// deployScrapeJob is what the test takes from prometheus.yml.
type deployScrapeJob struct {
	metricsPath string
}

// deployPrometheusConfig checks deploy/prometheus.yml: one dedupcache job
// scraping the default admin listener's /metrics every 15s, and rule files
// that exist.
func deployPrometheusConfig(t *testing.T, dir string) deployScrapeJob {
	t.Helper()
	path := filepath.Join(dir, "prometheus.yml")
	var cfg struct {
		Global struct {
			ScrapeInterval     string `yaml:"scrape_interval"`
			EvaluationInterval string `yaml:"evaluation_interval"`
		} `yaml:"global"`
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName        string `yaml:"job_name"`
			ScrapeInterval string `yaml:"scrape_interval"`
			MetricsPath    string `yaml:"metrics_path"`
			StaticConfigs  []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	deployYAML(t, path, &cfg)

	for _, rf := range cfg.RuleFiles {
		if _, err := os.Stat(filepath.Join(dir, rf)); err != nil {
			t.Errorf("%s: rule_files: %v", path, err)
		}
	}
	if !slices.Contains(cfg.RuleFiles, "alerts.yml") {
		t.Errorf("%s: rule_files %q; want alerts.yml", path, cfg.RuleFiles)
	}
	var job *deployScrapeJob
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName != "dedupcache" {
			continue
		}
		if job != nil {
			t.Fatalf("%s: two scrape configs named dedupcache", path)
		}
		job = &deployScrapeJob{metricsPath: sc.MetricsPath}
		if sc.MetricsPath != "/metrics" {
			t.Errorf("%s: metrics_path %q; want /metrics", path, sc.MetricsPath)
		}
		if sc.ScrapeInterval != "15s" {
			t.Errorf("%s: scrape_interval %q; want 15s", path, sc.ScrapeInterval)
		}
		var targets []string
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
		if want := config.Default().Admin.Listen; !slices.Contains(targets, want) {
			t.Errorf("%s: targets %q; want the default admin listener %s", path, targets, want)
		}
	}
	if job == nil {
		t.Fatalf("%s: no scrape config with job_name dedupcache", path)
	}
	if !strings.HasPrefix(job.metricsPath, "/") {
		t.Fatalf("%s: metrics_path %q is not a path", path, job.metricsPath)
	}
	return *job
}

// deployAlertExprs checks deploy/alerts.yml and returns its expressions:
// groups with names and rules, each rule an alert or a recording rule with
// an expression, alerts with a severity and a summary.
func deployAlertExprs(t *testing.T, path string) []deployExpr {
	t.Helper()
	var rules struct {
		Groups []struct {
			Name        string `yaml:"name"`
			Interval    string `yaml:"interval"`
			QueryOffset string `yaml:"query_offset"`
			Limit       int    `yaml:"limit"`
			Rules       []struct {
				Alert         string            `yaml:"alert"`
				Record        string            `yaml:"record"`
				Expr          string            `yaml:"expr"`
				For           string            `yaml:"for"`
				KeepFiringFor string            `yaml:"keep_firing_for"`
				Labels        map[string]string `yaml:"labels"`
				Annotations   map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	deployYAML(t, path, &rules)
	if len(rules.Groups) == 0 {
		t.Fatalf("%s: no rule groups", path)
	}
	var exprs []deployExpr
	names := map[string]bool{}
	for gi, g := range rules.Groups {
		if g.Name == "" || names[g.Name] {
			t.Errorf("%s: group %d: name %q empty or repeated", path, gi, g.Name)
		}
		names[g.Name] = true
		if len(g.Rules) == 0 {
			t.Errorf("%s: group %q has no rules", path, g.Name)
		}
		for ri, r := range g.Rules {
			where := fmt.Sprintf("%s: group %q rule %d (%s%s)", filepath.Base(path), g.Name, ri, r.Alert, r.Record)
			switch {
			case (r.Alert == "") == (r.Record == ""):
				t.Errorf("%s: want exactly one of alert and record", where)
			case r.Alert != "" && (r.Labels["severity"] == "" || r.Annotations["summary"] == ""):
				t.Errorf("%s: want a severity label and a summary annotation", where)
			}
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: empty expr", where)
				continue
			}
			exprs = append(exprs, deployExpr{where, r.Expr})
		}
	}
	return exprs
}

// deployDSRef is a Grafana data source reference.
type deployDSRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// deployInput is an entry of a dashboard's __inputs.
type deployInput struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	PluginID string `json:"pluginId"`
}

// deployPanel is what the test reads of a dashboard panel.
type deployPanel struct {
	ID         int          `json:"id"`
	Type       string       `json:"type"`
	Title      string       `json:"title"`
	Datasource *deployDSRef `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Datasource *deployDSRef `json:"datasource"`
		Expr       string       `json:"expr"`
		RefID      string       `json:"refId"`
	} `json:"targets"`
	Panels []deployPanel `json:"panels"` // a collapsed row's
}

// deployDashboardExprs checks deploy/grafana-dashboard.json and returns
// the expressions of its panels and query variables.
func deployDashboardExprs(t *testing.T, path string) []deployExpr {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID           string        `json:"uid"`
		Title         string        `json:"title"`
		SchemaVersion int           `json:"schemaVersion"`
		Inputs        []deployInput `json:"__inputs"`
		Panels        []deployPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				Datasource *deployDSRef    `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	base := filepath.Base(path)
	if dash.UID != "dedupcache" || dash.Title == "" {
		t.Errorf("%s: uid %q, title %q; want uid dedupcache and a title", base, dash.UID, dash.Title)
	}
	if dash.SchemaVersion < 36 { // data sources as {type, uid} references
		t.Errorf("%s: schemaVersion %d; want 36 or later", base, dash.SchemaVersion)
	}
	if !slices.Contains(dash.Inputs, deployInput{Name: "DS_PROMETHEUS", Type: "datasource", PluginID: "prometheus"}) {
		t.Errorf("%s: no __inputs entry DS_PROMETHEUS of type datasource (prometheus) for the import", base)
	}

	var exprs []deployExpr
	dsVar := false
	for _, v := range dash.Templating.List {
		switch v.Type {
		case "datasource":
			var q string
			if v.Name == "DS_PROMETHEUS" && json.Unmarshal(v.Query, &q) == nil && q == "prometheus" {
				dsVar = true
			}
		case "query":
			var q string
			if json.Unmarshal(v.Query, &q) != nil {
				var obj struct {
					Query string `json:"query"`
				}
				if err := json.Unmarshal(v.Query, &obj); err != nil {
					t.Errorf("%s: variable %s: query %s: %v", base, v.Name, v.Query, err)
				}
				q = obj.Query
			}
			where := fmt.Sprintf("%s: variable %s", base, v.Name)
			if v.Datasource == nil || v.Datasource.UID != deployDS {
				t.Errorf("%s: datasource %+v; want uid %s", where, v.Datasource, deployDS)
			}
			if q == "" {
				t.Errorf("%s: empty query", where)
				continue
			}
			exprs = append(exprs, deployExpr{where, q})
		}
	}
	if !dsVar {
		t.Errorf("%s: no data source variable DS_PROMETHEUS (query prometheus) for provisioning", base)
	}

	ids := map[int]bool{}
	var walk func(panels []deployPanel)
	walk = func(panels []deployPanel) {
		for _, p := range panels {
			where := fmt.Sprintf("%s: panel %d %q", base, p.ID, p.Title)
			if p.ID == 0 || ids[p.ID] {
				t.Errorf("%s: id missing or repeated", where)
			}
			ids[p.ID] = true
			if g := p.GridPos; g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("%s: gridPos %+v; want a width and height inside 24 columns", where, p.GridPos)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != deployDS || p.Datasource.Type != "prometheus" {
				t.Errorf("%s: datasource %+v; want {prometheus %s}", where, p.Datasource, deployDS)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no targets", where)
			}
			refs := map[string]bool{}
			for i, tg := range p.Targets {
				twhere := fmt.Sprintf("%s target %d (%s)", where, i, tg.RefID)
				if tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("%s: refId missing or repeated", twhere)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil && tg.Datasource.UID != deployDS {
					t.Errorf("%s: datasource %+v; want the panel's, %s", twhere, tg.Datasource, deployDS)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: empty expr", twhere)
					continue
				}
				exprs = append(exprs, deployExpr{twhere, tg.Expr})
			}
		}
	}
	walk(dash.Panels)
	if len(ids) == 0 {
		t.Errorf("%s: no panels", base)
	}
	return exprs
}
