package e2e

// Operator basics against the real binary: -version, -check, -healthcheck,
// the read-only metrics listener, the combined access log, and the files
// operators deploy with (Dockerfile, .dockerignore, deploy/container.yaml,
// deploy/dedupcache.service).
//
// Helpers here are prefixed with ops so they stay clear of the other e2e
// files.

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"dedupcache/config"
)

// opsRun runs dedupcache with args and the clean environment plus env to
// completion and returns its exit code and output.
func opsRun(t *testing.T, bin string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("dedupcache %s: %v", strings.Join(args, " "), err)
		}
	case <-time.After(startTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("dedupcache %s did not exit within %v", strings.Join(args, " "), startTimeout)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// opsWrite writes body to name in a new temporary directory and returns
// its path.
func opsWrite(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// opsVersionLine is -version's output.
var opsVersionLine = regexp.MustCompile(`^dedupcache (\S+) \(commit (\S+), (go\S+)\)\n$`)

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, errOut := opsRun(t, cacheBin, nil, "-version")
	m := opsVersionLine.FindStringSubmatch(out)
	if code != 0 || m == nil || errOut != "" {
		t.Fatalf("-version: exit %d, stdout %q, stderr %q; want 0 and a line matching %s", code, out, errOut, opsVersionLine)
	}
	if m[3] != runtime.Version() {
		t.Errorf("-version: Go version %q; want %q (the toolchain that built it)", m[3], runtime.Version())
	}

	// -ldflags -X overrides what the build information says, and
	// dedupcache_build_info carries the same values.
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "dedupcache")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-e2e -X main.commit=0123abcd", "-o", bin, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want := "dedupcache v9.9.9-e2e (commit 0123abcd, " + runtime.Version() + ")\n"
	if code, out, _ := opsRun(t, bin, nil, "-version"); code != 0 || out != want {
		t.Errorf("-version with -ldflags -X: exit %d, %q; want 0, %q", code, out, want)
	}
	metrics := freeAddr(t)
	opsStart(t, bin, metrics)
	r := get(t, "http://"+metrics+"/metrics")
	info := `dedupcache_build_info{commit="0123abcd",goversion="` + runtime.Version() + `",version="v9.9.9-e2e"} 1`
	if !strings.Contains(string(r.body), info) {
		t.Errorf("/metrics lacks %s", info)
	}
}

