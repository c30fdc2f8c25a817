package demo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
)

type response struct {
	status int
	header http.Header
	body   []byte
}

func get(t *testing.T, srv *httptest.Server, path string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, body}
}

// TestSharedBodies pins the repetition the demo exists to show: which URLs
// return byte-identical bodies and which do not.
func TestSharedBodies(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	tests := []struct {
		a, b string
		same bool
	}{
		{"/users/999", "/users/1000", true},
		{"/users/0", "/users/51", true},
		{"/users/abc", "/users/999", true},
		{"/users/01", "/users/999", true},
		{"/no/such/route", "/users/999", true},
		{"/users/999/avatar", "/users/999", true},
		{"/users/1", "/users/2", false},
		{"/users/50", "/users/49", false},
		{"/users/1/avatar", "/users/2/avatar", true},
		{"/users/1/avatar", "/users/50/avatar", true},
		{"/users/7/avatar", "/users/1/avatar", false},
		{"/users/7/avatar", "/users/14/avatar", false},
		{"/items?page=6", "/items?page=99", true},
		{"/items?page=6", "/items?page=1000000", true},
		{"/items", "/items?page=1", true},
		{"/items?page=1", "/items?page=2", false},
		{"/items?page=0", "/items?page=x", true},
		{"/config", "/config?client=ios&v=3.2.1", true},
		{"/config?client=android&v=1", "/config?client=web&v=9&x=y", true},
	}
	for _, tt := range tests {
		a, b := get(t, srv, tt.a), get(t, srv, tt.b)
		if same := bytes.Equal(a.body, b.body); same != tt.same {
			t.Errorf("body of %s equals body of %s: %v; want %v", tt.a, tt.b, same, tt.same)
		}
		if tt.same && a.header.Get("ETag") != b.header.Get("ETag") {
			t.Errorf("ETag of %s = %s, of %s = %s; want equal", tt.a, a.header.Get("ETag"), tt.b, b.header.Get("ETag"))
		}
	}
}

func TestUsersAreDistinct(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	seen := make(map[string]int)
	for id := 1; id <= numUsers; id++ {
		r := get(t, srv, fmt.Sprintf("/users/%d", id))
		if prev, dup := seen[string(r.body)]; dup {
			t.Errorf("users %d and %d have the same body", prev, id)
		}
		seen[string(r.body)] = id
		var u user
		if err := json.Unmarshal(r.body, &u); err != nil || u.ID != id {
			t.Errorf("/users/%d: %q is not user %d (%v)", id, r.body, id, err)
		}
	}
}

func TestResponses(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	tests := []struct {
		path         string
		status       int
		cacheControl string
		contentType  string
		bodyPrefix   string
	}{
		{"/", 200, "public, max-age=60", "application/json", `{"name":"dedupcache demo API"`},
		{"/users/1", 200, "public, max-age=60", "application/json", `{"id":1,"name":"Ada Lovelace"`},
		{"/users/999", 404, "public, max-age=60", "application/json", `{"error":"not_found"`},
		{"/nope", 404, "public, max-age=60", "application/json", `{"error":"not_found"`},
		{"/users/3/avatar", 200, "public, max-age=300", "image/png", "\x89PNG"},
		{"/users/7/avatar", 200, "public, max-age=300", "image/png", "\x89PNG"},
		{"/items?page=2", 200, "public, max-age=30", "application/json", `{"items":[{"id":11,`},
		{"/items?page=6", 200, "public, max-age=30", "application/json", "{\"items\":[],\"next\":null}\n"},
		{"/items?page=-1", 400, "public, max-age=30", "application/json", `{"error":"bad_request"`},
		{"/config?client=ios", 200, "public, max-age=120", "application/json", `{"api_version":`},
		{"/time", 200, "no-store", "application/json", `{"now":"`},
		{"/legacy/stock?sku=3&ts=1", 200, "", "application/json", `{"in_stock":21,"sku":3}`},
	}
	for _, tt := range tests {
		r := get(t, srv, tt.path)
		if r.status != tt.status {
			t.Errorf("%s: status %d; want %d", tt.path, r.status, tt.status)
		}
		if got := r.header.Get("Cache-Control"); got != tt.cacheControl {
			t.Errorf("%s: Cache-Control %q; want %q", tt.path, got, tt.cacheControl)
		}
		if got := r.header.Get("Content-Type"); got != tt.contentType {
			t.Errorf("%s: Content-Type %q; want %q", tt.path, got, tt.contentType)
		}
		if !bytes.HasPrefix(r.body, []byte(tt.bodyPrefix)) {
			t.Errorf("%s: body %.80q; want prefix %q", tt.path, r.body, tt.bodyPrefix)
		}
		if tt.contentType == "application/json" && !json.Valid(r.body) {
			t.Errorf("%s: body is not JSON: %q", tt.path, r.body)
		}
		if tt.path == "/time" {
			continue
		}
		if strings.HasPrefix(tt.path, "/legacy/") {
			for _, k := range []string{"Cache-Control", "Expires", "Etag", "Last-Modified"} {
				if v := r.header.Get(k); v != "" {
					t.Errorf("%s: %s %q; want no caching headers", tt.path, k, v)
				}
			}
			continue
		}
		sum := sha256.Sum256(r.body)
		if want := `"` + hex.EncodeToString(sum[:8]) + `"`; r.header.Get("ETag") != want {
			t.Errorf("%s: ETag %s; want %s", tt.path, r.header.Get("ETag"), want)
		}
		if got := r.header.Get("Last-Modified"); got != "Mon, 01 Jan 2024 00:00:00 GMT" {
			t.Errorf("%s: Last-Modified %q; want the fixed date", tt.path, got)
		}
	}
}

