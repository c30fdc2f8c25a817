package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Paths of the binaries TestMain builds.
var (
	cacheBin  string // dedupcache
	originBin string // e2e/origin
)

// Time limits shared by the tests.
const (
	startTimeout = 10 * time.Second // a process is listening (origin) or healthy (dedupcache)
	stopTimeout  = 10 * time.Second // SIGTERM to exit
	reqTimeout   = 10 * time.Second // any one HTTP request
	pollEvery    = 20 * time.Millisecond
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "dedupcache-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	cacheBin = filepath.Join(dir, "dedupcache")
	originBin = filepath.Join(dir, "origin")
	for _, b := range []struct{ out, pkg string }{{cacheBin, "."}, {originBin, "./e2e/origin"}} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build -o %s %s (in %s): %v\n%s", b.out, b.pkg, root, err, out)
			return 1
		}
	}
	return m.Run()
}

// moduleRoot returns the directory of the go.mod governing this package
// (the parent of e2e/).
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return filepath.Abs("..")
	}
	return filepath.Dir(gomod), nil
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a child process whose output is kept for the test log.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // from Wait; read after done is closed

	stopOnce sync.Once
}

// startProc starts bin with args and a clean environment (no GOMEMLIMIT or
// GOGC from the caller) plus env ("NAME=value"). lines, if not nil, receives each stdout line
// without blocking the child.
func startProc(t *testing.T, name, bin string, args []string, lines chan<- string, env ...string) *proc {
	t.Helper()
	p := &proc{name: name, stdout: new(syncBuffer), stderr: new(syncBuffer), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.stdout.Write(append(sc.Bytes(), '\n'))
			if lines != nil {
				select {
				case lines <- sc.Text():
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() {
		<-copied // Wait closes the pipe; read it to the end first
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// cleanEnv returns the environment without settings that would change the
// children's memory behaviour or configuration.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOMEMLIMIT=") || strings.HasPrefix(kv, "GOGC=") ||
			strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, "DEDUPCACHE_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode waits up to d for the process to exit and returns its exit
// code, or -1 with ok false on timeout. A process killed by a signal
// reports -1 with ok true.
func (p *proc) exitCode(d time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
	case <-time.After(d):
		return -1, false
	}
	return p.cmd.ProcessState.ExitCode(), true
}

// stop sends SIGTERM (once) and waits up to stopTimeout; it kills the
// process if it is still running then. It returns the exit code and how
// long the exit took, or ok false on a timeout.
func (p *proc) stop() (code int, took time.Duration, ok bool) {
	start := time.Now()
	p.stopOnce.Do(func() {
		if !p.exited() {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
	})
	code, ok = p.exitCode(stopTimeout)
	if !ok {
		p.cmd.Process.Kill()
		<-p.done
	}
	return code, time.Since(start), ok
}

// kill ends the process at once with SIGKILL and waits for it.
func (p *proc) kill() {
	p.stopOnce.Do(func() { p.cmd.Process.Kill() })
	<-p.done
}

// logOutput writes the process's output into the test log, the last
// 16 KiB of each stream.
func (p *proc) logOutput(t *testing.T) {
	t.Helper()
	for _, s := range []struct {
		name string
		buf  *syncBuffer
	}{{"stdout", p.stdout}, {"stderr", p.stderr}} {
		out := s.buf.String()
		if out == "" {
			continue
		}
		if len(out) > 16<<10 {
			out = "...\n" + out[len(out)-16<<10:]
		}
		t.Logf("%s %s (pid %d):\n%s", p.name, s.name, p.cmd.Process.Pid, out)
	}
}

// origin is a running e2e/origin process.
type origin struct {
	*proc
	url string // http://127.0.0.1:port
}

// startOrigin starts an origin on a free loopback port. At cleanup it is
// stopped with SIGTERM, and its output is logged if the test failed.
func startOrigin(t *testing.T) *origin {
	t.Helper()
	lines := make(chan string, 16)
	p := startProc(t, "origin", originBin, []string{"-addr", "127.0.0.1:0"}, lines)
	t.Cleanup(func() {
		if code, _, ok := p.stop(); !ok || (code != 0 && code != -1) {
			t.Errorf("origin: exit code %d (stopped in time: %v); want 0", code, ok)
		}
		if t.Failed() {
			p.logOutput(t)
		}
	})
	timeout := time.After(startTimeout)
	for {
		select {
		case line := <-lines:
			if addr, ok := strings.CutPrefix(line, "LISTEN "); ok {
				return &origin{proc: p, url: "http://" + strings.TrimSpace(addr)}
			}
		case <-p.done:
			t.Fatalf("origin exited before listening: %v", p.err)
		case <-timeout:
			t.Fatalf("origin did not print LISTEN within %v", startTimeout)
		}
	}
}

// originStats is the origin's /stats.
type originStats struct {
	Prefix map[string]int64 `json:"prefix"`
	Path   map[string]int64 `json:"path"`
}

func (o *origin) stats(t *testing.T) originStats {
	t.Helper()
	var s originStats
	getJSON(t, o.url+"/stats", &s)
	return s
}

// cache is a running dedupcache process.
type cache struct {
	*proc
	url      string // proxy, http://127.0.0.1:port
	adminURL string // admin listener
}

// cacheOptions configure startCache.
type cacheOptions struct {
	upstream string   // -upstream, unless empty
	args     []string // more flags
	stdout   chan<- string
	env      []string // environment beyond cleanEnv ("NAME=value")
}

// startCache starts dedupcache on free loopback ports, retrying with new
// ports when one was taken between choosing and binding, and waits for
// /healthz. At cleanup it sends SIGTERM and checks for exit code 0 within
// stopTimeout; the output is logged if the test failed.
func startCache(t *testing.T, o cacheOptions) *cache {
	t.Helper()
	const attempts = 5
	for attempt := 1; ; attempt++ {
		listen, admin := freeAddrs(t)
		args := []string{"-listen", listen, "-admin", admin}
		if o.upstream != "" {
			args = append(args, "-upstream", o.upstream)
		}
		args = append(args, o.args...)
		p := startProc(t, "dedupcache", cacheBin, args, o.stdout, o.env...)
		c := &cache{proc: p, url: "http://" + listen, adminURL: "http://" + admin}
		err := c.waitHealthy()
		if err == nil {
			t.Cleanup(func() {
				code, took, ok := p.stop()
				switch {
				case !ok:
					t.Errorf("dedupcache did not exit within %v of SIGTERM (killed)", stopTimeout)
				case code != 0:
					t.Errorf("dedupcache exit code after SIGTERM: got %d; want 0", code)
				}
				if took > 2*time.Second {
					t.Logf("dedupcache took %v to exit after SIGTERM", took)
				}
				if t.Failed() {
					p.logOutput(t)
				}
			})
			return c
		}
		p.kill()
		if attempt < attempts && strings.Contains(p.stderr.String(), "address already in use") {
			t.Logf("attempt %d: a port was taken, retrying", attempt)
			continue
		}
		p.logOutput(t)
		t.Fatalf("dedupcache %s: %v", strings.Join(args, " "), err)
	}
}

// waitHealthy polls the admin /healthz until it answers "ok".
func (c *cache) waitHealthy() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		if c.exited() {
			return fmt.Errorf("exited before becoming healthy: %v", c.err)
		}
		resp, err := client.Get(c.adminURL + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return nil
			}
			err = fmt.Errorf("/healthz: %s %q", resp.Status, body)
		}
		last = err
		time.Sleep(pollEvery)
	}
	return fmt.Errorf("not healthy within %v: %v", startTimeout, last)
}

// freeAddrs returns two distinct loopback addresses that were free a
// moment ago: both listeners are held open together, so the kernel cannot
// hand out the same port twice (it did once: 127.0.0.1:38139 for both).
func freeAddrs(t *testing.T) (string, string) {
	t.Helper()
	a, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return a.Addr().String(), b.Addr().String()
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// stats is the admin /api/stats document, the fields the tests read.
type stats struct {
	Hits             int64   `json:"hits"`
	Misses           int64   `json:"misses"`
	Stale            int64   `json:"stale"`
	Bypasses         int64   `json:"bypasses"`
	HitRatio         float64 `json:"hit_ratio"`
	Entries          int64   `json:"entries"`
	BodiesUnique     int64   `json:"bodies_unique"`
	BytesLogical     int64   `json:"bytes_logical"`
	BytesStored      int64   `json:"bytes_stored"`
	BytesSaved       int64   `json:"bytes_saved"`
	DedupRatio       float64 `json:"dedup_ratio"`
	MemoryBytes      int64   `json:"memory_bytes"`
	MemoryLimitBytes int64   `json:"memory_limit_bytes"`
	ResponsesStored  int64   `json:"responses_stored"`
	ResponsesCutOff  int64   `json:"responses_cut_off"`
	ResponsesAborted int64   `json:"responses_aborted"`
	UpstreamErrors   int64   `json:"upstream_errors"`
}

// statsFields are the keys /api/stats must have.
var statsFields = []string{
	"hits", "misses", "stale", "bypasses", "hit_ratio",
	"entries", "bodies_unique", "bytes_logical", "bytes_stored", "bytes_saved", "dedup_ratio",
	"memory_bytes", "memory_limit_bytes",
	"responses_stored", "responses_cut_off", "responses_aborted", "upstream_errors",
}

func (c *cache) stats(t *testing.T) stats {
	t.Helper()
	var s stats
	getJSON(t, c.adminURL+"/api/stats", &s)
	return s
}

// waitStats polls /api/stats until cond holds, for up to 3 s, and returns
// the last document read. Stores may complete just after the client has
// the whole body, so counters are allowed to settle briefly.
func (c *cache) waitStats(t *testing.T, cond func(stats) bool) stats {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		s := c.stats(t)
		if cond(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(pollEvery)
	}
}

// client is shared by the tests: no keep-alive surprises across processes,
// a bound on every request.
var client = &http.Client{
	Timeout: reqTimeout,
	Transport: &http.Transport{
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     5 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// result is one response read in full.
type result struct {
	status int
	header http.Header
	body   []byte
	length int64 // resp.ContentLength
	took   time.Duration
	err    error // from the request or from reading the body
}

// do sends a request and reads the whole body; err reports a failure at
// either step, with whatever was read.
func do(method, url string) result {
	start := time.Now()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return result{err: err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: body, length: resp.ContentLength, took: time.Since(start), err: err}
}

// get is do for a GET that must succeed with 200.
func get(t *testing.T, url string) result {
	t.Helper()
	r := do(http.MethodGet, url)
	if r.err != nil {
		t.Fatalf("GET %s: %v", url, r.err)
	}
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: got status %d; want 200 (body %.200q)", url, r.status, r.body)
	}
	return r
}

// getJSON GETs url and decodes its JSON body into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	r := do(http.MethodGet, url)
	if r.err != nil {
		t.Fatalf("GET %s: %v", url, r.err)
	}
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: got status %d; want 200 (body %.200q)", url, r.status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("GET %s: %v in %.300q", url, err, r.body)
	}
}

// vmRSS returns the resident set size of process pid from /proc.
func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/pid/status")
}

// mib formats n bytes in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }
