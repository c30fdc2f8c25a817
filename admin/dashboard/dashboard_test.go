package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, srv *httptest.Server, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestHandlerServesAssets(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	tests := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script src="app.js"`},
		{"/index.html", "text/html; charset=utf-8", `<link rel="stylesheet" href="style.css">`},
		{"/app.js", "text/javascript; charset=utf-8", "api/stats"},
		{"/style.css", "text/css; charset=utf-8", ".grid"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, srv, tt.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status: got %d; want 200", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type: got %q; want %q", got, tt.contentType)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options: got %q; want nosniff", got)
			}
			if !strings.Contains(body, tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			etag := resp.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			resp, _ = get(t, srv, tt.path, "If-None-Match", etag)
			if resp.StatusCode != http.StatusNotModified {
				t.Errorf("revalidation: got %d; want 304", resp.StatusCode)
			}
		})
	}
}

func TestHandlerRejects(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, path := range []string{"/nope", "/dashboard.go", "/app.js/", "/api/stats"} {
		if resp, _ := get(t, srv, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: got %d; want 404", path, resp.StatusCode)
		}
	}
	resp, err := srv.Client().Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: got %d; want 405", resp.StatusCode)
	}
}

// TestPageIsSelfContained checks the page works offline: every asset it
// names is relative and served by the handler, and no file names another
// host.
func TestPageIsSelfContained(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	_, page := get(t, srv, "/")
	refs := regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 2 {
		t.Fatalf("found %d asset references in index.html; want the script and the style sheet", len(refs))
	}
	for _, m := range refs {
		ref := m[1]
		if strings.Contains(ref, ":") || strings.HasPrefix(ref, "/") {
			t.Errorf("index.html references %q; want a relative path", ref)
			continue
		}
		if resp, _ := get(t, srv, "/"+ref); resp.StatusCode != http.StatusOK {
			t.Errorf("asset %q: got %d; want 200", ref, resp.StatusCode)
		}
	}
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		data, err := files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`(?i)https?://|url\(\s*['"]?//`).Find(data); m != nil {
			t.Errorf("%s names another host (%q); the page must work offline", name, m)
		}
	}
	if !strings.Contains(contentSecurityPolicy, "connect-src 'self'") {
		t.Errorf("CSP %q does not restrict fetches to the page's origin", contentSecurityPolicy)
	}
}
