package admin

import (
	"encoding/json"
	"net/http"

	"dedupcache/proxy"
)

// handlePurge serves POST /api/purge?url=|prefix=|tag=|all=1. It needs the
// token when one is set.
func (a *Admin) handlePurge(w http.ResponseWriter, r *http.Request) {
	if !a.authorized(w, r) {
		return
	}
	q := r.URL.Query()
	var res proxy.PurgeResult
	switch {
	case q.Get("url") != "":
		var err error
		if res, err = a.src.PurgeURL(q.Get("url")); err != nil {
			http.Error(w, "bad url: "+err.Error(), http.StatusBadRequest)
			return
		}
	case q.Get("prefix") != "":
		res = a.src.PurgePrefix(q.Get("prefix"))
	case q.Get("tag") != "":
		res = a.src.PurgeTag(q.Get("tag"))
	case q.Get("all") == "1" || q.Get("all") == "true":
		res = a.src.PurgeAll()
	default:
		http.Error(w, "want one of url=, prefix=, tag= or all=1", http.StatusBadRequest)
		return
	}
	a.log.Info("purge", "query", r.URL.RawQuery, "purged_entries", res.PurgedEntries, "freed_bytes", res.FreedBytes)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(res)
}
