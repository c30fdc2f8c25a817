package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Read-only POST requests (GraphQL queries, search) can be cached on paths
// the operator lists in Config.CachePOSTPaths: the key is the URL plus a
// hash of the request body, and the response is judged as if for a GET.
// Such POSTs do not invalidate anything (the operator declared them safe).

// postKey is the context key of a cacheable POST's key suffix.
type postKey struct{}

// maxPOSTBody bounds the request body read to key a cacheable POST; a
// larger one is forwarded uncached.
const maxPOSTBody = 64 << 10

// cacheablePOST reports whether r is a POST to a path listed for caching
// and, if so, returns it with its body read (and replaced by a re-readable
// copy) and its key suffix in the context. Bodies over maxPOSTBody, or
// that fail to read, are not cached.
func (p *Proxy) cacheablePOST(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if r.Method != http.MethodPost || !p.postPath(r.URL.Path) {
		return r, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPOSTBody+1))
	rest := r.Body
	r.Body = readCloser{io.MultiReader(bytes.NewReader(body), rest), rest}
	if err != nil || len(body) > maxPOSTBody {
		return r, false
	}
	r.ContentLength = int64(len(body))
	suffix := fmt.Sprintf("\x01post=%016x", xxhash.Sum64(body))
	return r.WithContext(context.WithValue(r.Context(), postKey{}, suffix)), true
}

// postPath reports whether POSTs to path are cached.
func (p *Proxy) postPath(path string) bool {
	for _, prefix := range p.cfg.CachePOSTPaths {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// isCachedPOST reports whether r is a POST being cached.
func isCachedPOST(r *http.Request) bool {
	_, ok := r.Context().Value(postKey{}).(string)
	return ok && r.Method == http.MethodPost
}

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}
