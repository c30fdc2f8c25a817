package redistier

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

type putReq struct {
	key, varyOf string
	varyNames   []string
	gen         Gen
	rec         Record
	body        []byte
	ttl         time.Duration
}

// Put queues an asynchronous write of a response for key and returns at
// once. gen is what the [Tier.Get] that missed before the fetch returned.
// ttl is how long the entry may be used (freshness lifetime plus stale
// windows); it is capped at Config.Retention. varyOf, when not empty, is
// the primary key of which key is a variant, and varyNames its Vary field
// names, recorded for [Tier.VaryNames].
//
// A writer then stores, in this order: the body, unless inlined (SET NX
// with a lease longer than ttl; when another instance already stored it,
// only its TTL is extended, never shortened, and its bytes count as not
// uploaded); the tag index entries; the entry record, with a script that
// refuses it if the primary key was purged since gen was read. The body is
// written first and always outlives the entry, so an entry never points at
// a body that expired first; a body evicted anyway makes the entry a miss.
//
// The put is dropped (and counted) when the queue is full, the breaker is
// open, gen is the zero Gen, the body is larger than Config.MaxBody, or
// ttl is not positive. Put keeps body, rec.Header and rec.Tags until the
// write is done: they must not be modified.
func (t *Tier) Put(key string, gen Gen, varyOf string, varyNames []string, rec Record, body []byte, ttl time.Duration) {
	switch {
	case ttl <= 0 || len(body) > t.cfg.MaxBody:
		t.st.putsSkipped.Add(1)
		return
	case !gen.valid:
		t.st.putsRefused.Add(1)
		return
	case t.conn() == nil:
		t.st.putsDropped.Add(1)
		return
	}
	select {
	case t.queue <- putReq{key, varyOf, varyNames, gen, rec, body, ttl}:
		t.st.putsQueued.Add(1)
	default:
		t.st.putsDropped.Add(1)
	}
}

// writer drains the put queue until Close.
func (t *Tier) writer() {
	defer t.wg.Done()
	for {
		select {
		case <-t.ctx.Done():
			return
		case r := <-t.queue:
			t.safeWrite(r)
		}
	}
}

func (t *Tier) safeWrite(r putReq) {
	defer func() {
		if p := recover(); p != nil {
			t.st.putsFailed.Add(1)
			t.log.Error("redis tier writer panicked", "panic", p)
		}
	}()
	err := t.write(r)
	switch {
	case err == nil:
		t.st.putsWritten.Add(1)
	case errors.Is(err, errPurged):
		t.st.putsRefused.Add(1)
	default:
		t.st.putsFailed.Add(1)
		t.log.Debug("redis tier put failed", "err", err)
	}
}

var errPurged = errors.New("redistier: purged since the fill began")

// step runs one round trip under its own deadline.
func (t *Tier) step(f func(ctx context.Context) error) error {
	ctx, cancel := t.callCtx(t.ctx)
	defer cancel()
	return f(ctx)
}

