package redistier

import "github.com/redis/rueidis"

// The scripts run with EVALSHA (EVAL on NOSCRIPT). Each touches keys of one
// slot only, so they run on a Cluster too.

// ctlTime is the second half of a Get's first round trip (run with
// EVAL_RO, inside the same pipeline as the MGET of the entry): KEYS[1] the
// control hash. Returns {HGETALL ctl, TIME}.
const ctlTime = `return {redis.call('HGETALL', KEYS[1]), redis.call('TIME')}`

// leaseBody makes sure a body outlives an entry about to point at it:
// KEYS[1] body, ARGV[1] lease (ms). It returns 0 when the body is absent,
// else 1 after extending its TTL to at least the lease (never shortening
// it). PEXPIRE GT alone would be ambiguous: 0 means absent or long enough.
var leaseBody = rueidis.NewLuaScript(`
local t = redis.call('PTTL', KEYS[1])
if t == -2 then return 0 end
local lease = tonumber(ARGV[1])
if t < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1`)

// putEntry writes an entry if its primary key was not purged since the
// fill began: KEYS gen, entry, vary; ARGV[1] the generation the fill saw
// (” when there was none), ARGV[2] the generation to create when there is
// none, ARGV[3] the entry, ARGV[4] its TTL (ms), ARGV[5] the Vary record
// without its generation (” for none). Returns 1 if written, 0 if not.
//
// A purge replaces the generation with a new random nonce (or creates one),
// so a fill that saw no generation, or another one, is refused. The
// generation and the Vary record are extended, never shortened, to the
// entry's TTL.
var putEntry = rueidis.NewLuaScript(`
local g = redis.call('GET', KEYS[1])
local ttl = tonumber(ARGV[4])
if ARGV[1] == '' then
  if g then return 0 end
  g = ARGV[2]
  redis.call('SET', KEYS[1], g, 'PX', ttl)
elseif g ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
local t = redis.call('PTTL', KEYS[1])
if t < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
if ARGV[5] ~= '' then
  t = redis.call('PTTL', KEYS[3])
  redis.call('SET', KEYS[3], g .. ARGV[5], 'PX', math.max(t, ttl))
end
return 1`)

// addTag enters a primary key in a tag's index unless the tag was purged
// since the fill began: KEYS index, mark; ARGV[1] primary, ARGV[2] TTL
// (ms), ARGV[3] Redis time (ms) the fill began. Returns 1 or 0 (purged).
// Expired members are trimmed on the way, so the index holds live keys
// only.
var addTag = rueidis.NewLuaScript(`
local m = redis.call('GET', KEYS[2])
if m and tonumber(m) >= tonumber(ARGV[3]) then return 0 end
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], 'GT', now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1`)

// markTag records a tag purge: KEYS[1] mark, ARGV[1] how long to keep the
// mark (ms). Returns the Redis time (ms) recorded.
var markTag = rueidis.NewLuaScript(`
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
redis.call('SET', KEYS[1], now, 'PX', ARGV[1])
return now`)

// purgeCtl applies purges of everything and of prefixes to the control
// hash: KEYS[1] ctl; ARGV[1] '1' to replace the epoch with ARGV[2], ARGV[3]
// how long prefix purges are kept (ms), ARGV[4] the most kept, ARGV[5...]
// prefixes. Prefix purges older than the retention are dropped; past the
// limit they are folded into a purge of everything (returns 2, else 1).
var purgeCtl = rueidis.NewLuaScript(`
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'e', ARGV[2])
end
if #ARGV < 5 then return 1 end
for i = 5, #ARGV do redis.call('HSET', KEYS[1], 'p:' .. ARGV[i], now) end
local all = redis.call('HGETALL', KEYS[1])
local old, n = now - tonumber(ARGV[3]), 0
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'p:' then
    if tonumber(all[i+1]) < old then redis.call('HDEL', KEYS[1], all[i]) else n = n + 1 end
  end
end
if n > tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'e', ARGV[2])
  return 2
end
return 1`)

// appendLog appends a purge to the log: KEYS stream, state; ARGV[1] an
// incarnation to create if there is none, ARGV[2] instance, ARGV[3] the
// purge, ARGV[4] retention (ms). Each entry carries the incarnation and a
// sequence number, so a follower sees a gap. Entries older than the
// retention are trimmed. Returns the entry ID.
var appendLog = rueidis.NewLuaScript(`
local inc = redis.call('HGET', KEYS[2], 'inc')
if not inc then
  inc = ARGV[1]
  redis.call('HSET', KEYS[2], 'inc', inc, 'n', 0)
end
local n = redis.call('HINCRBY', KEYS[2], 'n', 1)
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
return redis.call('XADD', KEYS[1], 'MINID', now - tonumber(ARGV[4]), '*',
  'i', ARGV[2], 's', inc, 'n', n, 'p', ARGV[3])`)

// logState returns what a follower checks its position against: KEYS
// stream, state; ARGV[1] an incarnation to create if there is none, ARGV[2]
// the last ID the follower read (” for none). Returns the incarnation,
// the last sequence number appended, the ID of the newest entry kept
// ('0-0' for none) and the sequence number of the first entry kept after
// ARGV[2] (-1 for none).
var logState = rueidis.NewLuaScript(`
local inc = redis.call('HGET', KEYS[2], 'inc')
if not inc then
  inc = ARGV[1]
  redis.call('HSET', KEYS[2], 'inc', inc, 'n', 0)
end
local n = tonumber(redis.call('HGET', KEYS[2], 'n'))
local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local tailID = '0-0'
if #tail > 0 then tailID = tail[1][1] end
local nextN = -1
if ARGV[2] ~= '' then
  local e = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', 1)
  if #e > 0 then
    local f = e[1][2]
    for i = 1, #f, 2 do if f[i] == 'n' then nextN = tonumber(f[i+1]) end end
  end
end
return {inc, n, tailID, nextN}`)