// opsStart starts bin on free loopback ports with a metrics listener on
// metrics and an origin-less upstream, and waits for /healthz there. At
// cleanup it is stopped and must exit 0.
func opsStart(t *testing.T, bin, metrics string, args ...string) *proc {
	t.Helper()
	listen, admin := freeAddrs(t)
	args = append([]string{"-listen", listen, "-admin", admin, "-metrics", metrics, "-upstream", "http://127.0.0.1:1"}, args...)
	p := startProc(t, "dedupcache", bin, args, nil)
	t.Cleanup(func() {
		if code, _, ok := p.stop(); !ok || code != 0 {
			t.Errorf("dedupcache: exit %d (in time: %v); want 0", code, ok)
		}
		if t.Failed() {
			p.logOutput(t)
		}
	})
	deadline := time.Now().Add(startTimeout)
	for {
		if r := do(http.MethodGet, "http://"+metrics+"/healthz"); r.err == nil && r.status == http.StatusOK {
			return p
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("metrics listener %s never answered /healthz", metrics)
		}
		time.Sleep(pollEvery)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	// -check must not listen: the proxy's port is held open here, so a
	// start would fail with "address already in use".
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	const token = "check-token-0123456789abcdef"
	good := opsWrite(t, "good.yaml", "upstream: http://user:hunter2@127.0.0.1:3000\n"+
		"listen: "+held.Addr().String()+"\n"+
		"admin:\n  token: "+token+"\n"+
		"metrics:\n  listen: \":9090\"\n"+
		"log:\n  access: \"on\"\n  access_format: combined\n")
	bad := opsWrite(t, "bad.yaml", "upstream: http://127.0.0.1:3000\n"+
		"log:\n  access_format: apache\n"+
		"metrics:\n  listen: 127.0.0.1:9091\n")
	unparsable := opsWrite(t, "unparsable.yaml", "upstream: http://127.0.0.1:3000\ncache:\n  max_memory: 12XB\n")

	t.Run("good", func(t *testing.T) {
		code, out, errOut := opsRun(t, cacheBin, []string{"DEDUPCACHE_LOG_LEVEL=debug"}, "-config", good, "-max-memory", "64MiB", "-check")
		if code != 0 {
			t.Fatalf("exit %d; want 0\nstderr: %s", code, errOut)
		}
		if strings.Contains(out+errOut, token) || strings.Contains(out+errOut, "hunter2") {
			t.Errorf("output shows a secret:\n%s%s", out, errOut)
		}
		if !strings.Contains(errOut, "valid") {
			t.Errorf("stderr %q; want it to say the configuration is valid", errOut)
		}
		var eff struct {
			Listen   string `yaml:"listen"`
			Upstream string `yaml:"upstream"`
			Admin    struct {
				Token string `yaml:"token"`
			} `yaml:"admin"`
			Metrics struct {
				Listen string `yaml:"listen"`
			} `yaml:"metrics"`
			Cache struct {
				MaxMemory string `yaml:"max_memory"`
			} `yaml:"cache"`
			Log struct {
				Level        string `yaml:"level"`
				AccessFormat string `yaml:"access_format"`
			} `yaml:"log"`
		}
		if err := yaml.Unmarshal([]byte(out), &eff); err != nil {
			t.Fatalf("stdout is not YAML: %v\n%s", err, out)
		}
		got := []string{eff.Listen, eff.Upstream, eff.Admin.Token, eff.Metrics.Listen, eff.Cache.MaxMemory, eff.Log.Level, eff.Log.AccessFormat}
		want := []string{held.Addr().String(), "http://user:xxxxx@127.0.0.1:3000", "<redacted>", ":9090", "64MiB", "debug", "combined"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("effective settings (listen upstream token metrics max_memory level access_format):\n got %q\nwant %q", got, want)
		}
		// The output is a config file: it loads and validates.
		if code, _, errOut := opsRun(t, cacheBin, nil, "-config", opsWrite(t, "effective.yaml", out), "-check"); code != 0 {
			t.Errorf("-check of -check's output: exit %d\n%s", code, errOut)
		}
	})
	for _, tt := range []struct {
		name, file string
		want       []string // lines of stderr
	}{
		{"invalid values", bad, []string{
			bad + `:3: log.access_format: "apache" is not one of combined, text, json`,
			bad + `:5: metrics.listen: "127.0.0.1:9091" is also the admin.listen address`,
		}},
		{"unparsable value", unparsable, []string{unparsable + `:3: cache.max_memory: "12XB" is not a size (want e.g. 512MiB)`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := opsRun(t, cacheBin, nil, "-config", tt.file, "-check")
			if code != 2 || out != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, out)
			}
			if got := strings.Split(strings.TrimSpace(errOut), "\n"); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("stderr:\n%s\nwant:\n%s", errOut, strings.Join(tt.want, "\n"))
			}
		})
	}
	t.Run("environment error names the variable", func(t *testing.T) {
		code, _, errOut := opsRun(t, cacheBin, []string{"DEDUPCACHE_MAX_MEMORY=lots"}, "-upstream", "http://127.0.0.1:3000", "-check")
		if want := `$DEDUPCACHE_MAX_MEMORY: cache.max_memory: "lots" is not a size`; code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, want)
		}
	})
}