func (t *Tier) write(r putReq) error {
	c := t.conn()
	if c == nil {
		return ErrUnavailable
	}
	ttl := min(r.ttl, t.cfg.Retention)
	ttlMs := strconv.FormatInt(ttl.Milliseconds(), 10)
	primary := primaryOf(r.key)
	e := entry{key: r.key, since: r.gen.since, rec: r.rec}
	e.rec.BodyHash = sha256.Sum256(r.body)
	e.rec.BodyLen = int64(len(r.body))

	// The control hash: refuse a fill that a purge of everything or of a
	// prefix already covers; record the epoch when there is none yet.
	var ctl map[string]string
	err := t.step(func(ctx context.Context) (err error) {
		ctl, err = c.Do(ctx, c.B().Hgetall().Key(t.ctlKey()).Build()).AsStrMap()
		return err
	})
	if !t.result(err) {
		return err
	}
	switch ep := ctl["e"]; {
	case r.gen.hasEpoch && ep != string(r.gen.epoch[:]):
		return errPurged
	case !r.gen.hasEpoch && ep != "":
		return errPurged
	case !r.gen.hasEpoch:
		n := nonce()
		var set bool
		err := t.step(func(ctx context.Context) (err error) {
			set, err = c.Do(ctx, c.B().Hsetnx().Key(t.ctlKey()).Field("e").Value(string(n[:])).Build()).AsBool()
			return err
		})
		if !t.result(err) {
			return err
		}
		if !set {
			return errPurged
		}
		e.epoch = n
	default:
		e.epoch = r.gen.epoch
	}
	if banned(ctl, pathOf(primary), e.since) {
		return errPurged
	}

	// The body, before anything points at it.
	if len(r.body) <= t.cfg.InlineMax { // InlineMax < 0: never inline
		e.inline = r.body
		if e.inline == nil {
			e.inline = []byte{}
		}
	} else if err := t.leaseBody(c, t.bodyKey(e.rec.BodyHash), r.body, ttl+leaseMargin); err != nil {
		return err
	}

	// Tags, before the entry: a tag purge either finds the key in the
	// index (and bumps its generation) or left a mark newer than the fill.
	if len(r.rec.Tags) > 0 {
		execs := make([]rueidis.LuaExec, 0, len(r.rec.Tags))
		for _, tag := range r.rec.Tags {
			idx, mark := t.tagKeys(tag)
			execs = append(execs, rueidis.LuaExec{Keys: []string{idx, mark},
				Args: []string{primary, ttlMs, strconv.FormatInt(e.since, 10)}})
		}
		var res []rueidis.RedisResult
		t.step(func(ctx context.Context) error { res = addTag.ExecMulti(ctx, c, execs...); return nil })
		for _, x := range res {
			n, err := x.AsInt64()
			if !t.result(err) {
				return err
			}
			if n == 0 {
				return errPurged
			}
		}
	}

	// The entry, if the generation is still the one the fill saw.
	want, create := "", nonce()
	e.gen = create
	if r.gen.hasGen {
		want, e.gen = string(r.gen.gen[:]), r.gen.gen
	}
	vary := "" // the Vary record after its generation: "V" and the names
	if r.varyOf != "" && r.varyOf == primary {
		vary = "V" + strings.Join(r.varyNames, "\n")
	}
	k := t.keysOf(r.key)
	var n int64
	err = t.step(func(ctx context.Context) (err error) {
		n, err = putEntry.Exec(ctx, c, []string{k.gen, k.entry, k.vary},
			[]string{want, string(create[:]), string(e.encode()), ttlMs, vary}).AsInt64()
		return err
	})
	if !t.result(err) {
		return err
	}
	if n == 0 {
		return errPurged
	}
	return nil
}

// leaseBody stores body under key unless it is there, and makes its TTL at
// least lease. A body already stored (by any instance) is not sent again.
func (t *Tier) leaseBody(c rueidis.Client, key string, body []byte, lease time.Duration) error {
	ms := strconv.FormatInt(lease.Milliseconds(), 10)
	for attempt := 0; attempt < 2; attempt++ {
		var n int64
		err := t.step(func(ctx context.Context) (err error) {
			n, err = leaseBody.Exec(ctx, c, []string{key}, []string{ms}).AsInt64()
			return err
		})
		if !t.result(err) {
			return err
		}
		if n == 1 {
			t.st.bytesNotUploaded.Add(int64(len(body)))
			return nil
		}
		var set bool
		err = t.step(func(ctx context.Context) error {
			err := c.Do(ctx, c.B().Set().Key(key).Value(rueidis.BinaryString(body)).Nx().Px(lease).Build()).Error()
			set = err == nil
			if rueidis.IsRedisNil(err) {
				return nil
			}
			return err
		})
		if !t.result(err) {
			return err
		}
		if set {
			t.st.bytesUploaded.Add(int64(len(body)))
			return nil
		}
		// Another instance stored it between the two steps: extend its lease.
	}
	return errors.New("redistier: body vanished while leasing it")
}
