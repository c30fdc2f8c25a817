package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReload checks SIGHUP: a valid file's reloadable fields apply live
// (log.access, admin.token), a field that needs a restart is reported, and an invalid
// file keeps the running configuration.
func TestReload(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	cfg := filepath.Join(t.TempDir(), "dedupcache.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("log:\n  access: \"off\"\n")
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", cfg}})
	waitLog := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(c.stderr.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("stderr never showed %q:\n%s", want, c.stderr.String())
			}
			time.Sleep(pollEvery)
		}
	}
	get := func(path string) {
		t.Helper()
		if r := do("GET", c.url+path); r.err != nil || r.status != 200 {
			t.Fatalf("GET %s: %d %v", path, r.status, r.err)
		}
	}

	get("/obj/1?distinct=1&size=10")
	if strings.Contains(c.stderr.String(), "msg=access") {
		t.Fatalf("access log on before reload:\n%s", c.stderr.String())
	}

	if r := do("POST", c.adminURL+"/api/purge?all=1"); r.status != 200 {
		t.Fatalf("purge before a token: got %d %v; want 200", r.status, r.err)
	}
	write("log:\n  access: \"on\"\ncache:\n  max_memory: 64MiB\nadmin:\n  token: reloaded-token-0123456789\n")
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("msg=reloaded")
	waitLog("field=cache.max_memory") // needs a restart: reported, not applied
	if r := do("POST", c.adminURL+"/api/purge?all=1"); r.status != 401 {
		t.Errorf("purge without the reloaded admin.token: got %d %v; want 401", r.status, r.err)
	}
	get("/obj/2?distinct=1&size=10")
	waitLog("msg=access method=GET")

	write("cache:\n  max_memory: 12XB\n")
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("reload failed; keeping the running configuration")
	waitLog(`12XB`)
	get("/obj/3?distinct=1&size=10") // still serving, access log still on
	waitLog(`key="` + strings.TrimPrefix(c.url, "http://") + ` /obj/3`)
}
