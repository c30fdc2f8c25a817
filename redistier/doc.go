// Package redistier is a shared second cache tier on a Redis-protocol
// server (Redis >= 7.0 or Valkey; standalone, Sentinel or Cluster): entry
// records that point at bodies stored once for the whole fleet, and a
// purge log every instance follows. It is pure storage: it knows cache
// keys, records and bytes, nothing of HTTP.
//
// # Bodies once per fleet, leases instead of counts
//
// A body is stored under its SHA-256 (a 64-bit hash is not enough across
// a fleet, and non-cryptographic hashes have crafted collisions) and
// checked against it on every read. [Tier.Put] writes the body before the
// entry that points at it; if any instance stored it already, only its TTL
// is extended (never shortened) and no bytes are sent. A body's TTL always
// outlives the entries written against it (by a margin), so expiry never
// leaves an entry dangling; eviction or a failover may, and then the entry
// is a miss. Nothing counts references: Redis drops keys without running
// our code, so counts would drift. Orphaned bodies live until their lease
// ends. Bodies up to [Config.InlineMax] travel inside the entry record.
//
// # Purges
//
// Each primary key has a generation, a random nonce that every entry of
// it (variants included) records; a purge of the key or of one of its tags
// replaces it, so the entries become misses at once and expire by TTL. A
// purge of everything replaces the namespace's epoch the same way. A
// prefix purge is kept, with Redis's time, in a small control hash that
// every Get reads in its first round trip; an entry whose fill began
// before a matching prefix purge is a miss. Nonces are random, not
// counters, so a generation lost to eviction never comes back as an older
// one.
//
// A purge racing a fill: [Tier.Get] returns a [Gen] (the generation, the
// epoch and Redis's time seen before the fetch), and Put's writes check it
// atomically: the entry script refuses a generation that changed, a tag
// script refuses a tag marked purged since, the epoch and prefix purges
// are compared the same way. So a response fetched before a purge never
// lands after it.
//
// Purges are appended to a Redis Stream with the purging instance's ID, a
// sequence number and the log's incarnation (a nonce lost with the log).
// [Tier.Follow] replays the others' purges from its last entry after a
// disconnection; when the log was trimmed past that entry, or replaced,
// it hands the caller a purge with Missed set so that it marks its older
// local entries stale.
//
// # Redis failing
//
// Every call has a deadline ([Config.Timeout]). Three transport failures
// or timeouts in a row open a circuit breaker: calls then skip Redis (a
// miss, a dropped put) while a probe pings it every
// [Config.ProbeInterval]. Error replies (OOM when full with noeviction, a
// wrong type) are counted but leave the breaker closed, since reads still
// work. [New] never fails because Redis is down: it starts with the
// breaker open and connects in the background. TestFaults checks a server
// absent at start, killed, restarted, paused with CLIENT PAUSE and full.
//
// # Client
//
// The client is github.com/redis/rueidis, chosen over go-redis v9 by
// BenchmarkClient, which runs the tier's own read (GET entry, then GET
// body: 300 B and 4 KiB) and write (SET NX PX body + SET PX entry in one
// pipeline) from 16 goroutines against Debian's redis-server 7.0.15 on a
// 2-core machine: reads 21-24 µs/op against 34-42 µs/op, writes 18-19
// µs/op against 24-27 µs/op. rueidis pipelines concurrent calls on one
// connection (auto-pipelining) where go-redis takes a pooled connection
// per call. It also parses every URL form (Sentinel and Cluster
// included) in one ParseURL. Its client-side cache is off (it would live
// outside the proxy's memory bound), and so are retries (a retry past the
// deadline is worse than a miss).
package redistier
