// Package dashboard serves dedupcache's live operator page: one HTML page,
// its script and its style sheet, embedded in the binary. The page needs no
// network beyond the admin listener it came from: it polls api/stats (and
// api/top-bodies, when that answers) by relative URL, so it works offline
// and under any mount point that ends in a slash.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed index.html app.js style.css
var files embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	name        string
	contentType string
	etag        string
	data        []byte
}

// favicon is the page's icon: two overlapping squares, one body shared.
const favicon = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">` +
	`<rect width="16" height="16" rx="3" fill="#0d9488"/>` +
	`<path d="M3.5 3.5h6v6h-6zM6.5 6.5h6v6h-6z" fill="none" stroke="#fff" stroke-width="1.5"/></svg>`

// assets maps request paths to the embedded files. Content types are fixed
// here rather than guessed from the system's MIME table, which differs
// between machines.
var assets = func() map[string]*asset {
	m := make(map[string]*asset)
	for _, f := range []struct{ path, name, typ string }{
		{"/", "index.html", "text/html; charset=utf-8"},
		{"/index.html", "index.html", "text/html; charset=utf-8"},
		{"/app.js", "app.js", "text/javascript; charset=utf-8"},
		{"/style.css", "style.css", "text/css; charset=utf-8"},
		{"/favicon.svg", "", "image/svg+xml"},
	} {
		data := []byte(favicon)
		if f.name != "" {
			var err error
			if data, err = files.ReadFile(f.name); err != nil {
				panic("dashboard: " + err.Error()) // the embed directive lists every name
			}
		}
		sum := sha256.Sum256(data)
		m[f.path] = &asset{name: f.name, contentType: f.typ, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, data: data}
	}
	return m
}()

// contentSecurityPolicy lets the page load only its own files and fetch
// only from its own origin.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler returns the handler of the dashboard: the page at "/" and its
// assets beside it. Other paths get 404. It expects the request path as
// seen from its mount point, so mount it at the root of the admin listener
// or strip the prefix. Responses carry an ETag and "Cache-Control: no-cache",
// so a browser revalidates after an upgrade and gets 304 otherwise.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.data))
	})
}
