package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// TestPurge drives POST /api/purge on the real binary: the admin token is
// required, a tag purge removes exactly the tagged entries, and
// freed_bytes counts only bodies that no other entry still uses.
func TestPurge(t *testing.T) {
	t.Parallel()
	o := startOrigin(t)
	cfg := filepath.Join(t.TempDir(), "dedupcache.yaml")
	const token = "e2e-admin-token-0123456789"
	if err := os.WriteFile(cfg, []byte("admin:\n  token: "+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", cfg}})

	// 10 URLs over 2 bodies of 1000 bytes; the tagged ones are /obj/i with
	// the Surrogate-Key the origin's /headers route sets.
	for i := 0; i < 10; i++ {
		get(t, fmt.Sprintf("%s/obj/%d?distinct=2&size=1000", c.url, i))
	}
	for i := 0; i < 3; i++ {
		get(t, fmt.Sprintf("%s/headers?h=Cache-Control:max-age%%3D60&h=Surrogate-Key:team-a&n=%d", c.url, i))
	}
	if s := c.waitStats(t, func(s stats) bool { return s.Entries == 13 }); s.Entries != 13 {
		t.Fatalf("entries after warm-up: got %d; want 13", s.Entries)
	}
	if r := get(t, c.url+"/headers?h=Cache-Control:max-age%3D60&h=Surrogate-Key:team-a&n=0"); r.header.Get("Surrogate-Key") != "" {
		t.Errorf("Surrogate-Key reached the client: %q", r.header.Get("Surrogate-Key"))
	}

	purge := func(query, tok string) (int, map[string]int64) {
		t.Helper()
		req, _ := http.NewRequest("POST", c.adminURL+"/api/purge?"+query, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]int64
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, out
	}
	if code, _ := purge("all=1", ""); code != http.StatusUnauthorized {
		t.Errorf("purge without token: got %d; want 401", code)
	}
	if code, _ := purge("all=1", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("purge with a wrong token: got %d; want 401", code)
	}
	code, res := purge("tag=team-a", token)
	if code != 200 || res["purged_entries"] != 3 {
		t.Errorf("tag purge: got %d %v; want 200 with 3 entries", code, res)
	}
	// /obj/0 shares its body with /obj/2, /obj/4, ...: nothing is freed.
	code, res = purge("url="+url.QueryEscape("/obj/0?distinct=2&size=1000"), token)
	if code != 200 || res["purged_entries"] != 1 || res["freed_bytes"] != 0 {
		t.Errorf("url purge of a shared body: got %d %v; want 1 entry, 0 bytes freed", code, res)
	}
	// The rest of the /obj/ prefix takes both bodies with it.
	code, res = purge("prefix=/obj/", token)
	if code != 200 || res["purged_entries"] != 9 || res["freed_bytes"] != 2000 {
		t.Errorf("prefix purge: got %d %v; want 9 entries, 2000 bytes freed", code, res)
	}
	if s := c.stats(t); s.Entries != 0 || s.BodiesUnique != 0 {
		t.Errorf("after purges: entries %d bodies %d; want 0 0", s.Entries, s.BodiesUnique)
	}
	if r := get(t, c.url+"/obj/1?distinct=2&size=1000"); r.header.Get("X-Cache") != "MISS" {
		t.Errorf("after purge: X-Cache %q; want MISS", r.header.Get("X-Cache"))
	}
}
