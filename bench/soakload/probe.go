package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// proxyStats is the part of dedupcache's /api/stats the soak reads.
type proxyStats struct {
	Hits             int64            `json:"hits"`
	Misses           int64            `json:"misses"`
	Stale            int64            `json:"stale"`
	Bypasses         int64            `json:"bypasses"`
	Entries          int64            `json:"entries"`
	BodiesUnique     int64            `json:"bodies_unique"`
	MemoryBytes      int64            `json:"memory_bytes"`
	MemoryLimitBytes int64            `json:"memory_limit_bytes"`
	Stored           int64            `json:"responses_stored"`
	CutOff           int64            `json:"responses_cut_off"`
	Aborted          int64            `json:"responses_aborted"`
	UpstreamErrors   int64            `json:"upstream_errors"`
	Released         map[string]int64 `json:"entries_released"`
	Revalidated      int64            `json:"revalidated"`
	NotModified      int64            `json:"not_modified"`
	Coalesced        int64            `json:"coalesced"`
	Refreshes        int64            `json:"refreshes"`
	Invalidated      int64            `json:"invalidated"`
	Purged           int64            `json:"purged"`
	Upstream         map[string]int64 `json:"upstream_responses"`
}

// upstreamTotal is every upstream exchange the proxy counted, answered or
// not.
func (s proxyStats) upstreamTotal() int64 {
	var n int64
	for _, v := range s.Upstream {
		n += v
	}
	return n
}

// originStats is bench/origin's /stats.
type originStats struct {
	ObjRequests int64 `json:"obj_requests"`
	OK          int64 `json:"ok_200"`
	NotModified int64 `json:"not_modified_304"`
	NotFound    int64 `json:"not_found_404"`
	BadRequest  int64 `json:"bad_request_400"`
}

// prober reads the proxy's and the origin's counters, the proxy's
// goroutines and its RSS.
type prober struct {
	admin  string // http://host:port of the admin listener; "" = none
	origin string // http://host:port of the bench origin; "" = none
	pid    int    // the proxy's PID for VmRSS; 0 = none
	token  string
	client *http.Client
}

func (p *prober) getJSON(u string, v any) error {
	resp, err := p.client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (p *prober) proxyStats() (proxyStats, error) {
	var st proxyStats
	if p.admin == "" {
		return st, errors.New("no -admin")
	}
	return st, p.getJSON(p.admin+"/api/stats", &st)
}

func (p *prober) originStats() (originStats, error) {
	var st originStats
	if p.origin == "" {
		return st, errors.New("no -origin")
	}
	return st, p.getJSON(p.origin+"/stats", &st)
}

// goroutines reads go_goroutines from the admin listener's /metrics; -1
// without an admin listener.
func (p *prober) goroutines() (int64, error) {
	if p.admin == "" {
		return -1, nil
	}
	resp, err := p.client.Get(p.admin + "/metrics")
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return metricValue(resp.Body, "go_goroutines")
}

// metricValue finds an unlabelled sample in Prometheus text format.
func metricValue(r io.Reader, name string) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := []byte(name + " ")
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), prefix); ok {
			f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
			if err != nil {
				return -1, fmt.Errorf("%s: %w", name, err)
			}
			return int64(f), nil
		}
	}
	if err := sc.Err(); err != nil {
		return -1, err
	}
	return -1, fmt.Errorf("%s not found", name)
}

// rssKiB reads VmRSS of the process; -1 without a PID.
func (p *prober) rssKiB() (int64, error) {
	if p.pid == 0 {
		return -1, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return -1, err
	}
	return vmRSS(b)
}

// vmRSS finds VmRSS (kB) in a /proc/PID/status document.
func vmRSS(status []byte) (int64, error) {
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return -1, errors.New("no VmRSS in /proc/PID/status")
}

// purgeResult is /api/purge's answer.
type purgeResult struct {
	PurgedEntries int64 `json:"purged_entries"`
}

// purge POSTs one purge request (query parameters q) to the admin
// listener and returns how many entries it purged.
func (p *prober) purge(q url.Values) (int64, error) {
	req, err := http.NewRequest(http.MethodPost, p.admin+"/api/purge?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return 0, fmt.Errorf("purge %s: %s %s", q.Encode(), resp.Status, bytes.TrimSpace(b))
	}
	var res purgeResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return 0, err
	}
	return res.PurgedEntries, nil
}

func newProber(admin, origin string, pid int, token string) *prober {
	return &prober{admin: admin, origin: origin, pid: pid, token: token,
		client: &http.Client{Timeout: 10 * time.Second}}
}
