package admin

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"dedupcache/proxy"
)

// maxPurgeBody bounds a JSON purge request.
const maxPurgeBody = 1 << 20

// handlePurge serves POST /api/purge. What to purge comes as query
// parameters, each of which may repeat (url=, prefix=, tag=, all=1,
// soft=1), or as a JSON body ({"url": [...], "prefix": [...], "tag": [...],
// "all": false, "soft": false}, Content-Type application/json). soft marks
// the entries stale instead of removing them. It needs the token when one
// is set.
func (a *Admin) handlePurge(w http.ResponseWriter, r *http.Request) {
	if !a.authorized(w, r) {
		a.log.Warn("purge refused: no valid token", "remote", r.RemoteAddr, "token_presented", bearerPresented(r))
		return
	}
	req, err := purgeRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	res, err := a.src.Purge(req)
	if err != nil {
		http.Error(w, "bad url: "+err.Error(), http.StatusBadRequest)
		return
	}
	// Who purged what: the peer, whether it showed a token (never the
	// token), and the first maxLoggedTargets of each list (client-chosen
	// strings, each cut at maxLoggedLen) beside their counts.
	a.log.Info("purge", "remote", r.RemoteAddr, "token_presented", bearerPresented(r),
		"urls", loggedTargets(req.URLs), "url_count", len(req.URLs),
		"prefixes", loggedTargets(req.Prefixes), "prefix_count", len(req.Prefixes),
		"tags", loggedTargets(req.Tags), "tag_count", len(req.Tags), "all", req.All,
		"soft", req.Soft, "purged_entries", res.PurgedEntries, "freed_bytes", res.FreedBytes)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(res)
}

// maxLoggedTargets bounds how many URLs, prefixes and tags (each) a purge
// record lists; maxLoggedLen bounds each one, in bytes.
const (
	maxLoggedTargets = 10
	maxLoggedLen     = 200
)

// loggedTargets returns the first maxLoggedTargets values of vs, each cut
// to maxLoggedLen bytes (a cut value ends in "..."), for a log record.
func loggedTargets(vs []string) []string {
	out := make([]string, 0, min(len(vs), maxLoggedTargets))
	for _, v := range vs[:min(len(vs), maxLoggedTargets)] {
		if len(v) > maxLoggedLen {
			v = strings.ToValidUTF8(v[:maxLoggedLen], "") + "..."
		}
		out = append(out, v)
	}
	return out
}

// bearerPresented reports whether r carries a bearer token, right or
// wrong; the token itself is never logged.
func bearerPresented(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// badPurge is a purge request that cannot be carried out.
type badPurge string

func (e badPurge) Error() string { return string(e) }

// purgeRequest reads a purge request from the query or a JSON body.
func purgeRequest(r *http.Request) (proxy.PurgeRequest, error) {
	var req proxy.PurgeRequest
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		dec := json.NewDecoder(io.LimitReader(r.Body, maxPurgeBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return req, badPurge("bad JSON purge request: " + err.Error())
		}
	} else {
		q := r.URL.Query()
		req = proxy.PurgeRequest{
			URLs: nonEmpty(q["url"]), Prefixes: nonEmpty(q["prefix"]), Tags: nonEmpty(q["tag"]),
			All: flag(q, "all"), Soft: flag(q, "soft"),
		}
	}
	if len(req.URLs)+len(req.Prefixes)+len(req.Tags) == 0 && !req.All {
		return req, badPurge("want url=, prefix=, tag= (each may repeat) or all=1, or a JSON body")
	}
	return req, nil
}

// flag reads a boolean query parameter (1 or true).
func flag(q url.Values, k string) bool {
	v := q.Get(k)
	return v == "1" || v == "true"
}

// nonEmpty drops empty values.
func nonEmpty(vs []string) []string {
	out := vs[:0:0]
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
