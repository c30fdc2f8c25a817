package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/policy"
)

// What the proxy keeps in a cachestore.Entry beyond the store's own
// fields (its flag bits), how an entry is built from a response, and how
// it is read back as the policy package sees responses.

// Entry flag bits.
const (
	flagNoCache        uint16 = 1 << iota // revalidate before every use
	flagMustRevalidate                    // never serve stale
	flagHeuristic                         // lifetime is heuristic
	flagHitForMiss                        // marker: the URL's response was not storable
	flagSynthETag                         // the ETag was made by us, not the origin
	flagIndexed                           // counted in the key index's hosts
	flagFromShared                        // read from the shared tier (not written back to it)
)

// entryFreshness rebuilds the policy view of an entry.
func entryFreshness(e *cachestore.Entry) policy.Freshness {
	return policy.Freshness{
		Lifetime:             time.Duration(e.Lifetime) * time.Second,
		Heuristic:            e.Flags&flagHeuristic != 0,
		StaleWhileRevalidate: time.Duration(e.StaleRevalidate) * time.Second,
		StaleIfError:         time.Duration(e.StaleError) * time.Second,
		MustRevalidate:       e.Flags&flagMustRevalidate != 0,
		NoCache:              e.Flags&flagNoCache != 0,
	}
}

// entryAge is the entry's current_age (RFC 9111 §4.2.3).
func entryAge(e *cachestore.Entry, now time.Time) time.Duration {
	return policy.CurrentAge(time.Duration(e.InitialAge)*time.Second, time.Unix(0, e.Stored), now)
}

// newEntry builds an entry: hdr (already filtered by storedHeader) gets the
// body's Content-Length and goes to the header store.
func (p *Proxy) newEntry(key string, status int, hdr http.Header, length int64, body dedupbody.Ref, fr policy.Freshness, respHdr http.Header, reqTime, respTime time.Time) *cachestore.Entry {
	hdr["Content-Length"] = []string{strconv.FormatInt(length, 10)}
	v := headerValidators(hdr)
	block := v.renderWithout(hdr)
	hdrRef := p.headers.Put(block, dedupbody.Sum(block), parseBlock)
	date := respTime
	if d, ok := policy.ParseHTTPDate(respHdr.Get("Date")); ok {
		date = d // the parser freshness and age use, not net/http's (slower, stricter)
	}
	var flags uint16
	if fr.NoCache {
		flags |= flagNoCache
	}
	if fr.MustRevalidate {
		flags |= flagMustRevalidate
	}
	if fr.Heuristic {
		flags |= flagHeuristic
	}
	e := &cachestore.Entry{
		Key:             key,
		Header:          hdrRef,
		Body:            body,
		Stored:          respTime.UnixNano(),
		Date:            date.Unix(),
		Status:          int16(status),
		Flags:           flags,
		Lifetime:        seconds(fr.Lifetime),
		InitialAge:      seconds(policy.InitialAge(respHdr, reqTime, respTime)),
		StaleRevalidate: seconds(fr.StaleWhileRevalidate),
		StaleError:      seconds(fr.StaleIfError),
	}
	e.Extra = entryExtra(v, body)
	return e
}

// keepFor is how long an entry stays in the store: while it is fresh,
// while stale content may still be served from it, and, when it has
// validators, a while longer so it can be revalidated instead of refetched.
func (p *Proxy) keepFor(fr policy.Freshness, initialAge time.Duration, e *cachestore.Entry) time.Duration {
	stale := max(fr.StaleWhileRevalidate, fr.StaleIfError, p.live().Grace)
	if fr.MustRevalidate {
		stale = 0
	}
	if etag, lm := entryValidators(e); etag != "" || lm != "" {
		stale = max(stale, p.live().Keep)
	}
	return max(fr.Lifetime-initialAge+stale, time.Second)
}

// seconds converts d to whole seconds, saturating at int32.
func seconds(d time.Duration) int32 {
	s := d / time.Second
	if s > 1<<31-1 {
		return 1<<31 - 1
	}
	if s < 0 {
		return 0
	}
	return int32(s)
}

// entryFields returns the parsed header block of an entry (nil for an
// entry without one).
func entryFields(e *cachestore.Entry) blockFields {
	return blockOf(e.Header.Body().Aux())
}

// validators are a stored response's ETag and Last-Modified, kept in its
// entry (cachestore.Entry.Extra) rather than in its header block. They
// differ per representation: blocks that held them were unique per body,
// and when every body differs a unique block (its bytes, parsed fields and
// dedupbody bookkeeping, ~550 B) was half a key's heap. Without them, the
// keys whose responses have the same other fields share one block, and a
// key keeps ~80 B of its own here. A field with more than one value stays
// in the block.
type validators struct {
	v [2]string // ETag, Last-Modified; "" when absent
}

// Size implements cachestore.Extra: the struct and the one string both
// values are views of.
func (v *validators) Size() int64 { return 32 + 16 + int64(len(v.v[0])+len(v.v[1])) }

