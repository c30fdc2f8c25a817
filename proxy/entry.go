package proxy

import (
	"net/http"
	"strconv"
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
	flagNoCache        uint32 = 1 << iota // revalidate before every use
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
	block := renderHeader(hdr)
	hdrRef := p.headers.Put(block, dedupbody.Sum(block), parseBlock)
	date := respTime
	if d, err := http.ParseTime(respHdr.Get("Date")); err == nil {
		date = d
	}
	var flags uint32
	if fr.NoCache {
		flags |= flagNoCache
	}
	if fr.MustRevalidate {
		flags |= flagMustRevalidate
	}
	if fr.Heuristic {
		flags |= flagHeuristic
	}
	return &cachestore.Entry{
		Key:             key,
		Header:          hdrRef,
		Body:            body,
		Stored:          respTime.UnixNano(),
		Date:            date.Unix(),
		Status:          int32(status),
		Flags:           flags,
		Lifetime:        seconds(fr.Lifetime),
		InitialAge:      seconds(policy.InitialAge(respHdr, reqTime, respTime)),
		StaleRevalidate: seconds(fr.StaleWhileRevalidate),
		StaleError:      seconds(fr.StaleIfError),
	}
}

// keepFor is how long an entry stays in the store: while it is fresh,
// while stale content may still be served from it, and, when it has
// validators, a while longer so it can be revalidated instead of refetched.
func (p *Proxy) keepFor(fr policy.Freshness, initialAge time.Duration, hdr *dedupbody.Body) time.Duration {
	stale := max(fr.StaleWhileRevalidate, fr.StaleIfError, p.live().Grace)
	if fr.MustRevalidate {
		stale = 0
	}
	if h := blockOf(hdr.Aux()); h.get("Etag") != "" || h.get("Last-Modified") != "" {
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
