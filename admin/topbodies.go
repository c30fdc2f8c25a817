package admin

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// TopBody is one row of /api/top-bodies.
type TopBody struct {
	Hash        string   `json:"hash"` // xxhash64, 16 hex digits
	Size        int64    `json:"size"`
	Refs        int      `json:"refs"`
	ExampleKeys []string `json:"example_keys"`
}

// topBodiesN is how many rows /api/top-bodies returns.
const topBodiesN = 10

// handleTopBodies answers /api/top-bodies: the most shared bodies, with a
// few cache keys that use each. Keys carry hosts, paths and query strings,
// so it needs the token when one is set. The cache's locks are held only
// while the proxy copies the rows (see proxy.Proxy.TopBodies); the
// formatting happens here, outside them.
func (a *Admin) handleTopBodies(w http.ResponseWriter, r *http.Request) {
	if !a.authorized(w, r) {
		return
	}
	rows := a.src.TopBodies(topBodiesN)
	top := make([]TopBody, len(rows))
	for i, b := range rows {
		keys := b.ExampleKeys
		if keys == nil {
			keys = []string{}
		}
		top[i] = TopBody{Hash: hex16(b.Hash), Size: b.Size, Refs: b.Refs, ExampleKeys: keys}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(top)
}

// hex16 formats h as 16 lower-case hex digits.
func hex16(h uint64) string {
	s := strconv.FormatUint(h, 16)
	const zeros = "0000000000000000"
	return zeros[:16-len(s)] + s
}
