package proxy

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestPurgeMethodLogged: the PURGE method on the proxy listener logs who
// purged (the peer, with a token presented, never the token) and what
// (host and key target).
func TestPurgeMethodLogged(t *testing.T) {
	const token = "s3cret-s3cret-s3cret"
	o := newOrigin(t, cacheable("x"))
	var logs syncBuf
	_, srv := newTestProxy(t, o.URL, func(c *Config) {
		c.PurgeToken = token
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	do(t, "GET", srv.URL+"/p?q=1")
	if resp, _ := do(t, "PURGE", srv.URL+"/p?q=1", "Authorization", "Bearer "+token); resp.StatusCode != 200 {
		t.Fatalf("PURGE: %d", resp.StatusCode)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the token is in the log:\n%s", logs.String())
	}
	for line := range strings.Lines(logs.String()) {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) != nil || r["msg"] != "purge" {
			continue
		}
		host := strings.TrimPrefix(srv.URL, "http://")
		if r["method"] != "PURGE" || r["token_presented"] != true || r["host"] != host || r["uri"] != "/p?q=1" ||
			!strings.HasPrefix(r["remote"].(string), "127.0.0.1:") || r["purged_entries"] != 1.0 {
			t.Errorf("purge record %v; want method PURGE, the peer, token_presented, host %s, uri /p?q=1, 1 entry", r, host)
		}
		return
	}
	t.Fatalf("no purge record in:\n%s", logs.String())
}
