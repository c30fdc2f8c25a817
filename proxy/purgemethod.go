package proxy

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
)

// servePurge answers the PURGE method on the proxy listener (as Varnish,
// Squid and nginx's cache purge module do): it purges the request's URL on
// the request's host, every Vary variant included, and answers with the
// JSON of /api/purge. It needs "Authorization: Bearer <token>"; with
// "Soft-Purge: 1" the entries are marked stale instead of removed.
func (p *Proxy) servePurge(w http.ResponseWriter, r *http.Request, token string) {
	w.Header().Set("Cache-Control", "no-store")
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(auth), []byte(token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dedupcache purge"`)
		http.Error(w, "PURGE needs the admin token (Authorization: Bearer ...)", http.StatusUnauthorized)
		return
	}
	host, uri := keyParts(r)
	uri = p.keyedURI(host, uri, r.Header)
	p.beginPurge(purgeRec{urls: [][2]string{{host, uri}}})
	pg := p.newPurger()
	pg.soft = r.Header.Get("Soft-Purge") == "1"
	var keys []string
	for _, h := range p.index.hostForms(host) { // every forwarded context
		pg.key(h, uri)
		keys = append(keys, keyString(h, uri))
	}
	res := pg.result()
	p.purgeShared(PurgeRequest{Keys: keys, Soft: pg.soft})
	p.log.Info("purge", "method", "PURGE", "remote", r.RemoteAddr, "token_presented", true,
		"host", host, "uri", uri, "soft", pg.soft, "purged_entries", res.PurgedEntries)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}
