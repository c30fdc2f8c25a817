package admin

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// guard wraps h with the checks every admin route needs (none yet).
func (a *Admin) guard(h http.Handler) http.Handler { return h }

// authorized reports whether r carries the bearer token, when one is set;
// if not, it answers 401 itself.
func (a *Admin) authorized(w http.ResponseWriter, r *http.Request) bool {
	want := *a.token.Load()
	if want == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="dedupcache admin"`)
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, "admin token required", http.StatusUnauthorized)
	return false
}
