package redistier

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// Gen is the purge state a fill began under, as [Tier.Get] saw it: the
// primary key's generation, the epoch and Redis's clock. Pass it to
// [Tier.Put] for the response fetched after that Get; a purge in between
// makes the put a no-op, so an old response never comes back after a purge.
// The zero Gen (Redis was not reached) makes every put a no-op. It is a
// small value, meant to be copied.
type Gen struct {
	gen, epoch       [8]byte
	hasGen, hasEpoch bool
	since            int64 // Redis time (ms)
	valid            bool
}

// Get returns the record and body stored under key (a full cache key: a
// primary key "host uri", or a variant key: the primary, a NUL byte, and the
// variant's selector), and the [Gen] a put of a fresh response for key must
// carry. ok is false on a miss: no entry, an entry written before a purge
// that covers it, a missing or corrupt body (each body is checked against
// its SHA-256), Redis down (the breaker is open), or the deadline
// (Config.Timeout or ctx, whichever ends first).
//
// have, if not nil, is asked first whether the caller already holds the
// body with that SHA-256; if it returns the body, it is not downloaded and
// Get returns have's slice. Inlined bodies come with the entry and skip
// have. have runs on the caller's goroutine and must not call the Tier.
//
// The returned Header and body must not be modified: they may alias the
// client's buffers and the caller's.
func (t *Tier) Get(ctx context.Context, key string, have func(sum [32]byte) []byte) (rec Record, body []byte, gen Gen, ok bool) {
	c := t.conn()
	if c == nil {
		t.st.misses.Add(1)
		return rec, nil, gen, false
	}
	ctx, cancel := t.callCtx(ctx)
	defer cancel()
	k := t.keysOf(key)
	// The control hash and TIME come from one read-only script on the
	// node holding the control hash: on a Cluster, rueidis refuses (panics
	// on) a DoMulti mixing a keyless TIME with keys of several slots, and
	// prefix purges are stamped with that node's clock too.
	res := c.DoMulti(ctx,
		c.B().Mget().Key(k.gen, k.entry).Build(),
		c.B().EvalRo().Script(ctlTime).Numkeys(1).Key(t.ctlKey()).Build())
	gen, raw, ctl, err := parseHead(res)
	if !t.result(err) {
		t.st.misses.Add(1)
		return rec, nil, Gen{}, false
	}
	if raw == nil {
		t.st.misses.Add(1)
		return rec, nil, gen, false
	}
	e, err := decodeEntry(raw)
	switch {
	case err != nil:
		t.st.corrupt.Add(1)
		fallthrough
	case e.key != key, !gen.hasGen || e.gen != gen.gen, !gen.hasEpoch || e.epoch != gen.epoch,
		banned(ctl, pathOf(primaryOf(key)), e.since):
		t.st.misses.Add(1)
		return rec, nil, gen, false
	}
	rec = e.rec
	switch {
	case e.inline != nil:
		if sha256.Sum256(e.inline) != rec.BodyHash {
			t.st.corrupt.Add(1)
			t.st.misses.Add(1)
			return Record{}, nil, gen, false
		}
		t.st.bodiesInline.Add(1)
		body = e.inline
	case have != nil && func() bool { body = have(rec.BodyHash); return body != nil }():
		t.st.bodiesLocal.Add(1)
	default:
		body, err = c.Do(ctx, c.B().Get().Key(t.bodyKey(rec.BodyHash)).Build()).AsBytes()
		if !t.result(err) || body == nil {
			if rueidis.IsRedisNil(err) {
				t.st.dangling.Add(1)
			}
			t.st.misses.Add(1)
			return Record{}, nil, gen, false
		}
		if int64(len(body)) != rec.BodyLen || sha256.Sum256(body) != rec.BodyHash {
			t.st.corrupt.Add(1)
			t.st.misses.Add(1)
			return Record{}, nil, gen, false
		}
		t.st.bodiesFetched.Add(1)
	}
	t.st.hits.Add(1)
	return rec, body, gen, true
}

// parseHead reads the first round trip of a Get: MGET gen entry, then
// ctlTime's {HGETALL ctl, TIME}.
func parseHead(res []rueidis.RedisResult) (gen Gen, entry []byte, ctl map[string]string, err error) {
	for _, r := range res {
		if err = r.Error(); err != nil {
			return
		}
	}
	pair, err := res[0].ToArray()
	if err != nil || len(pair) != 2 {
		return gen, nil, nil, errProto(err)
	}
	if g, err := pair[0].AsBytes(); err == nil && len(g) == 8 {
		gen.gen, gen.hasGen = [8]byte(g), true
	}
	entry, _ = pair[1].AsBytes()
	ct, err := res[1].ToArray()
	if err != nil || len(ct) != 2 {
		return gen, nil, nil, errProto(err)
	}
	if ctl, err = ct[0].AsStrMap(); err != nil {
		return gen, nil, nil, err
	}
	if ep := ctl["e"]; len(ep) == 8 {
		gen.epoch, gen.hasEpoch = [8]byte([]byte(ep)), true
	}
	tm, err := ct[1].AsStrSlice()
	if err != nil || len(tm) != 2 {
		return gen, nil, nil, errProto(err)
	}
	sec, err1 := strconv.ParseInt(tm[0], 10, 64)
	usec, err2 := strconv.ParseInt(tm[1], 10, 64)
	if err1 != nil || err2 != nil {
		return gen, nil, nil, errProto(nil)
	}
	gen.since, gen.valid = sec*1000+usec/1000, true
	return gen, entry, ctl, nil
}

// errProto wraps an unexpected reply shape.
func errProto(err error) error {
	if err != nil {
		return err
	}
	return errors.New("redistier: unexpected reply")
}

// banned reports whether a prefix purge recorded in ctl covers path and
// happened at or after since (both Redis times, ms).
func banned(ctl map[string]string, path string, since int64) bool {
	for f, v := range ctl {
		prefix, ok := strings.CutPrefix(f, "p:")
		if !ok || !strings.HasPrefix(path, prefix) {
			continue
		}
		if at, err := strconv.ParseInt(v, 10, 64); err != nil || at >= since {
			return true
		}
	}
	return false
}

// VaryNames returns the Vary field names recorded for primary by the last
// [Tier.Put] of one of its variants, so that the caller computes the
// variant key from the request. ok is false when there is none, when it
// predates a purge of primary, or on any failure.
func (t *Tier) VaryNames(ctx context.Context, primary string) (names []string, ok bool) {
	c := t.conn()
	if c == nil {
		return nil, false
	}
	ctx, cancel := t.callCtx(ctx)
	defer cancel()
	k := t.keysOf(primary)
	pair, err := c.Do(ctx, c.B().Mget().Key(k.gen, k.vary).Build()).ToArray()
	if !t.result(err) || len(pair) != 2 {
		return nil, false
	}
	g, _ := pair[0].AsBytes()
	v, _ := pair[1].AsBytes()
	if len(g) != 8 || len(v) < 9 || string(v[:8]) != string(g) || v[8] != 'V' {
		return nil, false
	}
	if len(v) == 9 {
		return []string{}, true
	}
	return strings.Split(string(v[9:]), "\n"), true
}
