package policy

// Fields is read access to a request's header fields: the one view of a
// request header that policy (and the cache core) needs, so that any HTTP
// engine can supply it. net/http's http.Header implements it.
type Fields interface {
	// Values returns the field lines of name (canonical form, as
	// http.CanonicalHeaderKey makes it), in order; nil when the field is
	// absent, and a non-nil slice when it is present, even if empty. The
	// slice is valid until the next call.
	Values(name string) []string
}
