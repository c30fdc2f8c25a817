package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// purgeRecords runs req through an Admin whose logger writes JSON to a
// buffer, and returns the records logged.
func purgeRecords(t *testing.T, token string, target, body string, hdr ...string) (int, []map[string]any, string) {
	t.Helper()
	var buf bytes.Buffer
	a := New(&fakeSource{}, Config{Listen: "127.0.0.1:9091", Token: token, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	req := httptest.NewRequest("POST", target, strings.NewReader(body))
	req.Host = "127.0.0.1:9091"
	req.RemoteAddr = "192.0.2.7:40123"
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, req)
	var recs []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, m)
	}
	return rec.Code, recs, buf.String()
}

// TestPurgeLogged: every purge is logged with who asked (the peer's
// address, whether it presented a token, never the token) and what it
// named: the first 10 URLs, prefixes and tags, each cut at 200 bytes, with
// their counts. A purge refused for its token is logged too.
func TestPurgeLogged(t *testing.T) {
	const token = "s3cret-s3cret-s3cret"
	var q []string
	var urls []string
	for i := range 25 {
		u := fmt.Sprintf("/u/%d", i)
		urls = append(urls, u)
		q = append(q, "url="+u)
	}
	long := "/" + strings.Repeat("x", 500)
	q = append(q, "prefix="+long, "tag=a", "tag=b%0Ainjected%3D1")
	code, recs, raw := purgeRecords(t, token, "/api/purge?"+strings.Join(q, "&"), "", "Authorization", "Bearer "+token)
	if code != 200 || len(recs) != 1 {
		t.Fatalf("status %d, %d records (%s); want 200 and 1", code, len(recs), raw)
	}
	r := recs[0]
	if strings.Contains(raw, token) {
		t.Errorf("the token is in the log: %s", raw)
	}
	want := map[string]any{
		"msg": "purge", "level": "INFO", "remote": "192.0.2.7:40123", "token_presented": true,
		"url_count": 25.0, "prefix_count": 1.0, "tag_count": 2.0, "all": false, "soft": false,
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %v; want %v", k, r[k], v)
		}
	}
	var gotURLs []string
	for _, u := range r["urls"].([]any) {
		gotURLs = append(gotURLs, u.(string))
	}
	if !reflect.DeepEqual(gotURLs, urls[:10]) {
		t.Errorf("urls = %v; want the first 10 of 25", gotURLs)
	}
	if p := r["prefixes"].([]any)[0].(string); len(p) != 203 || !strings.HasSuffix(p, "...") {
		t.Errorf("a 501-byte prefix logged as %d bytes %q; want 200 and ...", len(p), p)
	}
	if tags := r["tags"].([]any); len(tags) != 2 || tags[1] != "b\ninjected=1" {
		t.Errorf("tags = %q; want both, the newline kept inside the JSON string", tags)
	}

	// The text format quotes what a client chose: no forged records.
	var text bytes.Buffer
	a := New(&fakeSource{}, Config{Listen: "127.0.0.1:9091", Logger: slog.New(slog.NewTextHandler(&text, nil))})
	req := httptest.NewRequest("POST", "/api/purge?url=/a%0Atime=x+level=ERROR+msg=forged", nil)
	req.Host = "127.0.0.1:9091"
	a.Handler().ServeHTTP(httptest.NewRecorder(), req)
	if n := strings.Count(text.String(), "\n"); n != 1 || !strings.Contains(text.String(), "token_presented=false") {
		t.Errorf("text record %q: want one line, no token presented", text.String())
	}

	// Refused: wrong token, no token, a token with a prefix or suffix, the
	// wrong scheme; nothing purged, the refusal logged without the token.
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token[:len(token)-1], "Bearer " + token + "x", "bearer " + token, "Basic " + token} {
		code, recs, raw := purgeRecords(t, token, "/api/purge?all=1", "", "Authorization", auth)
		if code != 401 || len(recs) != 1 || recs[0]["msg"] != "purge refused: no valid token" || recs[0]["remote"] != "192.0.2.7:40123" {
			t.Errorf("Authorization %q: %d, records %s; want 401 and one refusal record", auth, code, raw)
		}
		if recs[0]["token_presented"] != strings.HasPrefix(auth, "Bearer ") {
			t.Errorf("Authorization %q: token_presented %v", auth, recs[0]["token_presented"])
		}
		if strings.Contains(raw, token[:8]) {
			t.Errorf("Authorization %q: the token is in the log: %s", auth, raw)
		}
	}
}

// TestGuardRefusalsLogged: a request the guard refuses (a Host it does not
// serve, a cross-site purge) is logged at Warn with the peer and what it
// sent, values cut at 200 bytes; a request it serves logs no refusal.
func TestGuardRefusalsLogged(t *testing.T) {
	tests := []struct {
		name   string
		host   string
		hdr    []string
		code   int
		reason string
	}{
		{"rebinding Host", "evil.example:9091", nil, 421, "host"},
		{"over-long Host", strings.Repeat("h", 300) + ".example", nil, 421, "host"},
		{"cross-site purge", "127.0.0.1:9091", []string{"Origin", "https://evil.example"}, 403, "cross-site"},
		{"same-site fetch", "127.0.0.1:9091", []string{"Sec-Fetch-Site", "same-site"}, 403, "cross-site"},
		{"served", "127.0.0.1:9091", nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			a := New(&fakeSource{}, Config{Listen: "127.0.0.1:9091", Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
			req := httptest.NewRequest("POST", "/api/purge?url=/x", nil)
			req.Host = tt.host
			req.RemoteAddr = "192.0.2.9:5555"
			for i := 0; i+1 < len(tt.hdr); i += 2 {
				req.Header.Set(tt.hdr[i], tt.hdr[i+1])
			}
			rec := httptest.NewRecorder()
			a.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("status %d; want %d", rec.Code, tt.code)
			}
			var refusals []map[string]any
			for line := range strings.Lines(buf.String()) {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if m["msg"] == "admin request refused" {
					refusals = append(refusals, m)
				}
			}
			if tt.reason == "" {
				if len(refusals) != 0 {
					t.Fatalf("a served request logged a refusal: %v", refusals)
				}
				return
			}
			if len(refusals) != 1 {
				t.Fatalf("%d refusal records; want 1 (log: %s)", len(refusals), buf.String())
			}
			r := refusals[0]
			if r["level"] != "WARN" || r["reason"] != tt.reason || r["remote"] != "192.0.2.9:5555" || r["method"] != "POST" || r["path"] != "/api/purge" {
				t.Errorf("record %v; want WARN, reason %s, the peer, POST /api/purge", r, tt.reason)
			}
			if h := r["host"].(string); len(h) > 203 {
				t.Errorf("host logged as %d bytes; want at most 200 and ...", len(h))
			}
		})
	}
}