// TestMetricsListener checks metrics.listen: /metrics, /healthz and
// /readyz answer without a token and under any Host, the admin API and the
// dashboard are not there, and -healthcheck reads it.
func TestMetricsListener(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	metrics := freeAddr(t)
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-metrics", metrics}})
	c.stats(t) // the admin listener still serves its API
	base := "http://" + metrics
	for _, tt := range []struct {
		path   string
		status int
		body   string
	}{
		{"/metrics", 200, "dedupcache_requests_total{result=\"hit\"}"},
		{"/metrics", 200, "dedupcache_build_info{"},
		{"/healthz", 200, "ok\n"},
		{"/readyz", 200, "ready\n"},
		{"/api/stats", 404, ""},
		{"/api/top-bodies", 404, ""},
		{"/", 404, ""},
	} {
		req, err := http.NewRequest(http.MethodGet, base+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "prometheus.cluster.example:9090" // no Host check here
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.path, err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.Contains(body.String(), tt.body) {
			t.Errorf("GET %s: got %d %.120q; want %d with %q", tt.path, resp.StatusCode, body.String(), tt.status, tt.body)
		}
	}
	if r := do(http.MethodPost, base+"/api/purge?all=1"); r.status == http.StatusOK {
		t.Errorf("POST /api/purge on the metrics listener: got 200; want it refused")
	}
	if code, _, errOut := opsRun(t, cacheBin, nil, "-healthcheck", base+"/healthz"); code != 0 {
		t.Errorf("-healthcheck /healthz: exit %d; want 0\n%s", code, errOut)
	}
	if code, _, _ := opsRun(t, cacheBin, nil, "-healthcheck", base+"/api/stats"); code != 1 {
		t.Errorf("-healthcheck of a 404: exit %d; want 1", code)
	}
	if code, _, _ := opsRun(t, cacheBin, nil, "-healthcheck", "http://"+freeAddr(t)+"/healthz"); code != 1 {
		t.Errorf("-healthcheck of a closed port: exit %d; want 1", code)
	}
}

// opsCombined is one combined access line with the cache status and the
// seconds taken appended: host, time, request, status, bytes, referer, user
// agent, cache, seconds.
var opsCombined = regexp.MustCompile(`^(\S+) \S+ \S+ \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "(\S+) (\S+) (HTTP/\d\.\d)" (\d{3}) (\d+) "([^"]*)" "([^"]*)" (\S+) (\d+\.\d+)$`)

// TestCombinedAccessLog checks log.access_format: combined lines on stderr
// that parse, with sampling applied, and a reload to json.
func TestCombinedAccessLog(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	cfg := opsWrite(t, "dedupcache.yaml", "log:\n  access: \"on\"\n  access_format: combined\n")
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", cfg}})
	paths := []string{"/obj/1?distinct=1&size=300", "/obj/1?distinct=1&size=300", "/obj/2?distinct=2&size=10"}
	for _, p := range paths {
		req, _ := http.NewRequest(http.MethodGet, c.url+p, nil)
		req.Header.Set("User-Agent", `e2e "quoted" agent`)
		req.Header.Set("Referer", "http://referer.example/")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	lines := opsWaitLines(t, c.proc, func(l string) bool { return strings.HasPrefix(l, "127.0.0.1 ") }, len(paths))
	// A streamed miss may be logged after the hit that follows it, so
	// lines are compared as a set.
	want := []string{
		paths[0] + " 300 MISS", paths[1] + " 300 HIT", paths[2] + " 10 MISS",
	}
	var got []string
	for i, line := range lines {
		m := opsCombined.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %d is not a combined line: %q", i, line)
			continue
		}
		if _, err := time.Parse("02/Jan/2006:15:04:05 -0700", m[2]); err != nil {
			t.Errorf("line %d: time %q: %v", i, m[2], err)
		}
		if secs, err := strconv.ParseFloat(m[11], 64); err != nil || secs < 0 || secs > 10 {
			t.Errorf("line %d: seconds %q", i, m[11])
		}
		fixed := []string{m[1], m[3], m[5], m[6], m[8], m[9]}
		if want := []string{"127.0.0.1", "GET", "HTTP/1.1", "200", "http://referer.example/", `e2e \x22quoted\x22 agent`}; !slices.Equal(fixed, want) {
			t.Errorf("line %d: %q\n got %q\nwant %q", i, line, fixed, want)
		}
		got = append(got, m[4]+" "+m[7]+" "+m[10])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("path, bytes, cache status of the lines:\n got %q\nwant %q", got, want)
	}
	if strings.Contains(c.stderr.String(), "msg=access") {
		t.Errorf("combined format also wrote access records:\n%s", c.stderr.String())
	}

	// Reloadable, like the other log fields: to json, one request in two.
	if err := os.WriteFile(cfg, []byte("log:\n  access: sampled\n  access_sample: 2\n  access_format: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	opsWaitLines(t, c.proc, func(l string) bool { return strings.Contains(l, "msg=reloaded") }, 1)
	if strings.Contains(c.stderr.String(), "needs a restart") {
		t.Errorf("a reload that changes only log fields reported a field needing a restart:\n%s", c.stderr.String())
	}
	for range 4 {
		get(t, c.url+"/obj/1?distinct=1&size=300")
	}
	json := opsWaitLines(t, c.proc, func(l string) bool { return strings.Contains(l, `"msg":"access"`) }, 2)
	time.Sleep(100 * time.Millisecond)
	if n := len(opsLines(c.proc, func(l string) bool { return strings.Contains(l, `"msg":"access"`) })); n != 2 {
		t.Errorf("4 requests sampled 1 in 2: got %d json access lines; want 2:\n%s", n, strings.Join(json, "\n"))
	}
}

// opsLines returns the lines of p's stderr for which match holds.
func opsLines(p *proc, match func(string) bool) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	for sc.Scan() {
		if match(sc.Text()) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// opsWaitLines waits up to 5 s for n stderr lines that match and returns
// them: a streamed miss reaches the client before its line is written.
func opsWaitLines(t *testing.T, p *proc, match func(string) bool, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := opsLines(p, match)
		if len(lines) >= n {
			return lines[:n]
		}
		if time.Now().After(deadline) {
			t.Fatalf("stderr has %d matching lines; want %d:\n%s", len(lines), n, p.stderr.String())
		}
		time.Sleep(pollEvery)
	}
}

// opsInstruction is one Dockerfile instruction with its continuation
// lines joined.
type opsInstruction struct {
	line      int
	cmd, args string
}

// opsDockerfile reads the instructions of a Dockerfile.
func opsDockerfile(t *testing.T, path string) []opsInstruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []opsInstruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if rest, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, opsInstruction{start, strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	return out
}

// TestDockerfile checks what no Docker engine here can: the Dockerfile has
// pinned bases (the Go image at go.mod's release), a static non-root
// runtime, the three ports, a HEALTHCHECK the binary can run, and an
// entry point whose config (deploy/container.yaml) validates and listens
// where EXPOSE says. The image itself is not built.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+\.\d+)$`).FindSubmatch(gomod)
	if goVersion == nil {
		t.Fatalf("go.mod has no go x.y.z line")
	}
	want := map[string]*regexp.Regexp{
		// build stage: the exact Go release of go.mod, optionally by digest
		"build": regexp.MustCompile(`^golang:` + regexp.QuoteMeta(string(goVersion[1])) + `-bookworm(@sha256:[0-9a-f]{64})? AS build$`),
		// runtime: distroless publishes no version tags, so the tag is
		// pinned to the nonroot variant, or to a digest
		"runtime": regexp.MustCompile(`^gcr\.io/distroless/static-debian12:nonroot(@sha256:[0-9a-f]{64})?$`),
	}
	var froms []string
	have := map[string][]string{}
	for _, in := range opsDockerfile(t, filepath.Join(root, "Dockerfile")) {
		have[in.cmd] = append(have[in.cmd], in.args)
		if in.cmd == "FROM" {
			froms = append(froms, in.args)
		}
	}
	if len(froms) != 2 || !want["build"].MatchString(froms[0]) || !want["runtime"].MatchString(froms[1]) {
		t.Errorf("FROM lines %q; want a build stage matching %s and a runtime matching %s", froms, want["build"], want["runtime"])
	}
	last := func(cmd string) string {
		if v := have[cmd]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	if u := last("USER"); u != "nonroot:nonroot" && u != "nonroot" && u != "65532:65532" {
		t.Errorf("USER %q; want nonroot", u)
	}
	ports := map[string]bool{}
	for _, e := range have["EXPOSE"] {
		for _, p := range strings.Fields(e) {
			ports[p] = true
		}
	}
	for _, p := range []string{"8080", "9090", "9091"} {
		if !ports[p] {
			t.Errorf("EXPOSE lacks %s (have %q)", p, have["EXPOSE"])
		}
	}
	build := strings.Join(have["RUN"], "\n")
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "-X main.version=") {
		t.Errorf("RUN lines %q; want a CGO_ENABLED=0 build stamping main.version", have["RUN"])
	}

	// The HEALTHCHECK and ENTRYPOINT are exec form (no shell in distroless)
	// and name the installed binary.
	var hc, ep []string
	if err := yaml.Unmarshal([]byte(strings.TrimSpace(last("HEALTHCHECK")[strings.Index(last("HEALTHCHECK"), "CMD ")+4:])), &hc); err != nil || len(hc) != 3 || hc[1] != "-healthcheck" {
		t.Fatalf("HEALTHCHECK %q; want CMD [\"<binary>\", \"-healthcheck\", \"URL\"] (%v)", last("HEALTHCHECK"), err)
	}
	if err := yaml.Unmarshal([]byte(last("ENTRYPOINT")), &ep); err != nil || len(ep) != 3 || ep[0] != hc[0] || ep[1] != "-config" {
		t.Fatalf("ENTRYPOINT %q; want [%q, \"-config\", file] (%v)", last("ENTRYPOINT"), hc[0], err)
	}
	if !strings.Contains(strings.Join(have["COPY"], "\n"), "--from=build /out/dedupcache "+ep[0]) {
		t.Errorf("COPY lines %q do not install the binary at %s", have["COPY"], ep[0])
	}
	if !strings.Contains(strings.Join(have["COPY"], "\n"), "deploy/container.yaml "+ep[2]) {
		t.Errorf("COPY lines %q do not install deploy/container.yaml at %s", have["COPY"], ep[2])
	}
	// The health check probes the admin listener, always on at its default
	// inside the container.
	if u := "http://" + config.Default().Admin.Listen + "/healthz"; hc[2] != u {
		t.Errorf("HEALTHCHECK URL %q; want %q", hc[2], u)
	}

	// The baked config validates and listens where EXPOSE says.
	code, out, errOut := opsRun(t, cacheBin, nil, "-config", filepath.Join(root, "deploy", "container.yaml"), "-upstream", "http://api:8000", "-check")
	if code != 0 {
		t.Fatalf("-check of deploy/container.yaml: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"\nlisten: :8080\n", "\nmetrics:\n  listen: :9090\n", "\nadmin:\n  listen: 127.0.0.1:9091\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy/container.yaml: effective settings lack %q:\n%s", want, out)
		}
	}

	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\.git$`).Match(ignore) {
		t.Errorf(".dockerignore does not leave out .git")
	}
	if regexp.MustCompile(`(?m)^(deploy|\*\.yaml|go\.(mod|sum)|\*\.go)$`).Match(ignore) {
		t.Errorf(".dockerignore leaves out something the build copies")
	}
}

// TestSystemdUnit checks deploy/dedupcache.service: the settings the
// README promises, an ExecStart the binary accepts, and, when
// systemd-analyze is installed, that systemd accepts the unit.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(root, "deploy", "dedupcache.service")
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = append(settings[k], v)
		}
	}
	for _, kv := range []string{
		"ExecStart=/usr/local/bin/dedupcache -config /etc/dedupcache/config.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"Restart=on-failure",
	} {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.Contains("\x00"+strings.Join(settings[k], "\x00")+"\x00", "\x00"+v+"\x00") {
			t.Errorf("%s: no %s (have %s=%q)", unit, kv, k, settings[k])
		}
	}
	for _, k := range []string{"MemoryMax", "LimitNOFILE"} {
		if len(settings[k]) != 1 {
			t.Errorf("%s: want one %s=, have %q", unit, k, settings[k])
		}
	}
	// ExecStart and the -check of ExecReload, with a real file.
	cfg := opsWrite(t, "config.yaml", "upstream: http://127.0.0.1:3000\n")
	for _, line := range append(settings["ExecStart"], settings["ExecReload"][0]) {
		args := strings.Fields(strings.ReplaceAll(line, "/etc/dedupcache/config.yaml", cfg))[1:]
		if !slices.Contains(args, "-check") {
			args = append(args, "-check")
		}
		if code, _, errOut := opsRun(t, cacheBin, nil, args...); code != 0 {
			t.Errorf("%s (as -check): exit %d\n%s", line, code, errOut)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit is checked by reading only")
	}
	units := "/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(units, "sysinit.target")); err != nil {
		t.Skipf("no %s/sysinit.target for systemd-analyze verify", units)
	}
	// verify needs the binaries at their paths and the standard targets:
	// give it a root holding them.
	r := t.TempDir()
	for _, f := range []struct {
		src, dst string
		mode     os.FileMode
	}{
		{cacheBin, "usr/local/bin/dedupcache", 0o755},
		{"/bin/kill", "bin/kill", 0o755},
		{unit, "etc/systemd/system/dedupcache.service", 0o644},
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(r, f.dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r, f.dst), b, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(r, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A copy, not a symlink: systemd resolves links inside the root.
	if out, err := exec.Command("cp", "-a", units, filepath.Join(r, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Skipf("copying %s: %v\n%s", units, err, out)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", "--root="+r, filepath.Join(r, "etc/systemd/system/dedupcache.service"))
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