// etag returns the ETag as a field value slice (full: append reallocates),
// nil when absent.
func (v *validators) etag() []string {
	if v.v[0] == "" {
		return nil
	}
	return v.v[0:1:1]
}

// lastModified is etag's counterpart for Last-Modified.
func (v *validators) lastModified() []string {
	if v.v[1] == "" {
		return nil
	}
	return v.v[1:2:2]
}

// fieldValidators are the single-valued ETag and Last-Modified of a
// header ("" for a field that is absent, empty or repeated), as views of
// its values: nothing is copied until an entry or body keeps them (own).
type fieldValidators struct{ etag, lm string }

// headerValidators returns hdr's validators as views.
func headerValidators(hdr http.Header) fieldValidators {
	var fv fieldValidators
	if et := hdr["Etag"]; len(et) == 1 {
		fv.etag = et[0]
	}
	if lm := hdr["Last-Modified"]; len(lm) == 1 {
		fv.lm = lm[0]
	}
	return fv
}

// none reports whether there are no validators to take.
func (fv fieldValidators) none() bool { return fv.etag == "" && fv.lm == "" }

// own returns the validators as a *validators of their own bytes (nil when
// there are none), in one allocation for both, and always a new one: the
// views point into the whole response header's bytes (fieldsHeader),
// which whatever keeps them would keep.
func (fv fieldValidators) own() *validators {
	a, b := fv.etag, fv.lm
	var s string
	switch {
	case a == "" && b == "":
		return nil
	case b == "":
		s = strings.Clone(a)
	case a == "":
		s = strings.Clone(b)
	default:
		s = a + b
	}
	return &validators{v: [2]string{s[:len(a)], s[len(a):]}}
}

// renderWithout renders hdr as a header block without the validators fv
// took from it (they are kept in the entry or its body instead).
func (fv fieldValidators) renderWithout(hdr http.Header) []byte {
	switch {
	case fv.etag != "" && fv.lm != "":
		return renderHeader(hdr, "Etag", "Last-Modified")
	case fv.etag != "":
		return renderHeader(hdr, "Etag")
	case fv.lm != "":
		return renderHeader(hdr, "Last-Modified")
	}
	return renderHeader(hdr)
}

// aux is the body store's aux function for a new body stored for a
// response with these validators (the body keeps them, for the entries
// that share it: see entryExtra); nil when there are none. It copies them only when the body is new: a body stored already
// keeps the validators it was stored with.
func (fv fieldValidators) aux() func([]byte) (any, int64) {
	if fv.none() {
		return nil
	}
	return func([]byte) (any, int64) { v := fv.own(); return v, v.Size() }
}

// entryValidators returns the ETag and Last-Modified of a stored response
// ("" when absent), wherever the entry keeps them.
func entryValidators(e *cachestore.Entry) (etag, lm string) {
	if v := validatorsOf(e); v != nil {
		etag, lm = v.v[0], v.v[1]
	}
	if etag == "" || lm == "" {
		f := entryFields(e)
		if etag == "" {
			etag = f.get("Etag")
		}
		if lm == "" {
			lm = f.get("Last-Modified")
		}
	}
	return etag, lm
}

// entryHeader returns the fields of a stored response as a new http.Header
// (validators included) whose value slices are shared (full: append
// reallocates). For the miss and revalidation paths.
func entryHeader(e *cachestore.Entry) http.Header {
	h := blockHeader(e.Header.Body().Aux())
	if v := validatorsOf(e); v != nil && h != nil {
		if et := v.etag(); et != nil {
			h["Etag"] = et
		}
		if lm := v.lastModified(); lm != nil {
			h["Last-Modified"] = lm
		}
	}
	return h
}

// bodyValidators are validators owned by a body (its dedupbody aux value,
// see fieldValidators.aux) and shared by the entries whose responses carry that
// body with the same validators, the usual case: an entry holding them
// costs nothing more (Size 0; the body was charged for them).
type bodyValidators struct{ v *validators }

// Size implements cachestore.Extra.
func (bodyValidators) Size() int64 { return 0 }

// validatorsOf returns an entry's validators, nil if it keeps none.
func validatorsOf(e *cachestore.Entry) *validators {
	switch x := e.Extra.(type) {
	case *validators:
		return x
	case bodyValidators:
		return x.v
	}
	return nil
}

// entryExtra is the Extra of an entry for a response with validators fv
// and body: the body's validators when they are equal, else a copy of its
// own.
func entryExtra(fv fieldValidators, body dedupbody.Ref) cachestore.Extra {
	if fv.none() {
		return nil
	}
	if b := body.Body(); b != nil {
		if bv, ok := b.Aux().(*validators); ok && bv.v == [2]string{fv.etag, fv.lm} {
			return bodyValidators{bv}
		}
	}
	return fv.own()
}

// varyIndex is a Vary index entry's Extra: the request fields that select
// the variant, comma-separated.
type varyIndex string

// Size implements cachestore.Extra.
func (v varyIndex) Size() int64 { return 16 + int64(len(v)) }
