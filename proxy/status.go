package proxy

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Status is the cache's verdict on one request, sent as X-Cache.
type Status uint8

// The statuses. Bypass: the request or the response may not be cached.
const (
	StatusMiss Status = iota
	StatusHit
	StatusStale
	StatusBypass
	numStatus
)

var statusNames = [numStatus]string{"MISS", "HIT", "STALE", "BYPASS"}

// String returns the X-Cache value.
func (s Status) String() string {
	if s < numStatus {
		return statusNames[s]
	}
	return "UNKNOWN"
}

// xCache holds the X-Cache values as ready header slices, so that a hit
// does not allocate them. Never modified.
var xCache = func() (v [numStatus][]string) {
	for i := range v {
		v[i] = []string{statusNames[i]}
	}
	return v
}()

// cacheName is this cache's name in Cache-Status (RFC 9211) and Via.
const cacheName = "dedupcache"

// smallValues is how many ages and TTLs get precomputed header values.
const smallValues = 3600

// ageValues[n] is the Age header value for n seconds; hitStatus[n] is the
// Cache-Status value of a hit with n seconds of freshness left. Precomputed
// so that a hit does not format numbers; never modified.
var ageValues, hitStatus = func() (ages, hits [smallValues][]string) {
	for i := range ages {
		n := strconv.Itoa(i)
		ages[i] = []string{n}
		hits[i] = []string{cacheName + "; hit; ttl=" + n}
	}
	return ages, hits
}()

// ageValue returns the Age value for age (whole seconds, RFC 9111 §5.1).
func ageValue(age time.Duration) []string {
	s := int64(age / time.Second)
	if s < 0 {
		s = 0
	}
	if s < smallValues {
		return ageValues[s]
	}
	return []string{strconv.FormatInt(s, 10)}
}

// hitValue returns Cache-Status for a hit with ttl of freshness left.
func hitValue(ttl time.Duration) []string {
	s := int64(ttl / time.Second)
	if s < 0 {
		s = 0
	}
	if s < smallValues {
		return hitStatus[s]
	}
	return []string{cacheName + "; hit; ttl=" + strconv.FormatInt(s, 10)}
}

// dateCache remembers formatted Date values by unix second in a small
// direct-mapped table, so that hits on entries stored in the same second
// share one formatted value.
type dateCache struct {
	slots [1024]atomic.Pointer[dateSlot]
}

type dateSlot struct {
	sec int64
	v   []string
}

// get returns the Date header value for unix second sec.
func (d *dateCache) get(sec int64) []string {
	slot := &d.slots[uint64(sec)%uint64(len(d.slots))]
	if s := slot.Load(); s != nil && s.sec == sec {
		return s.v
	}
	s := &dateSlot{sec: sec, v: []string{time.Unix(sec, 0).UTC().Format(http.TimeFormat)}}
	slot.Store(s)
	return s.v
}
