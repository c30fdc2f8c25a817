package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Read-only POST requests (GraphQL queries, search) can be cached on paths
// the operator lists in Config.CachePOSTPaths: the key is the URL plus a
// SHA-256 digest of the request's Content-Type, Content-Encoding and body,
// and the response is judged as if for a GET. Such POSTs do not invalidate
// anything (the operator declared them safe). The digest is collision
// resistant: no one can make a different body share a key (a 64-bit hash
// could be forged in well under a second).

// postKey is the context key of a cacheable POST's postBody.
type postKey struct{}

// postBody is a cacheable POST's body and its key suffix.
type postBody struct {
	suffix string
	body   []byte
}

// maxPOSTBody bounds the request body read to key a cacheable POST; a
// larger one is forwarded uncached.
const maxPOSTBody = 64 << 10

// cacheablePOST reports whether r is a POST to a path listed for caching
// and, if so, returns it with its body read (and replaced by a re-readable
// copy) and its postBody in the context. Bodies over maxPOSTBody, or that
// fail to read, are not cached.
func (p *Proxy) cacheablePOST(r *http.Request) (*http.Request, bool) {
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
	return r.WithContext(context.WithValue(r.Context(), postKey{}, postBody{postSuffix(r.Header, body), body})), true
}

// postSuffix is the key suffix of a cacheable POST.
func postSuffix(h http.Header, body []byte) string {
	d := sha256.New()
	for _, k := range []string{"Content-Type", "Content-Encoding"} {
		v := strings.Join(h[k], ",")
		_, _ = fmt.Fprintf(d, "%d:%s;", len(v), v)
	}
	_, _ = d.Write(body)
	return "\x01post=" + hex.EncodeToString(d.Sum(nil))
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
	_, ok := r.Context().Value(postKey{}).(postBody)
	return ok && r.Method == http.MethodPost
}

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}
