package redistier

import (
	"sync/atomic"
	"time"
)

// BreakerState is the circuit breaker's state, shown in stats and health.
type BreakerState uint8

// The states: Closed sends calls to Redis; Open skips Redis while a probe
// checks it every Config.ProbeInterval.
const (
	BreakerClosed BreakerState = iota
	BreakerOpen
)

// String returns "closed" or "open".
func (s BreakerState) String() string {
	if s == BreakerOpen {
		return "open"
	}
	return "closed"
}

// Stats are the Tier's counters since New. Counts are totals.
type Stats struct {
	Breaker      BreakerState
	BreakerTrips uint64 // times the breaker opened

	Hits, Misses uint64 // Get results
	Errors       uint64 // failed calls: transport errors, timeouts, error replies
	Timeouts     uint64 // calls that hit their deadline
	Dangling     uint64 // entries whose body was gone (a miss)
	Corrupt      uint64 // entries or bodies failing their checks (a miss)

	BodiesFetched uint64 // bodies downloaded by Get
	BodiesLocal   uint64 // bodies the caller held (have), not downloaded
	BodiesInline  uint64 // bodies that came inside their entry

	PutsQueued  uint64 // accepted by Put
	PutsDropped uint64 // queue full, breaker open, or closed
	PutsSkipped uint64 // too large a body or no TTL
	PutsRefused uint64 // purged since the fill began (or no Gen)
	PutsWritten uint64
	PutsFailed  uint64 // Redis errors (full, timeouts)

	BytesUploaded    int64 // body bytes sent (this instance stored the body)
	BytesNotUploaded int64 // body bytes found stored already: fleet dedup

	PurgesSent    uint64 // Purge calls that reached the log
	PurgesApplied uint64 // other instances' purges handed to Follow's apply
	PurgesMissed  uint64 // Missed purges Follow handed to apply
	Following     bool
	StreamLag     time.Duration // age of the last log entry Follow read when read; 0 when caught up
}

type stats struct {
	breakerTrips, hits, misses, errors, timeouts, dangling, corrupt atomic.Uint64
	bodiesFetched, bodiesLocal, bodiesInline                        atomic.Uint64
	putsQueued, putsDropped, putsSkipped, putsRefused, putsWritten  atomic.Uint64
	putsFailed, purgesSent, purgesApplied, purgesMissed             atomic.Uint64
	bytesUploaded, bytesNotUploaded, streamLag                      atomic.Int64
	following                                                       atomic.Bool
}

// Stats returns a snapshot of the counters, read without locks.
func (t *Tier) Stats() Stats {
	s := &t.st
	st := Stats{
		BreakerTrips: s.breakerTrips.Load(),
		Hits:         s.hits.Load(), Misses: s.misses.Load(),
		Errors: s.errors.Load(), Timeouts: s.timeouts.Load(),
		Dangling: s.dangling.Load(), Corrupt: s.corrupt.Load(),
		BodiesFetched: s.bodiesFetched.Load(), BodiesLocal: s.bodiesLocal.Load(), BodiesInline: s.bodiesInline.Load(),
		PutsQueued: s.putsQueued.Load(), PutsDropped: s.putsDropped.Load(), PutsSkipped: s.putsSkipped.Load(),
		PutsRefused: s.putsRefused.Load(), PutsWritten: s.putsWritten.Load(), PutsFailed: s.putsFailed.Load(),
		BytesUploaded: s.bytesUploaded.Load(), BytesNotUploaded: s.bytesNotUploaded.Load(),
		PurgesSent: s.purgesSent.Load(), PurgesApplied: s.purgesApplied.Load(), PurgesMissed: s.purgesMissed.Load(),
		Following: s.following.Load(), StreamLag: time.Duration(s.streamLag.Load()),
	}
	if !t.Healthy() {
		st.Breaker = BreakerOpen
	}
	return st
}