func TestItemsLinkToNextPage(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	path, pages := "/items", 0
	for path != "" {
		var pg struct {
			Items []item
			Next  *string
		}
		if err := json.Unmarshal(get(t, srv, path).body, &pg); err != nil {
			t.Fatal(err)
		}
		if pages++; len(pg.Items) == 0 || pages > numPages {
			t.Fatalf("%s: %d items on page %d", path, len(pg.Items), pages)
		}
		path = ""
		if pg.Next != nil {
			path = *pg.Next
		}
	}
	if pages != numPages {
		t.Fatalf("followed %d pages; want %d", pages, numPages)
	}
}

func TestAvatarsArePNG(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, path := range []string{"/users/1/avatar", "/users/7/avatar"} {
		img, err := png.Decode(bytes.NewReader(get(t, srv, path).body))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if b := img.Bounds(); b.Dx() != avatarSize || b.Dy() != avatarSize {
			t.Errorf("%s: %v; want %dx%d", path, b, avatarSize, avatarSize)
		}
	}
}

func TestConditionalRequests(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, path := range []string{"/users/1", "/users/1/avatar", "/items?page=9", "/config"} {
		etag := get(t, srv, path).header.Get("ETag")
		if r := get(t, srv, path, "If-None-Match", etag); r.status != http.StatusNotModified || len(r.body) != 0 {
			t.Errorf("%s with If-None-Match %s: %d, %d bytes; want 304, empty", path, etag, r.status, len(r.body))
		}
		if r := get(t, srv, path, "If-None-Match", `"other"`); r.status != http.StatusOK {
			t.Errorf("%s with a stale If-None-Match: %d; want 200", path, r.status)
		}
		if r := get(t, srv, path, "If-Modified-Since", "Tue, 02 Jan 2024 00:00:00 GMT"); r.status != http.StatusNotModified {
			t.Errorf("%s with If-Modified-Since after Last-Modified: %d; want 304", path, r.status)
		}
	}
}

func TestDeterministic(t *testing.T) {
	a, b := httptest.NewServer(Handler()), httptest.NewServer(Handler())
	defer a.Close()
	defer b.Close()
	for _, path := range []string{"/", "/users/1", "/users/999", "/users/1/avatar", "/users/7/avatar", "/items?page=3", "/items?page=6", "/config"} {
		if ra, rb := get(t, a, path), get(t, b, path); !bytes.Equal(ra.body, rb.body) {
			t.Errorf("%s differs between two handlers", path)
		}
	}
}

func TestMethods(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	res, err := srv.Client().Head(srv.URL + "/users/1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.ContentLength <= 0 {
		t.Errorf("HEAD /users/1: %d, length %d; want 200 with a length", res.StatusCode, res.ContentLength)
	}
	res, err = srv.Client().Post(srv.URL+"/users/1", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /users/1: %d; want 405", res.StatusCode)
	}
}

// TestImportsNothingOurs keeps demo independent of the cache it demonstrates.
func TestImportsNothingOurs(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if strings.HasPrefix(dep, "dedupcache/") && dep != "dedupcache/demo" {
			t.Errorf("demo imports %s", dep)
		}
	}
}
